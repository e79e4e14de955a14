"""Memory per call and per wall: the hub's resident set size as calls and walls are added.

    python -m bench.memory --rate 16000 --calls 10,200,400 --walls 250,1000

One hub. First call steps in increasing order (each a short `bench.loadstep` step with the calls
streaming; RSS read from /proc at the end of its window, while every call is live), then wall
steps with those calls ended (`bench.fanout.wall_level`, walls connected and idle). Per call and
per wall figures are least-squares slopes of RSS against the count, so the fixed cost of the
process (interpreter, imports, rule packs) drops out. Python rarely returns freed memory to the
system, so the steps only ever grow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import time
from typing import Any

import numpy as np

from bench.common import (
    RESULTS_DIR,
    add_run_options,
    command_line,
    machine,
    prepare,
    publish,
    restored_process_state,
    unpack_tree,
)
from bench.fanout import wall_level
from bench.loadstep import SPAWN_S, StepConfig, run_step
from bench.sampler import Sampler
from bench.servers import hub_process, provision


def slope_kib(points: list[tuple[int, int]]) -> float | None:
    """KiB of RSS per unit, from (count, rss bytes) points."""
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        return None
    x, y = np.array(points, dtype=float).T
    return round(float(np.polyfit(x, y, 1)[0]) / 1024, 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    environment = prepare(args.nice, measure_background=args.quiet_wait > 0)
    results = args.results or RESULTS_DIR
    workdir = results / "work" / "memory"
    shutil.rmtree(workdir, ignore_errors=True)
    tokens = list(provision(workdir / "data", max(args.calls)).items())
    root = unpack_tree(args.tree, workdir / "tree") if args.tree else None
    hub = hub_process(workdir, settings={"analysis.dead_air_s": 2.0}, root=root)
    await hub.start()
    call_points: list[dict[str, Any]] = []
    wall_points: list[dict[str, Any]] = []
    try:
        cookie = await hub.login()
        idle_rss = hub.rss()
        for calls in args.calls:
            step = await run_step(hub, tokens, StepConfig(
                calls=calls, rate=args.rate, probes=0, measure_s=args.measure,
                settle_s=args.settle,
                observe_alerts=False, tag=f"m{calls}", quiet_wait_s=args.quiet_wait,
                spawn_s=args.spawn),
                workdir / f"calls-{calls}")
            call_points.append({"calls": calls, "rss_mb": round(step.rss_end / 2**20, 1),
                                "throughput": step.throughput()})
            print(f"  {calls} calls: hub RSS {step.rss_end / 2**20:.1f} MiB", flush=True)
        clients: list[asyncio.subprocess.Process] = []
        sampler = Sampler(hub, lambda: [p.pid for p in clients if p.returncode is None])
        sampling = asyncio.create_task(sampler.run_until(time.monotonic() + 600), name="rss")
        await asyncio.sleep(0.5)
        wall_points.append({"walls": 0, "rss_mb": round(hub.rss() / 2**20, 1)})
        try:
            for walls in args.walls:
                _, windows = await wall_level(hub, cookie, walls, workdir / f"walls-{walls}",
                                              clients, settle=args.settle, measure=args.measure,
                                              quiet_wait_s=args.quiet_wait, spawn_s=args.spawn)
                rss = sampler.rss(windows["steady"]) or 0
                wall_points.append({"walls": walls, "rss_mb": round(rss / 2**20, 1)})
                print(f"  {walls} walls: hub RSS {rss / 2**20:.1f} MiB", flush=True)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
    finally:
        await hub.stop()
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    # the idle hub counts as the 0-calls point
    per_call = slope_kib([(0, idle_rss)] + [(p["calls"], int(p["rss_mb"] * 2**20))
                                           for p in call_points])
    per_wall = slope_kib([(p["walls"], int(p["rss_mb"] * 2**20)) for p in wall_points])
    return {
        "benchmark": "memory",
        "command": command_line("bench.memory"),
        "machine": machine(),
        "environment": environment,
        "params": {"rate": args.rate, "calls": args.calls, "walls": args.walls,
                   "tree": args.tree or ".",
                   "measure_s": args.measure},
        "idle_rss_mb": round(idle_rss / 2**20, 1),
        "calls": call_points,
        "walls": wall_points,
        "per_call_kib": per_call,
        "per_wall_kib": per_wall,
    }


def markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    calls = ", ".join(f"{c['calls']} → {c['rss_mb']} MiB" for c in result["calls"])
    walls = ", ".join(f"{w['walls']} → {w['rss_mb']} MiB" for w in result["walls"])
    return "\n".join([
        f"#### Memory ({p['rate'] // 1000} kHz calls)", "",
        f"- hub RSS idle: {result['idle_rss_mb']} MiB",
        f"- calls streaming: {calls} → **{result['per_call_kib']} KiB per call**",
        f"- walls connected: {walls} → **{result['per_wall_kib']} KiB per wall**",
    ]) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.memory",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, choices=(8000, 16000), default=16000)
    p.add_argument("--calls", type=lambda s: [int(x) for x in s.split(",")],
                   default=[10, 200, 400])
    p.add_argument("--walls", type=lambda s: [int(x) for x in s.split(",")],
                   default=[250, 1000])
    p.add_argument("--measure", type=float, default=4.0)
    p.add_argument("--settle", type=float, default=1.0)
    add_run_options(p, spawn_s=SPAWN_S)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    with restored_process_state():
        result = asyncio.run(run(args))
    publish("memory", result, markdown(result), args.results)
    return result


if __name__ == "__main__":
    main()
