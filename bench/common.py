"""Shared plumbing: the machine, results files, percentiles, /proc readings, CPU pinning, specs.

Clocks: load generators, wall clients and the orchestrator compare `time.monotonic()` readings
across processes. On Linux that is CLOCK_MONOTONIC, one clock for the whole machine, so a due
time taken in one process and an arrival time taken in another are directly comparable. Only
the wall fan-out latency uses `time.time()`, because the hub stamps each tiles message with
`server_time` from its wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the machine ----------------------------------------------------------------------------


def server_tree() -> str:
    """A short hash of the hub's source (`server/`), which changes between commits and while
    others edit it: the figures belong to exactly this code."""
    digest = hashlib.sha1()
    for path in sorted((REPO / "server").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "server_tree": server_tree(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# -- CPU placement --------------------------------------------------------------------------


_CPUS = sorted(os.sched_getaffinity(0))  # before anything here is pinned


def cores() -> tuple[list[int], list[int]]:
    """(hub cores, client cores): the hub alone on the first core, everything else on the rest.

    On a one-core machine both share it, and the figures say so."""
    if len(_CPUS) < 2:
        return _CPUS, _CPUS
    return _CPUS[:1], _CPUS[1:]


def pin_self_to_clients() -> None:
    """The orchestrator and every client it starts run on the client cores."""
    os.sched_setaffinity(0, cores()[1])


def boost_priority(nice: int = -10) -> int:
    """Raise this process's priority (inherited by the servers and clients it starts), so that
    other work on a shared machine disturbs the figures less. Needs root; returns the niceness
    in force.

    With the kernel's autogroup scheduling on (the usual desktop/VM default), niceness only
    ranks processes within one session, and CPU is shared between sessions as if they were
    equal; so the session's autogroup gets the same niceness."""
    with contextlib.suppress(PermissionError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    autogroup = Path("/proc/self/autogroup")
    with contextlib.suppress(PermissionError, OSError):
        if autogroup.exists():
            autogroup.write_text(str(nice))
    return os.getpriority(os.PRIO_PROCESS, 0)


def background_cores(seconds: float = 2.0) -> float:
    """Cores the machine keeps busy before the benchmark starts (other sessions, builds…)."""
    before = machine_busy_s()
    time.sleep(seconds)
    return round((machine_busy_s() - before) / seconds, 2)


async def wait_quiet(threshold: float = 0.35, max_wait_s: float = 45.0) -> float:
    """Wait (bounded) until the machine's other work stays under `threshold` cores for a second;
    returns the last reading. On a shared machine this keeps a step from starting in the middle
    of someone else's build; the reading is recorded with the step either way."""
    if max_wait_s <= 0:
        return -1.0  # not measured
    deadline = time.monotonic() + max_wait_s
    while True:
        before = machine_busy_s()
        await asyncio.sleep(1.0)
        busy = machine_busy_s() - before
        if busy <= threshold or time.monotonic() >= deadline:
            return round(busy, 2)


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """Put this process's CPU affinity and niceness back afterwards (`prepare` changes both;
    matters when a benchmark runs inside another program, such as the test suite)."""
    affinity = os.sched_getaffinity(0)
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    autogroup = Path("/proc/self/autogroup")
    group_nice = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        group_nice = int(autogroup.read_text().split("nice")[1])
    try:
        yield
    finally:
        os.sched_setaffinity(0, affinity)
        with contextlib.suppress(PermissionError, OSError):
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        with contextlib.suppress(PermissionError, OSError):
            if group_nice is not None:
                autogroup.write_text(str(group_nice))


def prepare(nice: int | None, measure_background: bool = True) -> dict[str, Any]:
    """Pin, lift the fd limit, boost priority and measure the background: the benchmark's
    `environment` record."""
    background = background_cores() if measure_background else None
    pin_self_to_clients()
    raise_fd_limit()
    niceness = boost_priority(nice) if nice is not None else os.getpriority(os.PRIO_PROCESS, 0)
    server, clients = cores()
    print(f"server on core(s) {server}, clients on {clients}, nice {niceness}; "
          f"background load before start: {background} cores", flush=True)
    return {"server_cores": server, "client_cores": clients, "nice": niceness,
            "background_cores_before": background}


def taskset(argv: list[str], cpus: Sequence[int]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus)), *argv]


def raise_fd_limit() -> int:
    """Thousands of sockets per process: lift the soft limit to the hard one (inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def unpack_tree(ref: str, into: Path) -> Path:
    """The hub's code at git `ref` (`server/`, `agent_client/`, `web/`) unpacked to `into`, with
    this checkout's `bench/` beside it, to measure an earlier version in the same run. `.` is
    the working tree itself."""
    if ref == ".":
        return REPO
    if Path(ref).is_dir():  # a tree prepared by hand (e.g. an old version plus some patches)
        if not (Path(ref) / "bench").exists():
            shutil.copytree(REPO / "bench", Path(ref) / "bench",
                            ignore=shutil.ignore_patterns("results", "__pycache__"))
        return Path(ref)
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "server", "agent_client", "web"],
                             cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copytree(REPO / "bench", into / "bench",
                    ignore=shutil.ignore_patterns("results", "__pycache__"))
    return into


def python_env() -> dict[str, str]:
    """Environment for child processes: the repository importable, nothing buffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- /proc ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_queue_wait_s(pid: int) -> float:
    """Seconds the process spent runnable but waiting for a CPU (/proc/PID/schedstat): how much
    other work on the machine held it back."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, not idle or iowait)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


# -- numbers --------------------------------------------------------------------------------


def pct(values: Iterable[float] | np.ndarray, ps: Sequence[int] = (50, 90, 99),
        scale: float = 1.0) -> dict[str, float | int | None]:
    """{"n", "p50", "p90", "p99", "max"} of `values` times `scale`, rounded; None when empty."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
    out: dict[str, float | int | None] = {"n": int(arr.size)}
    for p in ps:
        out[f"p{p}"] = round(float(np.percentile(arr, p)) * scale, 2) if arr.size else None
    out["max"] = round(float(arr.max()) * scale, 2) if arr.size else None
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition → {name: value} (unlabelled samples only)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


# -- files ----------------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def save_result(name: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write `<name>-<UTC time>.json` and `<name>-latest.json`; return the first."""
    where = results_dir or RESULTS_DIR
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = write_json(where / f"{name}-{stamp}.json", data)
    write_json(where / f"{name}-latest.json", data)
    return path


def publish(name: str, result: dict[str, Any], text: str,
            results_dir: Path | None = None) -> Path:
    """Save a run's JSON (see `save_result`) with its Markdown beside it, and print both names."""
    path = save_result(name, result, results_dir)
    path.with_suffix(".md").write_text(text)
    print(text)
    print(f"results: {path}")
    return path


def add_run_options(p: argparse.ArgumentParser, *, spawn_s: float | None = None,
                    quiet_wait_s: float = 10.0, tree: bool = True) -> None:
    """The options every process-spawning benchmark shares."""
    if spawn_s is not None:
        p.add_argument("--spawn", type=float, default=spawn_s,
                       help=f"seconds allowed for client processes to start (default {spawn_s:g})")
    p.add_argument("--quiet-wait", type=float, default=quiet_wait_s,
                   help=f"before each step, wait at most this long for other work on the machine "
                        f"to calm down (default {quiet_wait_s:g} s; 0 to not wait)")
    p.add_argument("--nice", type=int, default=-10)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--keep-work", action="store_true")
    if tree:
        p.add_argument("--tree", default=None,
                       help="run the hub of this git ref (unpacked, see bench.micro --trees)")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """How this benchmark was started, for the results file."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module, *args])
