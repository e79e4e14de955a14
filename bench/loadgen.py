"""Load generator process: agents streaming calls to a hub over ingest protocol v1.

    python -m bench.loadgen SPEC.json     (started by the benchmarks, one per client process)

Each call is one WebSocket, one task and one reader, paced on an absolute schedule: chunk `i` of
a call that started at `t0` is *due* at `t0 + (i + 1) * chunk_s` — the moment its last sample
would exist on a live phone line — and is sent then. A chunk more than 1 s late is skipped and
counted, as the real agent client does. The generator records how late it sends (slip) so a
starved generator is visible in the results and never mistaken for a slow hub.

Kinds of call:

* `load`  — the ordinary conversation of `bench.audio.LOAD_SPANS`;
* `probe` — the incident cycle of `bench.audio.ProbeScript`; it also sends a reliable
  `transcript` line every `ack_every_s` and times the hub's `ack` (the hub answers only after
  every earlier frame of that socket has been analysed, so the round trip is the call's
  ingest+analysis delay at that moment);
* `flipper` — no call: a status change (ready ⇄ break) every `flip_every_s`, to keep tiles
  changing for the fan-out benchmark.

Why aiohttp's client and not `agent_client.HubConnection`: both speak the same protocol, but the
`websockets` library under HubConnection costs ~70 µs of CPU per 6.4 KB frame against ~10 µs
here (measured on this machine), and the generator must not be what limits the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.audio import ChunkLoop, ProbeScript, load_loop, probe_loop
from bench.common import pct, raise_fd_limit, read_json, write_json
from server.wire import iso

MAX_LATE_S = 1.0


@dataclass
class CallSpec:
    agent_id: str
    token: str
    kind: str  # "load" | "probe" | "flipper"
    start_at: float  # monotonic time at which the agent connects and the call starts
    loop_offset: int = 0  # chunk of the audio loop the call starts at
    phase_s: float = 0.0  # probes: where the incidents fall within a chunk (ProbeScript)


@dataclass
class GenSpec:
    url: str  # ws://127.0.0.1:PORT/ingest/v1
    rate: int
    chunk_s: float
    calls: list[CallSpec]
    stop_at: float  # no chunk due at or after this is sent
    window: tuple[float, float]  # measurement window (monotonic)
    deadline: float  # the process writes its results and exits by then, whatever happens
    out: str
    tag: str = "x"  # makes call ids unique per run
    dead_air_s: float = 2.0
    overtalk_s: float = 1.0
    ack_every_s: float = 1.0
    flip_every_s: float = 0.04

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> GenSpec:
        raw = dict(raw)
        raw["calls"] = [CallSpec(**c) for c in raw["calls"]]
        raw["window"] = tuple(raw["window"])
        return cls(**raw)


@dataclass
class Stats:
    connected: int = 0
    failed: int = 0
    sent: int = 0
    sent_window: int = 0
    dropped: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    slips: list[float] = field(default_factory=list)
    ack_rtt: list[float] = field(default_factory=list)
    probes: dict[str, tuple[float, float]] = field(default_factory=dict)  # id → (t0, phase)

    def error(self, text: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(text)


class Agent:
    """One agent connection: hello, reliable messages with their acks, audio."""

    def __init__(self, spec: GenSpec, call: CallSpec, stats: Stats) -> None:
        self.spec, self.call, self.stats = spec, call, stats
        self.call_id = f"{call.agent_id}-{spec.tag}"
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._seq = 0
        self._pending: dict[int, float] = {}
        self._reader: asyncio.Task[None] | None = None

    async def run(self, http: aiohttp.ClientSession, loops: dict[str, ChunkLoop]) -> None:
        await _sleep_until(self.call.start_at)
        try:
            async with asyncio.timeout(10):
                await self._connect(http)
        except (TimeoutError, aiohttp.ClientError, ConnectionError, ValueError) as exc:
            self.stats.failed += 1
            self.stats.error(f"{self.call.agent_id}: connect: {type(exc).__name__}: {exc}")
            return
        self.stats.connected += 1
        try:
            if self.call.kind == "flipper":
                await self._flip()
            else:
                key = self.call.kind if self.call.kind == "load" else f"probe{self.call.phase_s}"
                await self._stream(loops[key])
                await self._reliable({"type": "status", "at": iso(time.time()),
                                      "state": "wrap_up"})
        except (ConnectionError, aiohttp.ClientError) as exc:
            self.stats.error(f"{self.call.agent_id}: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def _connect(self, http: aiohttp.ClientSession) -> None:
        ws = await http.ws_connect(self.spec.url, autoping=True, compress=0,
                                   max_msg_size=2**20)
        self.ws = ws
        await ws.send_str(json.dumps({
            "type": "hello", "protocol": 1, "agent_id": self.call.agent_id,
            "token": self.call.token, "session": uuid.uuid4().hex, "client": "floorwatch-bench",
        }))
        welcome = await ws.receive_json()
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"hello refused: {welcome}")
        self._reader = asyncio.create_task(self._read(ws), name=f"read-{self.call.agent_id}")
        if self.call.kind != "flipper":
            await self._reliable({"type": "status", "at": iso(time.time()), "state": "on_call",
                                  "call": {"id": self.call_id, "direction": "inbound",
                                           "customer": "", "sample_rate": self.spec.rate}})

    async def _reliable(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        self._seq += 1
        self._pending[self._seq] = time.monotonic()
        await self.ws.send_str(json.dumps({**message, "seq": self._seq}))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        window = self.spec.window
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            if message.get("type") == "ack":
                sent = self._pending.pop(message["seq"], None)
                now = time.monotonic()
                if sent is not None and self.call.kind == "probe" and (
                        window[0] <= sent < window[1]):
                    self.stats.ack_rtt.append(now - sent)
            elif message.get("type") == "error":
                self.stats.refused += 1
                self.stats.error(f"{self.call.agent_id}: hub error {message}")

    async def _stream(self, loop: ChunkLoop) -> None:
        spec, stats, ws = self.spec, self.stats, self.ws
        assert ws is not None
        chunk_s, window = spec.chunk_s, spec.window
        probe = self.call.kind == "probe"
        t0 = time.monotonic()
        if probe:
            stats.probes[self.call_id] = (t0, self.call.phase_s)
        next_ack = t0 + spec.ack_every_s
        i = 0
        while True:
            due = t0 + (i + 1) * chunk_s
            if due >= spec.stop_at:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            slip = time.monotonic() - due
            if slip > MAX_LATE_S:
                stats.dropped += 1
            else:
                await ws.send_bytes(loop.frame(i, self.call.loop_offset))
                stats.sent += 1
                if window[0] <= due < window[1]:
                    stats.sent_window += 1
                    stats.slips.append(slip)
            if probe and due >= next_ack:
                next_ack += spec.ack_every_s
                await self._reliable({"type": "transcript", "call_id": self.call_id,
                                      "offset_s": round((i + 1) * chunk_s, 3),
                                      "speaker": "agent", "text": "okay let me check that"})
            i += 1

    async def _flip(self) -> None:
        every = self.spec.flip_every_s
        t0 = time.monotonic()
        i = 0
        while (due := t0 + i * every) < self.spec.stop_at:
            await _sleep_until(due)
            state = {"state": "break", "reason": "coffee"} if i % 2 else {"state": "ready"}
            await self._reliable({"type": "status", "at": iso(time.time()), **state})
            i += 1


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def run(spec: GenSpec) -> dict[str, Any]:
    started_cpu = time.process_time()
    loops: dict[str, ChunkLoop] = {}
    if any(c.kind == "load" for c in spec.calls):
        loops["load"] = load_loop(spec.rate, spec.chunk_s)
    for phase in sorted({c.phase_s for c in spec.calls if c.kind == "probe"}):
        script = ProbeScript(spec.dead_air_s, spec.overtalk_s, spec.chunk_s, phase)
        loops[f"probe{phase}"] = probe_loop(script, spec.rate)
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        agents = [Agent(spec, call, stats) for call in spec.calls]
        tasks = [asyncio.create_task(a.run(http, loops), name=f"call-{a.call.agent_id}")
                 for a in agents]
        # Every call stops by itself at stop_at; the deadline only guards against a hung hub.
        grace = max(0.5, spec.deadline - time.monotonic() - 2.0)
        done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                stats.error(f"task: {task.exception()!r}")
        close_budget = max(0.2, spec.deadline - time.monotonic() - 0.5)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(close_budget):
                await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)
    slips = np.asarray(stats.slips)
    return {
        "pid": os.getpid(),
        "calls": len(spec.calls),
        "connected": stats.connected,
        "failed": stats.failed,
        "refused": stats.refused,
        "sent": stats.sent,
        "sent_window": stats.sent_window,
        "dropped": stats.dropped,
        "slip_ms": pct(slips, scale=1000),
        "ack_rtt_s": [round(x, 6) for x in stats.ack_rtt],
        "probes": stats.probes,
        "cpu_s": round(time.process_time() - started_cpu, 3),
        "errors": stats.errors,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = GenSpec.from_json(read_json(Path(args[0])))
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hub dependency
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    write_json(Path(spec.out), result)


if __name__ == "__main__":
    main()
