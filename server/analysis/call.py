"""Everything the hub works out about one call's audio, in one sans-I/O object.

    analyzer = CallAnalyzer(16000, AnalysisParams())
    events = analyzer.feed(offset_samples, stereo_int16)   # any chunk size
    events += analyzer.set_hold(True)
    events += analyzer.finish()

The analyser's clock is the audio: sample offsets sent by the client. A chunk that starts past
the end of the previous one is a gap (audio lost in an outage); a chunk that overlaps audio
already seen has the overlap dropped. Replaying a WAV at any speed gives identical events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from server.analysis.detectors import DeadAirDetector, OvertalkDetector, TalkStats
from server.analysis.params import AnalysisParams
from server.analysis.speech_gate import SpeechGate
from server.analysis.vad import FrameScorer, WebRtcScorer, pair_scorer
from server.events import AnalysisEvent, AudioGap, Speaker, SpeechEnded, SpeechStarted

ScorerFactory = Callable[[int, AnalysisParams], FrameScorer]


# Speech quieter than this (frame RMS) is not heard on a phone line: webrtcvad keeps saying
# "speech" for ~100 ms after the voice stops (its hangover), so dead air is dated from the end of
# the last voiced frame over this level instead. It makes dead-air offsets exact to a frame and
# raises the alert ~0.1 s sooner; speech segments, overtalk and talk statistics still follow
# webrtcvad alone. (Skipping webrtcvad on such frames altogether — `WebRtcScorer(silence_dbfs)`
# — also saves CPU but shortens segments, which audio keyword spotting relies on: off.)
SILENCE_DBFS: float | None = -50.0
VAD_SILENCE_DBFS: float | None = None


def webrtc_scorer(sample_rate: int, params: AnalysisParams) -> FrameScorer:
    return WebRtcScorer(sample_rate, params.vad_frame_ms, params.vad_aggressiveness,
                        silence_dbfs=VAD_SILENCE_DBFS)


@dataclass(frozen=True, slots=True)
class TalkSnapshot:
    """The live numbers a tile shows."""

    position_s: float
    agent_speaking: bool
    customer_speaking: bool
    talk_ratio: float | None
    dead_air_since_s: float | None  # offset where an alerted silence began, while it lasts
    overtalk_count: int
    interruptions: dict[str, int]
    longest_monologue_s: float
    gap_s: float


class CallAnalyzer:
    def __init__(
        self,
        sample_rate: int,
        params: AnalysisParams,
        scorer_factory: ScorerFactory = webrtc_scorer,
        silence_dbfs: float | None = SILENCE_DBFS,
    ) -> None:
        self.sample_rate = sample_rate
        self.params = params
        self._scorers = (scorer_factory(sample_rate, params), scorer_factory(sample_rate, params))
        self._score_pair = pair_scorer(self._scorers)  # both channels in one call, when it can
        self._frame = self._scorers[0].frame_samples
        self._frame_s = self._frame / sample_rate
        self.gates = (
            SpeechGate(Speaker.AGENT, self._frame_s, params.speech_start_s, params.speech_stop_s),
            SpeechGate(
                Speaker.CUSTOMER, self._frame_s, params.speech_start_s, params.speech_stop_s
            ),
        )
        self.dead_air = DeadAirDetector(self.gates, params.dead_air_s)
        self.overtalk = OvertalkDetector(self.gates, params.overtalk_s, params.interruption_s)
        self.stats = TalkStats(self.gates, params.monologue_gap_s)
        self._received = 0  # samples received, the end of the audio timeline
        self._origin = 0  # sample where the current frame grid starts (moves after a gap)
        self._frames_done = 0  # whole frames analysed since the origin
        # sum of squares of a frame at the silence floor: speech audibly ends at the last voiced
        # frame over it (dead air is dated from there, not from the end of the VAD's hangover)
        self._loud_floor = None if silence_dbfs is None else (
            self._frame * (32768.0 * 10 ** (silence_dbfs / 20)) ** 2)
        self.frames_total = 0
        self._carry = np.zeros((0, 2), dtype=np.int16)
        self.gap_s = 0.0
        self.on_hold = False
        self.finished = False
        self._changes = 0  # bumped by every analysis event and hold change
        self._tile_key: tuple[int, float | None, float] | None = None

    @property
    def position_s(self) -> float:
        return self._received / self.sample_rate

    def feed(self, offset: int, pcm: np.ndarray) -> list[AnalysisEvent]:
        """Analyse a chunk of interleaved stereo int16 audio starting at sample `offset`."""
        if self.finished:
            return []
        out: list[AnalysisEvent] = []
        received = self._received
        if offset > received:
            out += self._gap(offset)
        elif offset < received:
            pcm = pcm[received - offset :]
        n = len(pcm)
        if not n:
            return out
        self._received += n
        carry = self._carry
        if len(carry):
            pcm = np.concatenate((carry, pcm))
            n = len(pcm)
        rest = n % self._frame
        if rest:
            self._carry = pcm[n - rest :].copy()
            pcm = pcm[: n - rest]
        elif len(carry):
            self._carry = carry[:0]
        if n > rest:
            out += self._analyse(pcm)
        now = (self._origin + self._frames_done * self._frame) / self.sample_rate
        # the detectors' advance() does nothing unless a silence or an overlap is under way
        # and not yet alerted: skip the calls in the usual case
        dead_air, overtalk = self.dead_air, self.overtalk
        if dead_air.silence_start is not None and not (dead_air.raised or dead_air.suspended):
            out += dead_air.advance(now)
        if overtalk.start is not None and not overtalk.raised:
            out += self._note(overtalk.advance(now))
        self.stats.advance()
        if out:
            self._changes += 1
        return out

    def set_hold(self, on: bool) -> list[AnalysisEvent]:
        """The agent put the customer on hold (or took them off it) at the current position."""
        if on == self.on_hold:
            return []
        self.on_hold = on
        self._changes += 1
        at = self.position_s
        if on:
            return self.dead_air.suspend(at)
        self.dead_air.resume(at)
        return []

    def finish(self) -> list[AnalysisEvent]:
        """The call ended: close whatever is open at the end of the audio received."""
        if self.finished:
            return []
        out = self._close_all(self._analysed_s)
        self.finished = True
        self._changes += 1
        return out

    def tile_stale(self, ratio_digits: int = 2, monologue_digits: int = 0) -> bool:
        """Whether what `snapshot()` shows, at the precision a tile shows it (talk ratio to
        0.01, longest monologue to the second), may have changed since this last returned True.

        Speech edges, counts, dead air and holds come with analysis events; between them only
        the talk ratio and the monologue move, and only with speech. Lets the hub skip the
        snapshot and the tile diff for the chunks that change nothing a wall would show.
        """
        agent, customer = self.gates
        if not (agent.speaking or customer.speaking) and (
                self._tile_key is not None and self._changes == self._tile_key[0]):
            return False  # no event and nobody speaking since the key was taken: nothing moved
        key = (self._changes, _rounded(self.stats.talk_ratio(), ratio_digits),
               round(self.stats.longest_monologue_s, monologue_digits))
        if key == self._tile_key:
            return False
        self._tile_key = key
        return True

    def snapshot(self) -> TalkSnapshot:
        agent, customer = self.gates
        interruptions = self.stats.interruptions
        return TalkSnapshot(
            position_s=self.position_s,
            agent_speaking=agent.speaking,
            customer_speaking=customer.speaking,
            talk_ratio=self.stats.talk_ratio(),
            dead_air_since_s=self.dead_air.current_start(),
            overtalk_count=self.overtalk.count,
            interruptions={"agent": interruptions[Speaker.AGENT],
                           "customer": interruptions[Speaker.CUSTOMER]},
            longest_monologue_s=self.stats.longest_monologue_s,
            gap_s=self.gap_s,
        )

    # -- internals ------------------------------------------------------------------------

    @property
    def _analysed_s(self) -> float:
        return (self._origin + self._frames_done * self._frame) / self.sample_rate

    def _analyse(self, pcm: np.ndarray) -> list[AnalysisEvent]:
        channels = pcm.T.copy()  # both channels contiguous, in one copy
        if self._score_pair is not None:
            agent_scores, customer_scores = self._score_pair(channels)
        else:
            agent_scores = self._scorers[0].score(channels[0])
            customer_scores = self._scorers[1].score(channels[1])
        agent_gate, customer_gate = self.gates
        frame, rate = self._frame, self.sample_rate
        base = self._origin + self._frames_done * frame
        n = len(agent_scores)
        self._frames_done += n
        self.frames_total += n
        # levels only of the voiced frames a gate asks about; a channel with no voiced frame is
        # never asked (so None, "every frame loud", is the same there and costs nothing)
        agent_loud = customer_loud = None
        floor = self._loud_floor
        if floor is not None:
            if True in agent_scores:
                agent_loud = _Loudness(channels[0], frame, floor)
            if True in customer_scores:
                customer_loud = _Loudness(channels[1], frame, floor)
        # Most chunks move no edge: each gate takes its run whole. Only when both can is that
        # the same as frame by frame (a detector reads both gates at each edge).
        t_last = (base + (n - 1) * frame) / rate
        if agent_gate.can_run(agent_scores, t_last) and customer_gate.can_run(
                customer_scores, t_last):
            agent_gate.run(agent_scores, base, frame, rate, agent_loud)
            customer_gate.run(customer_scores, base, frame, rate, customer_loud)
            return []
        out: list[AnalysisEvent] = []
        for i, (a, c) in enumerate(zip(agent_scores, customer_scores, strict=True)):
            t = (base + i * frame) / rate  # from integers: exact, no drift over a long call
            ea = agent_gate.push(t, a, a and (agent_loud is None or agent_loud(i)))
            ec = customer_gate.push(t, c, c and (customer_loud is None or customer_loud(i)))
            if ea is not None:
                out += self._speech(ea)
            if ec is not None:
                out += self._speech(ec)
        return out

    def _speech(self, event: SpeechStarted | SpeechEnded) -> list[AnalysisEvent]:
        out: list[AnalysisEvent] = [event]
        self.stats.on_event(event)
        out += self.dead_air.on_speech(event)
        out += self._note(self.overtalk.on_speech(event))
        return out

    def _note(self, events: list) -> list:
        for event in events:
            self.stats.on_event(event)
        return events

    def _close_all(self, at: float) -> list[AnalysisEvent]:
        out: list[AnalysisEvent] = []
        out += self.dead_air.suspend(at)
        out += self._note(self.overtalk.cut(at))
        for gate in self.gates:
            ended = gate.cut(at)
            if ended is not None:
                out.append(ended)
                self.stats.on_event(ended)
        return out

    def _gap(self, offset: int) -> list[AnalysisEvent]:
        gap_start = self._analysed_s
        out = self._close_all(gap_start)
        duration = offset / self.sample_rate - gap_start
        out.append(AudioGap(gap_start, duration))
        self.gap_s += duration
        self._received = self._origin = offset
        self._frames_done = 0
        self._carry = self._carry[:0]
        if not self.on_hold:
            self.dead_air.resume(offset / self.sample_rate)
        return out


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class _Loudness:
    """Whether frame `k` of one channel's chunk is over the silence floor (its sum of squares;
    exact in float64: a frame's squares and their sums are integers under 2**53). The channel
    is converted to float64 once, when a frame of it is first asked about."""

    __slots__ = ("_floor", "_frame", "_mono", "_samples")

    def __init__(self, mono: np.ndarray, frame: int, floor: float) -> None:
        self._mono, self._frame, self._floor = mono, frame, floor
        self._samples: np.ndarray | None = None

    def __call__(self, k: int) -> bool:
        samples = self._samples
        if samples is None:
            samples = self._samples = self._mono.astype(np.float64)
        frame = samples[k * self._frame : (k + 1) * self._frame]
        return float(np.dot(frame, frame)) >= self._floor
