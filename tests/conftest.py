"""Shared fixtures: a real hub on a loopback port, accounts in its store, wall and API clients."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/callgen.py

from server.app import create_app
from server.config import Settings, load_settings
from server.hub import HUB, Hub

IN_CI = os.environ.get("CI", "").lower() == "true"
SUPERVISOR = ("sup", "correct-horse")


def need(condition: bool, reason: str) -> None:
    """Skip on a developer laptop without the tool; fail in CI, where .ci/run installs it."""
    if not condition:
        if IN_CI:
            pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
        pytest.skip(reason)


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    need(not missing, f"missing tools: {', '.join(missing)} (apt-get install {' '.join(missing)})")


async def until_stable(fetch, *, quiet_s: float, timeout_s: float, poll_s: float = 0.25):
    """Poll `await fetch()` until its result has not changed for `quiet_s`; return it (alerts
    still arriving through a recognizer or the Redis stream settle this way)."""
    loop = asyncio.get_running_loop()
    last, since = None, loop.time()
    async with asyncio.timeout(timeout_s):
        while True:
            now = await fetch()
            if now != last:
                last, since = now, loop.time()
            elif loop.time() - since > quiet_s:
                return now
            await asyncio.sleep(poll_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_settings(data_dir: Path, **sections: dict[str, Any]) -> Settings:
    server = {"data_dir": str(data_dir), **sections.pop("server", {})}
    walls = {"patch_interval_ms": 100, **sections.pop("walls", {})}
    return load_settings(None, {}, server=server, walls=walls, **sections)


@dataclass
class RunningHub:
    url: str
    hub: Hub
    tokens: dict[str, str] = field(default_factory=dict)
    api_token: str = ""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ingest/v1"

    def add_agent(self, agent_id: str, team: str = "default", name: str | None = None) -> str:
        token = self.hub.store.add_agent(agent_id, name or agent_id.upper(), team)
        self.tokens[agent_id] = token
        return token

    async def alerts(self, **query: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(headers=self.api_headers) as http:
            async with http.get(f"{self.url}/api/alerts", params=query) as r:
                assert r.status == 200, await r.text()
                return (await r.json())["alerts"]

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}


REDIS_URL = os.environ.get("FLOORWATCH_TEST_REDIS", "redis://127.0.0.1:6379/15")


def redis_available() -> bool:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError):
        return False
    return True


@pytest.fixture
def redis_prefix():
    """A key prefix of our own on the test Redis (db 15), deleted afterwards."""
    import uuid

    import redis

    need(redis_available(), f"no Redis at {REDIS_URL} (set FLOORWATCH_TEST_REDIS)")
    prefix = f"fwtest:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(params=["local", "redis"])
async def running_hub(request, aiohttp_server, tmp_path) -> RunningHub:
    """A hub on the embedded bus, and the same hub on the Redis bus: the suite runs on both."""
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        return await start_hub(aiohttp_server, tmp_path,
                               redis={"url": REDIS_URL, "key_prefix": prefix})
    return await start_hub(aiohttp_server, tmp_path)


async def start_hub(aiohttp_server, tmp_path: Path, **sections: dict[str, Any]) -> RunningHub:
    app = create_app(hub_settings(tmp_path / "data", **sections))
    server = await aiohttp_server(app, host="127.0.0.1")
    hub: Hub = app[HUB]
    hub.store.add_user(*SUPERVISOR, role="supervisor")
    running = RunningHub(str(server.make_url("")).rstrip("/"), hub)
    running.api_token = hub.store.add_api_token("tests")
    for i in range(1, 4):
        running.add_agent(f"a{i}")
    return running


class WallClient:
    """A wall as a browser runs it: signed-in session, same-origin WebSocket, JSON messages."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tiles: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None

    async def login(self, username: str = SUPERVISOR[0], password: str = SUPERVISOR[1]) -> None:
        async with self.http.post(f"{self.base_url}/login",
                                  json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()

    async def connect(self) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(f"{self.base_url}/ws/wall",
                                             origin=self.base_url)
        snapshot = json.loads((await self.ws.receive(timeout=5)).data)
        assert snapshot["type"] == "snapshot"
        self._apply(snapshot)
        self._reader = asyncio.create_task(self._read(), name="test-wall-reader")
        return snapshot

    def _apply(self, message: dict[str, Any]) -> None:
        if message["type"] == "snapshot":
            self.tiles = {t["agent_id"]: t for t in message["tiles"]}
            self.alerts = {a["id"]: a for a in message["alerts"]}
        elif message["type"] == "tiles":
            for patch in message["patches"]:
                self.tiles.setdefault(patch["agent_id"], {}).update(patch)
            for agent_id in message.get("removed", []):
                self.tiles.pop(agent_id, None)
        elif message["type"] == "alert":
            self.alerts[message["alert"]["id"]] = message["alert"]

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
                self._apply(message)
                self.messages.put_nowait(message)
        self.close_code = self.ws.close_code

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        await self.http.close()


@pytest.fixture
async def wall_factory() -> AsyncIterator:
    walls: list[WallClient] = []

    async def make(base_url: str, *, connect: bool = True) -> WallClient:
        wall = WallClient(base_url)
        walls.append(wall)
        await wall.login()
        if connect:
            await wall.connect()
        return wall

    yield make
    for wall in walls:
        await wall.close()


@pytest.fixture(scope="session")
def calls_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("calls")
