"""Listening, whisper and barge over real WebRTC (aiortc peers on 127.0.0.1), with the audit trail.

A call synthesised with espeak-ng is streamed in real time by the agent client; supervisors join it
with aiortc peers that sign in and post their SDP offers exactly like the wall does. What they hear
is compared with the call (per-channel loudness envelopes, correlation and level); what a
supervisor says (a tone from a fake microphone) must reach the agent's desktop, and for barge
also the audio the desktop sends to the call.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import aiohttp
import callgen
import numpy as np
import pytest
from conftest import REDIS_URL, RunningHub, hub_settings, need_tools, start_hub

from agent_client.connection import HubConnection
from agent_client.stream import read_wav, stream_call
from agent_client.supervisor import BargeMixer, SupervisorVoice, VoiceRecorder, parse_voice
from server.app import create_app
from server.hub import HUB
from server.ingest_protocol import AUDIO_HEADER
from server.monitor import (
    ActiveSession,
    MonitorMode,
    MonitorRefused,
    MonitorRequest,
    check_request,
    pick_spot_check,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.listener import RATE, Listener, ToneMic

BOSS = ("boss", "boss-password")
LOCAL_ICE = {"ice_host_addresses": ["127.0.0.1"]}
TONE_HZ = 1000.0

# the agent speaks first, then the customer, then both (the hub must keep the channels apart)
LISTEN_CALL = [
    callgen.Utterance("agent", 0.3, "Northwind Investments, Alex speaking. How can I help?",
                      callgen.AGENT_VOICE),
    callgen.Utterance("customer", 3.6, "Hi. I would like to ask about my savings account please.",
                      callgen.CUSTOMER_VOICE),
    callgen.Utterance("agent", 7.2, "Of course, let me pull that up for you right away.",
                      callgen.AGENT_VOICE),
]
# the agent is silent while supervisors talk: the tone is all there is on the agent channel
QUIET_AGENT_CALL = [
    callgen.Utterance("customer", 0.3, "Hello? Is anybody there? I have been waiting a while.",
                      callgen.CUSTOMER_VOICE),
    callgen.Utterance("customer", 5.0, "Hello? Can you hear me at all? I need some help.",
                      callgen.CUSTOMER_VOICE),
]


@pytest.fixture(scope="module")
def listen_call(tmp_path_factory):
    need_tools("espeak-ng", "sox")
    return callgen.generate_call(LISTEN_CALL, 16000, tmp_path_factory.mktemp("listen"),
                                 tail_s=2.0)


@pytest.fixture(scope="module")
def quiet_agent_call(tmp_path_factory):
    need_tools("espeak-ng", "sox")
    return callgen.generate_call(QUIET_AGENT_CALL, 8000, tmp_path_factory.mktemp("quiet"),
                                 tail_s=2.0)


async def monitor_hub(aiohttp_server, tmp_path, **listen):
    running = await start_hub(aiohttp_server, tmp_path, listen={**LOCAL_ICE, **listen})
    running.hub.store.add_user(*BOSS, role="admin", display_name="Big Boss")
    return running


class StreamingAgent:
    """The agent client streaming a WAV in real time, recording what supervisors said."""

    def __init__(self, running, agent_id: str, wav: Path, tmp_path: Path) -> None:
        self.pcm, self.rate = read_wav(wav)
        self.conn = HubConnection(running.ws_url, agent_id, running.tokens[agent_id])
        self.recorder = VoiceRecorder(tmp_path / f"{agent_id}-heard.wav", self.rate)
        self.mixer = BargeMixer(self.rate)
        self.voice = SupervisorVoice(self.recorder.add, mixer=self.mixer)
        self.conn.on_voice = self.voice
        self.notices: list[list[dict[str, str]]] = []
        self.conn.on_monitor = self.notices.append
        self.sent: list[np.ndarray] = []
        self.task: asyncio.Task | None = None

    async def start(self, running, agent_id: str) -> None:
        self.conn.start()
        await self.conn.wait_connected(timeout=10)
        await self.conn.send_status("ready")
        self.task = asyncio.create_task(stream_call(
            self.conn, self.pcm, self.rate, call_id=f"call-{agent_id}", mixer=self.mixer,
            sent=self.sent))
        await wait_until(lambda: running.hub.floor.tiles.get(agent_id, {}).get("state")
                         == "on_call", 10)

    async def finish(self) -> None:
        if self.task is not None:
            await self.task
        await self.conn.drain(timeout=10)
        await self.conn.close()

    def sent_pcm(self) -> np.ndarray:
        return np.concatenate(self.sent)


async def wait_until(predicate, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def envelope(x: np.ndarray, rate: int, frame_s: float = 0.02) -> np.ndarray:
    n = int(rate * frame_s)
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    return np.sqrt((frames**2).mean(axis=1))


def best_alignment(heard: np.ndarray, original: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The offset (in envelope frames) of `heard` within `original`, and the correlation there."""
    best = (0, -1.0)
    for lag in range(0, max_lag):
        a = original[lag:lag + len(heard)]
        b = heard[: len(a)]
        if len(a) < 50 or a.std() == 0 or b.std() == 0:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best[1]:
            best = (lag, r)
    return best


def tone_seconds(x: np.ndarray, rate: int, hz: float = TONE_HZ, min_rms: float = 1000.0,
                 window_s: float = 0.1) -> float:
    """For how long x carries a `hz` tone of at least `min_rms` (int16 units): the tone's
    component per 100 ms window, by projection on a sine and a cosine."""
    n = int(rate * window_s)
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    t = np.arange(n) / rate
    c = frames @ np.cos(2 * np.pi * hz * t) / n
    s = frames @ np.sin(2 * np.pi * hz * t) / n
    rms = np.sqrt(2 * (c * c + s * s)) / np.sqrt(2)
    return float((rms > min_rms).sum() * window_s)


def tone(seconds: float, level: int = 8000) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (level * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


# -- the rules (no I/O) ------------------------------------------------------------------------


def _request(mode="listen", perms=("listen",), user="u1", reason=""):
    return MonitorRequest(user, user.upper(), frozenset(perms), "a1", MonitorMode(mode), reason)


ON_CALL = {"agent_id": "a1", "state": "on_call", "call_id": "c1", "connected": True}


def test_permissions_limits_and_reasons_are_checked_in_order():
    assert check_request(_request(), ON_CALL, [], max_listeners=5, require_reason=False) == "c1"
    with pytest.raises(MonitorRefused, match="whisper permission") as refused:
        check_request(_request("whisper"), ON_CALL, [], max_listeners=5, require_reason=False)
    assert refused.value.status == 403
    with pytest.raises(MonitorRefused, match="reason is required"):
        check_request(_request(), ON_CALL, [], max_listeners=5, require_reason=True)
    with pytest.raises(MonitorRefused, match="not on a call"):
        check_request(_request(), {**ON_CALL, "state": "ready", "call_id": None}, [],
                      max_listeners=5, require_reason=False)
    five = [ActiveSession(f"s{i}", f"other{i}", "O", "a1", "c1", MonitorMode.LISTEN)
            for i in range(5)]
    with pytest.raises(MonitorRefused, match="maximum of 5 listeners") as full:
        check_request(_request(), ON_CALL, five, max_listeners=5, require_reason=False)
    assert full.value.status == 409 and full.value.key == "listen.refused.full"
    barging = [ActiveSession("s", "other", "O", "a1", "c1", MonitorMode.BARGE)]
    with pytest.raises(MonitorRefused, match="already barged"):
        check_request(_request("barge", ("barge",)), ON_CALL, barging, max_listeners=5,
                      require_reason=False)
    with pytest.raises(MonitorRefused, match="already monitoring"):
        check_request(_request(), ON_CALL,
                      [ActiveSession("s", "u1", "U1", "a1", "c1", MonitorMode.LISTEN)],
                      max_listeners=5, require_reason=False)


def test_spot_check_is_weighted_toward_calls_with_unacknowledged_alerts():
    tiles = [{"agent_id": f"a{i}", "state": "on_call", "call_id": f"c{i}", "connected": True}
             for i in range(4)]
    tiles.append({"agent_id": "idle", "state": "ready", "call_id": None, "connected": True})
    rng = random.Random(7)
    picks = [pick_spot_check(tiles, {"a0": ["critical"]}, [], "me", max_listeners=5, rng=rng)
             for _ in range(4000)]
    share = picks.count("a0") / len(picks)
    # weights 9 : 1 : 1 : 1 -> a0 expected 0.75 of the picks
    assert 0.71 < share < 0.79, share
    assert "idle" not in picks and {"a1", "a2", "a3"} <= set(picks)
    # calls already full, or already mine, are never picked; nothing left -> None
    mine = [ActiveSession("s", "me", "Me", f"a{i}", f"c{i}", MonitorMode.LISTEN)
            for i in range(4)]
    assert pick_spot_check(tiles, {}, mine, "me", max_listeners=5, rng=rng) is None


def test_barge_mixer_adds_the_voice_to_the_agent_channel_only():
    mixer = BargeMixer(8000, max_s=0.5)
    mixer.add(np.full(300, 1000, np.int16))
    out = mixer.mix_into(np.full((200, 2), 32000, np.int16))
    assert (out[:, 0] == 32767).all() and (out[:, 1] == 32000).all()  # clipped, not wrapped
    out = mixer.mix_into(np.zeros((200, 2), np.int16))
    assert (out[:100, 0] == 1000).all() and (out[100:, 0] == 0).all()
    mixer.add(np.ones(8000, np.int16))  # more than max_s: the oldest is dropped
    assert mixer.mix_into(np.zeros((8000, 2), np.int16))[:, 0].sum() <= 4000


def test_voice_frames_are_checked_and_recorded_on_the_call_timeline(tmp_path):
    recorder = VoiceRecorder(tmp_path / "heard.wav", 8000)
    frame = AUDIO_HEADER.pack(1, 1, 1, 0, 800) + np.full(160, 7, "<i2").tobytes()
    parsed = parse_voice(frame)
    assert (parsed.mode, parsed.offset, len(parsed.pcm)) == ("whisper", 800, 160)
    recorder.add(parsed)
    recorder.write()
    pcm, rate = read_mono(tmp_path / "heard.wav")
    assert rate == 8000 and len(pcm) == 960 and pcm[:800].max() == 0 and (pcm[800:] == 7).all()
    voice = SupervisorVoice(recorder.add)
    voice(b"\x01\x02")  # truncated
    voice(AUDIO_HEADER.pack(1, 2, 1, 0, 0) + b"\x00\x00")  # two channels: not a voice frame
    assert voice.refused == 2 and voice.frames == {"whisper": 0, "barge": 0}


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), wav.getframerate()


# -- over the network --------------------------------------------------------------------------


async def test_a_listener_hears_both_sides_of_the_call(aiohttp_server, tmp_path, listen_call,
                                                       wall_factory):
    running = await monitor_hub(aiohttp_server, tmp_path)
    agent = StreamingAgent(running, "a1", listen_call.wav, tmp_path)
    wall = await wall_factory(running.url)
    listener = Listener(running.url, *BOSS)
    await listener.login()
    try:
        await agent.start(running, "a1")
        status, body = await listener.start("a1", reason="quality spot check")
        assert status == 201, body
        assert body["session"]["mode"] == "listen" and body["session"]["call_id"] == "call-a1"
        await wall.wait_for(lambda w: w.tiles.get("a1", {}).get("listeners")
                            == [{"user": "Big Boss", "username": "boss", "mode": "listen"}])
        await agent.finish()
        await asyncio.wait_for(listener.track_ended.wait(), 10)  # the call ended: so did we
    finally:
        await listener.close()
    heard = listener.heard.pcm()
    assert len(heard) > 5 * RATE, "less than 5 s of the call was heard"
    original = agent.pcm  # what was streamed (16 kHz), left agent, right customer
    sides = ("agent", "customer")
    env = {side: envelope(original[:, i], agent.rate) for i, side in enumerate(sides)}
    got = {side: envelope(heard[:, i], RATE) for i, side in enumerate(sides)}
    lag, r_agent = best_alignment(got["agent"], env["agent"], max_lag=150)
    n = min(len(got["agent"]), len(env["agent"]) - lag)
    r_customer = float(np.corrcoef(got["customer"][:n], env["customer"][lag:lag + n])[0, 1])
    crossed = float(np.corrcoef(got["agent"][:n], env["customer"][lag:lag + n])[0, 1])
    print(f"envelope correlation agent {r_agent:.3f}, customer {r_customer:.3f}, crossed "
          f"{crossed:.3f}; lag {lag * 20} ms")
    assert r_agent > 0.9 and r_customer > 0.9, (r_agent, r_customer)
    assert crossed < 0.5, f"agent and customer are mixed up (r={crossed:.2f})"
    for side in ("agent", "customer"):  # the level survives the codec within 3 dB
        loud = env[side][lag:lag + n] > 300
        ratio = got[side][:n][loud].mean() / env[side][lag:lag + n][loud].mean()
        assert 0.7 < ratio < 1.41, (side, ratio)
    await wall.wait_for(lambda w: w.tiles.get("a1", {}).get("listeners") == [])
    rows = running.hub.store.monitor_sessions()
    assert len(rows) == 1 and rows[0]["end_reason"] == "call ended"
    assert rows[0]["reason"] == "quality spot check" and rows[0]["mode"] == "listen"
    assert agent.notices[0] == [{"user": "Big Boss", "mode": "listen"}]


@pytest.mark.parametrize("mode", ["whisper", "barge"])
async def test_whisper_reaches_only_the_agent_and_barge_reaches_the_call(
        aiohttp_server, tmp_path, quiet_agent_call, mode):
    running = await monitor_hub(aiohttp_server, tmp_path)
    agent = StreamingAgent(running, "a2", quiet_agent_call.wav, tmp_path)
    coach = Listener(running.url, *BOSS)
    running.hub.store.add_user("qa", "qa-password", "supervisor", "QA")  # listen only
    other = Listener(running.url, "qa", "qa-password")
    await coach.login()
    await other.login()
    try:
        await agent.start(running, "a2")
        status, body = await other.start("a2")
        assert status == 201, body
        # the QA supervisor may listen, but not whisper
        status, body = await other.start("a2", "whisper", mic=ToneMic(tone(0.5)))
        assert status == 403 and body["error_key"] == "listen.refused.permission"
        mic = ToneMic(tone(2.0))
        status, body = await coach.start("a2", mode, mic=mic)
        assert status == 201, body
        await asyncio.sleep(3.5)  # two seconds of tone, and time for it to travel
        assert await coach.stop() == 200
        await wait_until(lambda: agent.notices and agent.notices[-1] == [
            {"user": "QA", "mode": "listen"}], 5)  # the coach left; QA still listens
        await agent.finish()
    finally:
        await coach.close()
        await other.close()
    rate = agent.rate
    heard_by_agent = agent.recorder._buffer[: agent.recorder._position]
    sent_agent = agent.sent_pcm()[:, 0]
    heard_by_other = other.heard.pcm()
    by_agent, in_call = tone_seconds(heard_by_agent, rate), tone_seconds(sent_agent, rate)
    by_other = tone_seconds(heard_by_other[:, 0], RATE)
    print(f"{mode}: 2.0 s of tone; heard by the agent {by_agent:.1f} s, in the call "
          f"{in_call:.1f} s, by another listener {by_other:.1f} s")
    assert agent.voice.frames[mode] > 50
    assert by_agent >= 1.5
    if mode == "whisper":
        assert in_call == 0, "a whisper reached the call"
        assert by_other == 0, "another listener heard a whisper"
        assert agent.mixer.mixed_samples == 0
    else:
        assert agent.mixer.mixed_samples > rate  # over a second of barge went to the call
        assert in_call >= 1.5, "the barge did not reach the call"
        assert by_other >= 1.0, "listeners did not hear the barge"
    rows = {r["username"]: r for r in running.hub.store.monitor_sessions()}
    assert rows["boss"]["mode"] == mode and rows["boss"]["end_reason"] == "stopped"
    assert rows["boss"]["ended_at"] > rows["boss"]["started_at"]
    assert rows["qa"]["mode"] == "listen"


async def test_a_sixth_listener_is_refused_and_the_audit_trail_lists_every_session(
        aiohttp_server, tmp_path, listen_call):
    running = await monitor_hub(aiohttp_server, tmp_path)
    agent = StreamingAgent(running, "a3", listen_call.wav, tmp_path)
    listeners = []
    for i in range(6):
        running.hub.store.add_user(f"sup{i}", "sup-password", "supervisor", f"Sup {i}")
        listeners.append(Listener(running.url, f"sup{i}", "sup-password"))
    try:
        for listener in listeners:
            await listener.login()
        await agent.start(running, "a3")
        results = [await listener.start("a3") for listener in listeners]
        assert [status for status, _ in results] == [201] * 5 + [409]
        assert results[5][1] == {"error": "this call already has the maximum of 5 listeners",
                                 "error_key": "listen.refused.full"}
        await listeners[0].wait_heard(1.0, timeout=10)
        assert await listeners[0].stop() == 200  # one leaves: the sixth gets in
        status, _ = await listeners[5].start("a3")
        assert status == 201
        async with aiohttp.ClientSession(headers=running.api_headers) as http:
            async with http.get(f"{running.url}/api/monitor") as r:
                assert len((await r.json())["sessions"]) == 5
            async with http.get(f"{running.url}/metrics") as r:
                metrics = await r.text()
        assert "floorwatch_monitor_sessions 5" in metrics, metrics
        assert "floorwatch_monitor_packets_sent_total" in metrics
        await agent.finish()
        await wait_until(lambda: not running.hub.monitoring.sessions(), 10)
    finally:
        for listener in listeners:
            await listener.close()
    async with aiohttp.ClientSession(headers=running.api_headers) as http:
        async with http.get(f"{running.url}/api/audit", params={"agent_id": "a3"}) as r:
            assert r.status == 200
            audit = (await r.json())["sessions"]
    assert len(audit) == 6 and {a["username"] for a in audit} == {f"sup{i}" for i in range(6)}
    assert all(a["ended_at"] and a["started_at"] < a["ended_at"] for a in audit)
    assert sorted(a["end_reason"] for a in audit) == ["call ended"] * 5 + ["stopped"]
    # nothing in the product edits the trail; the database refuses it too
    with pytest.raises(Exception, match="append-only"):
        running.hub.store._db.execute("DELETE FROM monitor_sessions")
    # a supervisor without the audit permission cannot read it
    sup = Listener(running.url, "sup1", "sup-password")
    await sup.login()
    try:
        async with sup.http.get(f"{running.url}/api/audit") as r:
            assert r.status == 403
    finally:
        await sup.close()


async def test_spot_check_picks_a_live_call_and_reasons_can_be_required(
        aiohttp_server, tmp_path, listen_call):
    running = await monitor_hub(aiohttp_server, tmp_path, require_reason=True,
                                notify_agent=False)
    agent = StreamingAgent(running, "a1", listen_call.wav, tmp_path)
    listener = Listener(running.url, *BOSS)
    await listener.login()
    try:
        status, body = await listener.start(None, reason="weekly check")
        assert status == 404 and body["error_key"] == "listen.refused.no_live_call"
        await agent.start(running, "a1")
        status, body = await listener.start(None)
        assert status == 400 and body["error_key"] == "listen.refused.reason"
        status, body = await listener.start(None, reason="weekly check")
        assert status == 201 and body["session"]["agent_id"] == "a1"
        assert body["session"]["spot_check"] is True
        await listener.wait_heard(1.0, timeout=10)
        await agent.finish()
    finally:
        await listener.close()
    assert agent.notices == [], "notify_agent = false: silent listening is not announced"
    row = running.hub.store.monitor_sessions()[0]
    assert row["spot_check"] == 1 and row["reason"] == "weekly check"


async def test_bad_offers_get_a_clear_error(aiohttp_server, tmp_path, listen_call):
    running = await monitor_hub(aiohttp_server, tmp_path)
    agent = StreamingAgent(running, "a1", listen_call.wav, tmp_path)
    listener = Listener(running.url, *BOSS)
    await listener.login()
    try:
        await agent.start(running, "a1")
        http = listener.http
        for body, expected in [
            ({"agent_id": "a1", "sdp": "not sdp at all"}, "SDP offer"),
            ({"agent_id": "a1", "mode": "shout", "sdp": "v=0"}, "mode: one of"),
            ({"agent_id": "a1"}, "sdp: expected"),
            ({"sdp": "v=0"}, "agent_id: expected"),
        ]:
            async with http.post(f"{running.url}/api/monitor", json=body) as r:
                assert r.status == 400 and expected in (await r.json())["error"], body
        async with http.post(f"{running.url}/api/monitor", data=b"{") as r:
            assert r.status == 400
        # the call and a proper listener are unaffected
        status, _ = await listener.start("a1")
        assert status == 201
        await listener.wait_heard(1.0, timeout=10)
        await agent.finish()
    finally:
        await listener.close()


async def test_a_supervisor_on_hub_b_listens_to_a_call_streaming_to_hub_a(
        aiohttp_server, tmp_path, redis_prefix, listen_call):
    """Scale-out: the request goes to hub B, which forwards it through Redis to hub A, where
    the call streams; A answers with its own ICE candidates and the audio flows from A."""
    redis = {"url": REDIS_URL, "key_prefix": redis_prefix}
    hub_a = await start_hub(aiohttp_server, tmp_path / "a", redis={**redis, "hub_id": "hub-a"},
                            listen=LOCAL_ICE)
    # hub B has no accounts of its own: it learns them from A through Redis
    app_b = create_app(hub_settings(tmp_path / "b", redis={**redis, "hub_id": "hub-b"},
                                    listen=LOCAL_ICE))
    server_b = await aiohttp_server(app_b, host="127.0.0.1")
    hub_b = RunningHub(str(server_b.make_url("")).rstrip("/"), app_b[HUB])
    hub_a.hub.store.add_user(*BOSS, role="admin", display_name="Big Boss")
    hub_a.tokens["x1"] = hub_a.hub.store.add_agent("x1", "X One", "default")
    await wait_until(lambda: "boss" in {u.username for u in hub_b.hub.store.users()}, 10)
    agent = StreamingAgent(hub_a, "x1", listen_call.wav, tmp_path)
    listener = Listener(hub_b.url, *BOSS)
    await listener.login()
    try:
        await agent.start(hub_a, "x1")
        await wait_until(lambda: hub_b.hub.floor.tiles.get("x1", {}).get("state") == "on_call",
                         10)
        status, body = await listener.start("x1")
        assert status == 201, body
        session_id = body["session"]["id"]
        await listener.wait_heard(2.0, timeout=15)
        assert hub_a.hub.monitoring.sessions()[0]["id"] == session_id  # it runs on A
        assert not hub_b.hub.monitoring.sessions()
        assert await listener.stop() == 200  # stopped through B as well
        await wait_until(lambda: not hub_a.hub.monitoring.sessions(), 5)
        await agent.finish()
    finally:
        await listener.close()
    # the audit row, written on A, is on B too
    await wait_until(lambda: (hub_b.hub.store.monitor_session(session_id) or {})
                     .get("end_reason") == "stopped", 10)
    row = hub_b.hub.store.monitor_session(session_id)
    assert row["hub"] == "hub-a" and row["username"] == "boss"


async def test_sessions_left_open_by_a_crashed_hub_are_closed_when_it_starts_again(
        aiohttp_server, tmp_path):
    from server.store import Store

    crashed = Store(tmp_path / "data" / "floorwatch.db")
    crashed.monitor_started({"id": "m1", "username": "boss", "display_name": "Big Boss",
                             "agent_id": "a1", "call_id": "c1", "mode": "listen", "reason": "",
                             "spot_check": 0, "hub": "old-run", "started_at": 1.0})
    crashed.close()  # the process died: the session was never ended
    running = await monitor_hub(aiohttp_server, tmp_path)
    row = running.hub.store.monitor_session("m1")
    assert row["end_reason"] == "hub restarted" and row["ended_at"] > row["started_at"]
