"""The one event vocabulary of floorwatch.

Everything that flows through the hub is one of these small frozen dataclasses: what the agent
client reports (status, transcript), what call analysis finds (speech, dead air, overtalk,
keywords), and what the floor publishes (alerts). Transports translate their wire formats into
these at the edge; nothing in the middle knows where an event came from.

Audio itself is not an event object: it flows as numpy arrays straight into the analyser, because
a Python object per 20 ms frame would cost more than the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AgentState(StrEnum):
    LOGGED_IN = "logged_in"
    READY = "ready"
    ON_CALL = "on_call"
    HOLD = "hold"
    WRAP_UP = "wrap_up"
    BREAK = "break"
    LOGGED_OUT = "logged_out"

    @property
    def in_call(self) -> bool:
        return self in (AgentState.ON_CALL, AgentState.HOLD)


class Speaker(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"

    @property
    def other(self) -> Speaker:
        return Speaker.CUSTOMER if self is Speaker.AGENT else Speaker.AGENT


class AlertKind(StrEnum):
    SILENCE = "silence"
    OVERTALK = "overtalk"
    KEYWORD = "keyword"
    STATE = "state"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


# --- what the agent client reports -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallInfo:
    call_id: str
    direction: str
    customer: str  # masked
    sample_rate: int


@dataclass(frozen=True, slots=True)
class StatusChanged:
    agent_id: str
    seq: int
    at: float  # unix seconds, from the client's ISO timestamp
    state: AgentState
    call: CallInfo | None = None
    reason: str | None = None
    name: str | None = None
    team: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    agent_id: str
    call_id: str
    offset_s: float
    speaker: Speaker
    text: str


# --- what call analysis finds (sans-I/O, audio time only) --------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    speaker: Speaker
    offset_s: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    speaker: Speaker
    offset_s: float  # end of the last voiced frame, not the moment the gate closed


@dataclass(frozen=True, slots=True)
class DeadAirStarted:
    """Silence has lasted `threshold_s`; it began at `offset_s`."""

    offset_s: float
    threshold_s: float


@dataclass(frozen=True, slots=True)
class DeadAirEnded:
    offset_s: float  # where the silence began
    duration_s: float


@dataclass(frozen=True, slots=True)
class OvertalkStarted:
    """Both have spoken at once for `threshold_s`; the overlap began at `offset_s`."""

    offset_s: float
    interrupter: Speaker
    threshold_s: float


@dataclass(frozen=True, slots=True)
class OvertalkEnded:
    offset_s: float
    interrupter: Speaker
    duration_s: float


@dataclass(frozen=True, slots=True)
class Interruption:
    """One side cut in on the other for at least the interruption threshold."""

    offset_s: float
    interrupter: Speaker


@dataclass(frozen=True, slots=True)
class KeywordMatched:
    offset_s: float
    speaker: Speaker
    rule_id: str
    category: str
    phrase: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class PhraseNotSaid:
    """A mandatory phrase (a "not said" rule) was not said within `offset_s` of the call's
    start; `said_at_s` is when it came after all, if it did."""

    offset_s: float
    speaker: Speaker | None  # who had to say it; None: either party
    rule_id: str
    category: str
    severity: Severity
    said_at_s: float | None = None


@dataclass(frozen=True, slots=True)
class AudioGap:
    """Audio between `offset_s` and `offset_s + duration_s` never arrived (network outage)."""

    offset_s: float
    duration_s: float


AnalysisEvent = (
    SpeechStarted
    | SpeechEnded
    | DeadAirStarted
    | DeadAirEnded
    | OvertalkStarted
    | OvertalkEnded
    | Interruption
    | KeywordMatched
    | PhraseNotSaid
    | AudioGap
)


# --- what the floor publishes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    kind: AlertKind
    agent_id: str
    call_id: str | None
    severity: Severity
    started_at: float  # unix seconds
    offset_s: float | None
    duration_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    acked_by: str | None = None
    acked_at: float | None = None


@dataclass(frozen=True, slots=True)
class StateOverLimit:
    """The agent has been in `state` (since `since`, unix seconds) longer than `threshold_s`."""

    state: AgentState
    since: float
    threshold_s: float


# --- what travels on the floor bus (between hubs, and from ingest to walls) --------------------


@dataclass(frozen=True, slots=True)
class TileChanged:
    """Some fields of an agent's tile changed; `fields` holds only those (wire values)."""

    agent_id: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TileRemoved:
    agent_id: str


@dataclass(frozen=True, slots=True)
class AlertChanged:
    """An alert was raised, completed with its duration, or acknowledged."""

    alert: Alert


FloorEvent = TileChanged | TileRemoved | AlertChanged
