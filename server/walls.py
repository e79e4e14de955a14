"""Wall fan-out: every wall socket has its own bounded queue and its own writer task.

Publishing puts one already-serialised string on each queue with `put_nowait` and never awaits a
wall, so one stalled TV cannot delay any other. A wall whose queue fills up is dropped: its
socket is closed with 4408 ("too slow, resync") and the page reconnects and starts again from a
fresh snapshot, which is cheaper and more honest than trying to catch it up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field

from aiohttp import web

log = logging.getLogger("floorwatch.walls")

CLOSE_TOO_SLOW = 4408
_ids = itertools.count(1)


@dataclass(eq=False)
class Wall:
    ws: web.WebSocketResponse
    user: str
    queue: asyncio.Queue[str]
    transport: asyncio.BaseTransport | None = None
    id: int = field(default_factory=lambda: next(_ids))
    writer: asyncio.Task[None] | None = None
    closer: asyncio.Task[None] | None = None
    sent: int = 0


class WallHub:
    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self.walls: set[Wall] = set()
        self.dropped = 0
        self.delivered = 0

    def open(self, ws: web.WebSocketResponse, user: str, first: str,
             transport: asyncio.BaseTransport | None = None) -> Wall:
        """Register a wall with `first` (its snapshot) queued, and start its writer.

        Called without an await between building the snapshot and registering, so the wall
        sees every change after its snapshot and none before.
        """
        wall = Wall(ws, user, asyncio.Queue(self._queue_size), transport)
        wall.queue.put_nowait(first)
        wall.writer = asyncio.create_task(self._write(wall), name=f"wall-writer-{wall.id}")
        self.walls.add(wall)
        log.info("wall %d opened by %s (%d walls)", wall.id, user, len(self.walls))
        return wall

    def broadcast(self, text: str) -> None:
        for wall in tuple(self.walls):
            try:
                wall.queue.put_nowait(text)
            except asyncio.QueueFull:
                self._drop(wall)

    async def close(self, wall: Wall) -> None:
        """Unregister and stop a wall's tasks; safe to call more than once."""
        self.walls.discard(wall)
        for task in (wall.writer, wall.closer):
            if task is not None and task is not asyncio.current_task():
                if task is wall.writer:
                    task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("wall %d task failed", wall.id)

    async def close_all(self, code: int, message: str) -> None:
        walls = tuple(self.walls)
        for wall in walls:
            self.walls.discard(wall)
            if wall.writer is not None:
                wall.writer.cancel()
        await asyncio.gather(*(self._close_socket(w, code, message) for w in walls))

    def _drop(self, wall: Wall) -> None:
        self.walls.discard(wall)
        self.dropped += 1
        log.warning("wall %d (%s) fell %d messages behind; dropped, it will resync",
                    wall.id, wall.user, self._queue_size)
        if wall.writer is not None:
            wall.writer.cancel()
        wall.closer = asyncio.create_task(
            self._close_socket(wall, CLOSE_TOO_SLOW, "too slow, resync"),
            name=f"wall-closer-{wall.id}",
        )

    async def _write(self, wall: Wall) -> None:
        queue, ws = wall.queue, wall.ws
        while True:
            text = await queue.get()
            await ws.send_str(text)
            wall.sent += 1
            self.delivered += 1

    @staticmethod
    async def _close_socket(wall: Wall, code: int, message: str) -> None:
        try:
            async with asyncio.timeout(1.0):
                await wall.ws.close(code=code, message=message.encode())
        except (TimeoutError, ConnectionError):
            # A wall that does not read will not read our close frame either.
            if wall.transport is not None:
                wall.transport.abort()
