"""Per-team thresholds and time-in-state alerts, through the real hub."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import start_hub

from agent_client.connection import HubConnection
from server.ingest_protocol import encode_audio


async def connect(hub, agent_id: str) -> HubConnection:
    conn = HubConnection(hub.ws_url, agent_id, hub.tokens[agent_id])
    conn.start()
    await conn.wait_connected(timeout=5)
    return conn


async def silent_call(conn: HubConnection, call_id: str, seconds: float) -> None:
    await conn.send_status("on_call", call={"id": call_id, "direction": "inbound",
                                            "customer": "", "sample_rate": 8000})
    silence = np.zeros((800, 2), np.int16)
    for i in range(round(seconds * 10)):
        await conn.send_audio(encode_audio(i, i * 800, silence))
    await conn.send_status("wrap_up")
    assert await conn.drain(timeout=5)


async def test_each_team_uses_its_own_dead_air_threshold(aiohttp_server, tmp_path):
    hub = await start_hub(aiohttp_server, tmp_path,
                          teams={"Collections": {"dead_air_s": 3.0, "severity_silence": "high"}})
    hub.add_agent("col-1", team="Collections")
    hub.add_agent("sal-1", team="Sales")
    strict, relaxed = await connect(hub, "col-1"), await connect(hub, "sal-1")
    await asyncio.gather(silent_call(strict, "c-col", 4.0), silent_call(relaxed, "c-sal", 4.0))
    (alert,) = await hub.alerts(call_id="c-col")
    assert (alert["kind"], alert["severity"], alert["offset_s"]) == ("silence", "high", 0.0)
    assert alert["duration_s"] == pytest.approx(4.0)  # completed when the call ended
    assert await hub.alerts(call_id="c-sal") == []
    await strict.close()
    await relaxed.close()


async def test_a_long_break_raises_a_state_alert_completed_when_it_ends(aiohttp_server,
                                                                      tmp_path, wall_factory):
    hub = await start_hub(aiohttp_server, tmp_path,
                          analysis={"state_limits_s": {"break": 1.0}})
    wall = await wall_factory(hub.url)
    conn = await connect(hub, "a1")
    await conn.send_status("break", reason="coffee")
    await wall.wait_for(lambda w: any(a["kind"] == "state" for a in w.alerts.values()),
                        timeout=5)
    (alert,) = wall.alerts.values()
    assert alert["detail"] == {"state": "break", "threshold_s": 1.0}
    assert alert["call_id"] is None and alert["offset_s"] is None
    assert alert["duration_s"] is None
    await conn.send_status("ready")
    await wall.wait_for(lambda w: w.alerts[alert["id"]]["duration_s"] is not None)
    assert wall.alerts[alert["id"]]["duration_s"] >= 1.0
    await conn.close()
