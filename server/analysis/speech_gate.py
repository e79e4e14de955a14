"""Per-channel speech gate: frame-level VAD decisions in, speech segments out.

A VAD scores each 10/20/30 ms frame on its own; a single voiced frame is not speech and a pause
between two words is not the end of a turn. The gate adds hysteresis:

    QUIET --(start_frames voiced, at most one unvoiced frame between them)--> SPEAKING
    SPEAKING --(stop_s without a voiced frame)--> QUIET

and dates both edges back to the audio they describe: a segment starts at its first voiced frame
and ends at the end of its last voiced frame, not at the moment the gate made up its mind. That
keeps dead-air and overtalk offsets exact to a frame even though decisions trail the audio.

Sans-I/O and clock-free: time is the frame index times the frame length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.events import Speaker, SpeechEnded, SpeechStarted


class SpeechGate:
    __slots__ = (
        "_candidate_loud_end",
        "_candidate_start",
        "_candidate_unvoiced",
        "_candidate_voiced",
        "_start_frames",
        "_stop_s",
        "frame_s",
        "last_loud_end",
        "last_voiced_end",
        "segment_start",
        "speaker",
        "speaking",
        "talk_s",
    )

    def __init__(self, speaker: Speaker, frame_s: float, start_s: float, stop_s: float) -> None:
        self.speaker = speaker
        self.frame_s = frame_s
        self._start_frames = max(1, round(start_s / frame_s))
        self._stop_s = stop_s
        self.speaking = False
        self.segment_start = 0.0
        self.last_voiced_end = 0.0
        # end of the segment's last voiced frame that was also loud (None: none was): where the
        # speech audibly ended, before the VAD's own hangover
        self.last_loud_end: float | None = None
        self.talk_s = 0.0  # speech time in closed segments
        self._candidate_start: float | None = None
        self._candidate_loud_end: float | None = None
        self._candidate_voiced = 0
        self._candidate_unvoiced = 0

    @property
    def pending_start(self) -> float | None:
        """Start of a run of voiced frames not yet long enough to count as speech."""
        return self._candidate_start

    def talk_time(self) -> float:
        """Speech time so far, including the open segment up to its last voiced frame."""
        if self.speaking:
            return self.talk_s + (self.last_voiced_end - self.segment_start)
        return self.talk_s

    @property
    def audible_end(self) -> float:
        """End of the last loud voiced frame of the segment (or of its last voiced frame)."""
        loud = self.last_loud_end
        return self.last_voiced_end if loud is None else loud

    def push(self, t: float, voiced: bool, loud: bool = True) -> SpeechStarted | SpeechEnded | None:
        """Feed the decision for the frame that starts at audio time `t` (`loud`: its level is
        over the silence floor; without a level, every frame counts as loud)."""
        if self.speaking:
            if voiced:
                self.last_voiced_end = t + self.frame_s
                if loud:
                    self.last_loud_end = self.last_voiced_end
                return None
            if t + self.frame_s - self.last_voiced_end >= self._stop_s:
                return self._close()
            return None
        if voiced:
            if self._candidate_start is None:
                self._candidate_start = t
                self._candidate_voiced = 0
                self._candidate_loud_end = None
            self._candidate_voiced += 1
            self._candidate_unvoiced = 0
            if loud:
                self._candidate_loud_end = t + self.frame_s
            if self._candidate_voiced >= self._start_frames:
                self.speaking = True
                self.segment_start = self._candidate_start
                self.last_voiced_end = t + self.frame_s
                self.last_loud_end = self._candidate_loud_end
                self._candidate_start = None
                return SpeechStarted(self.speaker, self.segment_start)
        elif self._candidate_start is not None:
            self._candidate_unvoiced += 1
            if self._candidate_unvoiced > 1:
                self._candidate_start = None
        return None

    def can_run(self, decisions: Sequence[bool], t_last: float) -> bool:
        """Whether a run of frame decisions, its last frame starting at `t_last`, leaves both
        edges where they are: no speech can start or end within it. Changes nothing."""
        if self.speaking:
            # Within the run the silence since the last voiced frame is at most what it would
            # be at the run's end with no voiced frame at all: under stop_s, nothing closes.
            return all(decisions) or (
                t_last + self.frame_s - self.last_voiced_end < self._stop_s)
        return not any(decisions)

    def run(self, decisions: Sequence[bool], base: int, frame: int, rate: int,
            loud: Callable[[int], bool] | None = None) -> None:
        """Take a run for which `can_run` said yes, in O(1) for the usual all-voiced or
        all-silent run: the state is exactly what pushing each frame would have left. Frame `i`
        of the run starts at `(base + i * frame) / rate` seconds; `loud(i)` says whether it is
        over the silence floor (asked only of voiced frames, latest first)."""
        if self.speaking:
            last = len(decisions) - 1
            while last >= 0 and not decisions[last]:
                last -= 1
            if last >= 0:
                self.last_voiced_end = (base + last * frame) / rate + self.frame_s
                if loud is None or loud(last):
                    self.last_loud_end = self.last_voiced_end
                else:
                    last -= 1
                    while last >= 0 and not (decisions[last] and loud(last)):
                        last -= 1
                    if last >= 0:
                        self.last_loud_end = (base + last * frame) / rate + self.frame_s
        elif self._candidate_start is not None:
            self._candidate_unvoiced += len(decisions)
            if self._candidate_unvoiced > 1:
                self._candidate_start = None

    def cut(self, t: float) -> SpeechEnded | None:
        """Close any open segment at `t` at the latest (a gap in the audio, or the call's end)."""
        self._candidate_start = None
        if not self.speaking:
            return None
        self.last_voiced_end = min(self.last_voiced_end, t)
        if self.last_loud_end is not None:
            self.last_loud_end = min(self.last_loud_end, t)
        return self._close()

    def _close(self) -> SpeechEnded:
        self.speaking = False
        self.talk_s += self.last_voiced_end - self.segment_start
        return SpeechEnded(self.speaker, self.last_voiced_end)
