"""A live call's audio for its listeners, and a supervisor's voice for the agent.

`CallTap` encodes a call's stereo audio (left agent, right customer) to Opus once, however many
supervisors listen, and hands the same packets to each listener's `PacketQueue`. A queue holds a
bounded amount of audio: a listener whose network or browser falls behind loses its oldest packets
(a skip it hears as a short glitch) and never makes the call, its analysis or the other listeners
wait. Nothing is encoded while nobody listens.

`VoiceResampler` turns the supervisor's microphone (48 kHz from the browser) into mono frames at
the call's rate for the agent's desktop.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging

import av
import numpy as np

log = logging.getLogger("floorwatch.call_audio")

OPUS_FRAME_S = 0.02


class PacketQueue:
    """One listener's share of a call: newest packets kept, oldest skipped when it lags."""

    def __init__(self, max_packets: int) -> None:
        self._packets: collections.deque[av.Packet] = collections.deque(maxlen=max_packets)
        self._ready = asyncio.Event()
        self.skipped = 0
        self.delivered = 0
        self.closed = False
        self.flowing = False  # set once the listener is connected: no stale audio queued before

    def put(self, packet: av.Packet) -> None:
        if not self.flowing:
            return
        if len(self._packets) == self._packets.maxlen:
            self.skipped += 1
        self._packets.append(packet)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> av.Packet | None:
        """The next packet, or None once closed (the call ended or the listener left)."""
        while not self._packets:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        return self._packets.popleft()


class CallTap:
    def __init__(self, sample_rate: int, *, bitrate: int = 32000, complexity: int = 1,
                 buffer_s: float = 0.3) -> None:
        self.sample_rate = sample_rate
        self._bitrate = bitrate
        self._complexity = complexity
        self._max_packets = max(2, round(buffer_s / OPUS_FRAME_S))
        self._encoder: av.AudioCodecContext | None = None
        self._queues: list[PacketQueue] = []
        self._time_base = fractions.Fraction(1, sample_rate)
        self.encoded_s = 0.0

    @property
    def listening(self) -> int:
        return len(self._queues)

    def open(self) -> PacketQueue:
        queue = PacketQueue(self._max_packets)
        self._queues.append(queue)
        return queue

    def release(self, queue: PacketQueue) -> None:
        queue.close()
        if queue in self._queues:
            self._queues.remove(queue)
        if not self._queues:
            self._encoder = None  # a later listener starts a fresh stream

    def close(self) -> None:
        for queue in self._queues:
            queue.close()
        self._queues.clear()
        self._encoder = None

    def push(self, offset: int, pcm: np.ndarray) -> None:
        """A chunk of the call: `pcm` (n, 2) int16 starting `offset` samples into the call."""
        if not self._queues:
            return
        if self._encoder is None:
            self._encoder = self._new_encoder()
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm).reshape(1, -1),
                                           format="s16", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.pts = offset
        frame.time_base = self._time_base
        try:
            packets = self._encoder.encode(frame)
        except (av.FFmpegError, ValueError) as exc:  # never let a listener break ingest
            log.warning("opus encoding failed (%s); restarting the listeners' stream", exc)
            self._encoder = None
            return
        self.encoded_s += len(pcm) / self.sample_rate
        for packet in packets:
            for queue in self._queues:
                queue.put(packet)

    def _new_encoder(self) -> av.AudioCodecContext:
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = self.sample_rate
        encoder.layout = "stereo"
        encoder.format = "s16"
        encoder.bit_rate = self._bitrate
        encoder.time_base = self._time_base
        encoder.options = {"application": "voip", "frame_duration": "20",
                           "compression_level": str(self._complexity)}
        encoder.open()
        return encoder


class VoiceResampler:
    """Browser microphone frames (any rate/layout) -> mono int16 at the call's rate."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not out:
            return np.zeros(0, np.int16)
        return out[0] if len(out) == 1 else np.concatenate(out)
