"""One agent as the hub follows it: state, current call, its analysis, and what it publishes.

An `AgentLive` outlives any one connection: when an agent's network drops and comes back, the
same object carries on, so the call's audio timeline continues and the outage shows as a gap.
It turns protocol messages into analysis input, and analysis events into tile changes and alerts
on the bus. The wall clock is passed in (`now`), never read here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.analysis.call import CallAnalyzer, ScorerFactory, webrtc_scorer
from server.analysis.keywords import KeywordMatcher
from server.analysis.kws import Spotted
from server.analysis.state_timers import StateTimer
from server.bus import Bus
from server.config import TeamProfile
from server.events import (
    AgentState,
    Alert,
    AlertChanged,
    AlertKind,
    CallInfo,
    DeadAirEnded,
    DeadAirStarted,
    KeywordMatched,
    OvertalkEnded,
    OvertalkStarted,
    PhraseNotSaid,
    Severity,
    Speaker,
    SpeechEnded,
    SpeechStarted,
    StateOverLimit,
    TileChanged,
    TileRemoved,
)
from server.ingest_protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_INVALID,
    AudioChunk,
    ProtocolError,
    Status,
    Transcript,
)
from server.pii import mask_text
from server.recognize import Heard, Result
from server.timeline import CallTimeline
from server.wire import iso

if TYPE_CHECKING:
    from server.recognize import CallRecognition, Recognition

log = logging.getLogger("floorwatch.agent")


def alert_id(*parts: object) -> str:
    """Stable id: the same condition found again (a replay, a second hub) has the same id."""
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


@dataclass
class Call:
    info: CallInfo
    started_at: float
    analyzer: CallAnalyzer
    keywords: KeywordMatcher
    timeline: CallTimeline = field(default_factory=CallTimeline)
    recognition: CallRecognition | None = None  # audio to the team's recognizers


class AgentLive:
    def __init__(self, agent_id: str, name: str, team: str, profile: TeamProfile, bus: Bus,
                 scorer_factory: ScorerFactory = webrtc_scorer, hub_id: str = "",
                 recognition: Recognition | None = None) -> None:
        self.agent_id = agent_id
        self.hub_id = hub_id
        self.name = name
        self.team = team
        self.profile = profile
        self._bus = bus
        self._scorer_factory = scorer_factory
        self._recognition = recognition
        self.state = AgentState.LOGGED_OUT
        self.state_since = 0.0
        self.call: Call | None = None
        self.connected = False
        self._timer = StateTimer(profile.analysis.state_limits_s)
        self._open: dict[str, Alert] = {}  # alerts waiting for their duration
        self._live: dict[str, Any] = {}  # last published live-call fields

    # -- connection ---------------------------------------------------------------------

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        if self.state is not AgentState.LOGGED_OUT:
            self._tile(connected=connected, hub=self.hub_id if connected else None)

    # -- status -------------------------------------------------------------------------

    def validate(self, status: Status) -> None:
        """Refuse a status that makes no sense in the agent's current state (before storing)."""
        if status.state is AgentState.ON_CALL and status.call is None and self.call is None:
            raise ProtocolError(CLOSE_BAD_REQUEST, "on_call needs a 'call' object to start a "
                                "call", seq=status.seq)

    def on_status(self, status: Status, now: float) -> None:
        if status.name:
            self.name = status.name
        previous, call_before = self.state, self.call
        self._complete_state_alert(status)
        if self.call is not None and not (
            status.state.in_call
            and (status.call is None or status.call.call_id == self.call.info.call_id)
        ):
            self._end_call(now)
        self.state, self.state_since = status.state, status.at
        if status.state is AgentState.LOGGED_OUT:
            self._live.clear()
            self._bus.publish(TileRemoved(self.agent_id))
            return
        if status.state.in_call and self.call is None:
            info = status.call
            if info is None:
                # hold without a call we know of: a hub restart lost it; wait for on_call
                log.info("agent %s: %s without a known call", self.agent_id, status.state)
            else:
                self._start_call(info, status.at)
        if self.call is not None:
            for event in self.call.analyzer.set_hold(status.state is AgentState.HOLD):
                self._analysis_event(event)
        timer_since = (self.call.started_at if status.state is AgentState.ON_CALL and self.call
                       else status.at)
        self._timer.on_state(status.state, timer_since)
        fields: dict[str, Any] = {
            "name": self.name, "team": self.team, "state": status.state.value,
            "state_since": iso(status.at), "reason": status.reason,
            "connected": self.connected, "hub": self.hub_id if self.connected else None,
        }
        if previous is AgentState.LOGGED_OUT or self.call is not call_before:
            fields.update(self._call_fields())
        self._tile(**fields)

    def _complete_state_alert(self, status: Status) -> None:
        alert = self._open.get("state")
        if alert is None:
            return
        alerted = AgentState(alert.detail["state"])
        if status.state is alerted or (alerted is AgentState.ON_CALL and status.state.in_call):
            return
        self._complete(alert, status.at - alert.started_at)

    def restore(self, payload: dict[str, Any], at: float,
                call_payload: dict[str, Any] | None = None) -> None:
        """Rebuild the tile from the last stored status after a hub restart (not the analysis)."""
        self.state = AgentState(payload["state"])
        self.state_since = at
        self._timer.on_state(self.state, at)
        self.name = payload.get("name") or self.name
        call = payload.get("call") or (call_payload or {}).get("call")
        if self.state.in_call and call:
            self._start_call(CallInfo(call["id"], call["direction"], call["customer"],
                                      call["sample_rate"]), at)
            assert self.call is not None
            self.call.keywords.skip_not_said()  # its start was heard by the hub before us
        self._tile(name=self.name, team=self.team, state=self.state.value,
                   state_since=iso(at), reason=payload.get("reason"), connected=False,
                   **self._call_fields())

    def _start_call(self, info: CallInfo, at: float) -> None:
        analyzer = CallAnalyzer(info.sample_rate, self.profile.params, self._scorer_factory)
        keywords = KeywordMatcher(self.profile.rules, self.profile.analysis.keyword_cooldown_s)
        call = self.call = Call(info, at, analyzer, keywords)
        if self._recognition is not None:
            call.recognition = self._recognition.open_call(
                f"{self.agent_id}/{info.call_id}", info.sample_rate, self.profile,
                lambda speaker: functools.partial(self._recognized, call, speaker))
        self._live.clear()
        log.info("agent %s: call %s started (%s, %d Hz)", self.agent_id, info.call_id,
                 info.direction, info.sample_rate)

    def _end_call(self, now: float) -> None:
        call = self.call
        assert call is not None
        for event in call.analyzer.finish():
            self._analysis_event(event)
        state_alert = self._open.get("state")
        if state_alert is not None:  # a call running too long closes with the call
            self._complete(state_alert, now - state_alert.started_at)
        log.info("agent %s: call %s ended after %.1f s of audio (%.1f s lost in gaps)",
                 self.agent_id, call.info.call_id, call.analyzer.position_s, call.analyzer.gap_s)
        # phrases still being recognised arrive after the call: alerts for it all the same
        done = functools.partial(self._call_recognized, call)
        if call.recognition is not None:
            call.recognition.close(done, name=f"{self.agent_id}/{call.info.call_id}")
        else:
            done()
        self.call = None
        self._live.clear()

    def _call_fields(self) -> dict[str, Any]:
        """The call's identity and its live numbers from zero (a call began or ended)."""
        call = self.call
        fresh = {"agent_speaking": False, "customer_speaking": False, "talk_ratio": None,
                 "dead_air_since": None, "overtalk_count": 0,
                 "interruptions": {"agent": 0, "customer": 0}, "longest_monologue_s": 0}
        if call is None:
            return {"call_id": None, "call_started_at": None, "direction": None, **fresh}
        return {"call_id": call.info.call_id, "call_started_at": iso(call.started_at),
                "direction": call.info.direction, **fresh}

    # -- call content -------------------------------------------------------------------

    def on_audio(self, chunk: AudioChunk, now: float) -> int:
        """Analyse a chunk of the call's audio; returns the number of VAD frames analysed."""
        call = self.call
        if call is None:
            raise ProtocolError(CLOSE_INVALID, "audio outside a call")
        analyzer = call.analyzer
        frames_before = analyzer.frames_total
        for event in analyzer.feed(chunk.offset, chunk.pcm):
            self._analysis_event(event)
        recognition = call.recognition
        if recognition is not None and recognition.active:
            recognition.feed(chunk.offset, chunk.pcm,
                             [g.speaking or g.pending_start is not None for g in analyzer.gates])
        self._check_not_said(call)
        if not analyzer.tile_stale() and self._live:  # nothing on the tile can have moved
            return analyzer.frames_total - frames_before
        snap = analyzer.snapshot()
        dead = snap.dead_air_since_s
        live = {
            "agent_speaking": snap.agent_speaking,
            "customer_speaking": snap.customer_speaking,
            "talk_ratio": None if snap.talk_ratio is None else round(snap.talk_ratio, 2),
            "overtalk_count": snap.overtalk_count,
            "interruptions": snap.interruptions,
            "longest_monologue_s": round(snap.longest_monologue_s),
            "dead_air_since": None if dead is None else (
                self._live.get("dead_air_since") or iso(now - (snap.position_s - dead))),
        }
        changed = {k: v for k, v in live.items() if self._live.get(k, ...) != v}
        if changed:
            self._live.update(changed)
            self._tile(**changed)
        return analyzer.frames_total - frames_before

    def on_transcript(self, line: Transcript) -> None:
        call = self.call
        if call is None or line.call_id != call.info.call_id:
            log.info("agent %s: transcript for a call that is not open; not matched",
                     self.agent_id)
            return
        if "transcript" not in self.profile.analysis.recognizers:
            call.timeline.transcript(line.offset_s, line.speaker, line.text, [])
            return
        self._heard_text(call, line.speaker, line.offset_s, line.text, "transcript")

    def _heard_text(self, call: Call, speaker: Speaker, offset_s: float, text: str,
                    source: str) -> None:
        matches = call.keywords.match(offset_s, speaker, text)
        call.timeline.transcript(offset_s, speaker, text, [m.phrase for m in matches])
        for match in matches:
            self._keyword_alert(call, match, source)

    def _recognized(self, call: Call, speaker: Speaker, result: Result) -> None:
        """A recognizer's result for `call` (maybe after it ended), on the event loop."""
        if isinstance(result, Spotted):
            for match in call.keywords.spotted(result.offset_s, speaker, result.rule_id,
                                               result.phrase):
                self._keyword_alert(call, match, "audio")
        elif isinstance(result, Heard):
            self._heard_text(call, speaker, result.offset_s, result.text, "asr")
        if call is self.call:
            self._check_not_said(call)

    def _check_not_said(self, call: Call, *, final: bool = False) -> None:
        position = call.analyzer.position_s
        heard = position if final or call.recognition is None else \
            call.recognition.heard_until_s(position)
        for missed in call.keywords.due(heard, final=final):
            self._not_said(call, missed)

    def _call_recognized(self, call: Call) -> None:
        """Every result of an ended call is in: judge its not-said rules on the whole call."""
        self._check_not_said(call, final=True)

    def call_view(self, window_s: float) -> dict[str, Any] | None:
        """The current call's recent timeline and masked transcript, for the agent drawer."""
        call = self.call
        if call is None:
            return None
        view = call.timeline.view(call.analyzer.position_s, window_s)
        return {"call_id": call.info.call_id, "started_at": iso(call.started_at),
                "direction": call.info.direction, "customer": call.info.customer, **view}

    def tick(self, now: float) -> None:
        over = self._timer.check(now)
        if over is not None:
            self._analysis_event(over)

    # -- analysis events → alerts -------------------------------------------------------

    def _analysis_event(self, event: object) -> None:
        handler = _EVENT_HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _speech_started(self, event: SpeechStarted) -> None:
        if self.call:
            self.call.timeline.speech_started(event.speaker, event.offset_s)

    def _speech_ended(self, event: SpeechEnded) -> None:
        if self.call:
            self.call.timeline.speech_ended(event.speaker, event.offset_s)

    def _dead_air_started(self, event: DeadAirStarted) -> None:
        if self.call:
            self._raise(AlertKind.SILENCE, Severity(self.profile.analysis.severity_silence),
                        event.offset_s, {}, key="silence")

    def _dead_air_ended(self, event: DeadAirEnded) -> None:
        self._complete_key("silence", event.duration_s)

    def _overtalk_started(self, event: OvertalkStarted) -> None:
        if self.call:
            detail = {"interrupter": event.interrupter.value,
                      "interrupted": event.interrupter.other.value}
            self._raise(AlertKind.OVERTALK, Severity(self.profile.analysis.severity_overtalk),
                        event.offset_s, detail, key="overtalk")

    def _overtalk_ended(self, event: OvertalkEnded) -> None:
        self._complete_key("overtalk", event.duration_s)

    def _keyword(self, event: KeywordMatched) -> None:
        if self.call:
            self._keyword_alert(self.call, event, "transcript")

    def _keyword_alert(self, call: Call, event: KeywordMatched, source: str) -> None:
        detail = {"rule": event.rule_id, "category": event.category,
                  "phrase": mask_text(event.phrase), "speaker": event.speaker.value,
                  "source": source}
        self._raise(AlertKind.KEYWORD, event.severity, event.offset_s, detail,
                    rule=event.rule_id, call=call)

    def _not_said(self, call: Call, event: PhraseNotSaid) -> None:
        detail: dict[str, Any] = {"rule": event.rule_id, "category": event.category,
                                  "not_said": True, "within_s": event.offset_s,
                                  "said_at_s": event.said_at_s}
        if event.speaker is not None:
            detail["speaker"] = event.speaker.value
        self._raise(AlertKind.KEYWORD, event.severity, event.offset_s, detail,
                    rule=event.rule_id, call=call)
        log.info("agent %s: call %s: %s not said within %g s", self.agent_id,
                 call.info.call_id, event.rule_id, event.offset_s)

    def _state_over_limit(self, event: StateOverLimit) -> None:
        call = self.call
        offset = call.analyzer.position_s if call and event.state.in_call else None
        detail = {"state": event.state.value, "threshold_s": event.threshold_s}
        self._raise(AlertKind.STATE, Severity(self.profile.analysis.severity_state), offset,
                    detail, key="state", started_at=event.since, rule=event.state.value)
        log.info("agent %s: %s over %.0f s", self.agent_id, event.state, event.threshold_s)

    def _raise(self, kind: AlertKind, severity: Severity, offset_s: float | None,
               detail: dict[str, Any], *, key: str | None = None,
               started_at: float | None = None, rule: str = "",
               call: Call | None = None) -> Alert:
        call = call or self.call
        call_id = call.info.call_id if call else None
        if started_at is None:
            assert call is not None and offset_s is not None
            started_at = call.started_at + offset_s
        alert = Alert(
            id=alert_id(self.agent_id, call_id, kind.value, rule,
                        round(offset_s * 1000) if offset_s is not None else started_at),
            kind=kind, agent_id=self.agent_id, call_id=call_id, severity=severity,
            started_at=started_at, offset_s=offset_s, detail=detail,
        )
        if key is not None:
            self._open[key] = alert
        self._bus.publish(AlertChanged(alert))
        return alert

    def _complete_key(self, key: str, duration_s: float) -> None:
        alert = self._open.get(key)
        if alert is not None:
            self._complete(alert, duration_s)

    def _complete(self, alert: Alert, duration_s: float) -> None:
        for key, open_alert in list(self._open.items()):
            if open_alert.id == alert.id:
                del self._open[key]
        done = Alert(**{**_fields(alert), "duration_s": round(duration_s, 3)})
        self._bus.publish(AlertChanged(done))

    def _tile(self, **fields: Any) -> None:
        self._bus.publish(TileChanged(self.agent_id, fields))


_EVENT_HANDLERS: dict[type, Callable[[AgentLive, Any], None]] = {
    SpeechStarted: AgentLive._speech_started,
    SpeechEnded: AgentLive._speech_ended,
    DeadAirStarted: AgentLive._dead_air_started,
    DeadAirEnded: AgentLive._dead_air_ended,
    OvertalkStarted: AgentLive._overtalk_started,
    OvertalkEnded: AgentLive._overtalk_ended,
    KeywordMatched: AgentLive._keyword,
    StateOverLimit: AgentLive._state_over_limit,
}


def _fields(alert: Alert) -> dict[str, Any]:
    return {name: getattr(alert, name) for name in Alert.__slots__}
