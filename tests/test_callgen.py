"""Tests of the synthetic call generator (tests/callgen.py)."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import callgen
import numpy as np
import pytest
from callgen import CHANNELS, STANDARD_CALL, CallTruth, GeneratedCall, Incident, Utterance

PLACEMENT_TOLERANCE_S = 0.030
ENERGY_FRAME_S = 0.005
ENERGY_THRESHOLD_DBFS = -50.0

SMALL_SCRIPT = [
    Utterance("agent", 0.4, "Hello, this is Alex."),
    Utterance("customer", 2.2, "Hi, I have a question about my bill."),
    Utterance("agent", 4.0, "Sure, go ahead please."),
]


def require_tools() -> None:
    """Skip (or fail when CI=true) if espeak-ng or sox is missing."""
    missing = callgen.missing_tools()
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt-get install espeak-ng sox)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def calls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("calls")


@pytest.fixture(scope="session", params=[8000, 16000], ids=["8k", "16k"])
def standard_call(request: pytest.FixtureRequest, calls_dir: Path) -> GeneratedCall:
    require_tools()
    return callgen.generate_call(STANDARD_CALL, request.param, calls_dir)


def energy_db(channel: np.ndarray, rate: int) -> np.ndarray:
    """Level in dBFS of consecutive ENERGY_FRAME_S frames."""
    frame = int(rate * ENERGY_FRAME_S)
    n = len(channel) // frame
    frames = channel[: n * frame].astype(np.float64).reshape(n, frame)
    return 10 * np.log10((frames**2).mean(axis=1) + 1e-9) - 20 * np.log10(32768)


def loud_edges(level: np.ndarray, lo_s: float, hi_s: float) -> tuple[float, float]:
    """Start of the first and end of the last loud frame between lo_s and hi_s."""
    first, last = int(lo_s / ENERGY_FRAME_S), int(np.ceil(hi_s / ENERGY_FRAME_S))
    loud = np.nonzero(level[first:last] > ENERGY_THRESHOLD_DBFS)[0]
    assert loud.size, f"no speech energy between {lo_s:.3f} and {hi_s:.3f}"
    return (first + loud[0]) * ENERGY_FRAME_S, (first + loud[-1] + 1) * ENERGY_FRAME_S


def assert_spans_match_energy(wav: Path, truth: CallTruth) -> None:
    """Every span's first and last loud frame lies within PLACEMENT_TOLERANCE_S of its edges."""
    samples, rate = callgen.read_stereo_wav(wav)
    for index, ch in enumerate(CHANNELS):
        level = energy_db(samples[:, index], rate)
        spans = sorted(truth.spans[ch])
        for i, (start, end) in enumerate(spans):
            lo = max(spans[i - 1][1] if i else 0.0, start - 0.25)
            hi = min(spans[i + 1][0] if i + 1 < len(spans) else truth.duration_s, end + 0.25)
            onset, offset = loud_edges(level, lo, hi)
            assert abs(onset - start) <= PLACEMENT_TOLERANCE_S, (ch, start, onset)
            assert abs(offset - end) <= PLACEMENT_TOLERANCE_S, (ch, end, offset)


# --------------------------------------------------------------------------- pure logic


def test_incidents_from_spans() -> None:
    spans = {
        "agent": [(6.0, 10.0), (11.5, 14.0), (20.0, 21.0)],
        "customer": [(9.0, 11.0), (13.2, 13.5), (13.9, 16.0), (21.0, 22.0)],
    }
    dead = callgen.find_dead_air(spans, 28.0, 5.0)
    assert dead == [Incident("silence", 0.0, 6.0), Incident("silence", 22.0, 6.0)]
    over = callgen.find_overtalk(spans, 1.0)
    assert over == [Incident("overtalk", 9.0, 1.0, "customer", "agent")]
    short = callgen.find_overtalk(spans, 0.2)
    assert [(i.offset_s, i.interrupter) for i in short] == [
        (9.0, "customer"), (13.2, "customer")]
    assert callgen.find_dead_air(spans, 28.0, 6.5) == []


def test_overtalk_merges_channel_spans_and_handles_ties() -> None:
    spans = {"agent": [(1.0, 3.0), (2.5, 5.0)], "customer": [(1.0, 2.5), (4.0, 6.0)]}
    over = callgen.find_overtalk(spans, 1.0)
    assert over == [Incident("overtalk", 1.0, 1.5, None, None),
                    Incident("overtalk", 4.0, 1.0, "customer", "agent")]


def test_silent_call_is_one_dead_air() -> None:
    assert callgen.find_dead_air({}, 8.0, 5.0) == [Incident("silence", 0.0, 8.0)]


def test_truth_json_round_trip() -> None:
    spans = {"agent": [(0.5, 2.0)], "customer": [(8.0, 9.0)]}
    truth = CallTruth(16000, 10.0, spans, {"agent": [], "customer": []}, 5.0, 1.0,
                      callgen.find_dead_air(spans, 10.0, 5.0), [])
    assert CallTruth.from_json(truth.to_json()) == truth


# --------------------------------------------------------------------------- synthesis


def test_espeak_pads_speech_and_synthesize_trims_it() -> None:
    require_tools()
    lead, trail = callgen.espeak_padding("Hello there")
    assert 0.0 < lead < 0.1
    assert trail > 0.2
    speech = callgen.synthesize("Hello there", "en-us", 160, 16000)
    assert abs(int(speech[0])) > callgen.TTS_THRESHOLD
    assert abs(int(speech[-1])) > callgen.TTS_THRESHOLD


@pytest.mark.parametrize("rate", [8000, 16000])
def test_small_script_wav_format_and_placement(tmp_path: Path, rate: int) -> None:
    require_tools()
    wav, transcript = tmp_path / "call.wav", tmp_path / "call.jsonl"
    truth = callgen.build_call(SMALL_SCRIPT, rate, wav, transcript)
    with wave.open(str(wav), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, rate)
        assert w.getnframes() == round(truth.duration_s * rate)
    for utt in SMALL_SCRIPT:
        assert any(abs(s - utt.start_s) < 1 / rate for s, _ in truth.spans[utt.channel])
    assert_spans_match_energy(wav, truth)
    last_end = max(e for ch in CHANNELS for _, e in truth.spans[ch])
    assert truth.duration_s == pytest.approx(last_end + 1.0)


def test_transcript_lines(tmp_path: Path) -> None:
    require_tools()
    wav, transcript = tmp_path / "call.wav", tmp_path / "call.jsonl"
    callgen.build_call(SMALL_SCRIPT, 8000, wav, transcript)
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    expected = [{"offset_s": u.start_s, "speaker": u.channel, "text": u.text} for u in SMALL_SCRIPT]
    assert lines == expected


def test_without_noise_silence_is_digital_zero(tmp_path: Path) -> None:
    require_tools()
    wav = tmp_path / "call.wav"
    truth = callgen.build_call(SMALL_SCRIPT, 8000, wav, None, noise_dbfs=None)
    samples, rate = callgen.read_stereo_wav(wav)
    for index, ch in enumerate(CHANNELS):
        first_start = min(s for s, _ in truth.spans[ch])
        last_end = max(e for _, e in truth.spans[ch])
        assert not samples[: round(first_start * rate), index].any()
        assert not samples[round(last_end * rate):, index].any()


def test_generation_is_deterministic(tmp_path: Path) -> None:
    require_tools()
    callgen.build_call(SMALL_SCRIPT, 16000, tmp_path / "a.wav", tmp_path / "a.jsonl")
    callgen.build_call(SMALL_SCRIPT, 16000, tmp_path / "b.wav", tmp_path / "b.jsonl")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_generate_call_reuses_cached_files(tmp_path: Path) -> None:
    require_tools()
    first = callgen.generate_call(SMALL_SCRIPT, 8000, tmp_path)
    stamp = first.wav.stat().st_mtime_ns
    second = callgen.generate_call(SMALL_SCRIPT, 8000, tmp_path)
    assert second == first
    assert second.wav.stat().st_mtime_ns == stamp
    other = callgen.generate_call(SMALL_SCRIPT, 8000, tmp_path, noise_dbfs=None)
    assert other.wav != first.wav
    assert sorted(p.suffix for p in tmp_path.iterdir() if ".tmp" in p.name) == []


def test_human_clip_on_customer_channel(tmp_path: Path) -> None:
    require_tools()
    clip = callgen.speech_clip_from_testdata()
    if clip is None:
        pytest.skip("pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)")
    script = [Utterance("agent", 0.5, "How can I help you?"),
              Utterance("customer", 2.5, clip.text, clip=clip)]
    for rate in (8000, 16000):
        wav = tmp_path / f"human{rate}.wav"
        truth = callgen.build_call(script, rate, wav, None)
        assert truth.spans["customer"][0][0] == pytest.approx(2.5, abs=1 / rate)
        assert 1.0 < truth.spans["customer"][0][1] - 2.5 < 2.8
        assert_spans_match_energy(wav, truth)
        report = callgen.vad_report(wav, truth)
        assert report.speech_fractions["customer"][0] > 0.7


# --------------------------------------------------------------------------- standard call


def test_standard_call_format_and_placement(standard_call: GeneratedCall) -> None:
    truth = standard_call.truth
    with wave.open(str(standard_call.wav), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, truth.sample_rate)
    assert 45.0 <= truth.duration_s <= 60.0
    one_sample = 1 / truth.sample_rate
    for utt in STANDARD_CALL:
        assert any(abs(s - utt.start_s) < one_sample for s, _ in truth.spans[utt.channel])
    assert_spans_match_energy(standard_call.wav, truth)


def test_standard_call_expected_alerts(standard_call: GeneratedCall) -> None:
    alerts = standard_call.truth.expected_alerts()
    summary = [(a.kind, a.interrupter) for a in alerts]
    assert summary == [("silence", None), ("overtalk", "customer"),
                       ("overtalk", "agent"), ("silence", None)]
    silence1, cut_in_by_customer, cut_in_by_agent, silence2 = alerts
    assert silence1.duration_s == pytest.approx(7.0, abs=0.5)
    assert cut_in_by_customer.offset_s == pytest.approx(23.65, abs=1e-3)
    assert cut_in_by_customer.duration_s == pytest.approx(2.0, abs=0.3)
    assert cut_in_by_agent.offset_s == pytest.approx(34.74, abs=1e-3)
    assert cut_in_by_agent.duration_s == pytest.approx(1.5, abs=0.3)
    assert silence2.duration_s == pytest.approx(6.0, abs=0.5)
    assert silence2.offset_s > 40.0


def test_standard_call_back_channel_overlap_does_not_count(standard_call: GeneratedCall) -> None:
    truth = standard_call.truth
    overlaps = callgen.find_overtalk(truth.spans, 0.0)
    short = [o for o in overlaps if o.duration_s < truth.overtalk_s]
    assert len(short) == 1
    assert short[0].duration_s == pytest.approx(0.3, abs=0.1)
    assert short[0].interrupter == "customer"


def test_standard_call_overtalk_has_no_internal_pause(standard_call: GeneratedCall) -> None:
    truth = standard_call.truth
    for over in truth.overtalk:
        end = over.offset_s + over.duration_s
        for ch in CHANNELS:
            inside = [p for p in truth.pauses[ch] if p[0] < end and p[1] > over.offset_s]
            assert inside == [], (over, ch, inside)


def test_standard_call_transcript_has_policy_phrases(standard_call: GeneratedCall) -> None:
    lines = [json.loads(line) for line in standard_call.transcript.read_text().splitlines()]
    assert len(lines) == len(STANDARD_CALL)
    assert [line["offset_s"] for line in lines] == sorted(line["offset_s"] for line in lines)
    agent_text = " ".join(line["text"].lower() for line in lines if line["speaker"] == "agent")
    assert "this fund has guaranteed returns" in agent_text
    assert "please read me the verification code" in agent_text


def test_vad_sees_speech_but_not_noise_floor(standard_call: GeneratedCall) -> None:
    report = callgen.vad_report(standard_call.wav, standard_call.truth)
    speech = [f for ch in CHANNELS for f in report.speech_fractions[ch]]
    voiced = [f for ch in CHANNELS for f in report.voiced_fractions[ch]]
    assert min(voiced) >= 0.9, report
    assert min(speech) >= 0.7 and np.mean(speech) >= 0.9, report
    assert report.noise_frames > 1000
    assert report.noise_fraction <= 0.01, report


def vad_spans(decisions: np.ndarray, frame_s: float, bridge_s: float) -> list[tuple[float, float]]:
    """Runs of speech frames, joining runs separated by at most ``bridge_s``."""
    spans: list[tuple[float, float]] = []
    for i in np.nonzero(decisions)[0]:
        start, end = i * frame_s, (i + 1) * frame_s
        if spans and start - spans[-1][1] <= bridge_s + 1e-9:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def test_vad_derived_incidents_match_truth(standard_call: GeneratedCall) -> None:
    """A hub using webrtcvad with a short hangover should find the same incidents."""
    truth = standard_call.truth
    decisions = callgen.vad_decisions(standard_call.wav)
    spans = {ch: vad_spans(decisions[ch], 0.02, 0.1) for ch in CHANNELS}
    found = callgen.find_dead_air(spans, truth.duration_s, truth.dead_air_s)
    found += callgen.find_overtalk(spans, truth.overtalk_s)
    found.sort(key=lambda i: i.offset_s)
    expected = truth.expected_alerts()
    assert [(i.kind, i.interrupter) for i in found] == [(i.kind, i.interrupter) for i in expected]
    for got, want in zip(found, expected, strict=True):
        assert got.offset_s == pytest.approx(want.offset_s, abs=0.15), (got, want)
        assert got.duration_s == pytest.approx(want.duration_s, abs=0.25), (got, want)
