"""The servers under test, each in its own process pinned to the hub core.

* the **hub**: `python -m server.cli serve` with settings from `FLOORWATCH_*` environment
  variables and a fresh data directory, provisioned beforehand through `server.store.Store`
  (agents with their tokens, one supervisor);
* the **baseline**: `python -m bench.baseline`, the raw aiohttp + webrtcvad server.

Both run on uvloop and are stopped with SIGTERM (then SIGKILL after a bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from bench.common import (
    REPO,
    cores,
    cpu_seconds,
    parse_metrics,
    pct,
    python_env,
    rss_bytes,
    taskset,
)
from server.store import Store

SUPERVISOR = ("bench-sup", "bench-password-1")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provision(data_dir: Path, agents: int) -> dict[str, str]:
    """Create `agents` agent accounts (a-00001 …) and the bench supervisor; return the tokens."""
    store = Store(data_dir / "floorwatch.db")
    try:
        store.add_user(*SUPERVISOR, role="supervisor")
        return {f"a-{i:05d}": store.add_agent(f"a-{i:05d}", f"Agent {i}", "default")
                for i in range(1, agents + 1)}
    finally:
        store.close()


@dataclass
class ServerProcess:
    """A server started on the hub core; `url` is http://127.0.0.1:PORT."""

    kind: str  # "hub" or "baseline"
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    cpus: list[int] | None = None  # where it runs; None: the hub core (`cores()[0]`)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ingest/v1"

    @property
    def gc_log(self) -> Path | None:
        path = self.env.get("FLOORWATCH_BENCH_GC_LOG")
        return Path(path) if path else None

    def gc_pauses(self, window: tuple[float, float]) -> dict[str, Any] | None:
        """Garbage-collector pauses inside the window, from the server's GC log."""
        log = self.gc_log
        if log is None or not log.exists():
            return None
        young_ms = 0.0
        old: dict[int, list[float]] = {0: [], 1: [], 2: []}  # gen 0: those over 5 ms
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "gen" not in rec or not window[0] <= rec["t"] <= window[1]:
                continue  # a census line (FLOORWATCH_BENCH_GC_CENSUS_AT_S) or outside
            if "count" in rec:
                young_ms += rec["ms"]
            else:
                old.setdefault(rec["gen"], []).append(rec["ms"])
        span = window[1] - window[0]
        total = young_ms + sum(sum(v) for v in old.values())
        return {"gen2": pct(old[2]), "gen1": pct(old[1]), "gen0": pct(old[0]),
                "share_of_time": round(total / 1000 / span, 4) if span > 0 else None}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 20.0) -> None:
        cpus = self.cpus if self.cpus is not None else cores()[0]
        self.proc = await _spawn(taskset(self.argv, cpus), self.log_path,
                                 {**python_env(), **self.env}, self.log_path.parent)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see "
                                       f"{self.log_path}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"{self.kind} did not answer /healthz in {timeout:g} s")

    async def stop(self, timeout: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        await wait_exit([proc], time.monotonic() + timeout)
        return proc.returncode

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        async with http.get(f"{self.url}/metrics") as r:
            return parse_metrics(await r.text())

    async def login(self) -> str:
        """Sign the bench supervisor in once; returns the session cookie's value."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(f"{self.url}/login", json={
                    "username": SUPERVISOR[0], "password": SUPERVISOR[1]}) as r:
                if r.status != 200:
                    raise RuntimeError(f"login failed: {r.status} {await r.text()}")
                return r.cookies["fw_session"].value


GC_PROBE_DIR = Path(__file__).resolve().parent / "gcprobe"


def gc_env(log: Path | None) -> dict[str, str]:
    """Environment that makes a Python server log its garbage-collector pauses to `log`
    (`bench/gcprobe/sitecustomize.py`)."""
    if log is None:
        return {}
    return {"PYTHONPATH": os.pathsep.join([str(GC_PROBE_DIR), python_env()["PYTHONPATH"]]),
            "FLOORWATCH_BENCH_GC_LOG": str(log)}


def hub_process(workdir: Path, *, settings: dict[str, Any] | None = None,
                port: int | None = None, gc_log: bool = True,
                root: Path | None = None) -> ServerProcess:
    """The real hub, configured through FLOORWATCH_<SECTION>__<KEY> variables; its code from
    `root` (an unpacked earlier version, `bench.common.unpack_tree`) or this checkout.

    Keyword spotting in call audio is off unless `settings` turns it on (`kws.enabled`): its
    worker processes would share the hub's core, and bench.kws_capacity measures it apart."""
    code = root or REPO
    if "class KwsSettings" in (code / "server" / "config.py").read_text():
        settings = {"kws.enabled": False, **(settings or {})}
    port = port or free_port()
    env = {"FLOORWATCH_SERVER__PORT": str(port),
           "FLOORWATCH_SERVER__DATA_DIR": str(workdir / "data"),
           **gc_env(workdir / "hub-gc.jsonl" if gc_log else None)}
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(GC_PROBE_DIR)] * gc_log + [str(root)])
    for key, value in (settings or {}).items():
        section, name = key.split(".", 1)
        env[f"FLOORWATCH_{section.upper()}__{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value))
    return ServerProcess("hub", [sys.executable, "-m", "server.cli", "serve"], port,
                         workdir / "hub.log", env)


def baseline_process(workdir: Path, port: int | None = None,
                     gc_log: bool = True) -> ServerProcess:
    port = port or free_port()
    return ServerProcess("baseline", [sys.executable, "-m", "bench.baseline", "--port",
                                      str(port)], port, workdir / "baseline.log",
                         gc_env(workdir / "baseline-gc.jsonl" if gc_log else None))




async def wait_exit(procs: list[asyncio.subprocess.Process], deadline: float) -> None:
    """Wait for processes to finish; kill those still running at the deadline."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await asyncio.gather(*(p.wait() for p in procs))
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def spawn_client(module: str, spec_path: Path, log_path: Path,
                       cpus: Sequence[int] | None = None) -> asyncio.subprocess.Process:
    """A client process (load generator or walls) on the client cores (or on `cpus`)."""
    where = cores()[1] if cpus is None else cpus
    return await _spawn(taskset([sys.executable, "-m", module, str(spec_path)], where),
                        log_path, python_env(), spec_path.parent)


def _open_log(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


async def _spawn(argv: list[str], log_path: Path, env: dict[str, str],
                 cwd: Path) -> asyncio.subprocess.Process:
    log = _open_log(log_path)
    try:
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=os.fspath(cwd),
            stdin=asyncio.subprocess.DEVNULL)
    finally:
        log.close()
