"""Wall fan-out: snapshot then patches, acknowledgements, and a stalled wall that delays no one."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import pytest
from conftest import SUPERVISOR, start_hub

from agent_client.connection import HubConnection

CALL = {"id": "c-1", "direction": "inbound", "customer": "", "sample_rate": 8000}


async def agent(running_hub, agent_id: str) -> HubConnection:
    conn = HubConnection(running_hub.ws_url, agent_id, running_hub.tokens[agent_id])
    conn.start()
    await conn.wait_connected(timeout=5)
    return conn


async def test_snapshot_patches_and_logout(running_hub, wall_factory):
    wall = await wall_factory(running_hub.url)
    assert wall.tiles == {}
    conn = await agent(running_hub, "a1")
    await conn.send_status("logged_in", name="Ann Lee")
    await conn.send_status("break", reason="lunch")
    await wall.wait_for(lambda w: w.tiles.get("a1", {}).get("state") == "break")
    tile = wall.tiles["a1"]
    assert (tile["name"], tile["reason"], tile["connected"]) == ("Ann Lee", "lunch", True)
    # a second wall opened now gets the same tile in its snapshot
    late = await wall_factory(running_hub.url)
    assert late.tiles["a1"]["state"] == "break"
    await conn.send_status("logged_out")
    await wall.wait_for(lambda w: "a1" not in w.tiles)
    await conn.close()


async def test_acknowledging_on_one_wall_clears_the_alert_on_another(running_hub, wall_factory):
    first, second = await wall_factory(running_hub.url), await wall_factory(running_hub.url)
    conn = await agent(running_hub, "a1")
    await conn.send_status("on_call", call=CALL)
    await conn.send_transcript("c-1", 3.5, "agent", "there is no risk at all, trust me")
    await second.wait_for(lambda w: len(w.alerts) == 1)
    (alert,) = second.alerts.values()
    assert alert["kind"] == "keyword" and alert["offset_s"] == 3.5
    await second.wait_for(lambda w: w.tiles.get("a1", {}).get("severity") == "high")
    async with first.http.post(f"{running_hub.url}/api/alerts/{alert['id']}/ack",
                               headers={"Origin": running_hub.url}) as r:
        assert r.status == 200
        assert (await r.json())["acked_by"] == SUPERVISOR[0]
    await second.wait_for(lambda w: w.alerts[alert["id"]]["acked_by"] == SUPERVISOR[0])
    await second.wait_for(lambda w: w.tiles["a1"]["alert"] is None)
    assert second.tiles["a1"]["severity"] is None
    await conn.close()


async def stalled_wall(base_url: str, cookie: str) -> asyncio.StreamWriter:
    """A wall whose page froze: it completes the WebSocket handshake, then never reads."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws/wall HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nOrigin: {base_url}\r\n"
                  f"Cookie: fw_session={cookie}\r\n\r\n").encode())
    status = await reader.readline()
    assert b" 101 " in status, status
    return writer  # and from here on nobody reads `reader`


@pytest.mark.slow
async def test_a_stalled_wall_does_not_delay_alerts_to_another(aiohttp_server, tmp_path,
                                                               wall_factory):
    hub = await start_hub(aiohttp_server, tmp_path, walls={"queue_size": 8})
    agent_ids = [f"x{i}" for i in range(30)]
    for agent_id in agent_ids:
        hub.add_agent(agent_id)
    healthy = await wall_factory(hub.url)
    cookie = next(c.value for c in healthy.http.cookie_jar if c.key == "fw_session")
    frozen = await stalled_wall(hub.url, cookie)
    await healthy.wait_for(lambda w: len(hub.hub.walls.walls) == 2)
    for wall in hub.hub.walls.walls:  # small buffers, so the stall shows within seconds
        if wall.transport is not None:
            wall.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            wall.transport.set_write_buffer_limits(high=4096)
    agents = [await agent(hub, a) for a in agent_ids]
    speaker = await agent(hub, "a1")
    await speaker.send_status("on_call", call=CALL)

    stop = asyncio.Event()

    async def churn(conn: HubConnection) -> None:  # states flip 20 times a second per agent
        for i in range(400):  # bounded: 20 s at most
            if stop.is_set():
                return
            await conn.send_status("break" if i % 2 else "ready", reason=f"r{i:03d}" * 16)
            await asyncio.sleep(0.05)

    traffic = [asyncio.create_task(churn(c)) for c in agents]
    (frozen_wall,) = [w for w in hub.hub.walls.walls if w.id != min(
        x.id for x in hub.hub.walls.walls)]
    # wait until the frozen wall is visibly behind: its queue holds undelivered messages
    await healthy.wait_for(lambda w: frozen_wall.queue.qsize() >= 3, timeout=20)
    said = time.monotonic()
    await speaker.send_transcript("c-1", 12.0, "agent", "you are an idiot")
    await healthy.wait_for(lambda w: any(a["kind"] == "keyword" for a in w.alerts.values()),
                           timeout=5)
    delivered_after = time.monotonic() - said
    await healthy.wait_for(lambda w: hub.hub.walls.dropped == 1, timeout=20)
    stop.set()
    await asyncio.gather(*traffic)
    frozen.close()
    # the healthy wall stayed connected and current through all of it
    assert healthy.close_code is None and hub.hub.walls.walls == {
        w for w in hub.hub.walls.walls if w is not frozen_wall}
    await healthy.wait_for(lambda w: all(
        w.tiles[a]["state"] == hub.hub.floor.tiles[a]["state"] for a in agent_ids))
    print(f"alert reached the healthy wall {delivered_after * 1000:.0f} ms after it was said")
    for conn in [*agents, speaker]:
        await conn.close()


async def test_agent_drawer_shows_the_call_with_a_masked_transcript(running_hub, wall_factory):
    import numpy as np

    from server.ingest_protocol import encode_audio

    wall = await wall_factory(running_hub.url)
    conn = await agent(running_hub, "a1")
    await conn.send_status("on_call", call={**CALL, "customer": "13812345678"})
    speech = np.zeros((800, 2), np.int16)
    for i in range(30):  # 3 s; the agent "speaks" (a loud tone) from 1.0 to 2.0 s
        tone = (8000 * np.sin(np.arange(800) * 0.3)).astype(np.int16) if 10 <= i < 20 else 0
        speech[:, 0] = tone
        await conn.send_audio(encode_audio(i, i * 800, speech))
    await conn.send_transcript("c-1", 1.2, "customer", "my card is 4111 1111 1111 1111")
    await conn.send_transcript("c-1", 1.5, "agent", "great, and the verification code?")
    assert await conn.drain(timeout=5)
    async with wall.http.get(f"{running_hub.url}/api/agents/a1/call") as r:
        view = (await r.json())["call"]
    assert view["call_id"] == "c-1" and view["customer"] == "138****5678"
    assert [line["text"] for line in view["transcript"]] == [
        "my card is **** **** **** 1111", "great, and the verification code?"]
    assert view["transcript"][1]["matches"] == ["verification code"]
    assert [a["kind"] for a in view["alerts"]] == ["keyword"]
    assert view["position_s"] == 3.0
    assert "4111 1111" not in json.dumps(wall.alerts) + json.dumps(wall.tiles)
    await conn.close()
