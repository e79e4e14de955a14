"""A network cut between agent and hub (no FIN, no RST: packets just stop) in the middle of a call.

A TCP relay on 127.0.0.1 sits between the client and the hub. "Cutting" it stops moving bytes in
both directions and refuses new connections; "mending" it drops the dead connections and lets new
ones through. The client must notice by its keepalive, drop the outage's audio (a gap, not a late
burst), reconnect, and deliver every status event exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from conftest import free_port

from agent_client.connection import HubConnection
from server.ingest_protocol import encode_audio

pytestmark = pytest.mark.slow


class Relay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut = False
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                while self.cut:  # the cable is out: bytes go nowhere, nobody is told
                    await asyncio.sleep(0.05)
                dst.write(data)
                await dst.drain()
        dst.close()

    def mend(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self.cut = False

    async def close(self) -> None:
        self.mend()
        for task in list(self._pipes):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_network_cut_mid_call(running_hub):
    hub_port = int(running_hub.url.rsplit(":", 1)[1])
    relay = Relay(hub_port)
    await relay.start()
    conn = HubConnection(f"ws://127.0.0.1:{relay.port}/ingest/v1", "a1",
                         running_hub.tokens["a1"], ping_interval_s=0.5, max_backoff_s=0.5)
    conn.start()
    states: list[str] = []

    async def status(state: str, **extra) -> None:
        states.append(state)
        await conn.send_status(state, **extra)

    chunk = np.random.default_rng(2).normal(0, 40, (800, 2)).astype(np.int16)
    try:
        await conn.wait_connected(timeout=5)
        await status("on_call", call={"id": "c-cut", "direction": "inbound", "customer": "",
                                      "sample_rate": 8000})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(80):  # 8 s of audio in real time
            await asyncio.sleep(max(0.0, t0 + i * 0.1 - loop.time()))
            await conn.send_audio(encode_audio(i, i * 800, chunk))
            if i % 10 == 0:
                await status("hold" if (i // 10) % 2 else "on_call")
            if i == 20:
                relay.cut = True
            if i == 50:
                relay.mend()
        await status("wrap_up")
        assert await conn.drain(timeout=10), f"{conn.pending} events never acknowledged"
    finally:
        await conn.close()
        await relay.close()
    assert conn.connects >= 2
    assert 10 <= conn.audio_dropped < 80  # the outage's audio, dropped and counted
    history = running_hub.hub.store.status_history("a1", since=0)
    assert [h["state"] for h in history] == states  # each exactly once, in order
