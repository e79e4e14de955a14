"""A supervisor's voice on the agent's desktop: whisper (the agent hears it) and barge (the agent
and the customer hear it).

The hub sends the supervisor's microphone as binary messages on the ingest socket (docs/protocol.md
§1.6): mono int16 at the call's rate, flagged whisper or barge. `SupervisorVoice` fans each frame
out to what the desktop does with it:

- `VoiceRecorder` (file mode): a mono WAV of what the agent heard, aligned to the call's timeline,
  so a test or a user can check it;
- `VoicePlayer` (live mode): the agent's output device (needs the `sound` extra and a sound card);
- `BargeMixer`: barge audio waiting to be mixed into the agent channel — the audio that goes to
  the call, so the customer (and every listener) hears the supervisor.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent_client.wavfile import write_wav
from server.ingest_protocol import AUDIO_HEADER, PROTOCOL_VERSION

log = logging.getLogger("floorwatch.agent_client")

WHISPER, BARGE = 1, 2
MODES = {WHISPER: "whisper", BARGE: "barge"}


class BadVoiceFrame(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class VoiceFrame:
    mode: str  # "whisper" or "barge"
    chunk: int
    offset: int  # samples into the call when the hub sent it
    pcm: np.ndarray  # mono int16


def parse_voice(data: bytes) -> VoiceFrame:
    if len(data) < AUDIO_HEADER.size or (len(data) - AUDIO_HEADER.size) % 2:
        raise BadVoiceFrame("supervisor audio: truncated frame")
    version, channels, flags, chunk, offset = AUDIO_HEADER.unpack_from(data)
    if version != PROTOCOL_VERSION or channels != 1 or flags not in MODES:
        raise BadVoiceFrame(f"supervisor audio: unexpected header {version}/{channels}/{flags}")
    pcm = np.frombuffer(data, dtype="<i2", offset=AUDIO_HEADER.size).astype(np.int16)
    return VoiceFrame(MODES[flags], chunk, offset, pcm)


class BargeMixer:
    """Barge audio queued for the outgoing agent channel, at most `max_s` seconds of it."""

    def __init__(self, sample_rate: int, max_s: float = 1.0) -> None:
        self._pending: collections.deque[np.ndarray] = collections.deque()
        self._queued = 0
        self._max = int(sample_rate * max_s)
        self.mixed_samples = 0

    def add(self, pcm: np.ndarray) -> None:
        self._pending.append(pcm)
        self._queued += len(pcm)
        while self._queued > self._max:  # too far behind: drop the oldest (live or nothing)
            self._queued -= len(self._pending.popleft())

    def mix_into(self, stereo: np.ndarray) -> np.ndarray:
        """Add the queued barge audio to the agent (left) channel of an outgoing chunk."""
        if not self._pending:
            return stereo
        n = len(stereo)
        voice = np.zeros(n, np.int32)
        filled = 0
        while self._pending and filled < n:
            head = self._pending[0]
            take = min(n - filled, len(head))
            voice[filled:filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._pending.popleft()
            else:
                self._pending[0] = head[take:]
        self._queued -= filled
        self.mixed_samples += filled
        out = stereo.astype(np.int32)
        out[:, 0] += voice
        return np.clip(out, -32768, 32767).astype(np.int16)


class VoiceRecorder:
    """What the agent heard from supervisors, as a mono WAV aligned to the call."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self._buffer = np.zeros(0, np.int16)
        self._position = 0
        self.frames = 0

    def add(self, frame: VoiceFrame) -> None:
        start = max(frame.offset, self._position)  # never over what was already heard
        end = start + len(frame.pcm)
        if end > len(self._buffer):
            grown = np.zeros(max(end, 2 * len(self._buffer)), np.int16)
            grown[:len(self._buffer)] = self._buffer
            self._buffer = grown
        self._buffer[start:end] = frame.pcm
        self._position = end
        self.frames += 1

    def write(self) -> None:
        write_wav(self.path, self._buffer[:self._position], self.sample_rate)


class VoicePlayer:
    """Live mode: the supervisor's voice on the agent's headset (PortAudio output stream)."""

    def __init__(self, sample_rate: int, device: str | None = None) -> None:
        import sounddevice

        self._stream = sounddevice.OutputStream(samplerate=sample_rate, channels=1,
                                                dtype="int16", device=device)
        self._stream.start()

    def add(self, frame: VoiceFrame) -> None:
        self._stream.write(frame.pcm.reshape(-1, 1))

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class SupervisorVoice:
    """Receives the hub's voice frames and hands them to the desktop's outputs."""

    def __init__(self, *outputs: Callable[[VoiceFrame], None],
                 mixer: BargeMixer | None = None) -> None:
        self._outputs = outputs
        self.mixer = mixer
        self.frames = {"whisper": 0, "barge": 0}
        self.refused = 0

    def __call__(self, data: bytes) -> None:
        try:
            frame = parse_voice(data)
        except BadVoiceFrame as exc:
            self.refused += 1
            log.warning("%s", exc)
            return
        self.frames[frame.mode] += 1
        for output in self._outputs:
            output(frame)
        if frame.mode == "barge" and self.mixer is not None:
            self.mixer.add(frame.pcm)
