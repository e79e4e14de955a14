"""The floor bus: how tile changes and alerts travel from ingest to every wall.

An interface with an in-process implementation (the embedded default). A Redis implementation
for several hubs sharing one floor sits behind the same interface, so ingest and walls never know
which one runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from server.events import FloorEvent

log = logging.getLogger("floorwatch.bus")

Handler = Callable[[FloorEvent], None]
# answers a request from another hub: (kind, payload) -> reply (JSON-able)
RequestHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class HubUnreachable(Exception):
    """Another hub of the floor did not answer a request (gone, or no shared bus)."""


class Bus(Protocol):
    def publish(self, event: FloorEvent) -> None:
        """Hand an event to the bus. Never blocks and never awaits a subscriber."""

    def subscribe(self, handler: Handler) -> None: ...

    async def sync(self) -> None:
        """Return once everything published so far is durable beyond this process."""

    async def shared_last_seq(self, agent_id: str, session: str) -> int:
        """The highest reliable message another hub stored for this agent session (or 0)."""

    async def fetch_row(self, table: str, key: str) -> bool:
        """Fetch one shared store row (an account or session made on another hub a moment ago)
        into the local store; True if there was one."""

    def serve_requests(self, handler: RequestHandler) -> None:
        """Answer the requests other hubs of the floor send this hub."""

    async def request(self, hub_id: str, kind: str, payload: dict[str, Any],
                      timeout: float) -> dict[str, Any]:
        """Ask another hub (e.g. the one a call streams to) and return its reply; raises
        `HubUnreachable` when it does not answer in time."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def healthy(self) -> bool: ...


class LocalBus:
    """In-process bus: subscribers are called synchronously, in order of subscription.

    Subscribers must be quick and must not await (the floor only updates dicts and puts onto
    bounded per-wall queues). A subscriber that raises is logged and the others still run.
    """

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def publish(self, event: FloorEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("bus subscriber %r failed on %s", handler, type(event).__name__)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def sync(self) -> None:
        return None

    async def shared_last_seq(self, agent_id: str, session: str) -> int:
        return 0

    async def fetch_row(self, table: str, key: str) -> bool:
        return False

    def serve_requests(self, handler: RequestHandler) -> None:
        return None  # one hub: nobody else asks

    async def request(self, hub_id: str, kind: str, payload: dict[str, Any],
                      timeout: float) -> dict[str, Any]:
        raise HubUnreachable(f"hub {hub_id} is not on this floor (no shared bus)")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    @property
    def healthy(self) -> bool:
        return True
