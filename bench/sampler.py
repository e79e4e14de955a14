"""Readings of a running server four times a second: its /metrics, and /proc figures.

Two independent loops, so a server too busy to answer `/metrics` quickly never delays the /proc
readings (CPU time, RSS, the machine's busy time), which are what CPU shares are computed from.
Any window's figures are then taken from the samples inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.common import cpu_seconds, machine_busy_s, pct, run_queue_wait_s
from bench.servers import ServerProcess

PERIOD_S = 0.25


@dataclass(frozen=True, slots=True)
class ProcSample:
    t: float
    server_cpu: float
    server_rss: int
    server_wait: float
    clients_cpu: float
    machine_busy: float


@dataclass
class Sampler:
    server: ServerProcess
    client_pids: Callable[[], list[int]] = list
    metrics: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    procs: list[ProcSample] = field(default_factory=list)

    async def run_until(self, stop_at: float) -> None:
        await asyncio.gather(self._poll_metrics(stop_at), self._poll_proc(stop_at))

    async def _poll_metrics(self, stop_at: float) -> None:
        async with aiohttp.ClientSession() as http:
            while (t := time.monotonic()) < stop_at:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with asyncio.timeout(1):
                        self.metrics.append((t, await self.server.metrics(http)))
                await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - t)))

    async def _poll_proc(self, stop_at: float) -> None:
        while (t := time.monotonic()) < stop_at:
            self.procs.append(ProcSample(
                t, self.server.cpu_s(), self.server.rss(), run_queue_wait_s(self.server.pid),
                sum(cpu_seconds(pid) for pid in self.client_pids()), machine_busy_s()))
            await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - t)))

    # -- figures over a window -------------------------------------------------------------

    def _edges(self, window: tuple[float, float]) -> tuple[ProcSample, ProcSample] | None:
        inside = [p for p in self.procs if window[0] <= p.t <= window[1]]
        return (inside[0], inside[-1]) if len(inside) >= 2 else None

    def cores(self, window: tuple[float, float]) -> dict[str, float | None]:
        """CPU shares over the window: the server, the clients, and everything else; and the
        share of the time the server was ready to run but waited for a CPU."""
        edges = self._edges(window)
        if edges is None:
            return {"server": None, "clients": None, "other": None, "server_waiting": None}
        a, b = edges
        span = b.t - a.t
        server = (b.server_cpu - a.server_cpu) / span
        clients = (b.clients_cpu - a.clients_cpu) / span
        machine = (b.machine_busy - a.machine_busy) / span
        return {"server": round(server, 3), "clients": round(clients, 3),
                "other": round(max(0.0, machine - server - clients), 3),
                "server_waiting": round((b.server_wait - a.server_wait) / span, 3)}

    def rss(self, window: tuple[float, float]) -> int | None:
        """The server's RSS at the end of the window (bytes)."""
        edges = self._edges(window)
        return None if edges is None else edges[1].server_rss

    def rate(self, name: str, window: tuple[float, float]) -> float | None:
        """Per-second increase of a counter metric over the window."""
        inside = [(t, m) for t, m in self.metrics if window[0] <= t <= window[1] and name in m]
        if len(inside) < 2:
            return None
        (t0, m0), (t1, m1) = inside[0], inside[-1]
        return (m1[name] - m0[name]) / (t1 - t0) if t1 > t0 else None

    def gauge(self, name: str, window: tuple[float, float], scale: float = 1.0) -> dict:
        return pct([m[name] for t, m in self.metrics
                    if window[0] <= t <= window[1] and name in m], scale=scale)

    def last(self, name: str, window: tuple[float, float]) -> float | None:
        inside = [m[name] for t, m in self.metrics if window[0] <= t <= window[1] and name in m]
        return inside[-1] if inside else None

    def first_change(self, name: str, after: float) -> float | None:
        """Monotonic time of the first sample after `after` where a counter has grown."""
        base = None
        for t, m in self.metrics:
            if name not in m:
                continue
            if t < after:
                base = m[name]
            elif base is not None and m[name] > base:
                return t
            elif base is None:
                base = m[name]
        return None

    def first_at_most(self, name: str, value: float, window: tuple[float, float]
                      ) -> float | None:
        """Monotonic time of the first sample in the window where a gauge is <= `value`."""
        return next((t for t, m in self.metrics
                     if window[0] <= t <= window[1] and m.get(name, value + 1) <= value), None)
