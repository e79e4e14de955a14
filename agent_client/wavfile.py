"""Writing WAV files (what the agent client records in file mode)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    """Write int16 samples, shape (n,) mono or (n, channels), as a 16-bit WAV."""
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
