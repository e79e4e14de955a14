"""Analysis thresholds, one frozen object per team (built once from the configuration)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AnalysisParams:
    vad_frame_ms: int = 20
    vad_aggressiveness: int = 3
    speech_start_s: float = 0.1
    speech_stop_s: float = 0.3
    dead_air_s: float = 5.0
    overtalk_s: float = 1.0
    interruption_s: float = 0.5
    monologue_gap_s: float = 1.5
