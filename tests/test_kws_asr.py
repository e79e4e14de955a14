"""The `asr` recognizer against a real streaming ASR server of the Vosk protocol.

The server is `python -m server.recognize_server` in its own process: real recognition
(pocketsphinx dictation with its bundled US-English models), the Vosk WebSocket protocol. The
hub streams each call's gated speech to it and turns its sentences into transcript lines, which
raise keyword alerts like any transcript. One of the calls is real human speech (Debian's
pocketsphinx-testdata), which this recogniser gets right; espeak-ng speech it gets roughly.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import callgen
import numpy as np
import pytest
from callgen import Utterance
from conftest import free_port, need, need_tools, start_hub
from test_kws import HAVE_POCKETSPHINX
from test_kws_e2e import keyword_alerts, settled, stream_cli

from server.analysis.kws import AudioPiece
from server.recognize import Heard
from server.recognize_asr import AsrServerRecognizer

PACK = """
id = "asr-test"
language = "en"
[[rule]]
id = "forward"
category = "test"
severity = "high"
speaker = "agent"
phrases = ["forward ten meters"]
"""


@pytest.fixture(scope="module")
def asr_server(tmp_path_factory):
    """`python -m server.recognize_server` on a free loopback port."""
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed (pip install 'pocketsphinx>=5')")
    port = free_port()
    log = tmp_path_factory.mktemp("asr") / "server.log"
    out = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "server.recognize_server", "--port",
                             str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        import socket
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        out.close()


def human_clip():
    need_tools("espeak-ng", "sox")
    clip = callgen.speech_clip_from_testdata("goforward.raw")
    need(clip is not None, "pocketsphinx-testdata not installed (apt-get install "
                           "pocketsphinx-testdata)")
    return clip


class Settings:
    url = ""
    connect_timeout_s = 3.0
    max_streams = 10
    pad_s = 0.6


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_adapter_maps_server_times_back_to_call_time(asr_server, rate, tmp_path):
    """Speech regions far apart in the call are sent back to back; the words' times the server
    gives (its own stream's) come back as call times."""
    clip = human_clip()
    call = callgen.generate_call([Utterance("agent", 0.3, clip.text, clip=clip),
                                  Utterance("agent", 40.0, clip.text, clip=clip)], rate, tmp_path)
    pcm = np.ascontiguousarray(callgen.read_stereo_wav(call.wav)[0][:, 0])
    settings = Settings()
    settings.url = asr_server
    asr = AsrServerRecognizer(settings)
    heard: list[Heard] = []
    assert asr.open("a/c/agent", rate, None, heard.append)  # type: ignore[arg-type]
    step = rate // 4
    for (start, end) in call.truth.spans["agent"]:  # what the gate would send: speech only
        a, b = int(start * rate) - rate // 4, int(end * rate) + rate // 4
        for i in range(a, b, step):
            asr.feed("a/c/agent", AudioPiece(i, pcm[i:min(i + step, b)], final=i + step >= b))
        await asyncio.sleep(0)
    assert asr.pending_from("a/c/agent") is not None  # the server has not answered it all yet
    await asr.close("a/c/agent")
    await asr.aclose()
    assert len(heard) == 2, heard  # one sentence per region
    assert all(h.text.endswith("forward ten meters") for h in heard), heard
    for h, (start, _end) in zip(heard, call.truth.spans["agent"], strict=True):
        assert h.offset_s == pytest.approx(start, abs=0.3)
        assert h.end_s > h.offset_s
    assert asr.stats()["failures"] == 0


async def test_a_server_that_is_down_costs_recognition_not_the_call(caplog):
    settings = Settings()
    settings.url = f"ws://127.0.0.1:{free_port()}"  # nobody listens there
    asr = AsrServerRecognizer(settings)
    heard: list[Heard] = []
    asr.open("a/c/agent", 8000, None, heard.append)  # type: ignore[arg-type]
    silence = np.zeros(2000, np.int16)
    asr.feed("a/c/agent", AudioPiece(0, silence))
    await asyncio.sleep(0.5)
    asr.feed("a/c/agent", AudioPiece(2000, silence, final=True))  # dropped: retried later
    await asr.close("a/c/agent")
    await asr.aclose()
    assert heard == [] and asr.stats()["failures"] == 1
    assert asr.stats()["dropped_pieces"] >= 1
    assert any("cannot connect" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_hub_raises_keyword_alerts_from_the_asr_server(asr_server, aiohttp_server,
                                                             tmp_path, rate):
    """A team with only the `asr` recognizer: the phrase, said by a person in the call's audio,
    comes back as text from the ASR server and raises the rule's alert at its time."""
    clip = human_clip()
    pack = tmp_path / "asr-test.toml"
    pack.write_text(PACK)
    hub = await start_hub(aiohttp_server, tmp_path, asr={"url": asr_server},
                          analysis={"rule_packs": [str(pack)], "recognizers": ["asr"]})
    assert set(hub.hub.recognition.recognizers) == {"asr"}
    script = [Utterance("agent", 0.4, "Thank you for calling, how can I help?"),
              Utterance("customer", 3.5, "Where do I go from here?", "en-gb"),
              Utterance("agent", 6.8, clip.text, clip=clip),
              Utterance("customer", 10.5, "Thank you, goodbye.", "en-gb")]
    call = callgen.generate_call(script, rate, tmp_path)
    await stream_cli(hub, "a1", call, "call-asr", speed=4)
    alerts = keyword_alerts(await settled(hub, "call-asr"))
    assert [(a["detail"]["rule"], a["detail"]["source"]) for a in alerts] == [
        ("asr-test/forward", "asr")], alerts
    assert alerts[0]["offset_s"] == pytest.approx(call.truth.spans["agent"][1][0], abs=1.0)
    stats = hub.hub.recognition.stats()["asr"]
    assert stats["results"] >= 2 and stats["failures"] == 0
    assert json.dumps(stats)  # plain values, fit for a health endpoint


def test_server_session_speaks_the_protocol_shapes():
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed")
    from server.recognize_server import Session

    clip = human_clip()
    audio = callgen.load_clip(clip, 16000)
    session = Session(16000, words=True)
    replies = [session.accept(audio[i:i + 4000].astype("<i2").tobytes())
               for i in range(0, len(audio), 4000)]
    replies.append(session.accept(bytes(16000)))  # 0.5 s of silence ends the sentence
    assert all(set(r) == {"partial"} for r in replies[:-1])
    final = replies[-1]
    assert final["text"].endswith("forward ten meters")  # "go", or "move" when cold
    assert [w["word"] for w in final["result"]] == final["text"].split()


def test_spoken_digits_become_digits_so_the_masker_catches_them():
    from server.pii import mask_text
    from server.recognize_asr import digits_from_words

    card = "four " + "one " * 15  # 4111 1111 1111 1111, read out
    assert mask_text(digits_from_words(f"my card is {card}thanks")) == \
        "my card is **** **** **** 1111 thanks"
    spoken = "卡号是六二二二零二一二三四五六七八九零一二三"
    assert "6222021234567890123" not in mask_text(digits_from_words(spoken))
    assert digits_from_words("one moment please, two three") == "one moment please, two three"
