"""Alert latency: from the moment the audio crosses the dead-air or overtalk threshold to the
alert's arrival at a wall, at 10 %, 50 % and 90 % of the hub's capacity.

    python -m bench.latency --rate 16000                  # capacity from the last capacity run
    python -m bench.latency --rate 16000 --capacity 600

Probe calls (`bench.audio.ProbeScript`) repeat a cycle with one overtalk (the customer cuts in at
1.0 s and both talk for 1.8 s) and one dead air (both silent for threshold + 1 s). The crossing
moment of each is known to the sample, so the moment the chunk completing it was due is known:
chunk `i` of a call that started at `t0` is due at `t0 + (i + 1) × 100 ms`. A wall client in its
own process timestamps each alert's first arrival. Two delays are reported per alert:

* **latency** — arrival − due time of the chunk holding the *scripted* crossing: what the
  supervisor experiences, VAD hangover and chunk quantisation included;
* **pipeline** — arrival − due time of the chunk holding the crossing as the hub *dated* it
  (the alert's `offset_s` + threshold): ingest + analysis + fan-out only.

`detection bias` is the alert's `offset_s` minus the scripted start (webrtcvad's hangover shows
here for dead air). Targets: dead air ≤ threshold + 250 ms p99, overtalk ≤ threshold + 150 ms p99,
i.e. latency p99 ≤ 250 ms and ≤ 150 ms. The rest of the load is ordinary calls.

The probes start spread over one incident cycle, so their incidents fall at different moments
as on a real floor (`--together` starts them with the ramp, as before f5ac67b: then all
30 probes cross their thresholds within ~0.1 s, the p99 of a level is decided by four moments,
and each burst of 30 alerts queues behind itself).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from pathlib import Path
from typing import Any

from bench.audio import ProbeScript
from bench.common import (
    RESULTS_DIR,
    add_run_options,
    command_line,
    machine,
    prepare,
    publish,
    read_json,
    restored_process_state,
    unpack_tree,
)
from bench.loadstep import SPAWN_S, StepConfig, delays_ms, run_step
from bench.servers import hub_process, provision

TARGET_MS = {"silence": 250.0, "overtalk": 150.0}


def capacity_from_results(rate: int, results: Path) -> int | None:
    path = results / f"capacity-{rate}-latest.json"
    if not path.exists():
        return None
    hub = read_json(path).get("servers", {}).get("hub") or {}
    return hub.get("capacity") or None


async def run(args: argparse.Namespace, capacity: int) -> dict[str, Any]:
    environment = prepare(args.nice, measure_background=args.quiet_wait > 0)
    results = args.results or RESULTS_DIR
    workdir = results / "work" / f"latency-{args.rate}"
    shutil.rmtree(workdir, ignore_errors=True)
    levels = [max(args.probes, round(f * capacity)) for f in args.fractions]
    spread = 0.0 if args.together else ProbeScript(args.dead_air, 1.0, 0.1).cycle_s
    tokens = list(provision(workdir / "data", max(levels)).items())
    root = unpack_tree(args.tree, workdir / "tree") if args.tree else None
    hub = hub_process(workdir, settings={"analysis.dead_air_s": args.dead_air}, root=root)
    await hub.start()
    out = []
    try:
        cookie = await hub.login()
        for fraction, calls in zip(args.fractions, levels, strict=True):
            cfg = StepConfig(calls=calls, rate=args.rate, probes=args.probes,
                             measure_s=args.measure, settle_s=args.settle,
                             dead_air_s=args.dead_air, tag=f"l{round(fraction * 100)}",
                             quiet_wait_s=args.quiet_wait, spawn_s=args.spawn,
                             probe_spread_s=spread)
            run_ = await run_step(hub, tokens, cfg, workdir / f"level-{calls}", cookie=cookie)
            alerts = run_.alerts()
            level: dict[str, Any] = {
                "fraction": fraction, "calls": calls,
                "throughput": run_.throughput(),
                "loop_lag_ms": run_.loop_lag(),
                "hub_cores": round(run_.server_cores, 3),
                "client_cores": round(run_.client_cores, 3),
                "other_cores": round(run_.other_cores, 3),
                "unexpected_alerts": len(alerts["other"]),
                "gc": run_.gc,
                "generators": run_.generator_summary(),
            }
            for kind in ("silence", "overtalk"):
                items = alerts[kind]
                level[kind] = {
                    "latency_ms": delays_ms(items, "latency"),
                    "pipeline_ms": delays_ms(items, "pipeline"),
                    "detection_bias_ms": delays_ms(items, "detection_bias"),
                    "target_p99_ms": TARGET_MS[kind],
                }
                p99 = level[kind]["latency_ms"]["p99"]
                level[kind]["met"] = p99 is not None and p99 <= TARGET_MS[kind]
            out.append(level)
            _print_level(level)
    finally:
        await hub.stop()
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "latency",
        "command": command_line("bench.latency"),
        "machine": machine(),
        "environment": environment,
        "params": {"rate": args.rate, "capacity": capacity, "fractions": args.fractions,
                   "tree": args.tree or ".",
                   "probes": args.probes, "measure_s": args.measure,
                   "dead_air_s": args.dead_air, "overtalk_s": 1.0, "chunk_ms": 100,
                   "probe_spread_s": spread},
        "levels": out,
    }


def _print_level(level: dict[str, Any]) -> None:
    parts = [f"  {level['fraction']:.0%} = {level['calls']} calls:"]
    for kind in ("silence", "overtalk"):
        lat, pipe = level[kind]["latency_ms"], level[kind]["pipeline_ms"]
        parts.append(f"{kind} n={lat['n']} latency p50/p99 {lat['p50']}/{lat['p99']} ms "
                     f"(pipeline {pipe['p50']}/{pipe['p99']})")
    parts.append(f"hub {level['hub_cores']} cores, other {level['other_cores']}")
    print(" ".join(parts), flush=True)


def markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    tree = "" if p.get("tree", ".") == "." else f", hub of `{p['tree']}`"
    lines = [f"#### Alert latency at the wall, {p['rate'] // 1000} kHz (capacity taken as "
             f"{p['capacity']} calls; dead air {p['dead_air_s']:g} s, overtalk "
             f"{p['overtalk_s']:g} s{tree}{_spread(p)})", "",
             "| load | kind | n | latency p50 / p99 ms | target p99 | pipeline p50 / p99 ms "
             "| VAD dating bias p50 ms | hub cores / other |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for lv in result["levels"]:
        for kind in ("silence", "overtalk"):
            k = lv[kind]
            lat, pipe, bias = k["latency_ms"], k["pipeline_ms"], k["detection_bias_ms"]
            lines.append(
                f"| {lv['fraction']:.0%} ({lv['calls']} calls) | {kind} | {lat['n']} "
                f"| {_pp(lat)} | ≤ {k['target_p99_ms']:.0f} {'✓' if k['met'] else '✗'} "
                f"| {_pp(pipe)} | {bias['p50']} | {lv['hub_cores']} / {lv['other_cores']} |")
    return "\n".join(lines) + "\n"


def _spread(p: dict[str, Any]) -> str:
    spread = p.get("probe_spread_s", 0.0)
    return (f"; probes spread over {spread:g} s" if spread
            else "; probes together, incidents within ~0.1 s")


def _pp(d: dict[str, Any]) -> str:
    return "–" if d.get("p50") is None else f"{d['p50']:.0f} / {d['p99']:.0f}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.latency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, choices=(8000, 16000), default=16000)
    p.add_argument("--capacity", type=int, default=None,
                   help="calls at 100 %% (default: the hub's capacity in the last capacity run "
                        "at this rate)")
    p.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")],
                   default=[0.1, 0.5, 0.9])
    p.add_argument("--probes", type=int, default=30)
    p.add_argument("--measure", type=float, default=26.0)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--dead-air", type=float, default=2.0)
    p.add_argument("--together", action="store_true",
                   help="start the probes together (before f5ac67b the only way): "
                        "their incidents fall within ~0.1 s of each other; by default they are "
                        "spread over one incident cycle, as incidents are on a real floor")
    add_run_options(p, spawn_s=SPAWN_S)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    capacity = args.capacity or capacity_from_results(args.rate, args.results or RESULTS_DIR)
    if not capacity:
        raise SystemExit("no capacity known: run bench.capacity first or pass --capacity N")
    with restored_process_state():
        result = asyncio.run(run(args, capacity))
    publish(f"latency-{args.rate}", result, markdown(result), args.results)
    return result


if __name__ == "__main__":
    main()
