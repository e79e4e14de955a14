"""Several hub processes share one floor through a real Redis (started by the test, so it can
be killed and restarted): agents on hub A, a wall on hub B; hub A dies mid-call; Redis restarts.

Nothing accepted is lost or duplicated: every status event is stored once on the surviving hub,
every alert reaches the wall and the API of every hub, including alerts raised while Redis was
away.
"""

from __future__ import annotations

import asyncio
import shutil
import signal

import numpy as np
import pytest
from conftest import SUPERVISOR, WallClient, need
from processes import HubProcess, RedisServer

from agent_client.connection import HubConnection
from server.ingest_protocol import encode_audio

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture
async def floor(tmp_path):
    need(shutil.which("redis-server") is not None, "redis-server not installed")
    redis = RedisServer(tmp_path)
    redis.start()
    hubs = {name: HubProcess(name, tmp_path, redis.url) for name in ("A", "B", "C")}
    a = hubs["A"]
    a.admin("add-supervisor", SUPERVISOR[0], "--password-stdin", stdin=SUPERVISOR[1] + "\n")
    tokens = {agent: a.admin("add-agent", agent, "--team", "Sales").splitlines()[-1]
              for agent in ("a1", "a2", "a3")}
    yield redis, hubs, tokens
    for hub in hubs.values():
        await hub.stop(signal.SIGKILL)
    redis.stop()


async def test_hub_failover_and_redis_restart_lose_nothing(floor):
    redis, hubs, tokens = floor
    hub_a, hub_b, hub_c = hubs["A"], hubs["B"], hubs["C"]
    await hub_a.start()
    await hub_b.start()  # B has never seen an account: it learns them through Redis
    wall = WallClient(hub_b.url)
    conn = HubConnection([f"ws://127.0.0.1:{h.port}/ingest/v1" for h in (hub_a, hub_b)],
                         "a1", tokens["a1"], max_backoff_s=0.3)
    sent: list[str] = []

    async def status(state: str, **extra) -> None:
        sent.append(state)
        await conn.send_status(state, **extra)

    try:
        await wall.login()
        await wall.connect()
        conn.start()
        await conn.wait_connected(timeout=10)
        assert conn.url.endswith(f":{hub_a.port}/ingest/v1")
        # a desktop that knows only hub A: when A dies it cannot move
        stranded = HubConnection(f"ws://127.0.0.1:{hub_a.port}/ingest/v1", "a3", tokens["a3"])
        stranded.start()
        await stranded.wait_connected(timeout=10)
        await stranded.send_status("ready")
        await status("logged_in")
        await status("on_call", call={"id": "c-fail", "direction": "inbound", "customer": "",
                                      "sample_rate": 8000})
        await conn.send_transcript("c-fail", 1.0, "agent", "this plan has guaranteed returns")
        sent.append("transcript")
        # the wall on hub B sees hub A's agent and alert
        await wall.wait_for(lambda w: w.tiles.get("a1", {}).get("state") == "on_call")
        await wall.wait_for(lambda w: any(a["kind"] == "keyword" for a in w.alerts.values()))
        assert wall.tiles["a1"]["hub"] == "A"

        silence = np.zeros((800, 2), np.int16)
        for i in range(60):  # 6 s of silent call audio: a dead-air alert, hub A dies meanwhile
            await conn.send_audio(encode_audio(i, i * 800, silence))
            if i % 10 == 3:
                await status("hold" if i % 20 == 3 else "on_call")
            if i == 25:
                await hub_a.stop(signal.SIGKILL)
            await asyncio.sleep(0.05)
        await conn.wait_connected(timeout=10)
        assert conn.url.endswith(f":{hub_b.port}/ingest/v1")
        # hub A stopped beating: its stranded agent is shown disconnected, tile kept
        await wall.wait_for(lambda w: w.tiles["a3"]["connected"] is False, timeout=10)
        assert wall.tiles["a3"]["state"] == "ready"
        await stranded.close()
        await status("wrap_up")
        assert await conn.drain(timeout=10)
        await wall.wait_for(lambda w: w.tiles["a1"]["state"] == "wrap_up"
                            and w.tiles["a1"]["connected"] and w.tiles["a1"]["hub"] == "B")

        # Redis goes away: hub B serves alone, and an alert raised meanwhile is not lost
        redis.stop()
        async with asyncio.timeout(10):
            while await hub_b.health() != "degraded":
                await asyncio.sleep(0.1)
        second = HubConnection(f"ws://127.0.0.1:{hub_b.port}/ingest/v1", "a2", tokens["a2"])
        second.start()
        await second.wait_connected(timeout=10)
        await second.send_status("on_call", call={"id": "c-alone", "direction": "outbound",
                                                  "customer": "", "sample_rate": 8000})
        await second.send_transcript("c-alone", 2.0, "agent", "you are an idiot")
        assert await second.drain(timeout=5)
        await wall.wait_for(lambda w: any(a["call_id"] == "c-alone" for a in w.alerts.values()))
        redis.start()  # empty: it kept nothing
        async with asyncio.timeout(15):
            while await hub_b.health() != "ok":
                await asyncio.sleep(0.1)
        # a hub started now learns the whole floor, both alerts included, from Redis alone
        await hub_c.start()
        late = WallClient(hub_c.url)
        try:
            await late.login()
            await late.connect()
            await late.wait_for(lambda w: {a["call_id"] for a in w.alerts.values()}
                                >= {"c-fail", "c-alone"}, timeout=10)
            await late.wait_for(lambda w: {"a1", "a2"} <= set(w.tiles))
        finally:
            await late.close()
        await second.close()
    finally:
        await conn.close()
        await wall.close()

    # every status event of a1 is on hub B exactly once, in order
    await hub_b.stop()
    rows = hub_b.status_rows("a1")
    assert [seq for seq, _ in rows] == list(range(1, len(sent) + 1))
    assert [state for _, state in rows] == sent
