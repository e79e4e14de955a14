"""Dead-air, overtalk and talk-statistics detectors.

They see the call through its two speech gates: speech edges arrive as events (dated back to the
audio), and `advance(now)` is called at the end of each chunk of audio. Every offset they report
comes from the gates' edges, so it is exact to a frame whatever the chunk size; only the moment an
alert is *raised* is quantised to the chunk. No clocks, no I/O.
"""

from __future__ import annotations

from server.analysis.speech_gate import SpeechGate
from server.events import (
    DeadAirEnded,
    DeadAirStarted,
    Interruption,
    OvertalkEnded,
    OvertalkStarted,
    Speaker,
    SpeechEnded,
    SpeechStarted,
)


class DeadAirDetector:
    """Neither party speaking for at least `threshold_s` while the call is live (not on hold).

    Raises one `DeadAirStarted` when the threshold is crossed and one `DeadAirEnded` with the
    final duration when speech resumes, the call is held, the audio has a gap or the call ends.
    """

    def __init__(self, gates: tuple[SpeechGate, SpeechGate], threshold_s: float) -> None:
        self._gates = gates
        self.threshold_s = threshold_s
        self.silence_start: float | None = 0.0  # the call starts in silence
        self.raised = False
        self.suspended = False

    def on_speech(self, event: SpeechStarted | SpeechEnded) -> list:
        if isinstance(event, SpeechStarted):
            return self._close(event.offset_s)
        if not self.suspended and not any(g.speaking for g in self._gates):
            # from where speech audibly ended (before the VAD's hangover, when levels are known)
            self.silence_start = max(g.audible_end for g in self._gates)
            self.raised = False
        return []

    def advance(self, now: float) -> list:
        start = self.silence_start
        if start is None or self.raised or self.suspended:
            return []
        deadline = start + self.threshold_s
        if now < deadline:
            return []
        # A run of voiced frames that began before the deadline may still turn out to be speech.
        for gate in self._gates:
            pending = gate.pending_start
            if pending is not None and pending < deadline:
                return []
        self.raised = True
        return [DeadAirStarted(start, self.threshold_s)]

    def suspend(self, at: float) -> list:
        """Hold, gap or end of call: close any silence at `at` and stop measuring."""
        out = self._close(at)
        self.suspended = True
        return out

    def resume(self, at: float) -> None:
        self.suspended = False
        if not any(g.speaking for g in self._gates):
            self.silence_start = at
            self.raised = False

    def current_start(self) -> float | None:
        """Start of the silence under way if it has already been alerted, else None."""
        return self.silence_start if self.raised else None

    def _close(self, at: float) -> list:
        start, self.silence_start = self.silence_start, None
        if start is None or self.suspended:
            return []
        duration = at - start
        out: list = []
        if self.raised:
            out.append(DeadAirEnded(start, duration))
        elif duration >= self.threshold_s:
            # Crossed within the last chunk, before advance() could see it.
            out += [DeadAirStarted(start, self.threshold_s), DeadAirEnded(start, duration)]
        self.raised = False
        return out


class OvertalkDetector:
    """Both parties speaking at once for at least `threshold_s`, and who cut in on whom.

    The overlap begins when the second speaker starts while the first is still speaking; the one
    who started second is the interrupter. An overlap shorter than `interruption_s` is ordinary
    turn-taking and counts for nothing; from `interruption_s` it counts as an interruption; from
    `threshold_s` it is an overtalk alert, completed with its duration when it ends.
    """

    def __init__(
        self, gates: tuple[SpeechGate, SpeechGate], threshold_s: float, interruption_s: float
    ) -> None:
        self._gates = gates
        self.threshold_s = threshold_s
        self.interruption_s = interruption_s
        self.start: float | None = None
        self.interrupter: Speaker | None = None
        self.raised = False
        self.counted = False
        self.count = 0

    def on_speech(self, event: SpeechStarted | SpeechEnded) -> list:
        if isinstance(event, SpeechStarted):
            other = self._gates[0] if event.speaker is Speaker.CUSTOMER else self._gates[1]
            if other.speaking and self.start is None:
                self.start, self.interrupter = event.offset_s, event.speaker
                self.raised = self.counted = False
            return []
        if self.start is None:
            return []
        return self._close(min(g.last_voiced_end for g in self._gates))

    def advance(self, now: float) -> list:
        if self.start is None or self.raised:
            return []
        both_until = min(g.last_voiced_end for g in self._gates)
        return self._crossings(both_until - self.start)

    def cut(self, at: float) -> list:
        return [] if self.start is None else self._close(at)

    def _crossings(self, overlap: float) -> list:
        out: list = []
        assert self.start is not None and self.interrupter is not None
        if not self.counted and overlap >= self.interruption_s:
            self.counted = True
            out.append(Interruption(self.start, self.interrupter))
        if not self.raised and overlap >= self.threshold_s:
            self.raised = True
            self.count += 1
            out.append(OvertalkStarted(self.start, self.interrupter, self.threshold_s))
        return out

    def _close(self, end: float) -> list:
        assert self.start is not None and self.interrupter is not None
        start, interrupter = self.start, self.interrupter
        out = self._crossings(end - start)  # it may have crossed within the last chunk
        if self.raised:
            out.append(OvertalkEnded(start, interrupter, end - start))
        self.start = self.interrupter = None
        self.raised = self.counted = False
        return out


class TalkStats:
    """Live talk statistics of one call: talk ratio, interruptions, longest agent monologue.

    A monologue is agent speech uninterrupted by the customer, merged across agent pauses shorter
    than `monologue_gap_s` (a breath between sentences does not end a sales pitch).
    """

    def __init__(self, gates: tuple[SpeechGate, SpeechGate], monologue_gap_s: float) -> None:
        self._agent, self._customer = gates
        self._gap = monologue_gap_s
        self.interruptions = {Speaker.AGENT: 0, Speaker.CUSTOMER: 0}
        self.longest_monologue_s = 0.0
        self._mono_start: float | None = None
        self._mono_end = 0.0

    def on_event(self, event: object) -> None:
        if isinstance(event, Interruption):
            self.interruptions[event.interrupter] += 1
        elif isinstance(event, SpeechStarted):
            if event.speaker is Speaker.CUSTOMER:
                self._mono_start = None
            elif self._mono_start is None or event.offset_s - self._mono_end > self._gap:
                self._mono_start = event.offset_s
        elif isinstance(event, SpeechEnded) and event.speaker is Speaker.AGENT:
            self._mono_end = event.offset_s
            self._measure(event.offset_s)

    def advance(self) -> None:
        if self._agent.speaking:
            self._measure(self._agent.last_voiced_end)

    def _measure(self, end: float) -> None:
        if self._mono_start is not None:
            self.longest_monologue_s = max(self.longest_monologue_s, end - self._mono_start)

    def talk_ratio(self) -> float | None:
        agent, customer = self._agent.talk_time(), self._customer.talk_time()
        total = agent + customer
        return None if total <= 0 else agent / total
