"""The ingest socket takes audio frames and reliable messages as aiohttp parses them
(server/ingest.py `_AudioQueue`): in arrival order, behind anything already queued, with an
error kept with the message that caused it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiohttp import WSMessage, WSMsgType
from aiohttp.base_protocol import BaseProtocol
from test_bad_input import raw_agent, status

from server import ingest
from server.ingest_protocol import encode_audio

pytestmark = pytest.mark.skipif(ingest._AudioQueue is None,
                                reason="this aiohttp has no WebSocketDataQueue to extend")


def message(kind: WSMsgType, data: object) -> WSMessage:
    return WSMessage(kind, data, None)


@pytest.fixture
async def queue():
    loop = asyncio.get_running_loop()
    taken: list[tuple[str, object]] = []
    q = ingest._AudioQueue(BaseProtocol(loop), 2**16, loop=loop)
    q.audio = lambda data: taken.append(("audio", data))
    q.text = lambda data: taken.append(("text", data))
    q.taken = taken
    return q


async def test_messages_are_taken_in_order_until_one_must_wait(queue):
    queue.feed_data(message(WSMsgType.BINARY, b"a1"), 2)
    queue.feed_data(message(WSMsgType.TEXT, "t1"), 2)
    queue.feed_data(message(WSMsgType.PING, b""), 0)  # not ours: queued for receive()
    queue.feed_data(message(WSMsgType.BINARY, b"a2"), 2)  # behind the ping: queued too
    queue.feed_data(message(WSMsgType.TEXT, "t2"), 2)
    assert queue.taken == [("audio", b"a1"), ("text", "t1")]
    read = [await queue.read() for _ in range(3)]
    assert [(m.type, m.data) for m in read] == [
        (WSMsgType.PING, b""), (WSMsgType.BINARY, b"a2"), (WSMsgType.TEXT, "t2")]
    queue.feed_data(message(WSMsgType.TEXT, "t3"), 2)  # the queue is empty again
    assert queue.taken[-1] == ("text", "t3")


async def test_an_error_stays_with_its_message_and_stops_taking(queue):
    def refuse(data: str) -> None:
        raise ValueError(f"bad {data}")

    queue.text = refuse
    queue.feed_data(message(WSMsgType.BINARY, b"a1"), 2)
    queue.feed_data(message(WSMsgType.TEXT, "t1"), 2)
    queue.feed_data(message(WSMsgType.BINARY, b"a2"), 2)
    assert queue.taken == [("audio", b"a1")]
    assert isinstance(queue.failed, ValueError) and str(queue.failed) == "bad t1"
    assert queue.audio is None and queue.text is None
    first, second = await queue.read(), await queue.read()
    assert (first.data, second.data) == ("t1", b"a2")  # the failed one is the next read


async def test_status_and_audio_are_applied_in_the_order_they_were_sent(running_hub):
    """Three calls in one burst: on_call, 10 chunks, wrap_up, each. Had a status message been
    applied before the frames sent ahead of it, those frames would fall outside a call and the
    hub would refuse the connection (1007); each ack comes once its message is stored."""
    http, ws = await raw_agent(running_hub)
    try:
        pcm = np.zeros((800, 2), np.int16)  # 100 ms at 8 kHz
        before = running_hub.hub.metrics.audio_s
        seq = 0
        for call in range(3):
            seq += 1
            on_call = {"call": {"id": f"c-{call}", "direction": "inbound", "customer": "",
                                "sample_rate": 8000}}
            await ws.send_str(status(seq, "on_call", **on_call))
            for i in range(10):
                await ws.send_bytes(encode_audio(i, i * 800, pcm))
            seq += 1
            await ws.send_str(status(seq, "wrap_up"))
        acks = [await ws.receive_json(timeout=5) for _ in range(seq)]
        assert acks == [{"type": "ack", "seq": n} for n in range(1, seq + 1)]
        assert running_hub.hub.metrics.audio_s - before == pytest.approx(3.0)
        assert running_hub.hub.store.last_seq("a1", "s1") == seq
        assert not ws.closed
    finally:
        await http.close()
