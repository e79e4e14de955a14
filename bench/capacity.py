"""Capacity: the most concurrent streamed stereo calls one server process keeps in real time.

    python -m bench.capacity --rate 16000
    python -m bench.capacity --rate 8000

Both servers run in the same command, one after the other, on the same core: the real hub, then
the raw baseline (`bench.baseline`: aiohttp + webrtcvad only). For each, the number of calls N
is doubled from `--start` until a step fails, then the gap between the last step that passed and
the first that failed is bisected until it is `--granularity` (50) calls wide — the same for both
servers, so the ratio is not an artefact of where the doubling happened to land (`--refine N`
stops after N bisections). Each step streams N calls of 100 ms chunks for a bounded time (see
`bench.loadstep`), `--probes` of them probes, and passes when, over its measurement window:

* **throughput** ≥ 0.98: the server analysed ≥ 98 % of the audio offered (metric
  `floorwatch_audio_seconds_total`; one call offers 1 s of audio per second);
* **loop lag** p99 ≤ 100 ms: `floorwatch_analysis_lag_seconds`, how late the 250 ms ticker ran,
  sampled 4×/s;
* **ack round trip** p99 ≤ 100 ms: a probe's reliable message is acknowledged only after every
  earlier frame of its socket has been analysed, so this is the per-call ingest+analysis delay;
* (hub only) **chunk-to-wall delay** p99 ≤ 100 ms: from the moment the chunk that completes a
  probe's dead-air or overtalk (as the hub dates it) was due to the alert's arrival at a wall;
* no call failed to connect and no chunk was skipped as > 1 s late.

Before each step the benchmark waits (at most `--quiet-wait`, 10 s) for the machine's other work
to drop under 0.35 core. A step that fails while the server spent > 5 % of the window runnable
but without a CPU (/proc/PID/schedstat: other work held it back) is run once more. A step
where the client processes used ≥ 90 % of their cores ends the search upward: the generator,
not the server, would be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    command_line,
    cores,
    machine,
    prepare,
    restored_process_state,
    save_result,
)
from bench.loadstep import SPAWN_S, StepConfig, StepRun, delays_ms, run_step
from bench.servers import ServerProcess, baseline_process, hub_process, provision

LIMIT_MS = 100.0
NOISE_WAITING = 0.05  # a step that failed while the server waited for a CPU longer is retried


def summarise(run: StepRun) -> dict[str, Any]:
    """The figures of one step and whether it passed (with the reasons when not)."""
    cfg = run.config
    alerts = run.alerts()
    chunk = alerts["silence"] + alerts["overtalk"]
    out: dict[str, Any] = {
        "calls": cfg.calls,
        "throughput": None if run.throughput() is None else round(run.throughput() or 0.0, 4),
        "loop_lag_ms": run.loop_lag(),
        "ack_rtt_ms": run.ack_rtt(),
        "chunk_to_wall_ms": delays_ms(chunk, "pipeline") if chunk else None,
        "unexpected_alerts": len(alerts["other"]),
        "server_cores": round(run.server_cores, 3),
        "server_us_per_chunk": round(run.server_cores * 1e6 / (cfg.calls / cfg.chunk_s), 1)
        if cfg.calls else None,
        "client_cores": round(run.client_cores, 3),
        "other_cores": round(run.other_cores, 3),
        "server_waiting": round(run.server_waiting, 3),
        "background_before": run.background_before,
        "server_rss_mb": round(run.rss_end / 2**20, 1),
        "gc": run.gc,
        "generators": run.generator_summary(),
        "notes": run.notes,
    }
    reasons = []
    thr = out["throughput"]
    if thr is None or thr < 0.98:
        reasons.append(f"throughput {thr}")
    for key in ("loop_lag_ms", "ack_rtt_ms", "chunk_to_wall_ms"):
        p99 = (out[key] or {}).get("p99")
        if p99 is not None and p99 > LIMIT_MS:
            reasons.append(f"{key.removesuffix('_ms')} p99 {p99:.0f} ms")
    gens = out["generators"]
    if gens["failed"] or gens["dropped_late"] or gens["refused"]:
        reasons.append(f"{gens['failed']} calls failed, {gens['refused']} refused, "
                       f"{gens['dropped_late']} chunks > 1 s late")
    if run.notes:
        reasons.append("; ".join(run.notes))
    out["passed"] = not reasons
    out["reasons"] = reasons
    out["client_bound"] = run.client_cores >= 0.9 * len(cores()[1])
    return out


async def search(server: ServerProcess, tokens: list[tuple[str, str]], args: argparse.Namespace,
                 workdir: Path, start: int, cookie: str | None, *,
                 runner: Callable[..., Awaitable[StepRun]] = run_step) -> dict[str, Any]:
    """Double N from `start` until a step fails, then bisect; returns steps and capacity.

    `runner` runs one step (`run_step`, or `bench.scaleout`'s step across several hubs)."""
    steps: list[dict[str, Any]] = []
    counter = 0

    async def step(n: int) -> dict[str, Any]:
        nonlocal counter
        for attempt in range(1, args.retries + 2):
            counter += 1
            cfg = StepConfig(calls=n, rate=args.rate, probes=args.probes,
                             measure_s=args.measure, settle_s=args.settle,
                             dead_air_s=args.dead_air, observe_alerts=server.kind == "hub",
                             tag=f"{server.kind[0]}{counter}", quiet_wait_s=args.quiet_wait,
                             spawn_s=args.spawn)
            run = await runner(server, tokens, cfg, workdir / f"{server.kind}-{counter}",
                               cookie=cookie)
            summary = summarise(run)
            summary["attempt"] = attempt
            steps.append(summary)
            _print_step(server.kind, summary)
            noisy = summary["server_waiting"] > NOISE_WAITING
            if summary["passed"] or not noisy:
                return summary
        return summary

    last_pass, first_fail, limited = 0, None, None
    n = start
    while n <= args.max_calls:
        s = await step(n)
        if not s["passed"]:
            first_fail, limited = n, "; ".join(s["reasons"])
            break
        last_pass = n
        if s["client_bound"]:
            limited = "load generator saturated its cores"
            break
        if n == args.max_calls:
            limited = f"--max-calls {args.max_calls}"
            break
        n = min(n * 2, args.max_calls)
    refined = 0
    while args.refine is None or refined < args.refine:
        if first_fail is None or first_fail - last_pass <= args.granularity:
            break
        refined += 1
        mid = max(args.granularity,
                  round((last_pass + first_fail) / 2 / args.granularity) * args.granularity)
        if mid in (last_pass, first_fail):
            break
        s = await step(mid)
        if s["passed"]:
            last_pass = mid
        else:
            first_fail, limited = mid, "; ".join(s["reasons"])
    return {"capacity": last_pass, "first_fail": first_fail, "limited_by": limited,
            "resolution": None if first_fail is None else first_fail - last_pass,
            "steps": steps}


def _fresh_runner(make: Callable[[Path], ServerProcess],
                  data: Path) -> Callable[..., Awaitable[StepRun]]:
    """A step runner that starts a new server for every step, on a copy of the provisioned
    data: a hub keeps every agent it has seen (tiles, timers, analysers), so after a step of
    2,000 calls one process would carry their state into the next step of 1,000 — the baseline
    keeps nothing. A fresh process per step measures every N alike."""

    async def runner(_server: ServerProcess, tokens: list[tuple[str, str]], cfg: StepConfig,
                     workdir: Path, cookie: str | None = None) -> StepRun:
        shutil.copytree(data, workdir / "data")
        server = make(workdir)
        await server.start()
        try:
            cookie = await server.login() if server.kind == "hub" else None
            return await run_step(server, tokens, cfg, workdir, cookie=cookie)
        finally:
            await server.stop()

    return runner


def _print_step(kind: str, s: dict[str, Any]) -> None:
    lag, ack, wall = s["loop_lag_ms"], s["ack_rtt_ms"], s["chunk_to_wall_ms"] or {}
    print(f"  {kind:8} N={s['calls']:5d} {'PASS' if s['passed'] else 'FAIL'} "
          f"thr={s['throughput']} lag p99={lag['p99']} ack p99={ack['p99']} "
          f"wall p99={wall.get('p99')} cpu={s['server_cores']} "
          f"clients={s['client_cores']} other={s['other_cores']} "
          f"waiting={s['server_waiting']} "
          f"{'; '.join(s['reasons'])}", flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    environment = prepare(args.nice, measure_background=args.quiet_wait > 0)
    workdir = (args.results or RESULTS_DIR) / "work" / f"capacity-{args.rate}"
    shutil.rmtree(workdir, ignore_errors=True)
    servers: dict[str, Any] = {}
    hub_start = args.start
    for kind in args.servers:
        tokens = provision(workdir / kind / "data", args.max_calls)

        def make(where: Path, kind: str = kind) -> ServerProcess:
            if kind == "baseline":
                return baseline_process(where)
            settings: dict[str, Any] = {"analysis.dead_air_s": args.dead_air}
            if kind == "hub-pygc":  # the hub with Python's default collector (issue 7 step 8)
                settings["server.gc_young_threshold"] = 0
            return hub_process(where, settings=settings)

        start = hub_start
        if kind == "baseline" and servers.get("hub", {}).get("capacity"):
            start = max(args.start, servers["hub"]["capacity"])  # the baseline is faster
        if args.same_process:
            server = make(workdir / kind)
            await server.start()
            try:
                cookie = await server.login() if kind != "baseline" else None
                print(f"{kind}: pid {server.pid}", flush=True)
                servers[kind] = await search(server, list(tokens.items()), args,
                                             workdir / kind, start, cookie)
            finally:
                await server.stop()
        else:
            servers[kind] = await search(make(workdir / kind), list(tokens.items()), args,
                                         workdir / kind, start, None,
                                         runner=_fresh_runner(make, workdir / kind / "data"))
    base = servers.get("baseline")
    ratios = {kind: round(data["capacity"] / base["capacity"], 3)
              for kind, data in servers.items()
              if kind != "baseline" and base and base["capacity"]}
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "capacity",
        "command": command_line("bench.capacity"),
        "machine": machine(),
        "environment": environment,
        "params": {"rate": args.rate, "chunk_ms": 100, "probes": args.probes,
                   "measure_s": args.measure, "settle_s": args.settle,
                   "dead_air_s": args.dead_air, "overtalk_s": 1.0, "limit_ms": LIMIT_MS,
                   "start": args.start, "refine": args.refine, "granularity": args.granularity,
                   "fresh_server_per_step": not args.same_process},
        "servers": servers,
        "ratio_hub_to_baseline": ratios.get("hub"),
        "ratios_to_baseline": ratios,
    }


def markdown(result: dict[str, Any]) -> str:
    p, servers = result["params"], result["servers"]
    lines = [f"#### Capacity, {p['rate'] // 1000} kHz stereo, 100 ms chunks",
             "",
             "| server | N calls | result | throughput | loop lag p50/p99 ms | ack RTT p50/p99 ms "
             "| chunk→wall p50/p99 ms | server CPU (cores) | µs CPU per chunk | clients / other "
             "cores | server waiting | GC: longest pause ms, share of time |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, data in servers.items():
        for s in data["steps"]:
            wall = s["chunk_to_wall_ms"] or {}
            lines.append(
                f"| {kind} | {s['calls']} | {'pass' if s['passed'] else 'FAIL'} "
                f"| {s['throughput']} | {_pp(s['loop_lag_ms'])} | {_pp(s['ack_rtt_ms'])} "
                f"| {_pp(wall) if wall else '–'} | {s['server_cores']} "
                f"| {s['server_us_per_chunk']} | {s['client_cores']} / {s['other_cores']} "
                f"| {s.get('server_waiting', 0.0):.0%} | {_gc(s.get('gc'))} |")
    lines.append("")
    for kind, data in servers.items():
        fail = data.get("first_fail")
        lines.append(f"- **{kind}**: {data['capacity']} calls in real time"
                     + (f" ({fail} failed: {data['limited_by']})" if fail is not None
                        else f" ({data['limited_by']})" if data["limited_by"] else ""))
    for kind, ratio in (result.get("ratios_to_baseline")
                        or {"hub": result.get("ratio_hub_to_baseline")}).items():
        if ratio is not None:
            lines.append(f"- **{kind} ÷ baseline = {ratio:.0%}**")
    return "\n".join(lines) + "\n"


def _gc(gc: dict[str, Any] | None) -> str:
    if not gc:
        return "–"
    longest = max(gc[g]["max"] or 0.0 for g in ("gen0", "gen1", "gen2") if g in gc)
    return f"{longest:.0f}, {gc['share_of_time']:.1%}"


def _pp(d: dict[str, Any]) -> str:
    if not d or d.get("p50") is None:
        return "–"
    return f"{d['p50']:.0f} / {d['p99']:.0f}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--rate", type=int, choices=(8000, 16000), default=16000)
    p.add_argument("--servers", type=lambda s: s.split(","), default=["hub", "baseline"],
                   help="comma-separated: hub,baseline (default both, hub first); hub-pygc "
                        "is the hub with Python's default garbage-collector settings")
    p.add_argument("--start", type=int, default=250, help="first N (default 250)")
    p.add_argument("--max-calls", type=int, default=6000)
    p.add_argument("--refine", type=int, default=None,
                   help="bisection steps after a failure (default: until the gap between the "
                        "last pass and the first failure is --granularity calls)")
    p.add_argument("--granularity", type=int, default=50)
    p.add_argument("--retries", type=int, default=1,
                   help="times a step that failed on a noisy machine is run again (default 1)")
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--measure", type=float, default=8.0, help="seconds measured per step")
    p.add_argument("--settle", type=float, default=2.0, help="seconds after the ramp")
    p.add_argument("--dead-air", type=float, default=2.0,
                   help="the hub's analysis.dead_air_s for the run (default 2.0)")
    p.add_argument("--spawn", type=float, default=SPAWN_S,
                   help="seconds allowed for client processes to start (default 2.5)")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="before each step, wait at most this long for other work on the "
                        "machine to calm down (default 10 s; 0 to not wait)")
    p.add_argument("--nice", type=int, default=-10,
                   help="niceness of the server and clients (default -10; 0 to not boost)")
    p.add_argument("--same-process", action="store_true",
                   help="run every step of a search in one server process (before this was the "
                        "only way; by default each step gets a fresh server and data)")
    p.add_argument("--results", type=Path, default=None, help="results directory")
    p.add_argument("--keep-work", action="store_true", help="keep per-step specs and logs")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    with restored_process_state():
        result = asyncio.run(run(args))
    name = f"capacity-{args.rate}"
    path = save_result(name, result, args.results)
    text = markdown(result)
    path.with_suffix(".md").write_text(text)
    print(text)
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
