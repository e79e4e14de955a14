"""End to end: the real agent client streams a scripted stereo WAV of speech to a real hub.

The call is synthesised with espeak-ng (tests/callgen.py) so the exact speech spans, and so the
expected dead-air and overtalk incidents, are known. Every alert the hub raises must match the
script: kind, offset within ±0.3 s, who cut in; keyword alerts come from the transcript file.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import callgen
import pytest
from conftest import need_tools

from agent_client.connection import HubConnection
from agent_client.stream import read_transcript, read_wav, stream_call

TOLERANCE_S = 0.3
EXPECTED_KEYWORDS = {  # (offset of the transcript line, rule)
    (18.1, "en-core/false-promise"),
    (34.74, "en-core/sensitive-data"),
}


@pytest.fixture(scope="module", params=[16000, 8000])
def standard_call(request, tmp_path_factory):
    need_tools("espeak-ng", "sox")
    return callgen.generate_call(callgen.STANDARD_CALL, request.param,
                                 tmp_path_factory.mktemp(f"calls{request.param}"))


@pytest.fixture(scope="module")
def standard_call_16k(tmp_path_factory):
    need_tools("espeak-ng", "sox")
    return callgen.generate_call(callgen.STANDARD_CALL, 16000, tmp_path_factory.mktemp("cli"))


def assert_alerts_match(alerts: list[dict], truth: callgen.CallTruth) -> None:
    expected = sorted(truth.expected_alerts(), key=lambda i: (i.offset_s, i.kind))
    audio_alerts = sorted((a for a in alerts if a["kind"] in ("silence", "overtalk")),
                          key=lambda a: (a["offset_s"], a["kind"]))
    assert [a["kind"] for a in audio_alerts] == [e.kind for e in expected], audio_alerts
    for alert, incident in zip(audio_alerts, expected, strict=True):
        assert alert["offset_s"] == pytest.approx(incident.offset_s, abs=TOLERANCE_S)
        assert alert["duration_s"] == pytest.approx(incident.duration_s, abs=2 * TOLERANCE_S)
        if incident.kind == "overtalk":
            assert alert["detail"] == {"interrupter": incident.interrupter,
                                       "interrupted": incident.interrupted}
    keywords = {(round(a["offset_s"], 2), a["detail"]["rule"]) for a in alerts
                if a["kind"] == "keyword"}
    assert keywords == EXPECTED_KEYWORDS
    assert all(a["kind"] != "state" for a in alerts)


async def test_streamed_call_raises_exactly_the_scripted_alerts(running_hub, wall_factory,
                                                                standard_call):
    wall = await wall_factory(running_hub.url)
    pcm, rate = read_wav(standard_call.wav)
    conn = HubConnection(running_hub.ws_url, "a1", running_hub.tokens["a1"])
    conn.start()
    try:
        await conn.wait_connected(timeout=5)
        await conn.send_status("logged_in")
        call_tile = asyncio.create_task(wall.wait_for(
            lambda w: w.tiles.get("a1", {}).get("call_id") == "call-std"
            and w.tiles["a1"]["call_started_at"] is not None
            and w.tiles["a1"]["direction"] == "inbound"))
        report = await stream_call(conn, pcm, rate, read_transcript(standard_call.transcript),
                                   speed=20, call_id="call-std")
        assert await conn.drain(timeout=5)
    finally:
        await conn.close()
    assert report.chunks_dropped == 0
    await call_tile  # while the call ran, its tile named it
    alerts = await running_hub.alerts(call_id="call-std")
    assert_alerts_match(alerts, standard_call.truth)
    # the wall saw each alert, completed with its duration
    await wall.wait_for(lambda w: len(w.alerts) == len(alerts))
    for alert in alerts:
        assert wall.alerts[alert["id"]]["duration_s"] == alert["duration_s"]
    await wall.wait_for(lambda w: w.tiles["a1"]["state"] == "wrap_up")
    tile = wall.tiles["a1"]
    assert tile["call_id"] is None and tile["talk_ratio"] is None
    assert tile["severity"] == "critical"  # the verification-code request
    assert tile["alert"] is not None


async def test_cli_streams_a_wav_at_ten_times_real_time(running_hub, standard_call_16k):
    standard_call = standard_call_16k
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent_client.cli", "stream", "--hub", running_hub.url,
        "--agent", "a2", "--token", running_hub.tokens["a2"], "--wav", str(standard_call.wav),
        "--transcript", str(standard_call.transcript), "--speed", "10", "--call-id", "call-cli",
        "--customer", "13812345678", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "0 dropped" in out.decode()
    assert_alerts_match(await running_hub.alerts(call_id="call-cli"), standard_call.truth)
    history = running_hub.hub.store.status_history("a2", since=0)
    assert [h["state"] for h in history] == ["logged_in", "ready", "on_call", "wrap_up",
                                             "logged_out"]
    assert history[2]["call"]["customer"] == "138****5678"  # never stored in full


async def test_real_human_speech_from_recordings(running_hub, tmp_path):
    """Recorded human speech (Debian's pocketsphinx-testdata) instead of a synthetic voice."""
    from conftest import need

    need_tools("sox")
    clips = [callgen.speech_clip_from_testdata(name) for name in callgen._TESTDATA_TEXTS]
    need(all(clips), "pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)")
    go, austen1, austen2 = clips
    script = [
        callgen.Utterance("agent", 0.5, go.text, clip=go),
        callgen.Utterance("customer", 3.0, austen1.text, clip=austen1),
        # 8 s with nobody speaking, then the agent talks and the customer cuts in
        callgen.Utterance("agent", 13.5, austen2.text, clip=austen2),
        callgen.Utterance("customer", 14.5, go.text, clip=go),
        callgen.Utterance("agent", 18.0, go.text, clip=go),
    ]
    call = callgen.generate_call(script, 16000, tmp_path)
    assert [i.kind for i in call.truth.expected_alerts()] == ["silence", "overtalk"]
    conn = HubConnection(running_hub.ws_url, "a3", running_hub.tokens["a3"])
    conn.start()
    try:
        await conn.wait_connected(timeout=5)
        pcm, rate = read_wav(call.wav)
        await stream_call(conn, pcm, rate, speed=20, call_id="call-human")
        assert await conn.drain(timeout=5)
    finally:
        await conn.close()
    alerts = await running_hub.alerts(call_id="call-human")
    expected = sorted(call.truth.expected_alerts(), key=lambda i: i.offset_s)
    got = sorted(alerts, key=lambda a: a["offset_s"])
    assert [a["kind"] for a in got] == [e.kind for e in expected]
    for alert, incident in zip(got, expected, strict=True):
        assert alert["offset_s"] == pytest.approx(incident.offset_s, abs=TOLERANCE_S)
