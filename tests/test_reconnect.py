"""The hub process dies mid-call and comes back: the client reconnects, no status event is lost
or duplicated, and the audio from the outage shows as a gap rather than arriving late."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from conftest import free_port

from agent_client.connection import HubConnection
from server.ingest_protocol import encode_audio
from server.store import Store

pytestmark = pytest.mark.slow


async def start_hub_process(data_dir: Path, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "FLOORWATCH_SERVER__PORT": str(port),
           "FLOORWATCH_SERVER__DATA_DIR": str(data_dir)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server.cli", "serve",
                                                env=env, stderr=asyncio.subprocess.DEVNULL)
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "restart"])
async def test_hub_restart_mid_call_loses_and_duplicates_nothing(tmp_path, how):
    data_dir, port = tmp_path / "data", free_port()
    store = Store(data_dir / "floorwatch.db")
    token = store.add_agent("a1", "Ann", "default")
    store.close()
    hub = await start_hub_process(data_dir, port)
    conn = HubConnection(f"ws://127.0.0.1:{port}/ingest/v1", "a1", token, max_backoff_s=0.5)
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
                hub.send_signal(how)
                await hub.wait()
            if i == 70:
                hub = await start_hub_process(data_dir, port)
            await asyncio.sleep(0.025)
        await status("wrap_up")
        await status("logged_out")
        assert await conn.drain(timeout=15), f"{conn.pending} events never acknowledged"
    finally:
        await conn.close()
        hub.send_signal(signal.SIGTERM)
        await hub.wait()

    assert conn.connects == 2
    assert conn.audio_dropped > 0  # the outage's audio was dropped, not replayed late
    db = sqlite3.connect(data_dir / "floorwatch.db")
    rows = db.execute("SELECT seq, state FROM status_events WHERE agent_id='a1' "
                      "ORDER BY seq").fetchall()
    assert [seq for seq, _ in rows] == list(range(1, len(sent_states) + 1))
    assert [state for _, state in rows] == sent_states
