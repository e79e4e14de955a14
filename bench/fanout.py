"""Wall fan-out: deliveries per second and delivery delay to 100, 500 and 1,000 walls, the hub's
CPU while it fans out, and the delay one stalled wall adds to the others.

    python -m bench.fanout
    python -m bench.fanout --walls 100,500,1000 --interval-ms 50 --stall-walls 500

The hub runs with `walls.patch_interval_ms = --interval-ms` (default 50, the smallest allowed),
so every wall is offered one `tiles` message per interval: 20 a second at 50 ms, i.e. 20,000
deliveries a second to 1,000 walls. A driver process keeps tiles changing: `--driver-calls` calls
streaming the ordinary conversation at 8 kHz and one agent flipping ready ⇄ break every 40 ms, so
no flush is ever empty.

Levels run one after another against the same hub: first no walls (the driver's own cost, which
is subtracted to get the fan-out's), then each wall count. Wall processes hold at most 250 walls
each, all signed in with one supervisor session, and record each message's delay: arrival
(`time.time()`) minus its `server_time`, stamped by the hub when it built the message (the stamp
is truncated to the millisecond, so delays read up to 1 ms high).

The stall test adds, at `--stall-walls` walls, one wall that upgrades and then never reads (a
4 KiB receive buffer): the others' delays during the stall are compared with the seconds just
before it, and the hub's `walls_dropped_total` shows when it gave up on the stalled wall.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    RESULTS_DIR,
    add_run_options,
    command_line,
    machine,
    pct,
    prepare,
    publish,
    read_json,
    restored_process_state,
    unpack_tree,
    wait_quiet,
)
from bench.common import write_json as _write_json
from bench.profile import aggregate, areas, record_profile, table
from bench.sampler import Sampler
from bench.servers import ServerProcess, hub_process, provision, spawn_client, wait_exit

WALLS_PER_PROCESS = 250
SPAWN_S = 2.0
CONNECT_RATE = 400.0  # walls connecting per second


def _write_specs(workdir: Path, hub: ServerProcess, cookie: str, walls: int, connect_at: float,
                 connect_s: float, stop_at: float, window: tuple[float, float],
                 stall: tuple[float, float] | None,
                 compress: int = 0) -> list[tuple[Path, Path, Path]]:
    workdir.mkdir(parents=True, exist_ok=True)
    n_proc = max(1, math.ceil(walls / WALLS_PER_PROCESS)) if walls or stall else 0
    plan = []
    for i in range(n_proc):
        count = walls // n_proc + (1 if i < walls % n_proc else 0)
        spec, out = workdir / f"walls{i}.spec.json", workdir / f"walls{i}.json"
        out.unlink(missing_ok=True)
        _write_json(spec, {
            "base_url": hub.url, "cookie": cookie, "walls": count,
            "connect_at": connect_at + connect_s * i / n_proc, "connect_s": connect_s / n_proc,
            "stop_at": stop_at, "window": window, "deadline": stop_at + 8.0, "out": str(out),
            "stall": stall if i == 0 else None, "compress": compress})
        plan.append((spec, workdir / f"walls{i}.log", out))
    return plan


def _load_latency(results: list[dict[str, Any]]) -> np.ndarray:
    arrays = [np.load(r["latency_file"]) for r in results if Path(r["latency_file"]).exists()]
    return np.concatenate(arrays) if arrays else np.zeros((0, 2))


def _figures(lat: np.ndarray, window: tuple[float, float], walls: int,
             sampler: Sampler, hub_base_cores: float | None) -> dict[str, Any]:
    span = window[1] - window[0]
    inside = lat[(lat[:, 0] >= window[0]) & (lat[:, 0] < window[1])] if len(lat) else lat
    cores = sampler.cores(window)
    hub_rate = sampler.rate("floorwatch_wall_messages_total", window)
    net = None
    if cores["server"] is not None and hub_base_cores is not None:
        net = round(cores["server"] - hub_base_cores, 3)
    return {
        "walls": walls,
        "received_per_s": round(len(inside) / span, 1),
        "hub_delivered_per_s": None if hub_rate is None else round(hub_rate, 1),
        "per_wall_per_s": round(len(inside) / span / walls, 2) if walls else None,
        "delay_ms": pct(inside[:, 1] if len(inside) else []),
        "hub_cores": cores["server"],
        "fanout_cores": net,
        "wall_client_cores": cores["clients"],
        "other_cores": cores["other"],
        "hub_rss_mb": None if sampler.rss(window) is None else round(
            (sampler.rss(window) or 0) / 2**20, 1),
        "loop_lag_ms": sampler.gauge("floorwatch_analysis_lag_seconds", window, scale=1000),
    }


async def wall_level(hub: ServerProcess, cookie: str, walls: int, workdir: Path,
                     sampler_procs: list[asyncio.subprocess.Process], *, settle: float,
                     measure: float, stall_s: float | None = None,
                     profile_to: Path | None = None, quiet_wait_s: float = 10.0,
                     spawn_s: float = SPAWN_S, compress: int = 0,
                     ) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
    """Open `walls` walls (plus a stalled one), hold them through the window(s), close them.

    Returns the wall processes' results and the windows: "steady" (and "stall"). With
    `profile_to`, py-spy records the hub during the steady window."""
    await wait_quiet(max_wait_s=quiet_wait_s)
    now = time.monotonic()
    connect_at = now + spawn_s
    connect_s = max(0.5, walls / CONNECT_RATE)
    steady = (connect_at + connect_s + settle, connect_at + connect_s + settle + measure)
    windows = {"steady": steady}
    stall = None
    if stall_s:
        stall = (steady[1], steady[1] + stall_s)
        windows["stall"] = stall
    stop_at = (stall or steady)[1]
    plan = _write_specs(workdir, hub, cookie, walls, connect_at, connect_s, stop_at,
                        (steady[0], stop_at), stall, compress)
    procs = [await spawn_client("bench.wallclient", spec, log) for spec, log, _ in plan]
    sampler_procs.extend(procs)
    if profile_to is not None:
        await record_profile(hub.pid, steady[0], measure - 1, profile_to)
    await wait_exit(procs, stop_at + 10.0)
    results = [read_json(out) for _, _, out in plan if out.exists()]
    for proc in procs:
        sampler_procs.remove(proc)
    return results, windows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    environment = prepare(args.nice, measure_background=args.quiet_wait > 0)
    results_dir = args.results or RESULTS_DIR
    workdir = results_dir / "work" / "fanout"
    shutil.rmtree(workdir, ignore_errors=True)
    tokens = list(provision(workdir / "data", args.driver_calls + 1).items())
    root = unpack_tree(args.tree, workdir / "tree") if args.tree else None
    hub = hub_process(workdir, settings={"walls.patch_interval_ms": args.interval_ms},
                      root=root)
    await hub.start()
    levels: list[dict[str, Any]] = []
    stall_result: dict[str, Any] | None = None
    driver: asyncio.subprocess.Process | None = None
    # The driver stops by itself after the longest the levels can take; killed sooner below.
    per_level = args.spawn + args.settle + args.measure + 12.0
    driver_stop = time.monotonic() + 30 + per_level * (len(args.walls) + 2) + args.stall_s + sum(
        w / CONNECT_RATE for w in [*args.walls, args.stall_walls])
    try:
        cookie = await hub.login()
        driver = await _start_driver(hub, tokens, args, workdir, driver_stop)
        clients: list[asyncio.subprocess.Process] = [driver]
        sampler = Sampler(hub, lambda: [p.pid for p in clients if p.returncode is None])
        sampling = asyncio.create_task(sampler.run_until(driver_stop), name="sampler")
        await asyncio.sleep(args.spawn + 0.5 + args.settle)  # the driver's calls are streaming
        base_window = (time.monotonic(), time.monotonic() + args.measure)
        await asyncio.sleep(args.measure + 0.3)
        base = _figures(np.zeros((0, 2)), base_window, 0, sampler, None)
        base_cores = base["hub_cores"]
        levels.append(base)
        _print_level(base)
        for walls in args.walls:
            folded = None
            if args.profile and walls == max(args.walls):
                folded = results_dir / f"profile-fanout-{walls}.folded"
            res, windows = await wall_level(hub, cookie, walls, workdir / f"w{walls}", clients,
                                            settle=args.settle, measure=args.measure,
                                            profile_to=folded, quiet_wait_s=args.quiet_wait,
                                            spawn_s=args.spawn, compress=args.deflate)
            fig = _figures(_load_latency(res), windows["steady"], walls, sampler, base_cores)
            fig["connected"] = sum(r["connected"] for r in res)
            fig["errors"] = [e for r in res for e in r["errors"]][:5]
            if folded is not None and folded.exists():
                per_s = fig["hub_delivered_per_s"] or 1.0
                # µs per delivery instead of per chunk: the same arithmetic
                text = folded.read_text()
                fig["profile"] = table(aggregate(text), fig["hub_cores"] or 0.0, per_s,
                                       args.profile_top)
                us = (fig["hub_cores"] or 0.0) * 1e6 / per_s
                fig["profile_areas"] = [{"area": a, "pct": round(100 * v, 1),
                                         "us_per_delivery": round(v * us, 1)}
                                        for a, v in areas(text).items()]
                fig["profile_folded"] = str(folded)
            levels.append(fig)
            _print_level(fig)
        if args.stall_walls:
            stall_result = await _stall_test(hub, cookie, args, workdir, clients, sampler,
                                             base_cores)
        sampling.cancel()
    finally:
        if driver is not None and driver.returncode is None:
            driver.kill()
            await driver.wait()
        await hub.stop()
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "fanout",
        "command": command_line("bench.fanout"),
        "machine": machine(),
        "environment": environment,
        "params": {"interval_ms": args.interval_ms, "driver_calls": args.driver_calls,
                   "tree": args.tree or ".",
                   "walls_offer_deflate": bool(args.deflate),
                   "measure_s": args.measure, "walls": args.walls,
                   "stall_walls": args.stall_walls, "stall_s": args.stall_s,
                   "queue_size": 256},
        "levels": levels,
        "stall": stall_result,
        "memory_per_wall_kib": _per_wall_kib(levels),
    }


async def _start_driver(hub: ServerProcess, tokens: list[tuple[str, str]],
                        args: argparse.Namespace, workdir: Path,
                        stop_at: float) -> asyncio.subprocess.Process:
    start_at = time.monotonic() + args.spawn
    calls = [{"agent_id": a, "token": t, "kind": "load", "start_at": start_at + 0.02 * i,
              "loop_offset": (i * 37) % 97} for i, (a, t) in enumerate(tokens[:-1])]
    agent, token = tokens[-1]
    calls.append({"agent_id": agent, "token": token, "kind": "flipper", "start_at": start_at})
    spec, out = workdir / "driver.spec.json", workdir / "driver.json"
    _write_json(spec, {"url": hub.ws_url, "rate": 8000, "chunk_s": 0.1, "calls": calls,
                       "stop_at": stop_at, "window": (start_at, stop_at),
                       "deadline": stop_at + 5, "out": str(out), "tag": "d"})
    return await spawn_client("bench.loadgen", spec, workdir / "driver.log")


async def _stall_test(hub: ServerProcess, cookie: str, args: argparse.Namespace, workdir: Path,
                      clients: list[asyncio.subprocess.Process], sampler: Sampler,
                      base_cores: float | None) -> dict[str, Any]:
    walls = args.stall_walls
    res, windows = await wall_level(hub, cookie, walls, workdir / f"stall{walls}", clients,
                                    settle=args.settle, measure=args.measure,
                                    stall_s=args.stall_s, quiet_wait_s=args.quiet_wait,
                                    spawn_s=args.spawn, compress=args.deflate)
    lat = _load_latency(res)
    before = _figures(lat, windows["steady"], walls, sampler, base_cores)
    during = _figures(lat, windows["stall"], walls, sampler, base_cores)
    stall_info = next((r["stall"] for r in res if r.get("stall")), {})
    started = stall_info.get("started", windows["stall"][0])
    dropped_at = sampler.first_change("floorwatch_walls_dropped_total", started)
    # the stalled wall is gone once the hub counts no more walls than the healthy ones
    gone_at = sampler.first_at_most("floorwatch_walls_connected", walls,
                                    (started + 0.5, windows["stall"][1]))
    added = None
    if before["delay_ms"]["p99"] is not None and during["delay_ms"]["p99"] is not None:
        added = round(during["delay_ms"]["p99"] - before["delay_ms"]["p99"], 2)
    result = {
        "walls": walls,
        "before": before,
        "during": during,
        "added_p99_ms": added,
        "stalled_wall_upgraded": stall_info.get("upgraded"),
        "removed_after_s": None if gone_at is None else round(gone_at - started, 1),
        "dropped_4408": dropped_at is not None and (gone_at is None or dropped_at <= gone_at
                                                    + 0.5),
    }
    print(f"  stall at {walls} walls: p99 before {before['delay_ms']['p99']} ms, during "
          f"{during['delay_ms']['p99']} ms (added {added} ms); stalled wall removed after "
          f"{result['removed_after_s']} s (4408 drop: {result['dropped_4408']})", flush=True)
    return result


def _per_wall_kib(levels: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of the hub's RSS against the number of walls."""
    points = [(lv["walls"], lv["hub_rss_mb"]) for lv in levels if lv["hub_rss_mb"] is not None]
    if len(points) < 2:
        return None
    x, y = np.array(points, dtype=float).T
    if np.ptp(x) == 0:
        return None
    return round(float(np.polyfit(x, y, 1)[0]) * 1024, 1)


def _print_level(fig: dict[str, Any]) -> None:
    d = fig["delay_ms"]
    print(f"  walls={fig['walls']:5d} received/s={fig['received_per_s']} "
          f"hub/s={fig['hub_delivered_per_s']} p50={d['p50']} p99={d['p99']} ms "
          f"hub cores={fig['hub_cores']} (fan-out {fig['fanout_cores']}) "
          f"walls cores={fig['wall_client_cores']} other={fig['other_cores']}", flush=True)


def markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    tree = "" if p.get("tree", ".") == "." else f"; hub of `{p['tree']}`"
    lines = [f"#### Wall fan-out (tiles every {p['interval_ms']} ms, driver of "
             f"{p['driver_calls']} calls + 1 status flipper"
             f"{'; walls offer permessage-deflate' if p.get('walls_offer_deflate') else ''}"
             f"{tree})",
             "",
             "| walls | deliveries/s (walls / hub) | per wall /s | delay p50 / p90 / p99 / max "
             "ms | hub CPU (cores) | of which fan-out | wall clients / other cores | hub RSS MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for lv in result["levels"]:
        d = lv["delay_ms"]
        delays = ("–" if d["p50"] is None else
                  f"{d['p50']:.1f} / {d['p90']:.1f} / {d['p99']:.1f} / {d['max']:.1f}")
        lines.append(f"| {lv['walls']} | {lv['received_per_s']:.0f} / "
                     f"{lv['hub_delivered_per_s'] or 0:.0f} | {lv['per_wall_per_s'] or '–'} "
                     f"| {delays} | {lv['hub_cores']} | {lv['fanout_cores'] or '–'} "
                     f"| {lv['wall_client_cores']} / {lv['other_cores']} | {lv['hub_rss_mb']} |")
    stall = result.get("stall")
    if stall:
        lines += ["", f"- **Stalled wall** at {stall['walls']} walls: others' p99 "
                  f"{stall['before']['delay_ms']['p99']} ms before, "
                  f"{stall['during']['delay_ms']['p99']} ms during the stall "
                  f"(**{_signed(stall['added_p99_ms'])} ms**); the hub removed the stalled "
                  f"wall after {stall['removed_after_s']} s "
                  f"({'queue full, closed 4408' if stall['dropped_4408'] else 'heartbeat'})."]
    if result.get("memory_per_wall_kib") is not None:
        lines.append(f"- Hub RSS grows by ~{result['memory_per_wall_kib']} KiB per wall.")
    for lv in result["levels"]:
        if lv.get("profile"):
            lines += ["", f"Profile of the hub at {lv['walls']} walls ({lv['hub_cores']} cores, "
                      f"{lv['hub_delivered_per_s']:.0f} deliveries/s; the driver's calls "
                      "included):", "", "| where | % of CPU | µs per delivery |",
                      "|---|---:|---:|"]
            lines += [f"| {a['area']} | {a['pct']} | {a['us_per_delivery']} |"
                      for a in lv.get("profile_areas", [])]
            lines += ["", "| function | inclusive % | self % | inclusive µs/delivery |",
                      "|---|---:|---:|---:|"]
            lines += [f"| `{r['function']}` | {r['inclusive_pct']} | {r['self_pct']} "
                      f"| {r['inclusive_us_per_chunk']} |" for r in lv["profile"][:15]]
    return "\n".join(lines) + "\n"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fanout",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--walls", type=lambda s: [int(x) for x in s.split(",") if x],
                   default=[100, 500, 1000])
    p.add_argument("--interval-ms", type=int, default=50)
    p.add_argument("--driver-calls", type=int, default=20)
    p.add_argument("--measure", type=float, default=8.0)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--stall-walls", type=int, default=500, help="0 skips the stall test")
    p.add_argument("--stall-s", type=float, default=40.0)
    p.add_argument("--deflate", action="store_const", const=15, default=0,
                   help="walls offer permessage-deflate, as browsers do (the hub then "
                        "compresses every message once per wall)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the hub at the largest wall count (needs py-spy)")
    p.add_argument("--profile-top", type=int, default=30)
    add_run_options(p, spawn_s=SPAWN_S)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    with restored_process_state():
        result = asyncio.run(run(args))
    publish("fanout-deflate" if args.deflate else "fanout", result, markdown(result), args.results)
    return result


if __name__ == "__main__":
    main()
