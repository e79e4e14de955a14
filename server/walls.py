"""Wall fan-out: every wall socket has its own bounded queue and its own writer task.

Publishing never awaits a wall, so one stalled TV cannot delay any other. A broadcast builds the
message's WebSocket frame once (server frames are unmasked, so it is the same bytes for every
wall) and writes it straight to the transport of each wall that is caught up: nothing queued,
nothing in the transport's buffer. A wall that is behind gets the message on its queue instead,
and its writer task sends it when the socket drains. A wall whose queue fills up is dropped: its
socket is closed with 4408 ("too slow, resync") and the page reconnects and starts again from a
fresh snapshot, which is cheaper and more honest than trying to catch it up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from dataclasses import dataclass, field

from aiohttp import web

log = logging.getLogger("floorwatch.walls")

CLOSE_TOO_SLOW = 4408
_ids = itertools.count(1)
_TEXT_FIN = 0x81
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((_TEXT_FIN, n)) + payload
    if n < 65536:
        return _LEN16.pack(_TEXT_FIN, 126, n) + payload
    return _LEN64.pack(_TEXT_FIN, 127, n) + payload


@dataclass(eq=False)
class Wall:
    ws: web.WebSocketResponse
    user: str
    queue: asyncio.Queue[str]
    transport: asyncio.Transport | None = None
    id: int = field(default_factory=lambda: next(_ids))
    writer: asyncio.Task[None] | None = None
    closer: asyncio.Task[None] | None = None
    sent: int = 0
    backlog: int = 0  # messages queued and not yet written by the writer task
    direct: bool = False  # frames may be written straight to the transport


class WallHub:
    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self.walls: set[Wall] = set()
        self.dropped = 0
        self.delivered = 0

    def open(self, ws: web.WebSocketResponse, user: str, first: str,
             transport: asyncio.Transport | None = None) -> Wall:
        """Register a wall with `first` (its snapshot) queued, and start its writer.

        Called without an await between building the snapshot and registering, so the wall
        sees every change after its snapshot and none before.
        """
        wall = Wall(ws, user, asyncio.Queue(self._queue_size), transport,
                    direct=transport is not None and not ws.compress)
        wall.queue.put_nowait(first)
        wall.backlog = 1
        wall.writer = asyncio.create_task(self._write(wall), name=f"wall-writer-{wall.id}")
        self.walls.add(wall)
        log.info("wall %d opened by %s (%d walls)", wall.id, user, len(self.walls))
        return wall

    def broadcast(self, text: str) -> None:
        frame = text_frame(text.encode())
        delivered = 0
        for wall in tuple(self.walls):
            transport = wall.transport
            if (wall.direct and not wall.backlog and not wall.ws.closed
                    and not transport.is_closing()  # type: ignore[union-attr]
                    and not transport.get_write_buffer_size()):  # type: ignore[union-attr]
                try:
                    transport.write(frame)  # type: ignore[union-attr]
                except (OSError, RuntimeError):  # the socket died under us; its handler
                    continue  # closes the wall
                wall.sent += 1
                delivered += 1
                continue
            try:
                wall.queue.put_nowait(text)
            except asyncio.QueueFull:
                self._drop(wall)
            else:
                wall.backlog += 1
        self.delivered += delivered

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
            wall.backlog -= 1
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
