"""Scale-out: one hub process against two hubs sharing one floor through Redis, on this machine.

    python -m bench.scaleout --repeat 3        # capacity of each set-up, then alert latency
    python -m bench.scaleout --configs two --skip-capacity --latency-capacity 600

Set-ups, each started fresh (Redis is a private `redis-server` on a free port, keeping nothing
on disk: never the shared Redis on 6379):

* `one` — one hub on the embedded bus (the default deployment); hub on core 0, clients on
  core 1, exactly as `bench.capacity` places them;
* `one-redis` — the same hub with `--redis`, redis-server on the clients' core: what the Redis
  bus costs a hub that has the floor to itself;
* `two` — hubs A and B, each pinned to a core of its own, one private redis-server; the calls
  are split evenly between them. Nothing is left for the load generator, the wall clients and
  redis-server: they float over both cores and take their share from the hubs, as they would
  not on a real site (there the agents' desktops stream, and Redis has its own machine).

1. **Capacity** — the search of `bench.capacity` (`search`: double, then bisect; a failed step
   on a disturbed machine is rerun) with its pass criteria (`summarise`), applied to the floor:
   a step passes when *every* hub analyses ≥ 98 % of its audio with loop lag p99 ≤ 100 ms and
   ack round trip p99 ≤ 100 ms, and every probe alert reaches *every* hub's wall (so across
   hubs too) with chunk→wall p99 ≤ 100 ms.
2. **Alert latency across hubs** — at fractions of the two-hub capacity just measured (or
   `--latency-capacity`): every probe call streams into hub A, the load calls are split evenly,
   and a wall on A and a wall on B time the first arrival of each alert. Latency = arrival −
   due time of the chunk holding the scripted threshold crossing (as `bench.latency`): the
   same alerts measured same-hub (wall on A) and cross-hub (wall on B), plus the per-alert
   difference B − A, i.e. what the Redis hop adds.

The generator's share of the machine is recorded for every step (`clients`, `redis` and
`other` cores beside the hubs' CPU), and the hubs' CPU per 100 ms chunk is reported: that, not
the call count, is what transfers to a machine where the load comes from elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench import capacity
from bench.common import (
    RESULTS_DIR,
    command_line,
    cores,
    cpu_seconds,
    machine,
    pct,
    prepare,
    restored_process_state,
    save_result,
    taskset,
    wait_quiet,
)
from bench.latency import TARGET_MS
from bench.loadstep import RAMP_RATE, SPAWN_S, StepConfig, StepRun, _collect, _plan, delays_ms
from bench.sampler import Sampler
from bench.servers import (
    ServerProcess,
    _spawn,
    free_port,
    hub_process,
    provision,
    spawn_client,
    wait_exit,
)

CONFIGS = ("one", "one-redis", "two")
KINDS = ("silence", "overtalk")


# -- processes ------------------------------------------------------------------------------


class RedisProcess:
    """A private redis-server on a free port of 127.0.0.1, keeping nothing on disk."""

    def __init__(self, workdir: Path, cpus: list[int]) -> None:
        self.workdir = workdir
        self.cpus = cpus
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 10.0) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        import redis.asyncio as aioredis

        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = await _spawn(taskset(argv, self.cpus), self.workdir / "redis.log",
                                 dict(os.environ), self.workdir)
        client = aioredis.from_url(self.url, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(OSError, aioredis.RedisError):
                    if await client.ping():
                        return
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.workdir}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await wait_exit([self.proc], time.monotonic() + 5.0)


@dataclass
class Floor:
    """One set-up under test: its hubs (with their names and wall cookies), Redis, placement."""

    kind: str  # one of CONFIGS
    hubs: list[ServerProcess]
    names: list[str]
    redis: RedisProcess | None
    client_cpus: list[int]
    cookies: list[str] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)  # per step: per-hub figures

    async def start(self) -> None:
        if self.redis is not None:
            await self.redis.start()
        for hub in self.hubs:
            await hub.start()
            if self.redis is not None:
                await _wait_ok(hub)
            self.cookies.append(await hub.login())

    async def stop(self) -> None:
        for hub in self.hubs:
            await hub.stop()
        if self.redis is not None:
            await self.redis.stop()

    async def step(self, _floor: Floor, tokens: list[tuple[str, str]], cfg: StepConfig,
                   workdir: Path, *, cookie: str | None = None) -> FloorRun:
        """A capacity step (the `runner` of `capacity.search`): calls and probes split evenly,
        a wall on every hub."""
        del cookie  # every hub has its own
        shares = [Share(hub, name, calls, probes, wall)
                  for hub, name, calls, probes, wall in zip(
                      self.hubs, self.names, _split(cfg.calls, len(self.hubs)),
                      _split(cfg.probes, len(self.hubs)), self.cookies, strict=True)]
        run = await run_floor_step(shares, tokens, cfg, workdir, redis=self.redis,
                                   client_cpus=self.client_cpus)
        self.extras.append({"redis_cores": run.redis_cores, "redis_calls": run.redis_calls,
                            "hubs": {
            name: _hub_figures(hub_run) for name, hub_run in zip(self.names, run.hubs,
                                                                 strict=True)}})
        return run


def make_floor(kind: str, workdir: Path, tokens_db: Path, dead_air_s: float) -> Floor:
    """Processes of one set-up (not started). Every hub gets a copy of the provisioned store,
    so each knows every account from the start."""
    server, clients = cores()
    both = sorted({*server, *clients})
    redis = None
    if kind == "two":
        names, hub_cpus, client_cpus = ["A", "B"], [server, clients], both
        redis = RedisProcess(workdir / "redis", both)
    else:
        names, hub_cpus, client_cpus = ["A"], [server], clients
        if kind == "one-redis":
            redis = RedisProcess(workdir / "redis", clients)
    hubs = []
    for name, cpus in zip(names, hub_cpus, strict=True):
        settings: dict[str, Any] = {"analysis.dead_air_s": dead_air_s}
        if redis is not None:
            settings |= {"redis.url": redis.url, "redis.hub_id": name}
        hub = hub_process(workdir / name, settings=settings)
        hub.cpus = cpus
        data = workdir / name / "data"
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(tokens_db, data / tokens_db.name)
        hubs.append(hub)
    return Floor(kind, hubs, names, redis, client_cpus)


async def _wait_ok(hub: ServerProcess, timeout: float = 10.0) -> None:
    """A hub with Redis answers /healthz 'degraded' until it has reached Redis."""
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + timeout
        while True:
            async with http.get(f"{hub.url}/healthz") as r:
                status = (await r.json()).get("status")
            if status == "ok":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"hub {hub.url} stays {status!r}; see {hub.log_path}")
            await asyncio.sleep(0.1)


# -- one step across several hubs -------------------------------------------------------------


@dataclass
class Share:
    """What one hub gets in a step: its calls (the first `probes` of them probes) and, with a
    cookie, a wall of its own recording alerts."""

    hub: ServerProcess
    name: str
    calls: int
    probes: int
    cookie: str | None


@dataclass
class FloorRun(StepRun):
    """A step across several hubs, seen as one server by `capacity.summarise`: throughput and
    loop lag are those of the worst hub, CPU the sum of the hubs, waiting the worst hub's;
    generators and walls are all of them. `hubs` holds each hub's own run (its calls, the
    alerts of its calls at every wall)."""

    hubs: list[StepRun] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    wall_hubs: list[str] = field(default_factory=list)  # the hub each wall is connected to
    redis_cores: float | None = None
    redis_calls: dict[str, float] = field(default_factory=dict)  # Redis commands per second

    def throughput(self) -> float | None:
        values = [h.throughput() for h in self.hubs if h.config.calls]
        return None if not values or None in values else min(v or 0.0 for v in values)

    def loop_lag(self) -> dict[str, Any]:
        return max((h.loop_lag() for h in self.hubs),
                   key=lambda d: -1.0 if d["p99"] is None else d["p99"])


async def run_floor_step(shares: list[Share], tokens: list[tuple[str, str]], cfg: StepConfig,
                         workdir: Path, *, redis: RedisProcess | None = None,
                         client_cpus: list[int] | None = None) -> FloorRun:
    """`loadstep.run_step` across several hubs: one client plan per hub (`loadstep._plan`),
    sharing one timeline, each hub sampled by its own `Sampler`."""
    total = sum(s.calls for s in shares)
    if total > len(tokens):
        raise ValueError(f"{total} agents needed, {len(tokens)} provisioned")
    background = await wait_quiet(max_wait_s=cfg.quiet_wait_s)
    start_at = time.monotonic() + cfg.spawn_s
    ramp_s = max(0.5, total / RAMP_RATE)
    window = (start_at + ramp_s + cfg.settle_s, start_at + ramp_s + cfg.settle_s + cfg.measure_s)
    deadline = window[1] + 10.0
    plans, configs, call_ids, first = [], [], [], 0
    for share in shares:
        sub = replace(cfg, calls=share.calls, probes=share.probes,
                      observe_alerts=share.cookie is not None)
        mine = tokens[first:first + share.calls]
        first += share.calls
        plans.append(_plan(share.hub, mine, sub, workdir / share.name, share.cookie, start_at,
                           ramp_s, window, deadline))
        configs.append(sub)
        call_ids.append({f"{agent_id}-{cfg.tag}" for agent_id, _ in mine})
    procs = [await spawn_client(module, spec, log, client_cpus)
             for plan in plans for module, spec, log, _ in plan]

    def alive() -> list[int]:
        return [p.pid for p in procs if p.returncode is None]

    samplers = [Sampler(share.hub, alive) for share in shares]
    *_, (redis_cores, redis_calls) = await asyncio.gather(
        *(s.run_until(window[1] + 0.3) for s in samplers), _redis_over(redis, window))
    await wait_exit(procs, deadline + 2.0)
    notes: list[str] = []
    gens = [_collect([o for m, _, _, o in plan if m == "bench.loadgen"], notes) for plan in plans]
    walls, wall_hubs = [], []
    for share, plan in zip(shares, plans, strict=True):
        for wall in _collect([o for m, _, _, o in plan if m == "bench.wallclient"], notes):
            walls.append(wall)
            wall_hubs.append(share.name)
    shares_cores = [s.cores(window) for s in samplers]
    hub_cores = [c["server"] or 0.0 for c in shares_cores]
    clients = shares_cores[0]["clients"] or 0.0
    busy = (shares_cores[0]["other"] or 0.0) + hub_cores[0] + clients
    other = max(0.0, busy - sum(hub_cores) - clients - (redis_cores or 0.0))
    hubs = []
    for i, share in enumerate(shares):
        hubs.append(StepRun(
            config=configs[i], window=window, generators=gens[i],
            walls=[_only(w, call_ids[i]) for w in walls], sampler=samplers[i],
            server_cores=hub_cores[i], client_cores=clients, other_cores=other,
            server_waiting=shares_cores[i]["server_waiting"] or 0.0,
            background_before=background, gc=share.hub.gc_pauses(window),
            rss_end=samplers[i].rss(window) or 0, notes=notes))
    everyone = set().union(*call_ids)
    return FloorRun(
        config=cfg, window=window, generators=[g for gs in gens for g in gs],
        walls=[_only(w, everyone) for w in walls], sampler=samplers[0],
        server_cores=sum(hub_cores), client_cores=clients, other_cores=other,
        server_waiting=max(h.server_waiting for h in hubs), background_before=background,
        gc=max((h.gc for h in hubs if h.gc), key=lambda g: g["share_of_time"] or 0.0,
               default=None),
        rss_end=sum(h.rss_end for h in hubs), notes=notes, hubs=hubs,
        names=[s.name for s in shares], wall_hubs=wall_hubs, redis_cores=redis_cores,
        redis_calls=redis_calls)


async def _redis_over(redis: RedisProcess | None, window: tuple[float, float]
                      ) -> tuple[float | None, dict[str, float]]:
    """redis-server's CPU share over the window, and the commands it ran per second (by
    command, from INFO commandstats)."""
    if redis is None:
        return None, {}
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis.url, decode_responses=True)
    try:
        await _sleep_until(window[0])
        cpu0, t0, calls0 = cpu_seconds(redis.pid), time.monotonic(), await _calls(client)
        await _sleep_until(window[1])
        span = time.monotonic() - t0
        calls1, cpu1 = await _calls(client), cpu_seconds(redis.pid)
    finally:
        await client.aclose()
    if span <= 0:
        return None, {}
    rates = {cmd: round((n - calls0.get(cmd, 0)) / span, 1) for cmd, n in calls1.items()
             if n > calls0.get(cmd, 0) and cmd != "info"}
    return round((cpu1 - cpu0) / span, 3), rates


async def _calls(client: Any) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _only(wall: dict[str, Any], call_ids: set[str]) -> dict[str, Any]:
    """A wall's result keeping only the alerts of these calls."""
    return {**wall, "alerts": {k: a for k, a in wall["alerts"].items()
                               if a["call_id"] in call_ids}}


def _split(n: int, parts: int) -> list[int]:
    """n as evenly as possible over `parts` (the first ones get the remainder)."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _hub_figures(run: StepRun) -> dict[str, Any]:
    s = capacity.summarise(run)
    p99 = {k: (s[k] or {}).get("p99") for k in ("loop_lag_ms", "ack_rtt_ms", "chunk_to_wall_ms")}
    return {"calls": s["calls"], "passed": s["passed"], "reasons": s["reasons"],
            "throughput": s["throughput"], "cores": s["server_cores"],
            "waiting": s["server_waiting"], **{f"{k}_p99": v for k, v in p99.items()}}


# -- 1. capacity ----------------------------------------------------------------------------


async def capacity_of(floor: Floor, tokens: list[tuple[str, str]], args: argparse.Namespace,
                      workdir: Path) -> dict[str, Any]:
    result = await capacity.search(floor, tokens, args, workdir, args.start, None,
                                   runner=floor.step)
    for step, extra in zip(result["steps"], floor.extras, strict=True):
        step.update(extra)
    at = _at_capacity(result)
    result["at_capacity"] = None if at is None else {
        "hub_cores": at["server_cores"], "us_per_chunk": at["server_us_per_chunk"],
        "client_cores": at["client_cores"], "redis_cores": at.get("redis_cores"),
        "other_cores": at["other_cores"], "waiting": at["server_waiting"],
        "slip_p99_ms": at["generators"]["slip_p99_ms"],
        "redis_cmds_per_chunk": round(sum(at["redis_calls"].values()) / (at["calls"] * 10), 2)
        if at.get("redis_calls") else None}
    return result


def _at_capacity(result: dict[str, Any]) -> dict[str, Any] | None:
    """The last passing step at the capacity found."""
    return next((s for s in reversed(result["steps"])
                 if s["passed"] and s["calls"] == result["capacity"]), None)


# -- 2. alert latency across hubs -------------------------------------------------------------


async def latency_across(floor: Floor, tokens: list[tuple[str, str]], args: argparse.Namespace,
                         calls: int, fraction: float, workdir: Path) -> dict[str, Any]:
    """Probes on hub A, load split evenly, a wall on each hub: same-hub against cross-hub."""
    on_a = max(args.latency_probes, calls - calls // 2)
    calls = max(calls, on_a)
    cfg = StepConfig(calls=calls, rate=args.rate, probes=args.latency_probes,
                     measure_s=args.latency_measure, settle_s=args.settle,
                     dead_air_s=args.dead_air, tag=f"x{round(fraction * 100)}",
                     quiet_wait_s=args.quiet_wait, spawn_s=args.spawn)
    shares = [Share(floor.hubs[0], "A", on_a, args.latency_probes, floor.cookies[0]),
              Share(floor.hubs[1], "B", calls - on_a, 0, floor.cookies[1])]
    run = await run_floor_step(shares, tokens, cfg, workdir, redis=floor.redis,
                               client_cpus=floor.client_cpus)
    hub_a = run.hubs[0]
    wall_a, wall_b = (hub_a.walls[run.wall_hubs.index(n)] for n in ("A", "B"))
    same, cross = (replace(hub_a, walls=[w]).alerts() for w in (wall_a, wall_b))
    level: dict[str, Any] = {
        "fraction": fraction, "calls": calls, "calls_per_hub": [on_a, calls - on_a],
        "throughput": run.throughput(), "loop_lag_ms": {
            name: h.loop_lag() for name, h in zip(run.names, run.hubs, strict=True)},
        "hub_cores": [round(h.server_cores, 3) for h in run.hubs],
        "client_cores": round(run.client_cores, 3), "redis_cores": run.redis_cores,
        "redis_calls": run.redis_calls,
        "other_cores": round(run.other_cores, 3), "background_before": run.background_before,
        "waiting": [round(h.server_waiting, 3) for h in run.hubs],
        "generators": run.generator_summary(), "notes": run.notes,
    }
    for kind in KINDS:
        level[kind] = {
            "same_hub_ms": delays_ms(same[kind], "latency"),
            "cross_hub_ms": delays_ms(cross[kind], "latency"),
            "same_pipeline_ms": delays_ms(same[kind], "pipeline"),
            "cross_pipeline_ms": delays_ms(cross[kind], "pipeline"),
            "target_p99_ms": TARGET_MS[kind],
            **_paired(wall_a, wall_b, kind, run.window),
        }
    _print_level(level)
    return level


def _paired(wall_a: dict[str, Any], wall_b: dict[str, Any], kind: str,
            window: tuple[float, float]) -> dict[str, Any]:
    """Per alert that reached wall A inside the window: arrival on B − arrival on A, and how
    many never reached B."""
    on_a = {k: a for k, a in wall_a["alerts"].items()
            if a["kind"] == kind and window[0] <= a["recv"] < window[1]}
    diffs = [wall_b["alerts"][k]["recv"] - a["recv"] for k, a in on_a.items()
             if k in wall_b["alerts"]]
    return {"b_minus_a_ms": pct(np.array(diffs), scale=1000),
            "missing_on_b": len(on_a) - len(diffs)}


def _print_level(level: dict[str, Any]) -> None:
    parts = [f"  cross-hub latency at {level['fraction']:.0%} = {level['calls']} calls:"]
    for kind in KINDS:
        k = level[kind]
        parts.append(f"{kind} n={k['cross_hub_ms']['n']} same p50/p99 "
                     f"{k['same_hub_ms']['p50']}/{k['same_hub_ms']['p99']} cross "
                     f"{k['cross_hub_ms']['p50']}/{k['cross_hub_ms']['p99']} B−A "
                     f"{k['b_minus_a_ms']['p50']}/{k['b_minus_a_ms']['p99']} ms "
                     f"missing {k['missing_on_b']};")
    parts.append(f"hubs {level['hub_cores']} clients {level['client_cores']} "
                 f"redis {level['redis_cores']} other {level['other_cores']}")
    print(" ".join(parts), flush=True)


# -- the whole run --------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    environment = prepare(args.nice, measure_background=args.quiet_wait > 0)
    workdir = (args.results or RESULTS_DIR) / "work" / "scaleout"
    shutil.rmtree(workdir, ignore_errors=True)
    template = workdir / "accounts"
    tokens = list(provision(template, args.max_calls).items())
    tokens_db = template / "floorwatch.db"
    runs = []
    for rep in range(args.repeat):
        configs = args.configs[rep % len(args.configs):] + args.configs[:rep % len(args.configs)]
        one: dict[str, Any] = {"load_before": os.getloadavg(), "capacity": {}, "latency": []}
        for kind in configs:
            floor = make_floor(kind, workdir / f"r{rep}" / kind, tokens_db, args.dead_air)
            await floor.start()
            try:
                print(f"run {rep + 1}/{args.repeat}, {kind}: hubs "
                      f"{[h.pid for h in floor.hubs]}" + (
                          f", redis-server {floor.redis.pid}" if floor.redis else ""),
                      flush=True)
                if not args.skip_capacity:
                    one["capacity"][kind] = await capacity_of(
                        floor, tokens, args, workdir / f"r{rep}" / kind / "steps")
                if kind == "two" and not args.skip_latency:
                    base = args.latency_capacity or one["capacity"]["two"]["capacity"]
                    for fraction in args.fractions:
                        calls = max(args.latency_probes, round(fraction * base))
                        one["latency"].append(await latency_across(
                            floor, tokens, args, calls, fraction,
                            workdir / f"r{rep}" / kind / f"latency-{calls}"))
            finally:
                await floor.stop()
        one["load_after"] = os.getloadavg()
        runs.append(one)
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "scaleout",
        "command": command_line("bench.scaleout"),
        "machine": machine(),
        "environment": environment,
        "params": {"rate": args.rate, "configs": args.configs, "repeat": args.repeat,
                   "chunk_ms": 100, "probes": args.probes, "measure_s": args.measure,
                   "settle_s": args.settle, "dead_air_s": args.dead_air, "overtalk_s": 1.0,
                   "limit_ms": capacity.LIMIT_MS, "fractions": args.fractions,
                   "latency_probes": args.latency_probes,
                   "latency_measure_s": args.latency_measure,
                   "latency_capacity": args.latency_capacity},
        "runs": runs,
        "summary": summarise_runs(runs),
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeated runs; ratios taken within each run, then their median."""
    out: dict[str, Any] = {"capacity": {}, "ratios": {}, "latency": []}
    kinds = sorted({k for r in runs for k in r["capacity"]}, key=CONFIGS.index)
    for kind in kinds:
        results = [r["capacity"][kind] for r in runs if kind in r["capacity"]]
        at = [r["at_capacity"] or {} for r in results]
        first = [r["steps"][0] for r in results if r["steps"]]
        out["capacity"][kind] = {
            "capacities": [r["capacity"] for r in results],
            "median": _median([r["capacity"] for r in results]),
            # the first step of every search is at --start calls, pass or fail: the CPU cost
            # of each set-up at one and the same load, steadier than the capacity itself
            "first_step": {"calls": sorted({f["calls"] for f in first}),
                           "us_per_chunk": _median([f["server_us_per_chunk"] for f in first]),
                           "hub_cores": _median([f["server_cores"] for f in first])},
            **{key: _median([a.get(key) for a in at])
               for key in ("hub_cores", "us_per_chunk", "client_cores", "redis_cores",
                           "other_cores", "waiting", "redis_cmds_per_chunk")}}
    for kind in kinds:
        if kind == "one":
            continue
        ratios = [r["capacity"][kind]["capacity"] / r["capacity"]["one"]["capacity"]
                  for r in runs if kind in r["capacity"] and "one" in r["capacity"]
                  and r["capacity"]["one"]["capacity"]]
        out["ratios"][f"{kind}/one"] = {"per_run": [round(x, 3) for x in ratios],
                                        "median": _median(ratios)}
    fractions = sorted({lv["fraction"] for r in runs for lv in r["latency"]})
    for fraction in fractions:
        levels = [lv for r in runs for lv in r["latency"] if lv["fraction"] == fraction]
        row: dict[str, Any] = {"fraction": fraction, "calls": [lv["calls"] for lv in levels],
                               "runs": len(levels)}
        for kind in KINDS:
            row[kind] = {f"{key}_{p}": _median([lv[kind][key][p] for lv in levels])
                         for key in ("same_hub_ms", "cross_hub_ms", "b_minus_a_ms")
                         for p in ("p50", "p99")}
            row[kind]["n"] = sum(lv[kind]["cross_hub_ms"]["n"] for lv in levels)
            row[kind]["missing_on_b"] = sum(lv[kind]["missing_on_b"] for lv in levels)
        row["hub_cores"] = [_median([lv["hub_cores"][i] for lv in levels]) for i in (0, 1)]
        for key in ("client_cores", "redis_cores", "other_cores"):
            row[key] = _median([lv[key] for lv in levels])
        out["latency"].append(row)
    loads = [x for r in runs for x in (r["load_before"][0], r["load_after"][0])]
    out["load_1min"] = [round(min(loads), 2), round(max(loads), 2)] if loads else None
    return out


# -- output ---------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    p, s = result["params"], result["summary"]
    lines = []
    if s["capacity"]:
        lines += [f"#### Scale-out: calls in real time, {p['rate'] // 1000} kHz stereo "
                  f"(medians of {p['repeat']} runs)", "",
                  "| set-up | capacity per run | median | hub CPU (cores) | µs hub CPU per "
                  "chunk | clients / redis / other cores | Redis commands per chunk "
                  "| hubs waiting for a CPU | µs hub CPU per chunk at the first step |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for kind, c in s["capacity"].items():
            redis = "–" if c["redis_cores"] is None else f"{c['redis_cores']:.2f}"
            lines.append(
                f"| {_label(kind)} | {', '.join(map(str, c['capacities']))} | {c['median']:g} "
                f"| {_num(c['hub_cores'])} | {_num(c['us_per_chunk'], 0)} "
                f"| {_num(c['client_cores'])} / {redis} / {_num(c['other_cores'])} "
                f"| {_num(c['redis_cmds_per_chunk'], 1)} | {_pct(c['waiting'])} "
                f"| {_num(c['first_step']['us_per_chunk'], 0)} "
                f"({'/'.join(map(str, c['first_step']['calls']))} calls) |")
        lines.append("")
        for name, r in s["ratios"].items():
            lines.append(f"- **{name.replace('/', ' ÷ ')} = {_num(r['median'])}** "
                         f"(per run: {', '.join(f'{x:.2f}' for x in r['per_run'])})")
        lines.append("")
    if s["latency"]:
        lines += [f"#### Alert latency across hubs (probes on hub A, walls on A and B; dead air "
                  f"{p['dead_air_s']:g} s, overtalk {p['overtalk_s']:g} s; medians of "
                  f"{p['repeat']} runs)", "",
                  "| load | kind | alerts | same hub (A) p50 / p99 ms | cross hub (B) p50 / p99 "
                  "ms | B − A per alert p50 / p99 ms | not on B | hubs A, B / clients / redis / "
                  "other cores |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in s["latency"]:
            for kind in KINDS:
                k = row[kind]
                lines.append(
                    f"| {row['fraction']:.0%} ({'/'.join(map(str, row['calls']))} calls) "
                    f"| {kind} | {k['n']} | {_pp(k, 'same_hub_ms')} | {_pp(k, 'cross_hub_ms')} "
                    f"| {_pp(k, 'b_minus_a_ms')} | {k['missing_on_b']} "
                    f"| {_num(row['hub_cores'][0])}, {_num(row['hub_cores'][1])} / "
                    f"{_num(row['client_cores'])} / {_num(row['redis_cores'])} / "
                    f"{_num(row['other_cores'])} |")
        lines.append("")
    if s.get("load_1min"):
        lines.append(f"- machine load (1-min average) before/after the runs: "
                     f"{s['load_1min'][0]}–{s['load_1min'][1]}")
    return "\n".join(lines) + "\n"


def steps_markdown(result: dict[str, Any]) -> str:
    """Every capacity step of every run, in `bench.capacity`'s table."""
    out = []
    for i, r in enumerate(result["runs"], 1):
        if r["capacity"]:
            text = capacity.markdown({"params": result["params"], "servers": r["capacity"]})
            out.append(text.replace("#### Capacity", f"#### Run {i}: capacity", 1))
    return "\n".join(out)


def _label(kind: str) -> str:
    return {"one": "1 hub (embedded bus)", "one-redis": "1 hub + Redis",
            "two": "2 hubs + Redis"}.get(kind, kind)


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _pp(k: dict[str, Any], key: str) -> str:
    a, b = k[f"{key}_p50"], k[f"{key}_p99"]
    return "–" if a is None else f"{a:.0f} / {b:.0f}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", type=lambda s: s.split(","), default=list(CONFIGS),
                   help="comma-separated set-ups: one,one-redis,two (default all; their order "
                        "rotates from run to run)")
    p.add_argument("--repeat", type=int, default=1, help="runs of everything (medians)")
    p.add_argument("--rate", type=int, choices=(8000, 16000), default=16000)
    p.add_argument("--start", type=int, default=250, help="first N of each search")
    p.add_argument("--max-calls", type=int, default=3000)
    p.add_argument("--refine", type=int, default=2, help="bisection steps after a failure")
    p.add_argument("--granularity", type=int, default=50)
    p.add_argument("--retries", type=int, default=1,
                   help="times a step that failed while a hub waited for a CPU is rerun")
    p.add_argument("--probes", type=int, default=20, help="probe calls per capacity step")
    p.add_argument("--measure", type=float, default=8.0, help="seconds measured per step")
    p.add_argument("--settle", type=float, default=2.0, help="seconds after the ramp")
    p.add_argument("--dead-air", type=float, default=2.0,
                   help="the hubs' analysis.dead_air_s (default 2.0, as bench.capacity)")
    p.add_argument("--spawn", type=float, default=SPAWN_S + 1.0,
                   help="seconds allowed for client processes to start (default 3.5: two "
                        "hubs start twice the client processes of bench.capacity)")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="before each step, wait at most this long for the machine to calm down")
    p.add_argument("--nice", type=int, default=-10)
    p.add_argument("--skip-capacity", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")],
                   default=[0.1, 0.5], help="latency load levels, of the two-hub capacity")
    p.add_argument("--latency-capacity", type=int, default=None,
                   help="calls at 100 %% for the latency levels (default: the two-hub capacity "
                        "just measured)")
    p.add_argument("--latency-probes", type=int, default=30)
    p.add_argument("--latency-measure", type=float, default=20.0)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--keep-work", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown set-up(s) {sorted(unknown)}; choose from {CONFIGS}")
    if not args.skip_latency and "two" not in args.configs:
        raise SystemExit("the latency part needs the 'two' set-up (or --skip-latency)")
    if args.skip_capacity and not args.skip_latency and not args.latency_capacity:
        raise SystemExit("--skip-capacity needs --latency-capacity N")
    with restored_process_state():
        result = asyncio.run(run(args))
    path = save_result("scaleout", result, args.results)
    text = markdown(result)
    path.with_suffix(".md").write_text(text + "\n" + steps_markdown(result))
    print(steps_markdown(result))
    print(text)
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
