"""Frame scoring with webrtcvad, kept apart from the gate that turns scores into speech.

The scorer only answers "is this frame speech?"; hysteresis lives in `speech_gate`. Swapping the
model (an energy detector, a neural VAD) means writing another class with the same `score`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import webrtcvad


class FrameScorer(Protocol):
    frame_samples: int

    def score(self, mono: np.ndarray) -> list[bool]:
        """One decision per whole frame of `mono` (int16, length a multiple of frame_samples)."""
        ...


class WebRtcScorer:
    __slots__ = ("_is_speech", "_rate", "frame_samples")

    def __init__(self, sample_rate: int, frame_ms: int, aggressiveness: int) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad does not support {sample_rate} Hz")
        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames are 10, 20 or 30 ms")
        self._rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._is_speech = webrtcvad.Vad(aggressiveness).is_speech

    def score(self, mono: np.ndarray) -> list[bool]:
        # a byte view of the samples: the frames are slices of it, not copies
        data = memoryview(np.ascontiguousarray(mono)).cast("B")
        step = self.frame_samples * 2
        is_speech, rate = self._is_speech, self._rate
        return [is_speech(data[i : i + step], rate) for i in range(0, len(data), step)]
