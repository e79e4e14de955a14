"""An agent desktop's clock against the hub's.

Status times (`at`) are stamped by the agent's desktop, so that a status queued while the hub was
away keeps the moment it happened. Desktop clocks drift: a PC minutes behind would show its agent
"on call 0:00" for minutes on the wall, or a state that began in the future. The client says what
its clock reads in its hello (`client_time`); the hub, which received that hello a LAN round trip
later at most, learns the offset once per connection and moves every status time by it. Clocks
within `TOLERANCE_S` are trusted as they are (NTP-synced desktops keep exact times), and no time
is ever put after the moment the hub received it.
"""

from __future__ import annotations

from dataclasses import dataclass

TOLERANCE_S = 2.0  # a hello's transit and ordinary NTP error stay well inside this


@dataclass(frozen=True, slots=True)
class ClientClock:
    offset_s: float = 0.0  # hub clock − desktop clock; 0 when within the tolerance or unknown

    @classmethod
    def learn(cls, client_time: float | None, received_at: float) -> ClientClock:
        """From the hello's `client_time` (None: an older client that does not send it)."""
        if client_time is None:
            return cls()
        offset = received_at - client_time
        return cls(offset if abs(offset) > TOLERANCE_S else 0.0)

    @property
    def skewed(self) -> bool:
        return self.offset_s != 0.0

    def to_hub(self, at: float, received_at: float) -> float:
        """A desktop time on the hub's clock, never later than when the hub received it."""
        return min(at + self.offset_s, received_at)


def describe_offset(offset_s: float) -> str:
    """'3 min 12 s behind' / '40 s ahead' — for the log line about a skewed desktop."""
    seconds = round(abs(offset_s))
    text = f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
    return f"{text} {'behind' if offset_s > 0 else 'ahead of'}"
