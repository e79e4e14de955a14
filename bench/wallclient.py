"""Wall client process: supervisor wall sockets, as the wall page opens them.

    python -m bench.wallclient SPEC.json     (started by the benchmarks)

Every wall carries the session cookie of one signed-in supervisor (the benchmark signs in once
through `POST /login`; sign-in costs ~50 ms of scrypt on the hub, so a thousand sign-ins would
measure the password hash, not the fan-out) and the hub's own `Origin`.

What a wall records:

* for each `tiles` message received in the measurement window, its arrival
  (`time.monotonic()`) and its delay: arrival (`time.time()`) minus the message's
  `server_time` (stamped by the hub when it built the patch, from the same machine clock, to the
  millisecond), written to `OUT.latency.npy` as rows of (arrival, delay in ms);
* with `record_alerts`, the first arrival of every alert id (`time.monotonic()`), which the
  latency benchmark matches to the chunk that crossed the threshold.

A *stalled* wall (optional) is a raw socket with a 4 KiB receive buffer that completes the
WebSocket upgrade and then never reads again, like a frozen TV: the hub's send buffer for it
fills, its writer blocks, its queue fills, and the hub should drop it without the others noticing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from bench.common import raise_fd_limit, read_json, write_json

TILES_PREFIX = '{"type":"tiles","server_time":"'


@dataclass
class WallSpec:
    base_url: str  # http://127.0.0.1:PORT
    cookie: str  # value of the fw_session cookie
    walls: int
    connect_at: float  # monotonic; walls connect over `connect_s` from then
    stop_at: float
    window: tuple[float, float]  # monotonic
    deadline: float
    out: str
    connect_s: float = 1.0
    record_alerts: bool = False
    stall: tuple[float, float] | None = None  # monotonic (from, until) of a stalled wall
    compress: int = 0  # 15: offer permessage-deflate, as browsers do

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WallSpec:
        raw = dict(raw)
        raw["window"] = tuple(raw["window"])
        if raw.get("stall") is not None:
            raw["stall"] = tuple(raw["stall"])
        return cls(**raw)


@dataclass
class WallStats:
    connected: int = 0
    failed: int = 0
    messages: int = 0
    window_messages: int = 0
    snapshots: int = 0
    latency: list[tuple[float, float]] = field(default_factory=list)  # (arrival, delay ms)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    close_codes: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    stall: dict[str, Any] = field(default_factory=dict)


def _server_time(text: str) -> float:
    stamp = text[len(TILES_PREFIX) : len(TILES_PREFIX) + 24]
    return datetime.fromisoformat(stamp).timestamp()


async def _wall(spec: WallSpec, http: aiohttp.ClientSession, index: int,
                stats: WallStats) -> None:
    await _sleep_until(spec.connect_at + spec.connect_s * index / max(1, spec.walls))
    try:
        ws = await http.ws_connect(f"{spec.base_url}/ws/wall", origin=spec.base_url,
                                   headers={"Cookie": f"fw_session={spec.cookie}"},
                                   autoping=True, max_msg_size=2**24, timeout=10,
                                   compress=spec.compress)
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        stats.failed += 1
        if len(stats.errors) < 10:
            stats.errors.append(f"wall {index}: {type(exc).__name__}: {exc}")
        return
    stats.connected += 1
    start, end = spec.window
    try:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now, mono = time.time(), time.monotonic()
            text: str = msg.data
            stats.messages += 1
            in_window = start <= mono < end
            if in_window:
                stats.window_messages += 1
            if text.startswith(TILES_PREFIX):
                if in_window:
                    stats.latency.append((mono, (now - _server_time(text)) * 1000))
            elif text.startswith('{"type":"alert"'):
                if spec.record_alerts:
                    alert = json.loads(text)["alert"]
                    if alert["id"] not in stats.alerts:
                        stats.alerts[alert["id"]] = {
                            "recv": mono, "kind": alert["kind"], "call_id": alert["call_id"],
                            "offset_s": alert["offset_s"], "duration_s": alert["duration_s"]}
            elif text.startswith('{"type":"snapshot"'):
                stats.snapshots += 1
    finally:
        stats.close_codes[ws.close_code or 0] += 1


async def _stalled_wall(spec: WallSpec, stats: WallStats) -> None:
    """Upgrade to a wall socket, then stop reading (tiny receive buffer) until the stall ends."""
    assert spec.stall is not None
    stall_from, stall_until = spec.stall
    await _sleep_until(stall_from)
    url = urlsplit(spec.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(sock, (
            f"GET /ws/wall HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {spec.base_url}\r\nCookie: fw_session={spec.cookie}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            part = await loop.sock_recv(sock, 1)
            if not part:
                break
            head += part
        stats.stall["upgraded"] = head.startswith(b"HTTP/1.1 101")
        stats.stall["started"] = time.monotonic()
        await _sleep_until(stall_until)  # never read: the hub's buffers for us fill up
        stats.stall["ended"] = time.monotonic()
    except OSError as exc:
        stats.stall["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def run(spec: WallSpec) -> dict[str, Any]:
    started_cpu = time.process_time()
    stats = WallStats()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [asyncio.create_task(_wall(spec, http, i, stats), name=f"wall-{i}")
                 for i in range(spec.walls)]
        if spec.stall is not None:
            tasks.append(asyncio.create_task(_stalled_wall(spec, stats), name="stalled-wall"))
        await asyncio.wait(tasks, timeout=max(0.1, spec.stop_at - time.monotonic()))
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.2, spec.deadline - time.monotonic() - 0.5)):
                await asyncio.gather(*tasks, return_exceptions=True)
    latency_path = Path(spec.out).with_suffix(".latency.npy")
    np.save(latency_path, np.asarray(stats.latency, dtype=np.float64).reshape(-1, 2))
    return {
        "pid": os.getpid(),
        "walls": spec.walls,
        "connected": stats.connected,
        "failed": stats.failed,
        "messages": stats.messages,
        "window_messages": stats.window_messages,
        "snapshots": stats.snapshots,
        "latency_file": str(latency_path),
        "alerts": stats.alerts,
        "close_codes": dict(stats.close_codes),
        "stall": stats.stall,
        "cpu_s": round(time.process_time() - started_cpu, 3),
        "errors": stats.errors,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = WallSpec.from_json(read_json(Path(args[0])))
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    write_json(Path(spec.out), result)


if __name__ == "__main__":
    main()
