"""Profile a server under a steady call load with py-spy, and say what costs what per chunk.

    python -m bench.profile --calls 400 --rate 16000            # the hub
    python -m bench.profile --server baseline --calls 400

It runs one load step (`bench.loadstep`, same clients as the capacity benchmark) and, during the
measurement window, `py-spy record --rate 200 --nolineno --format raw` on the server process
(py-spy is not a floorwatch dependency: `pip install py-spy`). Idle samples are not recorded, so
a function's share of the samples is its share of the server's CPU time; times that by the CPU
seconds the server used in the window and divide by the chunks it received to get microseconds
per chunk. Written to `bench/results/profile-<server>-<rate>-<N>.json` and `.md`, with the raw
collapsed stacks beside them (`.folded`, loadable in speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    command_line,
    machine,
    prepare,
    restored_process_state,
    save_result,
)
from bench.loadstep import StepConfig, run_step
from bench.servers import ServerProcess, baseline_process, hub_process, provision

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


def _frame_name(frame: str) -> str:
    """`feed (server/analysis/call.py)` → `server/analysis/call.py:feed` (paths shortened)."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{m.group('func')}"


def aggregate(folded: str) -> dict[str, Any]:
    """Collapsed stacks → total samples, and self/inclusive sample counts per function.

    Only the main thread (the event loop) counts; samples py-spy took in other threads (the
    executor's idle workers, which it does not always recognise as idle) are counted apart."""
    self_count: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = other_threads = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if stack.startswith("Thread._bootstrap"):
            other_threads += count
            continue
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        self_count[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    return {"total": total, "other_threads": other_threads, "self": self_count,
            "inclusive": incl}


# Where a sample's time belongs: the first frame from the leaf up whose file is listed here
# (frames of helpers such as json, enum or dataclass __init__ count for their caller's area).
# The hub calls webrtcvad's C module from a list comprehension, which py-spy shows as the leaf:
# its samples are the C calls plus the slicing around them.
AREAS: tuple[tuple[str, str], ...] = (
    ("webrtcvad.py", "webrtcvad (C)"),
    ("server/analysis/vad.py:WebRtcScorer.score.<locals>.<listcomp>",
     "webrtcvad (C, with the comprehension calling it)"),
    ("sitecustomize.py", "GC probe"),
    ("server/analysis/", "analysis in Python (framing, gates, detectors, snapshot)"),
    ("server/agent_live.py", "tile fields and alerts (agent_live)"),
    ("server/floor.py", "bus, floor, walls"),
    ("server/bus", "bus, floor, walls"),
    ("server/walls.py", "bus, floor, walls"),
    ("server/store.py", "store (SQLite)"),
    ("server/ingest_protocol.py", "parse_audio / parse_message"),
    ("server/ingest.py", "ingest handler loop"),
    ("server/", "hub: ticker, API, auth"),
    ("bench/baseline.py", "baseline handler"),
    ("aiohttp/", "aiohttp (WebSocket frames, HTTP)"),
    ("logging/", "logging"),
    ("asyncio/runners.py", "event loop (uvloop, syscalls)"),
)


def areas(folded: str) -> dict[str, float]:
    """Share of the main thread's samples per area (see AREAS), largest first."""
    counts: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or stack.startswith("Thread._bootstrap"):
            continue
        count = int(count_text)
        total += count
        area = "other"
        for frame in reversed(stack.split(";")):
            name = _frame_name(frame)
            match = next((a for prefix, a in AREAS if name.startswith(prefix)), None)
            if match is not None:
                area = match
                break
        counts[area] += count
    return {a: round(c / total, 4) for a, c in counts.most_common()} if total else {}


def table(agg: dict[str, Any], cpu_cores: float, units_per_s: float,
          top: int = 25) -> list[dict[str, Any]]:
    """The top functions by inclusive share, with self share and µs per unit of work (a chunk
    for ingest, a delivery for fan-out)."""
    total = agg["total"] or 1
    us_per_chunk = cpu_cores * 1e6 / units_per_s if units_per_s else 0.0
    rows = []
    for name, count in agg["inclusive"].most_common(top + 12):
        share, own = count / total, agg["self"][name] / total
        if share > 0.995 and own == 0:
            continue  # start-up frames every sample shares (runpy, cli, uvloop.run)
        if len(rows) == top:
            break
        rows.append({"function": name, "inclusive_pct": round(100 * share, 1),
                     "self_pct": round(100 * own, 1),
                     "inclusive_us_per_chunk": round(share * us_per_chunk, 1),
                     "self_us_per_chunk": round(own * us_per_chunk, 1)})
    return rows


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def record_profile(pid: int, at: float, duration: float, out: Path) -> int:
    """py-spy the process from monotonic time `at` for `duration` s into collapsed stacks."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    proc = await asyncio.create_subprocess_exec(
        py_spy() or "py-spy", "record", "--pid", str(pid), "--duration", str(int(duration)),
        "--rate", "200", "--nolineno", "--format", "raw",
        "--output", str(out), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    environment = prepare(args.nice)
    if py_spy() is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    results = args.results or RESULTS_DIR
    workdir = results / "work" / f"profile-{args.server}"
    shutil.rmtree(workdir, ignore_errors=True)
    tokens = provision(workdir / "data", args.calls)
    server: ServerProcess = (hub_process(workdir, settings={"analysis.dead_air_s": 2.0})
                             if args.server == "hub" else baseline_process(workdir))
    await server.start()
    folded = results / f"profile-{args.server}-{args.rate}-{args.calls}.folded"
    try:
        cookie = await server.login() if args.server == "hub" else None
        cfg = StepConfig(calls=args.calls, rate=args.rate, measure_s=args.seconds,
                         observe_alerts=args.server == "hub", tag="p")
        code: list[int] = []

        async def spy(window: tuple[float, float]) -> None:
            code.append(await record_profile(server.pid, window[0], args.seconds - 1, folded))

        step = await run_step(server, list(tokens.items()), cfg, workdir / "step",
                              cookie=cookie, during_window=spy)
    finally:
        await server.stop()
    agg = aggregate(folded.read_text() if folded.exists() else "")
    chunks_per_s = args.calls / cfg.chunk_s
    rows = table(agg, step.server_cores, chunks_per_s, args.top)
    by_area = areas(folded.read_text() if folded.exists() else "")
    us_per_chunk = step.server_cores * 1e6 / chunks_per_s
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "profile",
        "command": command_line("bench.profile"),
        "machine": machine(),
        "environment": environment,
        "params": {"server": args.server, "calls": args.calls, "rate": args.rate,
                   "seconds": args.seconds},
        "py_spy_exit": code[0] if code else None,
        "samples": agg["total"],
        "other_thread_samples": agg["other_threads"],
        "server_cores": round(step.server_cores, 3),
        "other_cores": round(step.other_cores, 3),
        "throughput": step.throughput(),
        "us_per_chunk": round(us_per_chunk, 1),
        "areas": [{"area": a, "pct": round(100 * share, 1),
                   "us_per_chunk": round(share * us_per_chunk, 1)} for a, share in by_area.items()],
        "folded": str(folded),
        "top": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    lines = [f"#### Profile: {p['server']}, {p['calls']} calls at {p['rate'] // 1000} kHz "
             f"({result['server_cores']} cores, {result['us_per_chunk']} µs CPU per chunk, "
             f"{result['samples']} samples)", "",
             "| where | % of CPU | µs per chunk |", "|---|---:|---:|"]
    for a in result.get("areas", []):
        lines.append(f"| {a['area']} | {a['pct']} | {a['us_per_chunk']} |")
    lines += ["", "| function | inclusive % | self % | inclusive µs/chunk | self µs/chunk |",
              "|---|---:|---:|---:|---:|"]
    for r in result["top"]:
        lines.append(f"| `{r['function']}` | {r['inclusive_pct']} | {r['self_pct']} "
                     f"| {r['inclusive_us_per_chunk']} | {r['self_us_per_chunk']} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.profile",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--server", choices=("hub", "baseline"), default="hub")
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--rate", type=int, choices=(8000, 16000), default=16000)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--nice", type=int, default=-10,
                   help="niceness of the server and clients (default -10; 0 to not boost)")
    p.add_argument("--results", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    with restored_process_state():
        result = asyncio.run(run(args))
    path = save_result(f"profile-{args.server}-{args.rate}", result, args.results)
    text = markdown(result)
    path.with_suffix(".md").write_text(text)
    print(text)
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
