"""Speech-like synthetic audio for the floor simulator and for tests.

The hub only needs audio that a voice-activity detector (webrtcvad) treats like a person talking
and silence that it treats like an idle phone line.  Real recordings would make the simulator
depend on data files and would be expensive to mix for hundreds of channels, so we synthesise a
source-filter "voice" instead:

* a glottal-pulse source whose f0 follows a natural contour (phrase declination, slow
  intonation, per-syllable accents and a little jitter),
* shaped by three formant resonances that glide between vowel targets at ~4.5 syllables/s,
* under a syllable amplitude envelope (never silent for more than a few tens of ms, so one
  utterance stays one stretch of speech for the VAD), at about -20 dBFS RMS.

Synthesis is vectorised numpy (pulse shape from the phase, formants applied as a smooth spectral
envelope in a short-time Fourier domain), but even so it is far too slow to run per chunk for
200 agents.  So each voice renders a *bank* of a few seconds once, at construction, and every
later request is a slice of that loop: producing 100 ms costs a numpy slice and a copy.  The
banks are built circularly (periodic STFT, FFT-shaped noise), so the loop point has no click.

A ``SpeechSynth`` is immutable after construction: share one between calls, and consider a
small pool of customer voices rather than one per simulated customer.  Building a voice costs
~30 ms (8 kHz) to ~50 ms (16 kHz) of CPU, and its banks take ``1.5 * bank_s * sample_rate * 2``
bytes (375 KiB for the default 8 s at 16 kHz).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BACKGROUND_DBFS", "SPEECH_DBFS", "SpeechSynth"]

SPEECH_DBFS = -20.0
"""RMS level of the speech bank, in dB relative to full scale (32768)."""

BACKGROUND_DBFS = -60.0
"""RMS level of the line-noise bank."""

_FULL_SCALE = 32768.0
_CONTROL_HZ = 200  # rate of the f0 / formant / envelope control tracks
_FADE_S = 0.008  # fade in/out of an utterance, so turns do not start or end with a click

# (F1, F2, F3) in Hz for a handful of vowels of an adult male; female voices scale by ~1.15.
_VOWELS = np.array(
    [
        (730.0, 1090.0, 2440.0),  # a
        (530.0, 1840.0, 2480.0),  # e
        (390.0, 1990.0, 2550.0),  # i-ish
        (570.0, 840.0, 2410.0),  # o
        (440.0, 1020.0, 2240.0),  # u-ish
        (660.0, 1720.0, 2410.0),  # ae
        (520.0, 1190.0, 2390.0),  # schwa
    ]
)
_BANDWIDTHS = np.array([90.0, 120.0, 170.0])


def _db_to_rms(dbfs: float) -> float:
    return _FULL_SCALE * 10.0 ** (dbfs / 20.0)


class SpeechSynth:
    """One synthetic voice plus the line noise of its phone line, at one sample rate.

    ``seed`` fixes everything (the voice's pitch when ``pitch_hz`` is None, the syllables, the
    noise), so two synths built with the same arguments produce identical samples.  Seeded
    pitches are 95-135 Hz (male) or 175-235 Hz (female); that is the range over which the
    speech is checked to pass webrtcvad.
    """

    __slots__ = ("_background", "_speech", "bank_s", "pitch_hz", "sample_rate", "seed")

    def __init__(
        self,
        sample_rate: int,
        seed: int,
        pitch_hz: float | None = None,
        *,
        bank_s: float = 8.0,
    ) -> None:
        if sample_rate not in (8000, 16000):
            raise ValueError(f"sample_rate must be 8000 or 16000, not {sample_rate}")
        if bank_s < 1.0:
            raise ValueError("bank_s must be at least 1 second")
        rng = np.random.default_rng([seed, 0x5EEC])
        if pitch_hz is None:
            # Half male, half female voices, spread over the usual speaking ranges.
            pitch_hz = float(rng.uniform(95, 135) if rng.random() < 0.5 else rng.uniform(175, 235))
        if not 50.0 <= pitch_hz <= 400.0:
            raise ValueError(f"pitch_hz out of range: {pitch_hz}")
        self.sample_rate = sample_rate
        self.seed = seed
        self.pitch_hz = float(pitch_hz)
        self.bank_s = float(bank_s)
        n = round(bank_s * sample_rate)
        self._speech = _speech_bank(rng, sample_rate, self.pitch_hz, n)
        self._background = _background_bank(
            np.random.default_rng([seed, 0xB6]), sample_rate, max(n // 2, sample_rate)
        )

    # -- cheap slicing of the loops -------------------------------------------------------

    def speech_samples(self, position: int, n: int) -> np.ndarray:
        """``n`` samples of the endless speech loop from sample ``position`` (read-only int16).

        Position-addressed rather than stateful, so a caller can re-render any part of a call
        and get the same samples.
        """
        return _loop_slice(self._speech, position, n)

    def background_samples(self, position: int, n: int) -> np.ndarray:
        """``n`` samples of the endless line-noise loop from sample ``position`` (read-only)."""
        return _loop_slice(self._background, position, n)

    # -- convenience API -------------------------------------------------------------------

    def utterance(self, duration_s: float, *, at_s: float = 0.0) -> np.ndarray:
        """A stretch of continuous speech of ``duration_s`` seconds, with short fades.

        ``at_s`` picks where in the voice's material to start, so callers can get different
        utterances from one voice without the synth keeping a cursor.  Line noise is mixed
        under the speech, as it would be on a real line.
        """
        n = round(duration_s * self.sample_rate)
        pos = round(at_s * self.sample_rate)
        speech = self.speech_samples(pos, n).astype(np.float32)
        fade = min(int(_FADE_S * self.sample_rate), n // 2)
        if fade:
            ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
            speech[:fade] *= ramp
            speech[n - fade :] *= ramp[::-1]
        speech += self.background_samples(pos, n)
        return np.clip(speech, -32768, 32767).astype(np.int16)

    def background(self, duration_s: float, *, at_s: float = 0.0) -> np.ndarray:
        """``duration_s`` seconds of quiet, slightly coloured line noise (~ -60 dBFS)."""
        n = round(duration_s * self.sample_rate)
        return self.background_samples(round(at_s * self.sample_rate), n).copy()


def _loop_slice(bank: np.ndarray, position: int, n: int) -> np.ndarray:
    size = bank.shape[0]
    start = position % size
    if start + n <= size:
        return bank[start : start + n]
    reps = -(-(start + n) // size)
    return np.tile(bank, reps)[start : start + n]


def _speech_bank(rng: np.random.Generator, sr: int, pitch_hz: float, n: int) -> np.ndarray:
    """Render ``n`` samples of looping speech for one voice (see the module docstring)."""
    n_ctl = int(np.ceil(n * _CONTROL_HZ / sr))
    ctl_t = np.arange(n_ctl) / _CONTROL_HZ
    total_s = n / sr

    # Syllables: 4-5 per second with some spread; the last one is stretched to close the loop.
    bounds = [0.0]
    while bounds[-1] < total_s - 0.3:
        bounds.append(bounds[-1] + rng.uniform(0.16, 0.30))
    bounds[-1] = total_s
    bounds_a = np.asarray(bounds)
    n_syl = len(bounds_a) - 1
    syl_of = np.clip(np.searchsorted(bounds_a, ctl_t, side="right") - 1, 0, n_syl - 1)
    syl_pos = (ctl_t - bounds_a[syl_of]) / np.diff(bounds_a)[syl_of]  # 0..1 inside a syllable

    # Amplitude: a rise-and-fall per syllable with random stress; some syllables open with a
    # short consonant-like dip (20-60 ms), deep but far shorter than the VAD's patience.
    stress = rng.uniform(0.55, 1.0, n_syl)
    env = stress[syl_of] * (0.45 + 0.55 * np.sin(np.pi * syl_pos) ** 0.7)
    dip_len = rng.uniform(0.02, 0.06, n_syl) * (rng.random(n_syl) < 0.35)
    in_dip = (ctl_t - bounds_a[syl_of]) < dip_len[syl_of]
    env = np.where(in_dip, env * 0.12, env)

    # Formants: one vowel target per syllable, reached mid-syllable, glides in between.
    scale = 1.0 + 0.15 * np.clip((pitch_hz - 110.0) / 100.0, 0.0, 1.0)
    targets = _VOWELS[rng.integers(0, len(_VOWELS), n_syl)] * scale
    targets *= rng.uniform(0.93, 1.07, (n_syl, 3))
    centres = (bounds_a[:-1] + bounds_a[1:]) / 2
    wrap_c = np.concatenate(([centres[-1] - total_s], centres, [centres[0] + total_s]))
    wrap_t = np.vstack((targets[-1:], targets, targets[:1]))
    formants = np.stack([np.interp(ctl_t, wrap_c, wrap_t[:, k]) for k in range(3)], axis=1)

    # f0: declining phrases of 1.5-3 s, a slow random intonation wave, accents on stressed
    # syllables, and a little jitter.  Everything is periodic over the bank except the jitter.
    # The excursions stay within about +-20 %: webrtcvad starts rejecting some vowels once a
    # voice goes much above ~250 Hz.
    phrase_len = total_s / max(1, round(total_s / rng.uniform(1.5, 3.0)))
    phrase_pos = (ctl_t % phrase_len) / phrase_len
    waves = sum(
        rng.uniform(0.015, 0.035) * np.sin(2 * np.pi * (k * ctl_t / total_s + rng.random()))
        for k in rng.integers(2, max(3, int(total_s)), 3)
    )
    accent = 0.10 * (stress[syl_of] - 0.75) * np.sin(np.pi * syl_pos)
    f0 = pitch_hz * (1.07 - 0.14 * phrase_pos + waves + accent)
    f0 *= 1.0 + rng.normal(0.0, 0.008, n_ctl)

    # Source: glottal-flow derivative (Rosenberg pulse) driven by the f0 phase, plus a little
    # aspiration noise so the spectrum is not purely harmonic.
    t = np.arange(n) / sr
    f0_s = np.interp(t, ctl_t, f0)
    phase = np.cumsum(f0_s / sr) % 1.0
    open_q, close_q = 0.45, 0.18
    flow = np.where(
        phase < open_q,
        0.5 * (1.0 - np.cos(np.pi * phase / open_q)),
        np.where(
            phase < open_q + close_q,
            np.cos(0.5 * np.pi * (phase - open_q) / close_q),
            0.0,
        ),
    )
    source = np.diff(flow, prepend=flow[-1])
    source /= np.std(source) + 1e-12
    source += rng.normal(0.0, 0.08, n)

    # Filter: multiply each short-time spectrum by the cascade formant envelope of its time,
    # on a circular STFT so the bank loops seamlessly.
    # A sine window used for analysis and synthesis at 50 % overlap sums to exactly one, so the
    # overlap-add needs no normalisation.
    n_fft = 512 if sr == 16000 else 256
    hop = n_fft // 2
    n_frames = -(-n // hop)
    padded = np.zeros(n_frames * hop + hop)
    padded[:n] = source
    padded[n_frames * hop :] = padded[:hop]  # circular: the last frame wraps to the start
    window = np.sin(np.pi * (np.arange(n_fft) + 0.5) / n_fft).astype(np.float32)
    framed = np.lib.stride_tricks.sliding_window_view(padded.astype(np.float32), n_fft)[::hop]
    spectra = np.fft.rfft(framed * window, axis=1)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr).astype(np.float32)[None, :]
    frame_t = (np.arange(n_frames) * hop + n_fft / 2) / sr % total_s
    power = np.ones((n_frames, freqs.shape[1]), dtype=np.float32)
    for k in range(3):
        fk = np.interp(frame_t, ctl_t, formants[:, k]).astype(np.float32)[:, None]
        ratio = freqs / fk
        power *= (1.0 - ratio * ratio) ** 2 + (ratio * (_BANDWIDTHS[k] / fk)) ** 2
    # A 200 Hz low cut, as on a phone line; without it webrtcvad takes some syllables of low
    # male voices (strong fundamental below 250 Hz) for noise.
    gain = np.clip(freqs / 200.0, 0.0, 1.0) ** 2 / np.sqrt(power)
    frames = np.fft.irfft(spectra * gain, n=n_fft, axis=1) * window
    out = _overlap_add(frames, hop)[:n].astype(np.float64)

    out *= np.interp(t, ctl_t, env)
    out *= _db_to_rms(SPEECH_DBFS) / (np.sqrt(np.mean(out**2)) + 1e-12)
    bank = np.clip(np.round(out), -30000, 30000).astype(np.int16)
    bank.flags.writeable = False
    return bank


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Circular overlap-add of frames spaced ``hop`` apart (frame length a multiple of hop).

    Splitting each frame into hop-sized blocks and rolling block q by q frames turns the
    overlap-add into a plain sum, which is much faster than ``np.add.at``.
    """
    n_frames, n_fft = frames.shape
    blocks = frames.reshape(n_frames, n_fft // hop, hop)
    out = np.zeros((n_frames, hop))
    for q in range(n_fft // hop):
        out += np.roll(blocks[:, q, :], q, axis=0)
    return out.ravel()


def _background_bank(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Quiet line noise: Gaussian noise shaped to a gentle pink-ish slope inside the phone
    band, synthesised in the frequency domain so it loops without a seam."""
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    shape = 1.0 / np.sqrt(np.maximum(freqs, 100.0) / 100.0)
    shape *= 1.0 / (1.0 + (freqs / 3400.0) ** 8)
    noise = np.fft.irfft(spectrum * shape, n=n)
    noise *= _db_to_rms(BACKGROUND_DBFS) / (np.sqrt(np.mean(noise**2)) + 1e-12)
    bank = np.round(noise).astype(np.int16)
    bank.flags.writeable = False
    return bank
