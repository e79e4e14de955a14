"""One bounded load step against a running server: N streamed calls, measured over a window.

Timeline of a step (all clocks CLOCK_MONOTONIC, shared by every process on the machine):

    spawn ─ start_at ─ ramp (calls connect one after another) ─ settle ─ [ window ] ─ stop
                                                                         stop_at = window end

Load generator processes (bulk calls split between them, probe calls in a process of their own)
and, for the hub, one observing wall process run on the client cores. The orchestrator samples
the server's `/metrics` and its /proc figures four times a second (`bench.sampler`). Every
process stops by itself at `stop_at`; anything still running at the deadline is killed. Nothing
here judges the figures; `capacity` and `latency` do.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.audio import ProbeScript, probe_loop
from bench.common import pct, read_json, wait_quiet, write_json
from bench.sampler import Sampler
from bench.servers import ServerProcess, spawn_client, wait_exit
from server.analysis.call import CallAnalyzer
from server.config import load_settings
from server.events import DeadAirStarted, OvertalkStarted
from server.ingest_protocol import parse_audio

SPAWN_S = 2.5  # interpreter start, imports and audio rendering in the client processes
RAMP_RATE = 400.0  # calls connecting per second
CALLS_PER_GENERATOR = 750


@dataclass
class StepConfig:
    calls: int
    rate: int = 16000
    chunk_s: float = 0.1
    probes: int = 20
    measure_s: float = 10.0
    settle_s: float = 3.0
    dead_air_s: float = 2.0
    overtalk_s: float = 1.0
    observe_alerts: bool = True  # a wall records alerts (hub only)
    flippers: int = 0
    tag: str = "s"
    quiet_wait_s: float = 10.0  # at most this long waiting for the machine to be quiet
    spawn_s: float = SPAWN_S
    # probes start this far apart in all (0: with the ramp, their incidents within ~0.1 s of
    # each other); bench.latency spreads them over one incident cycle, as on a real floor
    probe_spread_s: float = 0.0


@dataclass
class StepRun:
    """Raw readings of one step; `summary()` turns them into figures."""

    config: StepConfig
    window: tuple[float, float]
    generators: list[dict[str, Any]]
    walls: list[dict[str, Any]]
    sampler: Sampler
    server_cores: float  # CPU share of the server process over the window
    client_cores: float  # CPU share of all client processes together
    other_cores: float  # CPU used by everything else on the machine meanwhile (noise)
    server_waiting: float  # share of the window the server was runnable but had no CPU
    background_before: float  # cores busy on the machine just before the step
    gc: dict[str, Any] | None  # the server's garbage-collector pauses in the window
    rss_end: int
    notes: list[str] = field(default_factory=list)

    @property
    def window_s(self) -> float:
        return self.window[1] - self.window[0]

    def throughput(self) -> float | None:
        """Audio analysed per second in the window ÷ audio offered per second."""
        rate = self.sampler.rate("floorwatch_audio_seconds_total", self.window)
        return None if rate is None or not self.config.calls else rate / self.config.calls

    def loop_lag(self) -> dict[str, Any]:
        return self.sampler.gauge("floorwatch_analysis_lag_seconds", self.window, scale=1000)

    def ack_rtt(self) -> dict[str, Any]:
        return pct([x for g in self.generators for x in g["ack_rtt_s"]], scale=1000)

    def alerts(self) -> dict[str, list[dict[str, float]]]:
        """Probe alerts that arrived at the wall, per kind, each with two delays (seconds):

        * `latency`: arrival − the moment the chunk holding the *scripted* threshold crossing
          was due (what a supervisor experiences: VAD hangover + chunking + pipeline);
        * `pipeline`: arrival − the moment the chunk at which the hub's analyser raises the
          alert was due (`raise_schedule`): ingest + analysis + fan-out only.
        """
        probes = {cid: tuple(v) for g in self.generators for cid, v in g["probes"].items()}
        cfg, step = self.config, self.config.chunk_s
        thresholds = {"silence": self.config.dead_air_s, "overtalk": self.config.overtalk_s}
        out: dict[str, list[dict[str, float]]] = {"silence": [], "overtalk": [], "other": []}
        start, end = self.window
        for wall in self.walls:
            for alert in wall["alerts"].values():
                probe = probes.get(alert["call_id"])
                if probe is None or alert["kind"] not in thresholds:
                    out["other"].append({"offset_s": alert["offset_s"] or 0.0})
                    continue
                t0, phase = probe
                script = ProbeScript(cfg.dead_air_s, cfg.overtalk_s, step, phase)
                cycle, incident = script.incident_for(alert["kind"], alert["offset_s"])
                crossing = cycle * script.cycle_s + incident.crossing_s
                due = t0 + _chunk_end(crossing, step)
                if not start <= due < end:
                    continue
                raised = raise_schedule(cfg.dead_air_s, cfg.overtalk_s, step, phase,
                                        cfg.rate).get((alert["kind"], alert["offset_s"]))
                if raised is None:  # not replayed (should not happen): the naive estimate
                    raised = _chunk_end(alert["offset_s"] + thresholds[alert["kind"]], step)
                out[alert["kind"]].append({
                    "latency": alert["recv"] - due,
                    "pipeline": alert["recv"] - (t0 + raised),
                    "detection_bias": alert["offset_s"] - (cycle * script.cycle_s
                                                           + incident.start_s),
                })
        return out

    def generator_summary(self) -> dict[str, Any]:
        gens = self.generators
        return {
            "processes": len(gens),
            "connected": sum(g["connected"] for g in gens),
            "failed": sum(g["failed"] for g in gens),
            "refused": sum(g["refused"] for g in gens),
            "dropped_late": sum(g["dropped"] for g in gens),
            "sent_window": sum(g["sent_window"] for g in gens),
            "slip_p99_ms": max((g["slip_ms"]["p99"] or 0.0 for g in gens), default=None),
            "slip_max_ms": max((g["slip_ms"]["max"] or 0.0 for g in gens), default=None),
            "errors": [e for g in gens for e in g["errors"]][:5],
        }


@functools.lru_cache(maxsize=256)
def raise_schedule(dead_air_s: float, overtalk_s: float, chunk_s: float, phase_s: float,
                   rate: int, duration_s: float = 120.0) -> dict[tuple[str, float], float]:
    """When the hub's own analyser raises each probe alert: {(kind, offset_s): audio time of
    the end of the chunk that raised it}.

    The probe audio and the analysis are deterministic, so replaying the probe's chunks through
    `CallAnalyzer` (same code, same settings as the hub) gives the exact chunk that completes
    each alert — whatever VAD frame decisions near a chunk edge or the dead-air detector's wait
    for a doubtful voiced frame add. Arrival minus that chunk's due time is the pipeline delay."""
    script = ProbeScript(dead_air_s, overtalk_s, chunk_s, phase_s)
    loop = probe_loop(script, rate)
    settings = load_settings(None, {}, analysis={"dead_air_s": dead_air_s,
                                                 "overtalk_s": overtalk_s})
    assert settings.default_team is not None
    analyzer = CallAnalyzer(rate, settings.default_team.params)
    kinds = {DeadAirStarted: "silence", OvertalkStarted: "overtalk"}
    out: dict[tuple[str, float], float] = {}
    for i in range(round(duration_s / chunk_s)):
        chunk = parse_audio(loop.frame(i), rate)
        for event in analyzer.feed(chunk.offset, chunk.pcm):
            kind = kinds.get(type(event))
            if kind is not None:
                out[(kind, round(event.offset_s, 3))] = round((i + 1) * chunk_s, 6)
    return out


def _chunk_end(offset_s: float, chunk_s: float) -> float:
    """End of the chunk in which audio offset `offset_s` is reached (offsets on a chunk edge
    belong to the chunk that ends there)."""
    return math.ceil(round(offset_s / chunk_s, 6)) * chunk_s


async def run_step(server: ServerProcess, tokens: list[tuple[str, str]], cfg: StepConfig,
                   workdir: Path, *, cookie: str | None = None,
                   during_window: Callable[[tuple[float, float]], Awaitable[Any]] | None = None,
                   ) -> StepRun:
    """Run one step: `cfg.calls` calls (`cfg.probes` of them probes) plus `cfg.flippers`.

    `during_window(window)`, if given, runs alongside (e.g. a profiler waiting for the window).
    """
    needed = cfg.calls + cfg.flippers
    if needed > len(tokens):
        raise ValueError(f"{needed} agents needed, {len(tokens)} provisioned")
    background = await wait_quiet(max_wait_s=cfg.quiet_wait_s)
    now = time.monotonic()
    start_at = now + cfg.spawn_s
    ramp_s = max(0.5, needed / RAMP_RATE)
    window = (start_at + ramp_s + cfg.settle_s, start_at + ramp_s + cfg.settle_s + cfg.measure_s)
    stop_at = window[1]
    deadline = stop_at + 10.0
    plan = _plan(server, tokens, cfg, workdir, cookie, start_at, ramp_s, window, deadline)
    procs = [await spawn_client(module, spec, log) for module, spec, log, _ in plan]
    sampler = Sampler(server, lambda: [p.pid for p in procs if p.returncode is None])
    extra = [during_window(window)] if during_window is not None else []
    await asyncio.gather(sampler.run_until(stop_at + 0.3), *extra)
    await wait_exit(procs, deadline + 2.0)
    notes: list[str] = []
    generators = _collect([o for m, _, _, o in plan if m == "bench.loadgen"], notes)
    walls = _collect([o for m, _, _, o in plan if m == "bench.wallclient"], notes)
    shares = sampler.cores(window)
    return StepRun(
        config=cfg, window=window, generators=generators, walls=walls, sampler=sampler,
        server_cores=shares["server"] or 0.0, client_cores=shares["clients"] or 0.0,
        other_cores=shares["other"] or 0.0, server_waiting=shares["server_waiting"] or 0.0,
        background_before=background, gc=server.gc_pauses(window),
        rss_end=sampler.rss(window) or 0, notes=notes,
    )


def _plan(server: ServerProcess, tokens: list[tuple[str, str]], cfg: StepConfig,
          workdir: Path, cookie: str | None, start_at: float, ramp_s: float,
          window: tuple[float, float], deadline: float) -> list[tuple[str, Path, Path, Path]]:
    """Write the client processes' specs; returns (module, spec, log, result) per process."""
    workdir.mkdir(parents=True, exist_ok=True)
    needed = cfg.calls + cfg.flippers
    probes = min(cfg.probes, cfg.calls)
    stop_at = window[1]
    kinds = ["probe"] * probes + ["load"] * (cfg.calls - probes) + ["flipper"] * cfg.flippers
    calls = [{"agent_id": agent_id, "token": token, "kind": kind,
              "start_at": start_at + ramp_s * i / max(1, needed)
              + (cfg.probe_spread_s * i / probes if kind == "probe" else 0.0),
              "loop_offset": 0 if kind == "probe" else (i * 37) % 997,
              "phase_s": round((i * 0.0193) % cfg.chunk_s, 3) if kind == "probe" else 0.0}
             for i, ((agent_id, token), kind) in enumerate(zip(tokens, kinds, strict=False))]
    bulk = [c for c in calls if c["kind"] != "probe"]
    groups = [g for g in [[c for c in calls if c["kind"] == "probe"]] if g]
    n_gen = max(1, math.ceil(len(bulk) / CALLS_PER_GENERATOR)) if bulk else 0
    groups += [bulk[i::n_gen] for i in range(n_gen)]
    base = {"url": server.ws_url, "rate": cfg.rate, "chunk_s": cfg.chunk_s, "stop_at": stop_at,
            "window": window, "deadline": deadline, "tag": cfg.tag,
            "dead_air_s": cfg.dead_air_s, "overtalk_s": cfg.overtalk_s}
    plan = []
    for i, group in enumerate(groups):
        spec, out = workdir / f"gen{i}.spec.json", workdir / f"gen{i}.json"
        out.unlink(missing_ok=True)
        write_json(spec, {**base, "calls": group, "out": str(out)})
        plan.append(("bench.loadgen", spec, workdir / f"gen{i}.log", out))
    if cfg.observe_alerts and cookie is not None and server.kind == "hub":
        spec, out = workdir / "wall.spec.json", workdir / "wall.json"
        out.unlink(missing_ok=True)
        write_json(spec, {"base_url": server.url, "cookie": cookie, "walls": 1,
                          "connect_at": start_at - 0.5, "stop_at": stop_at + 1.0,
                          "window": window, "deadline": deadline, "out": str(out),
                          "record_alerts": True})
        plan.append(("bench.wallclient", spec, workdir / "wall.log", out))
    return plan


def _collect(outs: list[Path], notes: list[str]) -> list[dict[str, Any]]:
    results = []
    for out in outs:
        if out.exists():
            results.append(read_json(out))
        else:
            notes.append(f"{out.name}: no result (the process failed; see its .log)")
    return results


def delays_ms(items: list[dict[str, float]], key: str) -> dict[str, Any]:
    return pct(np.array([i[key] for i in items]), scale=1000)
