"""Assemble the latest results into one Markdown summary (pasted into docs/performance.md).

    python -m bench.report                 # prints it and writes bench/results/summary.md

Reads `bench/results/<benchmark>-latest.json` for every benchmark that has run, checks each
figure against the targets of issue 7, and lists the machine and the exact commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import capacity, fanout, latency, memory, micro, profile
from bench.common import RESULTS_DIR, read_json

TARGETS = {
    "calls": 1000,
    "ratio": 0.60,
    "lag_ms": 100.0,
    "silence_ms": 250.0,
    "overtalk_ms": 150.0,
    "deliveries": 20000.0,
    "fanout_cores": 0.25,
    "stall_ms": 100.0,
    "per_call_kib": 1024.0,
}


def _latest(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}-latest.json"
    return read_json(path) if path.exists() else None


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def targets(results: Path) -> list[str]:
    """One row per target: the figure, the target, met or missed, by how much."""
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    for rate in (16000, 8000):
        cap = _latest(results, f"capacity-{rate}")
        if cap is None:
            continue
        hub = cap["servers"].get("hub", {})
        base = cap["servers"].get("baseline", {})
        n = hub.get("capacity")
        ok = None if n is None else n >= TARGETS["calls"]
        short = "" if not n or ok else f" ({n / TARGETS['calls']:.0%} of the target)"
        rows.append(f"| ≥ 1,000 stereo calls at {rate // 1000} kHz per hub process, lag p99 "
                    f"≤ 100 ms | {n} calls{short} | {_verdict(ok)} |")
        ratio = cap.get("ratio_hub_to_baseline")
        rows.append(f"| ≥ 60 % of the raw baseline ({rate // 1000} kHz) | "
                    f"{'–' if ratio is None else f'{ratio:.0%}'} (baseline "
                    f"{base.get('capacity')} calls) | "
                    f"{_verdict(None if ratio is None else ratio >= TARGETS['ratio'])} |")
    for rate in (16000, 8000):
        lat = _latest(results, f"latency-{rate}")
        if lat is None:
            continue
        for kind, key in (("silence", "silence_ms"), ("overtalk", "overtalk_ms")):
            worst = max((lv[kind]["latency_ms"]["p99"] or 0.0 for lv in lat["levels"]),
                        default=None)
            ok = None if worst is None else worst <= TARGETS[key]
            name = "dead air" if kind == "silence" else "overtalk"
            rows.append(f"| {name} alert at the wall ≤ threshold + {TARGETS[key]:.0f} ms p99 "
                        f"({rate // 1000} kHz, worst load level) | threshold + {worst:.0f} ms | "
                        f"{_verdict(ok)} |")
    fan = _latest(results, "fanout")
    if fan is not None:
        top = max(fan["levels"], key=lambda lv: lv["walls"])
        rate = top["hub_delivered_per_s"] or 0.0
        cores = top["fanout_cores"]
        ok = rate >= TARGETS["deliveries"] and cores is not None and (
            cores <= TARGETS["fanout_cores"])
        rows.append(f"| fan-out ≥ 20,000 deliveries/s using ≤ 0.25 core | {rate:,.0f}/s to "
                    f"{top['walls']} walls using {cores} core | {_verdict(ok)} |")
        stall = fan.get("stall")
        if stall and stall.get("added_p99_ms") is not None:
            ok = stall["added_p99_ms"] <= TARGETS["stall_ms"]
            rows.append(f"| a stalled wall adds ≤ 100 ms to the others | "
                        f"{stall['added_p99_ms']:+.1f} ms p99 at {stall['walls']} walls | "
                        f"{_verdict(ok)} |")
    mem = _latest(results, "memory")
    if mem is not None and mem.get("per_call_kib") is not None:
        ok = mem["per_call_kib"] <= TARGETS["per_call_kib"]
        rows.append(f"| ≤ 1 MB of memory per call | {mem['per_call_kib']:.0f} KiB per call, "
                    f"{mem['per_wall_kib']} KiB per wall | {_verdict(ok)} |")
    return rows


def machine_block(results: Path) -> list[str]:
    for name in ("capacity-16000", "capacity-8000", "fanout", "latency-16000", "memory"):
        data = _latest(results, name)
        if data is not None:
            m, env = data["machine"], data.get("environment", {})
            return [f"- machine: {m['nproc']} × {m['cpu_model']}, {m['mem_gib']} GiB, Linux "
                    f"{m['kernel']}, Python {m['python']}",
                    f"- code: commit {m['commit']}"
                    f"{' (+ uncommitted changes)' if m['dirty'] else ''}, server/ tree "
                    f"{m.get('server_tree', '?')}",
                    f"- placement: server on core {env.get('server_cores')}, clients on "
                    f"{env.get('client_cores')}, nice {env.get('nice')}"]
    return []


def summary(results: Path) -> str:
    parts = ["### Results", "", *machine_block(results), "", "#### Against the targets", "",
             *targets(results), ""]
    sections = [
        ("capacity-16000", capacity.markdown), ("capacity-8000", capacity.markdown),
        ("latency-16000", latency.markdown), ("latency-8000", latency.markdown),
        ("fanout", fanout.markdown), ("fanout-deflate", fanout.markdown),
        ("capacity-16000-gcfreeze", capacity.markdown),
        ("memory", memory.markdown), ("micro", micro.markdown),
        ("profile-hub-16000", profile.markdown), ("profile-baseline-16000", profile.markdown),
    ]
    commands = []
    for name, render in sections:
        data = _latest(results, name)
        if data is None:
            continue
        parts.append(render(data))
        commands.append(data.get("command", ""))
    if commands:
        parts += ["#### Commands that produced these figures", "", "```",
                  *[f".venv/bin/{c}" for c in commands if c], "```", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m bench.report",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    text = summary(args.results)
    (args.results / "summary.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
