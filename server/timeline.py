"""The recent history of one call, for the wall's agent drawer: who spoke when, the incidents,
and the live transcript (masked). Bounded: a long call keeps its last few thousand entries."""

from __future__ import annotations

from collections import deque
from typing import Any

from server.events import Speaker
from server.pii import mask_text

MAX_SEGMENTS = 4000
MAX_LINES = 500


class CallTimeline:
    def __init__(self) -> None:
        self._open: dict[Speaker, float] = {}
        self.segments: deque[tuple[str, float, float]] = deque(maxlen=MAX_SEGMENTS)
        self.lines: deque[dict[str, Any]] = deque(maxlen=MAX_LINES)

    def speech_started(self, speaker: Speaker, offset_s: float) -> None:
        self._open[speaker] = offset_s

    def speech_ended(self, speaker: Speaker, offset_s: float) -> None:
        start = self._open.pop(speaker, None)
        if start is not None:
            self.segments.append((speaker.value, round(start, 2), round(offset_s, 2)))

    def transcript(self, offset_s: float, speaker: Speaker, text: str,
                   phrases: list[str]) -> None:
        self.lines.append({"offset_s": round(offset_s, 2), "speaker": speaker.value,
                           "text": mask_text(text), "matches": phrases})

    def view(self, position_s: float, window_s: float) -> dict[str, Any]:
        since = max(0.0, position_s - window_s)
        segments = [{"speaker": s, "start": a, "end": b} for s, a, b in self.segments
                    if b >= since]
        segments += [{"speaker": s.value, "start": round(a, 2), "end": None}
                     for s, a in self._open.items()]
        return {
            "position_s": round(position_s, 2),
            "since_s": round(since, 2),
            "segments": segments,
            "transcript": [line for line in self.lines if line["offset_s"] >= since],
        }
