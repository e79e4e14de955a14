"""The audio the benchmark calls stream, with the ground truth of every incident in it.

Two scripts, each a loop of stereo 16-bit audio (column 0 agent, column 1 customer) built from
`agent_client.speech.SpeechSynth` voices, which webrtcvad hears as speech, over line noise:

* the **load** script is an ordinary conversation: turns, short pauses (< 0.5 s), a backchannel
  overlap of 0.35 s. It raises no alert, but moves the tile (speaking flags, talk ratio).
* the **probe** script repeats a cycle with exactly one overtalk and one dead air in it, at known
  offsets, so the moment the audio crosses each threshold is known to the sample.

Every loop is a whole number of chunks, and each chunk's payload is encoded once: sending a chunk
costs a header pack and a bytes concatenation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from agent_client.speech import SpeechSynth
from server.ingest_protocol import AUDIO_HEADER

AGENT, CUSTOMER = 0, 1

# (speaker, start_s, end_s): a 12 s conversation; the longest silence is 0.5 s.
LOAD_SPANS: tuple[tuple[int, float, float], ...] = (
    (AGENT, 0.0, 3.4),
    (CUSTOMER, 3.9, 6.6),
    (AGENT, 7.0, 9.4),
    (CUSTOMER, 8.0, 8.35),  # "mm-hm": shorter than an interruption
    (CUSTOMER, 9.9, 11.6),
)
LOAD_LOOP_S = 12.0


@dataclass(frozen=True, slots=True)
class Incident:
    """One scripted condition in a probe cycle: it starts at `start_s` (offset within the cycle)
    and crosses its alert threshold at `crossing_s`."""

    kind: str  # "silence" or "overtalk", as in Alert.kind
    start_s: float
    crossing_s: float


@dataclass(frozen=True, slots=True)
class ProbeScript:
    """Agent speaks, the customer cuts in and both talk past the overtalk threshold, then both
    fall silent past the dead-air threshold; repeat.

    `phase_s` (0 ≤ phase < one chunk) shifts everything within the cycle, so that across probes
    the threshold crossings fall anywhere within a chunk, as they do on a real floor."""

    dead_air_s: float
    overtalk_s: float
    chunk_s: float
    phase_s: float = 0.0
    cut_in_s: float = 1.0
    margin_s: float = 0.8

    @property
    def agent_end_s(self) -> float:
        return self.phase_s + self.cut_in_s + self.overtalk_s + self.margin_s

    @property
    def customer_end_s(self) -> float:
        return self.agent_end_s + 0.7

    @property
    def cycle_s(self) -> float:
        raw = self.customer_end_s - self.phase_s + self.dead_air_s + 1.0 + self.chunk_s
        return math.ceil(raw / self.chunk_s - 1e-9) * self.chunk_s

    @property
    def spans(self) -> tuple[tuple[int, float, float], ...]:
        cut_in = self.phase_s + self.cut_in_s
        return ((AGENT, self.phase_s, self.agent_end_s), (CUSTOMER, cut_in, self.customer_end_s))

    @property
    def incidents(self) -> tuple[Incident, Incident]:
        cut_in = self.phase_s + self.cut_in_s
        return (
            Incident("overtalk", cut_in, cut_in + self.overtalk_s),
            Incident("silence", self.customer_end_s, self.customer_end_s + self.dead_air_s),
        )

    def incident_for(self, kind: str, offset_s: float) -> tuple[int, Incident]:
        """The scripted incident (cycle number, incident) an alert at `offset_s` reports."""
        incident = next(i for i in self.incidents if i.kind == kind)
        cycle = max(0, math.floor((offset_s - incident.start_s + self.cycle_s / 2) / self.cycle_s))
        return cycle, incident


@functools.lru_cache(maxsize=16)
def _voice(rate: int, seed: int) -> SpeechSynth:
    return SpeechSynth(rate, seed=seed)  # ~50 ms to build; immutable, so shared


def render(spans: tuple[tuple[int, float, float], ...], loop_s: float, rate: int,
           seed: int) -> np.ndarray:
    """Stereo int16 audio of one loop: line noise on both channels, speech inside the spans."""
    voices = (_voice(rate, seed), _voice(rate, seed + 1))
    n = round(loop_s * rate)
    out = np.empty((n, 2), dtype=np.int16)
    for channel, voice in enumerate(voices):
        out[:, channel] = voice.background_samples(channel * 7919, n)
    for k, (channel, start, end) in enumerate(spans):
        s0, s1 = round(start * rate), round(end * rate)
        out[s0:s1, channel] = voices[channel].utterance((s1 - s0) / rate, at_s=1.7 * k)
    return out


class ChunkLoop:
    """A rendered loop cut into chunks whose payloads are encoded once."""

    def __init__(self, pcm: np.ndarray, rate: int, chunk_s: float) -> None:
        self.rate = rate
        self.step = round(rate * chunk_s)
        if len(pcm) % self.step:
            raise ValueError("the loop must be a whole number of chunks")
        self.payloads = [pcm[i : i + self.step].astype("<i2").tobytes()
                         for i in range(0, len(pcm), self.step)]

    def __len__(self) -> int:
        return len(self.payloads)

    def frame(self, chunk_no: int, start_chunk: int = 0) -> bytes:
        """The ingest frame of chunk `chunk_no` of a call that starts at loop chunk
        `start_chunk` (protocol v1 §1.3: 16-byte header, then interleaved PCM)."""
        payload = self.payloads[(start_chunk + chunk_no) % len(self.payloads)]
        header = AUDIO_HEADER.pack(1, 2, 0, chunk_no & 0xFFFFFFFF, chunk_no * self.step)
        return header + payload


def load_loop(rate: int, chunk_s: float, seed: int = 7) -> ChunkLoop:
    return ChunkLoop(render(LOAD_SPANS, LOAD_LOOP_S, rate, seed), rate, chunk_s)


def probe_loop(script: ProbeScript, rate: int, seed: int = 11) -> ChunkLoop:
    return ChunkLoop(render(script.spans, script.cycle_s, rate, seed), rate, script.chunk_s)
