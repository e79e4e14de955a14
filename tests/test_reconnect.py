"""The hub process dies mid-call and comes back: the client reconnects, no status event is lost
or duplicated, and the audio from the outage shows as a gap rather than arriving late."""

from __future__ import annotations

import asyncio
import signal

import numpy as np
import pytest
from processes import HubProcess

from agent_client.connection import HubConnection
from server.ingest_protocol import encode_audio

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "restart"])
async def test_hub_restart_mid_call_loses_and_duplicates_nothing(tmp_path, how):
    hub = HubProcess("hub", tmp_path)
    token = hub.admin("add-agent", "a1").splitlines()[-1]
    await hub.start()
    conn = HubConnection(hub.ws_url, "a1", token, max_backoff_s=0.5)
    conn.start()
    sent_states: list[str] = []

    async def status(state: str, **extra) -> None:
        sent_states.append(state)
        await conn.send_status(state, **extra)

    try:
        await conn.wait_connected(timeout=10)
        await status("logged_in")
        await status("ready")
        await status("on_call", call={"id": "c1", "direction": "inbound", "customer": "",
                                      "sample_rate": 8000})
        chunk = (np.random.default_rng(1).normal(0, 30, (800, 2))).astype(np.int16)
        for i in range(120):  # 12 s of call audio, paced at ~4x real time
            await conn.send_audio(encode_audio(i, i * 800, chunk))
            if i % 10 == 5:  # a status change every second of audio, outage or not
                await status("hold" if (i // 10) % 2 == 0 else "on_call")
            if i == 40:
                await hub.stop(how)
            if i == 70:
                await hub.start()  # the same port and data directory
            await asyncio.sleep(0.025)
        await status("wrap_up")
        await status("logged_out")
        assert await conn.drain(timeout=15), f"{conn.pending} events never acknowledged"
    finally:
        await conn.close()
        await hub.stop()

    assert conn.connects == 2
    assert conn.audio_dropped > 0  # the outage's audio was dropped, not replayed late
    rows = hub.status_rows("a1")
    assert [seq for seq, _ in rows] == list(range(1, len(sent_states) + 1))
    assert [state for _, state in rows] == sent_states
