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
    args = p.parse_args(argv)
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
