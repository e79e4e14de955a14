"""Synthetic voices must look like speech to webrtcvad, and line noise must not."""

from __future__ import annotations

import time

import numpy as np
import pytest
import webrtcvad

from agent_client.speech import SPEECH_DBFS, SpeechSynth

RATES = (8000, 16000)
# (seed, pitch): male and female voices, extremes of the ranges, and seeded random pitches.
VOICES = ((1, 110.0), (2, 210.0), (3, 95.0), (4, 235.0), (5, None), (6, None))


def vad_flags(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """webrtcvad (aggressiveness 3) decisions for consecutive 20 ms frames."""
    vad = webrtcvad.Vad(3)
    n = sample_rate // 50
    data = np.ascontiguousarray(samples, dtype=np.int16)
    starts = range(0, len(data) - n + 1, n)
    return np.array([vad.is_speech(data[i : i + n].tobytes(), sample_rate) for i in starts])


def dbfs(samples: np.ndarray) -> float:
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    return 20 * np.log10(rms / 32768)


@pytest.fixture(scope="module", params=RATES)
def synths(request: pytest.FixtureRequest) -> list[SpeechSynth]:
    return [SpeechSynth(request.param, seed, pitch) for seed, pitch in VOICES]


def test_utterances_are_speech(synths: list[SpeechSynth]) -> None:
    for synth in synths:
        for at_s in (0.0, 2.9, 6.7):  # the last one wraps around the 8 s bank
            flags = vad_flags(synth.utterance(2.0, at_s=at_s), synth.sample_rate)
            assert len(flags) == 100
            assert flags.mean() >= 0.90, (synth.seed, synth.pitch_hz, at_s, flags.mean())


def test_background_is_not_speech(synths: list[SpeechSynth]) -> None:
    for synth in synths:
        flags = vad_flags(synth.background(4.0), synth.sample_rate)
        assert flags[10:].mean() <= 0.02, (synth.seed, flags.mean())


def test_levels(synths: list[SpeechSynth]) -> None:
    for synth in synths:
        assert -21.5 <= dbfs(synth.utterance(2.0, at_s=1.0)) <= -18.5
        assert -61.0 <= dbfs(synth.background(2.0)) <= -59.0
        bank = synth.speech_samples(0, round(synth.bank_s * synth.sample_rate))
        assert np.abs(bank).max() < 31000  # headroom for the line noise mixed underneath


def test_no_long_gaps_inside_an_utterance(synths: list[SpeechSynth]) -> None:
    """Syllable dips are short: never 80 ms in a row more than 40 dB below the speech level."""
    for synth in synths:
        frame = synth.sample_rate // 100
        x = synth.speech_samples(0, round(synth.bank_s * synth.sample_rate)).astype(np.float64)
        energy = np.sqrt((x.reshape(-1, frame) ** 2).mean(axis=1))
        quiet = 20 * np.log10(energy / 32768 + 1e-12) < SPEECH_DBFS - 40.0
        longest = run = 0
        for q in quiet:
            run = run + 1 if q else 0
            longest = max(longest, run)
        assert longest < 8, (synth.seed, longest)


def test_pitch_and_syllable_rate(synths: list[SpeechSynth]) -> None:
    for synth in synths:
        sr = synth.sample_rate
        x = synth.speech_samples(0, 6 * sr).astype(np.float64)
        # f0 from the autocorrelation of 40 ms frames; the median tracks the voice's pitch.
        n = int(0.04 * sr)
        lo, hi = sr // 400, sr // 70
        estimates = []
        for i in range(0, len(x) - n, n):
            w = x[i : i + n] - x[i : i + n].mean()
            ac = np.correlate(w, w, "full")[n - 1 :]
            estimates.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
        assert abs(np.median(estimates) / synth.pitch_hz - 1) < 0.12, synth.pitch_hz
        # The energy envelope is modulated at the syllable rate (~4-5 Hz).
        frame = sr // 100
        env = np.sqrt((x.reshape(-1, frame) ** 2).mean(axis=1))
        spec = np.abs(np.fft.rfft((env - env.mean()) * np.hanning(len(env))))
        freqs = np.fft.rfftfreq(len(env), 0.01)
        band = (freqs >= 1) & (freqs <= 12)
        centroid = (freqs[band] * spec[band]).sum() / spec[band].sum()
        assert 3.5 <= centroid <= 6.5, centroid


def test_deterministic_and_distinct() -> None:
    a, b = SpeechSynth(8000, 42), SpeechSynth(8000, 42)
    assert a.pitch_hz == b.pitch_hz
    assert np.array_equal(a.utterance(1.0, at_s=0.5), b.utterance(1.0, at_s=0.5))
    assert np.array_equal(a.background(1.0), b.background(1.0))
    c = SpeechSynth(8000, 43, a.pitch_hz)
    assert not np.array_equal(a.utterance(1.0), c.utterance(1.0))


def test_loop_slicing_is_position_addressed() -> None:
    synth = SpeechSynth(8000, 7, 120.0, bank_s=2.0)
    whole = synth.speech_samples(1234, 3 * 16000)  # wraps the 2 s bank several times
    parts = np.concatenate([synth.speech_samples(p, 800) for p in range(1234, 1234 + 48000, 800)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(synth.speech_samples(5, 10), synth.speech_samples(5 + 16000, 10))
    assert synth.utterance(0.5).dtype == np.int16 and len(synth.utterance(0.5)) == 4000
    with pytest.raises(ValueError):
        synth.speech_samples(0, 10)[0] = 1  # the bank is shared, so it is read-only


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SpeechSynth(44100, 1)
    with pytest.raises(ValueError):
        SpeechSynth(8000, 1, pitch_hz=20.0)


def test_slicing_is_cheap() -> None:
    """Loose bound (the real figure is ~1-2 us per 100 ms slice); guards against regressions
    such as re-synthesising per call."""
    synth = SpeechSynth(16000, 9)
    start = time.perf_counter()
    for i in range(1000):
        synth.speech_samples(i * 1600, 1600)
        synth.background_samples(i * 1600, 1600)
    assert (time.perf_counter() - start) / 1000 < 100e-6
