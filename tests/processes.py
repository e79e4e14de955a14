"""Real server processes for the tests that kill and restart them: a Redis of the test's own and
hub processes (`floorwatch serve`), each on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import aiohttp
from conftest import free_port


class RedisServer:
    """redis-server keeping nothing on disk, so a restart comes back empty."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                              capture_output=True, text=True).stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class HubProcess:
    """`floorwatch serve` in a process of its own (with Redis when given a URL)."""

    def __init__(self, name: str, root: Path, redis_url: str | None = None,
                 port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.env = env or {}
        self.data_dir = root / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.redis_url = redis_url
        self.proc: asyncio.subprocess.Process | None = None
        self.log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ingest/v1"

    def _redis_args(self) -> list[str]:
        return ["--redis", self.redis_url] if self.redis_url else []

    def admin(self, *args: str, stdin: str = "") -> str:
        """Run an admin command (`add-agent …`) against this hub's store."""
        result = subprocess.run(
            [sys.executable, "-m", "server.cli", "--data-dir", str(self.data_dir),
             *self._redis_args(), *args], input=stdin, capture_output=True, text=True,
            timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    async def start(self) -> None:
        env = {**os.environ, "FLOORWATCH_SERVER__HOST": "127.0.0.1",
               "FLOORWATCH_SERVER__DATA_DIR": str(self.data_dir),
               "FLOORWATCH_SERVER__PORT": str(self.port), "FLOORWATCH_REDIS__HUB_ID": self.name,
               "FLOORWATCH_WALLS__PATCH_INTERVAL_MS": "100", **self.env}
        self.log = (self.data_dir.parent / f"{self.name}.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", *self._redis_args(), env=env,
            stderr=self.log)
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)

    async def health(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as r:
            return (await r.json())["status"]

    async def metric(self, name: str) -> float:
        """One figure of /metrics (`name` with its labels, if any)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/metrics") as r:
            text = await r.text()
        match = re.search(rf"^floorwatch_{re.escape(name)} (\S+)$", text, re.M)
        assert match, text
        return float(match.group(1))

    async def agents_connected(self) -> int:
        return int(await self.metric("agents_connected"))

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def status_rows(self, agent_id: str) -> list[tuple[int, str]]:
        db = sqlite3.connect(self.data_dir / "floorwatch.db")
        try:
            return db.execute("SELECT seq, state FROM status_events WHERE agent_id=? "
                              "ORDER BY seq", (agent_id,)).fetchall()
        finally:
            db.close()
