"""In-process cost of the hub's per-chunk path, stage by stage, without sockets.

    python -m bench.micro --rate 16000 --calls 200

A shared machine makes end-to-end CPU figures noisy; this one is steadier. It builds the hub's
own objects (settings → `TeamProfile`, `LocalBus`, `Floor` with a SQLite `Store`, `WallHub` with
no walls, one `AgentLive` per call, each put on a call with a real `status` message) and feeds
them the benchmark's conversation audio round-robin, 100 ms chunks, timing each stage:

* `parse_audio`  — header checks and the numpy view (`server.ingest_protocol`);
* `feed`         — `CallAnalyzer.feed`: VAD on both channels, gates, detectors;
* `snapshot`     — `CallAnalyzer.snapshot` (what the tile shows);
* `on_audio`     — `AgentLive.on_audio` as a whole: feed + snapshot + the tile diff + publishing
  the change through the bus into the floor;
* `flush`        — `Floor.flush` every 250 ms of audio, per chunk;
* `vad only`     — the baseline server's loop: webrtcvad on both channels, nothing else.

Figures are microseconds of CPU per chunk (one call's 100 ms of stereo audio); `1e6 / (10 × µs)`
is how many calls one core could analyse if nothing else ran.

`--trees A,B` compares versions of the hub in one run: each git ref's `server/` (with
`agent_client/` and `web/`) is unpacked to a temporary directory and measured with this
benchmark's code, in a fresh process, the trees taking turns for `--rounds` rounds; the table
gives each stage's median per tree and the ratio to the first. `.` is the working tree.

`--trees A,B --interleave` is steadier on a shared machine: both versions are loaded into one
process (each with its own modules, floor and agents) and fed the same calls in alternating
blocks of 10 chunks per call, the order swapped every block; the table gives each version's
median µs per chunk of the whole hub path (parse + `on_audio` + `Floor.flush`) and the median
of the per-block ratios B ÷ A with its quartiles, so a slow moment of the machine weighs on both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

from bench.audio import load_loop
from bench.common import REPO, command_line, machine, save_result, unpack_tree
from server.agent_live import AgentLive
from server.bus import LocalBus
from server.config import load_settings
from server.floor import Floor
from server.ingest_protocol import AUDIO_HEADER, parse_audio, parse_message
from server.store import Store
from server.walls import WallHub
from server.wire import iso


def _timed(fn: Callable[[], object], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - started) / repeat


def measure(rate: int, calls: int, seconds: int) -> dict[str, Any]:
    loop = load_loop(rate, 0.1)
    frames = [[loop.frame(i, (c * 37) % len(loop)) for i in range(seconds * 10)]
              for c in range(calls)]
    settings = load_settings(None, {}, analysis={"dead_air_s": 2.0})
    profile = settings.default_team
    assert profile is not None
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "floorwatch.db")
        bus = LocalBus()
        floor = Floor(store, WallHub(256))
        bus.subscribe(floor.on_event)
        agents = []
        for c in range(calls):
            live = AgentLive(f"a-{c:05d}", f"A{c}", "default", profile, bus)
            status = parse_message(json.dumps({
                "type": "status", "seq": 1, "at": iso(time.time()), "state": "on_call",
                "call": {"id": f"c-{c}", "direction": "inbound", "customer": "",
                         "sample_rate": rate}}))
            live.on_status(status, time.time())  # type: ignore[arg-type]
            agents.append(live)
        chunks = [(agents[c], frames[c][i]) for i in range(seconds * 10) for c in range(calls)]
        n = len(chunks)
        now = time.time()

        # on_audio and flush, as the hub runs them (the analysers advance through the call)
        started = time.process_time()
        flush_s = 0.0
        for k, (live, data) in enumerate(chunks):
            live.on_audio(parse_audio(data, 16000), now)
            if (k + 1) % (calls * 5 // 2 or 1) == 0:  # every 250 ms of audio
                t = time.process_time()
                floor.flush()
                flush_s += time.process_time() - t
        total = (time.process_time() - started) / n
        store.close()

    # the stages alone, on fresh analysers of the same audio
    parsed = [parse_audio(data, 16000) for _, data in chunks[: calls * 20]]
    from server.analysis.call import CallAnalyzer

    analysers = [CallAnalyzer(rate, profile.params) for _ in range(calls)]
    it = iter(range(10**9))

    def feed() -> None:
        k = next(it) % len(parsed)
        analysers[k % calls].feed(parsed[k].offset, parsed[k].pcm)

    feed_us = _timed(feed, len(parsed))
    snap_us = _timed(lambda: analysers[next(it) % calls].snapshot(), len(parsed))
    parse_us = _timed(lambda: parse_audio(chunks[next(it) % n][1], 16000), len(parsed))

    vads = (webrtcvad.Vad(3), webrtcvad.Vad(3))
    step = rate // 50 * 2

    def vad_only() -> None:
        data = chunks[next(it) % n][1]
        pcm = np.frombuffer(data, "<i2", offset=AUDIO_HEADER.size).reshape(-1, 2)
        for channel, vad in enumerate(vads):
            mono = pcm[:, channel].tobytes()
            for i in range(0, len(mono) - step + 1, step):
                vad.is_speech(mono[i : i + step], rate)

    vad_us = _timed(vad_only, len(parsed))
    stages = {
        "parse_audio": parse_us, "feed": feed_us, "snapshot": snap_us,
        "on_audio (parse + feed + snapshot + tile diff + bus + floor)": total - flush_s / n,
        "flush (per chunk)": flush_s / n, "hub path total": total, "vad only (baseline)": vad_us,
    }
    return {"rate": rate, "calls": calls, "chunks": n,
            "us_per_chunk": {k: round(v * 1e6, 1) for k, v in stages.items()},
            "calls_per_core": {k: round(1 / (v * 10)) for k, v in stages.items() if v > 0}}


def markdown(result: dict[str, Any]) -> str:
    lines = ["#### In-process cost per 100 ms stereo chunk (no sockets)", "",
             "| stage | " + " | ".join(f"{r['rate'] // 1000} kHz µs" for r in result["runs"])
             + " | " + " | ".join(f"{r['rate'] // 1000} kHz calls/core" for r in result["runs"])
             + " |", "|---|" + "---:|" * (2 * len(result["runs"]))]
    for stage in result["runs"][0]["us_per_chunk"]:
        us = " | ".join(str(r["us_per_chunk"][stage]) for r in result["runs"])
        per_core = " | ".join(str(r["calls_per_core"].get(stage, "–")) for r in result["runs"])
        lines.append(f"| {stage} | {us} | {per_core} |")
    return "\n".join(lines) + "\n"


def _hub_path(root: Path, rate: int, calls: int) -> tuple[list[Any], Callable, Any, Any]:
    """The hub's objects from the code at `root`, imported under their own module objects
    (`server.*` is unloaded before and after, so two versions live side by side)."""
    import importlib

    def unload() -> None:
        for name in [m for m in sys.modules if m == "server" or m.startswith("server.")]:
            del sys.modules[name]

    unload()
    sys.path.insert(0, str(root))
    try:
        mods = {n: importlib.import_module(f"server.{n}") for n in (
            "agent_live", "bus", "config", "floor", "ingest_protocol", "store", "walls", "wire")}
        assert Path(mods["agent_live"].__file__ or "").is_relative_to(root)
    finally:
        sys.path.remove(str(root))
        unload()
    settings = mods["config"].load_settings(None, {}, analysis={"dead_air_s": 2.0})
    tmp = tempfile.mkdtemp(prefix="fw-micro-")
    store = mods["store"].Store(Path(tmp) / "floorwatch.db")
    bus = mods["bus"].LocalBus()
    floor = mods["floor"].Floor(store, mods["walls"].WallHub(256))
    bus.subscribe(floor.on_event)
    agents = []
    for c in range(calls):
        live = mods["agent_live"].AgentLive(f"a-{c:05d}", f"A{c}", "default",
                                            settings.default_team, bus)
        live.on_status(mods["ingest_protocol"].parse_message(json.dumps({
            "type": "status", "seq": 1, "at": mods["wire"].iso(time.time()), "state": "on_call",
            "call": {"id": f"c-{c}", "direction": "inbound", "customer": "",
                     "sample_rate": rate}})), time.time())
        agents.append(live)
    return agents, mods["ingest_protocol"].parse_audio, floor, store


def _block(version: tuple[list[Any], Callable, Any, Any], position: list[int], which: int,
           chunks: int, loop: Any, now: float) -> float:
    """µs of CPU per chunk for the next `chunks` chunks of every call of one version."""
    agents, parse, floor, _ = version
    first = position[which]
    started = time.process_time()
    for i in range(first, first + chunks):
        for c, live in enumerate(agents):
            live.on_audio(parse(loop.frame(i, (c * 37) % len(loop)), 16000), now)
        if i % 5 in (2, 4):  # a flush every 250 ms of audio
            floor.flush()
    position[which] = first + chunks
    return (time.process_time() - started) / (chunks * len(agents)) * 1e6


def interleaved(trees: list[str], rates: list[int], calls: int, blocks: int) -> dict[str, Any]:
    """Two versions of the hub path in one process, alternating blocks (see the module doc)."""
    if len(trees) != 2:
        raise SystemExit("--interleave compares exactly two trees")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = [unpack_tree(ref, Path(tmp) / f"tree{i}") for i, ref in enumerate(trees)]
        for rate in rates:
            loop = load_loop(rate, 0.1)
            versions = [_hub_path(root, rate, calls) for root in roots]
            position = [0, 0]
            now = time.time()

            def block(which: int, chunks: int = 10) -> float:
                return _block(versions[which], position, which, chunks, loop, now)  # noqa: B023

            for which in (0, 1, 0, 1):
                block(which, 20)  # warm-up: both past the start of their calls
            us: list[list[float]] = [[], []]
            ratios = []
            for k in range(blocks):
                got = {w: block(w) for w in ((0, 1) if k % 2 == 0 else (1, 0))}
                us[0].append(got[0])
                us[1].append(got[1])
                ratios.append(got[1] / got[0])
            for _, _, _, store in versions:
                store.close()
            q = statistics.quantiles(ratios, n=4)
            out[str(rate)] = {"us_per_chunk": [round(statistics.median(u), 1) for u in us],
                              "ratio_median": round(statistics.median(ratios), 3),
                              "ratio_quartiles": [round(q[0], 3), round(q[2], 3)]}
    return {"trees": trees, "calls": calls, "blocks": blocks, "rates": out}


def interleaved_markdown(result: dict[str, Any]) -> str:
    a, b = result["trees"]
    lines = [f"#### Hub path in-process, `{a}` and `{b}` alternating in one process "
             f"({result['calls']} calls, {result['blocks']} block pairs)", "",
             f"| rate | `{a}` µs per chunk | `{b}` µs per chunk | `{b}` ÷ `{a}` (median of the "
             "block pairs) | quartiles |", "|---:|---:|---:|---:|---|"]
    for rate, r in result["rates"].items():
        lines.append(f"| {int(rate) // 1000} kHz | {r['us_per_chunk'][0]} | "
                     f"{r['us_per_chunk'][1]} | {r['ratio_median']:.3f} | "
                     f"{r['ratio_quartiles'][0]:.3f}–{r['ratio_quartiles'][1]:.3f} |")
    return "\n".join(lines) + "\n"


def compare(trees: list[str], rates: list[int], calls: int, seconds: int,
            rounds: int) -> dict[str, Any]:
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {ref: unpack_tree(ref, Path(tmp) / f"tree{i}") for i, ref in enumerate(trees)}
        for _ in range(rounds):
            for ref, root in dirs.items():
                for rate in rates:
                    code = ("import json, bench.micro as m; "
                            f"print(json.dumps(m.measure({rate}, {calls}, {seconds})))")
                    out = subprocess.run([sys.executable, "-c", code], cwd=root, check=True,
                                         capture_output=True, text=True,
                                         env={**os.environ, "PYTHONPATH": str(root)}).stdout
                    runs.setdefault((ref, rate), []).append(
                        json.loads(out.splitlines()[-1])["us_per_chunk"])
    medians = {f"{ref}@{rate}": {stage: round(statistics.median(r[stage] for r in rs), 1)
                                 for stage in rs[0]}
               for (ref, rate), rs in runs.items()}
    return {"trees": trees, "rates": rates, "rounds": rounds, "median_us_per_chunk": medians,
            "commits": {ref: subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO,
                                            capture_output=True, text=True).stdout.strip()
                        or ref for ref in trees}}


def compare_markdown(result: dict[str, Any]) -> str:
    trees, rates = result["trees"], result["rates"]
    first = trees[0]
    lines = [f"#### In-process cost per chunk, versions compared in one run "
             f"(median of {result['rounds']} rounds, µs)", "",
             "| stage | rate | " + " | ".join(f"`{t}` ({result['commits'][t]})" for t in trees)
             + " | " + " | ".join(f"`{t}` ÷ `{first}`" for t in trees[1:]) + " |",
             "|---|---:|" + "---:|" * (2 * len(trees) - 1)]
    med = result["median_us_per_chunk"]
    for stage in med[f"{first}@{rates[0]}"]:
        for rate in rates:
            base = med[f"{first}@{rate}"][stage]
            vals = [med[f"{t}@{rate}"][stage] for t in trees]
            ratios = [f"{v / base:.2f}" if base else "–" for v in vals[1:]]
            lines.append(f"| {stage} | {rate // 1000} kHz | " + " | ".join(map(str, vals))
                         + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.micro",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")],
                   default=[16000, 8000])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--seconds", type=int, default=12, help="audio per call")
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--trees", type=lambda s: [x for x in s.split(",") if x], default=None,
                   help="git refs to compare in one run ('.' = the working tree)")
    p.add_argument("--rounds", type=int, default=3, help="with --trees: turns per tree")
    p.add_argument("--interleave", action="store_true",
                   help="with two --trees: both in one process, alternating blocks of chunks")
    p.add_argument("--blocks", type=int, default=60, help="with --interleave: block pairs")
    args = p.parse_args(argv)
    if args.trees and args.interleave:
        result = {"benchmark": "micro-interleaved", "command": command_line("bench.micro", argv),
                  "machine": machine(),
                  **interleaved(args.trees, args.rates, min(args.calls, 100), args.blocks)}
        path = save_result("micro-interleaved", result, args.results)
        text = interleaved_markdown(result)
        path.with_suffix(".md").write_text(text)
        print(text)
        return result
    if args.trees:
        result = {"benchmark": "micro-compare", "command": command_line("bench.micro", argv),
                  "machine": machine(),
                  **compare(args.trees, args.rates, args.calls, args.seconds, args.rounds)}
        path = save_result("micro-compare", result, args.results)
        text = compare_markdown(result)
        path.with_suffix(".md").write_text(text)
        print(text)
        return result
    result = {"benchmark": "micro", "command": command_line("bench.micro", argv),
              "machine": machine(),
              "runs": [measure(rate, args.calls, args.seconds) for rate in args.rates]}
    path = save_result("micro", result, args.results)
    text = markdown(result)
    path.with_suffix(".md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
