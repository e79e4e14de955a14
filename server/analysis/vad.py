"""Frame scoring with webrtcvad, kept apart from the gate that turns scores into speech.

The scorer only answers "is this frame speech?"; hysteresis lives in `speech_gate`. Swapping the
model (an energy detector, a neural VAD) means writing another class with the same `score`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import _webrtcvad
import numpy as np


class FrameScorer(Protocol):
    frame_samples: int

    def score(self, mono: np.ndarray) -> list[bool]:
        """One decision per whole frame of `mono` (int16, length a multiple of frame_samples)."""
        ...


class WebRtcScorer:
    """webrtcvad on each frame, called through its C module (the `Vad` wrapper adds ~10 % per
    frame). With `silence_dbfs`, a frame whose RMS level is under it is scored unvoiced without
    asking webrtcvad (cheaper, and without webrtcvad's ~100 ms hangover into a quiet line)."""

    __slots__ = ("_floor", "_handle", "_rate", "frame_samples")

    def __init__(self, sample_rate: int, frame_ms: int, aggressiveness: int,
                 silence_dbfs: float | None = None) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad does not support {sample_rate} Hz")
        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames are 10, 20 or 30 ms")
        self._rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._handle = _webrtcvad.create()
        _webrtcvad.init(self._handle)
        _webrtcvad.set_mode(self._handle, aggressiveness)
        # sum of squares of a frame at the silence level
        self._floor = None if silence_dbfs is None else (
            self.frame_samples * (32768.0 * 10 ** (silence_dbfs / 20)) ** 2)

    def score(self, mono: np.ndarray) -> list[bool]:
        mono = np.ascontiguousarray(mono)
        data = memoryview(mono).cast("B")  # the frames are slices of it, not copies
        n = self.frame_samples
        step, process, handle, rate = n * 2, _webrtcvad.process, self._handle, self._rate
        if self._floor is None:
            return [process(handle, rate, data[i : i + step], n)
                    for i in range(0, len(data), step)]
        frames = mono.reshape(-1, n).astype(np.float32)
        loud = (np.einsum("ij,ij->i", frames, frames) >= self._floor).tolist()
        return [loud[k] and process(handle, rate, data[k * step : (k + 1) * step], n)
                for k in range(len(loud))]


PairScorer = Callable[[np.ndarray], tuple[list[bool], list[bool]]]


def pair_scorer(scorers: Sequence[FrameScorer]) -> PairScorer | None:
    """Both channels of a chunk scored in one call: `score(channels)` takes the two channels
    as the rows of one C-contiguous int16 array and returns each row's decisions, the same as
    `scorers[0].score(channels[0]), scorers[1].score(channels[1])`. Only for two webrtcvad
    scorers without a silence floor (None otherwise): each channel keeps its own webrtcvad
    state, and the frames are slices of the one buffer."""
    first, second = scorers
    if not (type(first) is type(second) is WebRtcScorer
            and first._floor is None and second._floor is None  # type: ignore[attr-defined]
            and first._rate == second._rate  # type: ignore[attr-defined]
            and first.frame_samples == second.frame_samples):
        return None
    process, rate = _webrtcvad.process, first._rate  # type: ignore[attr-defined]
    a, b = first._handle, second._handle  # type: ignore[attr-defined]
    n = first.frame_samples
    step = 2 * n

    def score(channels: np.ndarray) -> tuple[list[bool], list[bool]]:
        data = memoryview(channels).cast("B")
        half = len(data) >> 1
        return ([process(a, rate, data[i : i + step], n) for i in range(0, half, step)],
                [process(b, rate, data[i : i + step], n) for i in range(half, half << 1, step)])

    return score
