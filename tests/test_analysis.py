"""Exact tests of call analysis on synthetic frame sequences.

The analyser is fed square "speech" (a constant level) scored by a plain energy scorer, so every
expected offset is known to the frame. webrtcvad itself is exercised in test_vad_real_speech.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from server.analysis.call import CallAnalyzer
from server.analysis.params import AnalysisParams
from server.events import (
    AudioGap,
    DeadAirEnded,
    DeadAirStarted,
    Interruption,
    OvertalkEnded,
    OvertalkStarted,
    Speaker,
    SpeechEnded,
    SpeechStarted,
)

RATE = 8000


class EnergyScorer:
    """Voiced when the frame's mean absolute level exceeds 100: exact on square test signals."""

    def __init__(self, sample_rate: int, params: AnalysisParams) -> None:
        self.frame_samples = sample_rate * params.vad_frame_ms // 1000

    def score(self, mono: np.ndarray) -> list[bool]:
        frames = mono.reshape(-1, self.frame_samples).astype(np.int32)
        return list(np.abs(frames).mean(axis=1) > 100)


Spans = list[tuple[float, float]]


def script(duration_s: float, agent: Spans, customer: Spans) -> np.ndarray:
    pcm = np.zeros((round(duration_s * RATE), 2), dtype=np.int16)
    for channel, spans in ((0, agent), (1, customer)):
        for start, end in spans:
            pcm[round(start * RATE) : round(end * RATE), channel] = 3000
    return pcm


def run(pcm: np.ndarray, chunk_s: float = 0.1, params: AnalysisParams | None = None, **kw):
    analyzer = CallAnalyzer(RATE, params or AnalysisParams(**kw), scorer_factory=EnergyScorer)
    step = round(chunk_s * RATE)
    events = []
    for offset in range(0, len(pcm), step):
        events += analyzer.feed(offset, pcm[offset : offset + step])
    events += analyzer.finish()
    return analyzer, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_speech_segments_are_dated_to_the_audio_not_the_decision():
    _, events = run(script(6, agent=[(1.0, 2.5)], customer=[(3.01, 4.0)]))
    assert of(events, SpeechStarted) == [
        SpeechStarted(Speaker.AGENT, 1.0),
        SpeechStarted(Speaker.CUSTOMER, 3.0),  # 20 ms frames: 3.01 falls in the frame at 3.00
    ]
    assert of(events, SpeechEnded) == [
        SpeechEnded(Speaker.AGENT, 2.5),
        SpeechEnded(Speaker.CUSTOMER, 4.0),
    ]


def test_short_blips_and_word_gaps_do_not_make_or_break_speech():
    # a 40 ms click is not speech; a 200 ms pause between words does not end the segment
    _, events = run(script(5, agent=[(0.5, 0.54), (1.0, 2.0), (2.2, 3.0)], customer=[]))
    assert of(events, SpeechStarted) == [SpeechStarted(Speaker.AGENT, 1.0)]
    assert of(events, SpeechEnded) == [SpeechEnded(Speaker.AGENT, 3.0)]


def test_dead_air_alert_once_at_threshold_then_completed_with_duration():
    pcm = script(20, agent=[(0.5, 2.0), (9.5, 11.0)], customer=[(2.3, 3.0)])
    _, events = run(pcm, dead_air_s=5.0)
    assert of(events, DeadAirStarted) == [DeadAirStarted(3.0, 5.0), DeadAirStarted(11.0, 5.0)]
    ended = of(events, DeadAirEnded)
    assert ended[0] == DeadAirEnded(3.0, pytest.approx(6.5))
    # the last silence runs to the end of the call
    assert ended[1] == DeadAirEnded(11.0, pytest.approx(9.0))
    # raised when the audio crossed the threshold, before speech resumed
    i_start = events.index(DeadAirStarted(3.0, 5.0))
    i_speech = events.index(SpeechStarted(Speaker.AGENT, 9.5))
    assert i_start < i_speech


def test_silence_just_under_threshold_raises_nothing():
    _, events = run(script(12, agent=[(0.0, 2.0), (6.9, 12.0)], customer=[]), dead_air_s=5.0)
    assert of(events, DeadAirStarted) == []


def test_dead_air_counts_from_call_start():
    _, events = run(script(10, agent=[(6.0, 8.0)], customer=[]), dead_air_s=5.0)
    assert of(events, DeadAirStarted) == [DeadAirStarted(0.0, 5.0)]
    assert of(events, DeadAirEnded) == [DeadAirEnded(0.0, pytest.approx(6.0))]


def test_dead_air_not_measured_on_hold():
    analyzer = CallAnalyzer(RATE, AnalysisParams(dead_air_s=5.0), scorer_factory=EnergyScorer)
    pcm = script(30, agent=[(0.0, 1.0), (25.0, 26.0)], customer=[])
    events = analyzer.feed(0, pcm[: 3 * RATE])
    events += analyzer.set_hold(True)  # at 3.0: two seconds of silence so far
    events += analyzer.feed(3 * RATE, pcm[3 * RATE : 20 * RATE])
    events += analyzer.set_hold(False)  # at 20.0: silence measured afresh from here
    events += analyzer.feed(20 * RATE, pcm[20 * RATE :])
    assert of(events, DeadAirStarted) == [DeadAirStarted(20.0, 5.0)]
    assert of(events, DeadAirEnded) == [DeadAirEnded(20.0, pytest.approx(5.0))]


def test_overtalk_with_who_cut_in():
    pcm = script(12, agent=[(1.0, 5.0), (8.0, 9.5)], customer=[(3.0, 4.5), (7.0, 10.0)])
    analyzer, events = run(pcm, overtalk_s=1.0, interruption_s=0.5)
    assert of(events, OvertalkStarted) == [
        OvertalkStarted(3.0, Speaker.CUSTOMER, 1.0),
        OvertalkStarted(8.0, Speaker.AGENT, 1.0),
    ]
    assert of(events, OvertalkEnded) == [
        OvertalkEnded(3.0, Speaker.CUSTOMER, pytest.approx(1.5)),
        OvertalkEnded(8.0, Speaker.AGENT, pytest.approx(1.5)),
    ]
    assert of(events, Interruption) == [
        Interruption(3.0, Speaker.CUSTOMER),
        Interruption(8.0, Speaker.AGENT),
    ]
    snap = analyzer.snapshot()
    assert snap.overtalk_count == 2
    assert snap.interruptions == {"agent": 1, "customer": 1}


def test_back_channel_overlap_is_not_overtalk():
    pcm = script(8, agent=[(1.0, 5.0)], customer=[(2.0, 2.3), (5.1, 6.0)])
    analyzer, events = run(pcm, overtalk_s=1.0, interruption_s=0.5)
    assert of(events, OvertalkStarted) == []
    assert of(events, Interruption) == []
    assert analyzer.snapshot().interruptions == {"agent": 0, "customer": 0}


def test_overlap_between_interruption_and_overtalk_thresholds_is_only_an_interruption():
    pcm = script(8, agent=[(1.0, 5.0)], customer=[(4.2, 6.0)])
    _, events = run(pcm, overtalk_s=1.0, interruption_s=0.5)
    assert of(events, OvertalkStarted) == []
    assert of(events, Interruption) == [Interruption(4.2, Speaker.CUSTOMER)]


@pytest.mark.parametrize("chunk_s", [0.02, 0.1, 0.37, 1.0])
def test_events_do_not_depend_on_chunk_size(chunk_s):
    pcm = script(
        30,
        agent=[(0.5, 4.0), (5.0, 9.0), (17.0, 20.0)],
        customer=[(3.5, 6.0), (8.0, 8.3), (21.0, 23.0)],
    )
    reference = run(pcm, chunk_s=0.1)[1]
    events = run(pcm, chunk_s=chunk_s)[1]
    assert sorted(map(repr, events)) == sorted(map(repr, reference))


def test_gap_closes_silence_and_restarts_after_it():
    analyzer = CallAnalyzer(RATE, AnalysisParams(dead_air_s=5.0), scorer_factory=EnergyScorer)
    pcm = script(34, agent=[(0.0, 1.0), (30.0, 31.0)], customer=[])
    events = analyzer.feed(0, pcm[: 8 * RATE])  # silence 1.0 → 8.0 alerted at 6.0
    events += analyzer.feed(20 * RATE, pcm[20 * RATE :])  # 8.0 → 20.0 never arrived
    assert of(events, AudioGap) == [AudioGap(8.0, 12.0)]
    assert of(events, DeadAirStarted) == [DeadAirStarted(1.0, 5.0), DeadAirStarted(20.0, 5.0)]
    assert of(events, DeadAirEnded) == [
        DeadAirEnded(1.0, pytest.approx(7.0)),
        DeadAirEnded(20.0, pytest.approx(10.0)),
    ]
    assert analyzer.snapshot().gap_s == pytest.approx(12.0)


def test_overlapping_chunk_is_not_analysed_twice():
    pcm = script(6, agent=[(1.0, 2.0)], customer=[])
    analyzer = CallAnalyzer(RATE, AnalysisParams(), scorer_factory=EnergyScorer)
    events = analyzer.feed(0, pcm[: 3 * RATE])
    events += analyzer.feed(2 * RATE, pcm[2 * RATE :])  # resends 2.0–3.0
    events += analyzer.finish()
    assert of(events, SpeechStarted) == [SpeechStarted(Speaker.AGENT, 1.0)]
    assert analyzer.position_s == pytest.approx(6.0)


def test_talk_ratio_and_longest_monologue():
    pcm = script(30, agent=[(0.0, 6.0), (7.0, 12.0), (20.0, 22.0)], customer=[(14.0, 18.0)])
    analyzer, _ = run(pcm, monologue_gap_s=1.5)
    snap = analyzer.snapshot()
    assert snap.talk_ratio == pytest.approx(13.0 / 17.0)
    assert snap.longest_monologue_s == pytest.approx(12.0)  # 0–12 merged across the 1 s pause
