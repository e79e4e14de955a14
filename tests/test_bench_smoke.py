"""Smoke runs of the benchmark suite (bench/): each command, tiny, end to end.

Real hub and baseline processes, real client processes, a second or two of load each. Nothing
here asserts a timing: only that every benchmark runs to the end and writes well-formed results
(the figures themselves are for docs/performance.md, measured with the full commands).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from conftest import need_tools

from bench import capacity, fanout, latency, listen, memory, report, scaleout

pytestmark = pytest.mark.slow

QUICK = ["--quiet-wait", "0", "--nice", "0", "--spawn", "1.2"]


def _latest(results: Path, name: str) -> dict:
    path = results / f"{name}-latest.json"
    assert path.exists(), f"{name} wrote no results"
    data = json.loads(path.read_text())
    assert data["benchmark"] == name.split("-")[0]
    assert data["machine"]["nproc"] >= 1
    assert data["command"].startswith("python -m bench.")
    return data


def _is_pct(d: dict) -> None:
    assert set(d) >= {"n", "p50", "p99", "max"}
    assert d["n"] == 0 or d["p50"] <= d["p99"] <= d["max"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


def test_capacity_smoke(results: Path) -> None:
    capacity.main(["--rate", "8000", "--servers", "hub,baseline", "--start", "4",
                   "--max-calls", "4", "--refine", "0", "--retries", "0", "--probes", "2",
                   "--measure", "1.2", "--settle", "0.3", "--results", str(results), *QUICK])
    data = _latest(results, "capacity-8000")
    assert set(data["servers"]) == {"hub", "baseline"}
    for server in data["servers"].values():
        step = server["steps"][0]
        assert step["calls"] == 4
        assert isinstance(step["passed"], bool)
        assert step["generators"]["connected"] == 4, step["generators"]
        _is_pct(step["loop_lag_ms"])
        _is_pct(step["ack_rtt_ms"])
    assert (results / "capacity-8000-latest.json").read_text()
    assert "| hub |" in capacity.markdown(data)


def test_latency_smoke(results: Path) -> None:
    latency.main(["--rate", "8000", "--capacity", "3", "--fractions", "1.0", "--probes", "3",
                  "--measure", "2", "--settle", "0.3", "--dead-air", "0.6",
                  "--results", str(results), *QUICK])
    data = _latest(results, "latency-8000")
    level = data["levels"][0]
    assert level["calls"] == 3
    for kind in ("silence", "overtalk"):
        _is_pct(level[kind]["latency_ms"])
        _is_pct(level[kind]["pipeline_ms"])
    assert "silence" in latency.markdown(data)


def test_fanout_smoke(results: Path) -> None:
    fanout.main(["--walls", "", "--stall-walls", "3", "--stall-s", "1.5", "--measure", "1",
                 "--settle", "0.3", "--driver-calls", "2", "--results", str(results), *QUICK])
    data = _latest(results, "fanout")
    assert data["levels"][0]["walls"] == 0
    stall = data["stall"]
    assert stall["walls"] == 3
    _is_pct(stall["before"]["delay_ms"])
    assert stall["before"]["received_per_s"] > 0, stall
    assert stall["stalled_wall_upgraded"] is True
    assert "Stalled wall" in fanout.markdown(data)


def test_memory_smoke(results: Path) -> None:
    memory.main(["--rate", "8000", "--calls", "3", "--walls", "3", "--measure", "1",
                 "--settle", "0.3", "--results", str(results), *QUICK])
    data = _latest(results, "memory")
    assert [c["calls"] for c in data["calls"]] == [3]
    assert [w["walls"] for w in data["walls"]] == [0, 3]
    assert data["per_call_kib"] is not None
    assert data["idle_rss_mb"] > 0


@pytest.mark.redis
def test_scaleout_smoke(results: Path) -> None:
    """One hub, then two hubs sharing a private redis-server: the capacity step runs on both
    set-ups and a probe's alert raised on hub A reaches the wall on hub B."""
    need_tools("redis-server")
    scaleout.main(["--configs", "one,two", "--start", "4", "--max-calls", "6", "--refine", "0",
                   "--retries", "0", "--probes", "2", "--measure", "1.2", "--settle", "0.3",
                   "--dead-air", "0.6", "--latency-probes", "3", "--latency-capacity", "6",
                   "--fractions", "1.0", "--latency-measure", "4", "--results", str(results),
                   *QUICK, "--spawn", "2.5"])
    data = _latest(results, "scaleout")
    run = data["runs"][0]
    assert set(run["capacity"]) == {"one", "two"}
    step = run["capacity"]["two"]["steps"][0]
    assert step["calls"] == 4 and isinstance(step["passed"], bool)
    assert set(step["hubs"]) == {"A", "B"}
    assert step["generators"]["connected"] == 4, step["generators"]
    level = run["latency"][0]
    assert level["calls_per_hub"] == [3, 3]
    assert level["generators"]["connected"] == 6, level["generators"]
    for kind in ("silence", "overtalk"):
        _is_pct(level[kind]["same_hub_ms"])
        _is_pct(level[kind]["cross_hub_ms"])
    assert level["overtalk"]["cross_hub_ms"]["n"] > 0, level  # an alert crossed from A to B
    text = scaleout.markdown(data)
    assert "2 hubs + Redis" in text and "cross hub" in text


def test_listen_smoke(results: Path) -> None:
    """Two calls (8 and 16 kHz) streamed by the agent client, aiortc listeners in their own
    processes joining 1 then 2 per call, one of them frozen with SIGSTOP; then Chromium."""
    listen.main(["--calls", "2", "--levels", "0,1,2", "--repeats", "1", "--window", "1.5",
                 "--settle", "0.5", "--stall-s", "1", "--stall-around", "1.5",
                 "--chromium-s", "3", "--results", str(results), *QUICK])
    data = _latest(results, "listen")
    assert [c["rate"] for c in data["calls"]] == [8000, 16000]
    assert all(c["sent"] > 0 for c in data["calls"]), data["calls"]
    cpu = data["cpu"]
    assert set(cpu["median_hub_cores"]) == {"0", "1", "2"}
    assert set(cpu["median_per_listener_pct"]) == {"1", "2"}
    assert "encode_per_call_pct" in cpu
    assert data["delay"]["onsets_matched"]["found"] > 0, "no burst reached a listener"
    _is_pct(data["delay"]["all"]["mouth_to_ear_ms"])
    assert set(data["stall"]["phases"]) == {"before", "during", "after"}
    # 4 sessions, more if a phase was measured again (the hub held off its core by others)
    assert data["hub_sessions"]["sessions"] >= 4
    chromium = data["chromium"]  # Chromium in a network namespace: as root only
    assert "per_call" in chromium or "skipped" in chromium, chromium
    assert "Stalled listener" in listen.markdown(data)


def test_report_smoke(results: Path) -> None:
    text = report.main(["--results", str(results)])
    assert "Against the targets" in text
    assert (results / "summary.md").exists()
