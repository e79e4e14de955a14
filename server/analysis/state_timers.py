"""Time-in-state limits (a long break, a long wrap-up, a call that runs on), sans-I/O.

State changes come with the agent's timestamps and `check(now)` is given the time by the caller,
so tests drive it with plain numbers. One alert per episode of a state; an episode is identified
by its state and start, so a call that goes on hold and comes back (its `on_call` episode starts at
the call's start) is not alerted twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.events import AgentState, StateOverLimit


class StateTimer:
    def __init__(self, limits_s: Mapping[str, float]) -> None:
        self._limits = dict(limits_s)
        self.state: AgentState | None = None
        self.since = 0.0
        self._raised: set[tuple[AgentState, float]] = set()

    def on_state(self, state: AgentState, since: float) -> None:
        if not state.in_call:
            self._raised = {key for key in self._raised if key[0] is state and key[1] == since}
        self.state, self.since = state, since

    def check(self, now: float) -> StateOverLimit | None:
        if self.state is None or (self.state, self.since) in self._raised:
            return None
        limit = self._limits.get(self.state.value)
        if limit is None or now - self.since < limit:
            return None
        self._raised.add((self.state, self.since))
        return StateOverLimit(self.state, self.since, limit)
