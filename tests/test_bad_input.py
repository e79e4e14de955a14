"""Bad input from one agent is refused with a reason; every other call keeps going."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest

from agent_client.connection import FatalHubError, HubConnection, utc_now_iso
from server.ingest_protocol import encode_audio


async def raw_agent(running_hub, agent_id: str = "a1", *, hello: bool = True):
    """A hand-driven ingest socket, to send exactly the bytes a broken client would."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(running_hub.ws_url)
    if hello:
        await ws.send_str(json.dumps({"type": "hello", "protocol": 1, "agent_id": agent_id,
                                      "token": running_hub.tokens[agent_id], "session": "s1"}))
        welcome = await ws.receive_json(timeout=5)
        assert welcome["type"] == "welcome"
    return http, ws


async def expect_refusal(ws) -> tuple[int, str, dict | None]:
    """Read until the hub closes; return close code, reason and the error message, if any."""
    error = None
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is aiohttp.WSMsgType.TEXT:
            data = json.loads(msg.data)
            if data["type"] == "error":
                error = data
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                          aiohttp.WSMsgType.CLOSING):
            return ws.close_code, (msg.extra or ""), error


def status(seq: int, state: str, **extra) -> str:
    return json.dumps({"type": "status", "seq": seq, "at": utc_now_iso(), "state": state,
                       **extra})


ON_CALL = {"call": {"id": "c-bad", "direction": "inbound", "customer": "", "sample_rate": 8000}}


@pytest.mark.parametrize(
    ("frames", "code", "reason"),
    [
        ([b"{not json"], 1007, "malformed JSON"),
        (['{"type": "dance"}'], 4400, "unknown message type 'dance'"),
        (['{"type": "status", "seq": 1, "state": "ready"}'], 4400, "bad field 'at'"),
        ([status(1, "on_call")], 4400, "on_call needs a 'call' object to start a call"),
        ([status(1, "lunch")], 4400, "bad field 'state'"),
        ([encode_audio(0, 0, np.zeros((800, 2), np.int16))], 1007, "audio outside a call"),
        ([status(1, "on_call", **ON_CALL), b"\x01\x02" + bytes(15)], 1007,
         "audio payload not a multiple of 4 bytes"),
        ([status(1, "on_call", **ON_CALL), bytes(8)], 1007, "shorter than its 16-byte header"),
        ([status(1, "on_call", **ON_CALL), encode_audio(0, 0, np.zeros((20000, 2), np.int16))],
         1007, "longer than 1 s"),
    ],
    ids=["json", "type", "no-time", "no-call", "state", "no-call-audio", "odd-audio",
         "short-audio", "long-audio"],
)
async def test_malformed_messages_are_refused_with_a_reason(running_hub, frames, code, reason):
    http, ws = await raw_agent(running_hub)
    try:
        for frame in frames:
            if isinstance(frame, bytes) and frame.startswith(b"{"):
                await ws.send_str(frame.decode())
            elif isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        got_code, got_reason, error = await expect_refusal(ws)
    finally:
        await http.close()
    assert got_code == code
    assert reason in got_reason
    assert error is not None and reason in error["reason"]


async def test_oversize_message_is_refused(running_hub):
    http, ws = await raw_agent(running_hub)
    try:
        await ws.send_bytes(bytes(300 * 1024))  # over the 256 KiB cap
        code, reason, _ = await expect_refusal(ws)
    finally:
        await http.close()
    assert code == 1009
    assert reason == "message too big: the limit is 262144 bytes"


async def test_bad_token_is_refused_and_the_client_gives_up(running_hub):
    conn = HubConnection(running_hub.ws_url, "a1", "fwa_wrong")
    conn.start()
    with pytest.raises(FatalHubError, match="bad agent token"):
        await conn.wait_connected(timeout=5)
    await conn.close()


async def test_no_hello_is_refused(aiohttp_server, tmp_path):
    from conftest import start_hub

    hub = await start_hub(aiohttp_server, tmp_path, server={"hello_timeout_s": 0.3})
    async with aiohttp.ClientSession() as http, http.ws_connect(hub.ws_url) as ws:
        code, reason, _ = await expect_refusal(ws)
    assert (code, reason) == (4400, "no hello within 0.3 s")


async def test_other_calls_keep_going_while_one_agent_sends_garbage(running_hub, wall_factory):
    wall = await wall_factory(running_hub.url)
    good = HubConnection(running_hub.ws_url, "a2", running_hub.tokens["a2"])
    good.start()
    await good.wait_connected(timeout=5)
    await good.send_status("on_call", call={"id": "c-good", "direction": "outbound",
                                            "customer": "", "sample_rate": 8000})
    silence = np.zeros((800, 2), np.int16)  # 100 ms at 8 kHz

    async def stream_silence(seconds: float) -> None:
        for i in range(int(seconds * 10)):
            assert await good.send_audio(encode_audio(i, i * 800, silence))
            await asyncio.sleep(0.005)

    streaming = asyncio.create_task(stream_silence(7.0))
    refusals = []
    for _ in range(20):  # a burst of broken clients while the good call streams
        http, ws = await raw_agent(running_hub, "a1")
        await ws.send_str("{broken")
        refusals.append((await expect_refusal(ws))[0])
        await http.close()
    await streaming
    assert refusals == [1007] * 20
    # the good call's 7 s of silence raised its dead-air alert, and the wall got it
    await wall.wait_for(lambda w: any(a["kind"] == "silence" and a["call_id"] == "c-good"
                                      for a in w.alerts.values()))
    assert good.connected.is_set() and good.audio_dropped == 0
    await good.close()


async def test_a_refused_status_is_dropped_by_the_client_not_resent_for_ever(running_hub):
    conn = HubConnection(running_hub.ws_url, "a3", running_hub.tokens["a3"],
                         min_backoff_s=0.05)
    conn.start()
    await conn.wait_connected(timeout=5)
    await conn.send_status("logged_in")
    await conn.send_status("on_call")  # no call object: refused, with its seq
    await conn.send_status("ready")
    assert await conn.drain(timeout=10)
    await conn.close()
    history = running_hub.hub.store.status_history("a3", since=0)
    assert [h["state"] for h in history] == ["logged_in", "ready"]
    assert conn.connects == 2
