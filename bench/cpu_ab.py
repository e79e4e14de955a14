"""CPU per chunk at one fixed load, for the raw baseline and for versions of the hub, taking
turns: the steadiest before/after comparison a shared machine allows.

    python -m bench.cpu_ab --calls 300 --trees aad6df2,. --rounds 3

A capacity search takes minutes per server, and on a shared machine the other sessions' load
changes in between (on this VM the two vCPUs also slow each other down), so two searches run
minutes apart can disagree by 2×. Here every server streams the same N calls (`bench.loadstep`,
as in a capacity step) for `--seconds`, one after another, round after round; the table gives the
medians of µs of server CPU per 100 ms chunk, the ratio of each hub to the baseline measured in
the same rounds, and the loop lag. Each git ref's hub is unpacked as in `bench.micro --trees`
(`.` is the working tree).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    command_line,
    machine,
    prepare,
    restored_process_state,
    save_result,
    unpack_tree,
)
from bench.loadstep import StepConfig, run_step
from bench.servers import baseline_process, hub_process, provision


async def run(args: argparse.Namespace) -> dict[str, Any]:
    environment = prepare(args.nice, measure_background=args.quiet_wait > 0)
    workdir = (args.results or RESULTS_DIR) / "work" / "cpu_ab"
    shutil.rmtree(workdir, ignore_errors=True)
    tokens = list(provision(workdir / "data", args.calls).items())
    roots = {t: None if t == "." else unpack_tree(t, workdir / f"tree{i}")
             for i, t in enumerate(args.trees)}
    servers = ["baseline"] * (not args.no_baseline) + list(args.trees)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    for r in range(args.rounds):
        for name in servers:
            step_dir = workdir / f"r{r}-{len(runs[name])}-{name.replace('/', '_')}"
            shutil.copytree(workdir / "data", step_dir / "data")
            server = (baseline_process(step_dir) if name == "baseline" else
                      hub_process(step_dir, settings={"analysis.dead_air_s": 2.0},
                                  root=roots[name]))
            await server.start()
            try:
                cookie = await server.login() if name != "baseline" else None
                cfg = StepConfig(calls=args.calls, rate=args.rate, measure_s=args.seconds,
                                 observe_alerts=False, tag=f"ab{r}",
                                 quiet_wait_s=args.quiet_wait)
                step = await run_step(server, tokens, cfg, step_dir / "step", cookie=cookie)
            finally:
                await server.stop()
            figures = {
                "us_per_chunk": round(step.server_cores * 1e6 / (args.calls / cfg.chunk_s), 1),
                "server_cores": round(step.server_cores, 3),
                "throughput": step.throughput(),
                "loop_lag_ms": step.loop_lag(),
                "server_waiting": round(step.server_waiting, 3),
                "other_cores": round(step.other_cores, 3),
            }
            runs[name].append(figures)
            print(f"  round {r} {name}: {figures}", flush=True)
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {s: {"us_per_chunk": statistics.median(f["us_per_chunk"] for f in fs),
                   "server_waiting": statistics.median(f["server_waiting"] for f in fs),
                   "other_cores": statistics.median(f["other_cores"] for f in fs)}
               for s, fs in runs.items()}
    return {"benchmark": "cpu_ab", "command": command_line("bench.cpu_ab"),
            "machine": machine(), "environment": environment,
            "params": {"calls": args.calls, "rate": args.rate, "seconds": args.seconds,
                       "rounds": args.rounds, "trees": args.trees},
            "runs": runs, "medians": medians}


def markdown(result: dict[str, Any]) -> str:
    p, med = result["params"], result["medians"]
    base = med.get("baseline", {}).get("us_per_chunk")
    first = med[p["trees"][0]]["us_per_chunk"]
    lines = [f"#### CPU per chunk at {p['calls']} calls, {p['rate'] // 1000} kHz, servers taking "
             f"turns (median of {p['rounds']} rounds × {p['seconds']:g} s)", "",
             "| server | µs CPU per chunk | ÷ baseline | ÷ first hub "
             "| loop lag p99 ms (each round) | server waiting | other cores |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for name, m in med.items():
        us = m["us_per_chunk"]
        lags = ", ".join(str(f["loop_lag_ms"].get("p99")) for f in result["runs"][name])
        label = name if name == "baseline" else f"hub `{name}`"
        to_base = f"{us / base:.2f}" if base else "–"
        to_first = "–" if name == "baseline" else f"{us / first:.2f}"
        lines.append(f"| {label} | {us:.1f} | {to_base} | {to_first} | {lags} "
                     f"| {m['server_waiting']:.0%} | {m['other_cores']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_ab",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--rate", type=int, choices=(8000, 16000), default=16000)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--trees", type=lambda s: [x for x in s.split(",") if x], default=["."])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--quiet-wait", type=float, default=10.0)
    p.add_argument("--nice", type=int, default=-10)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--keep-work", action="store_true")
    args = p.parse_args(argv)
    with restored_process_state():
        result = asyncio.run(run(args))
    path = save_result(f"cpu_ab-{args.rate}", result, args.results)
    text = markdown(result)
    path.with_suffix(".md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
