"""Live monitoring sessions on this hub: the rules of `server/monitor.py` carried out.

A session joins a supervisor's browser (WebRTC, `server/webrtc.py`) to one live call ingested
here: the call's audio goes out through the call's `CallTap`; for whisper and barge the
supervisor's voice goes to the agent's desktop over its ingest socket (docs/protocol.md §1.6).
Every session is written to the audit trail when it starts and when it ends, shown on the agent's
tile, and told to the agent's desktop. A session ends when the supervisor stops it, the browser
goes away, the call ends, the agent disconnects, or the hub stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.bus import HubUnreachable
from server.events import TileChanged
from server.ingest_protocol import AUDIO_HEADER, PROTOCOL_VERSION, AudioChunk
from server.monitor import (
    ActiveSession,
    BadOffer,
    MonitorMode,
    MonitorRefused,
    MonitorRequest,
    agent_notice,
    check_request,
    listeners_field,
    pick_spot_check,
    sessions_on_tiles,
)
from server.store import User
from server.wire import dumps, iso

if TYPE_CHECKING:
    import av
    from aiortc import RTCConfiguration

    from server.call_audio import CallTap, PacketQueue, VoiceResampler
    from server.hub import Hub
    from server.webrtc import MonitorPeer

log = logging.getLogger("floorwatch.monitoring")

VOICE_SEND_TIMEOUT_S = 0.2  # a stuck agent link: the supervisor's voice is skipped
VOICE_FLAGS = {MonitorMode.WHISPER: 1, MonitorMode.BARGE: 2}
FORWARD_TIMEOUT_S = 10.0  # the owning hub answers an offer within this (ICE gathering included)


@dataclass
class _Session:
    active: ActiveSession
    started_at: float
    tap: CallTap
    queue: PacketQueue
    peer: MonitorPeer | None = None
    voice: VoiceResampler | None = None
    voice_chunks: int = 0
    voice_skipped: int = 0
    position: int = 0  # samples of the call sent to the listeners so far
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        s = self.active
        return {"id": s.id, "user": s.username, "display_name": s.display_name,
                "agent_id": s.agent_id, "call_id": s.call_id, "mode": s.mode.value,
                "started_at": iso(self.started_at), **self.extra}


class Monitoring:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.settings = hub.settings.listen
        self._rtc: RTCConfiguration | None = None  # aiortc is loaded with the first session
        self._sessions: dict[str, _Session] = {}
        self._taps: dict[str, CallTap] = {}  # agent id -> the tap of its current call
        self._rng = random.Random()
        self._notices: dict[str, list[dict[str, str]]] = {}  # what each agent was told last
        self._ended_sent = 0  # packets of sessions already ended (for /metrics)
        self._ended_skipped = 0
        hub.bus.subscribe(self._on_event)
        hub.bus.serve_requests(self._on_request)

    # -- requests from supervisors ----------------------------------------------------------

    def sessions(self) -> list[dict[str, Any]]:
        return [s.json() for s in self._sessions.values()]

    def counters(self) -> dict[str, int]:
        running = list(self._sessions.values())
        return {"sessions": len(running),
                "sent": self._ended_sent + sum(s.queue.delivered for s in running),
                "skipped": self._ended_skipped + sum(s.queue.skipped for s in running)}

    def pick(self, user: User) -> str:
        """A spot check: the agent whose call to listen to, or MonitorRefused."""
        floor = self._hub.floor
        unacked: dict[str, list[str]] = {}
        for alert in floor.unacked_alerts():
            unacked.setdefault(alert.agent_id, []).append(alert.severity.value)
        tiles = list(floor.tiles.values())  # the whole floor: a call on another hub is forwarded
        agent_id = pick_spot_check(tiles, unacked, sessions_on_tiles(tiles), user.username,
                                   max_listeners=self.settings.max_listeners_per_call,
                                   rng=self._rng)
        if agent_id is None:
            raise MonitorRefused(404, "listen.refused.no_live_call",
                                 "no live call is available for a spot check")
        return agent_id

    async def start_anywhere(self, user: User, agent_id: str, mode: MonitorMode, reason: str,
                             offer_sdp: str, *, spot_check: bool = False) -> dict[str, Any]:
        """Start a session on the hub the call streams to: here, or forwarded through the bus
        (the browser's media then flows straight to that hub; the HTTP answer comes back here)."""
        owner = (self._hub.floor.tiles.get(agent_id) or {}).get("hub")
        if (owner in (None, self._hub.id) or agent_id in self._hub.connections
                or not self._hub.shared):
            return await self.start(user, agent_id, mode, reason, offer_sdp,
                                    spot_check=spot_check)
        reply = await self._forward(owner, "monitor.start", {
            "user": _user_json(user), "agent_id": agent_id, "mode": mode.value,
            "reason": reason, "sdp": offer_sdp, "spot_check": spot_check})
        return reply["answer"]

    async def stop_anywhere(self, session_id: str, user: User) -> dict[str, Any]:
        if session_id in self._sessions or not self._hub.shared:
            return await self.stop(session_id, user)
        row = self._hub.store.monitor_session(session_id)
        if row is None or row["ended_at"] is not None or row["hub"] == self._hub.id:
            raise MonitorRefused(404, "listen.refused.unknown_session", "no such session")
        reply = await self._forward(row["hub"], "monitor.stop",
                                    {"user": _user_json(user), "session_id": session_id})
        return reply["session"]

    async def _forward(self, hub_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await self._hub.bus.request(hub_id, kind, payload, FORWARD_TIMEOUT_S)
        except HubUnreachable as exc:
            log.warning("monitoring: hub %s unreachable for %s: %s", hub_id, kind, exc)
            raise MonitorRefused(503, "listen.refused.elsewhere",
                                 "the hub this call streams to does not answer") from None
        if "error" in reply:
            raise MonitorRefused(502, "listen.refused.elsewhere",
                                 f"the hub this call streams to failed: {reply['error']}")
        result = reply["result"]
        if "refused" in result:
            r = result["refused"]
            raise MonitorRefused(r["status"], r["key"], r["message"])
        if "bad_offer" in result:
            raise BadOffer(result["bad_offer"])
        return result

    async def _on_request(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Another hub forwards a supervisor's request for a call streaming here."""
        u = payload["user"]
        user = User(u["username"], u["role"], u["display_name"], frozenset(u["permissions"]))
        try:
            if kind == "monitor.start":
                answer = await self.start(user, payload["agent_id"], MonitorMode(payload["mode"]),
                                          payload["reason"], payload["sdp"],
                                          spot_check=bool(payload["spot_check"]))
                return {"answer": answer}
            if kind == "monitor.stop":
                return {"session": await self.stop(payload["session_id"], user)}
        except MonitorRefused as exc:
            return {"refused": {"status": exc.status, "key": exc.key, "message": exc.message}}
        except BadOffer as exc:
            return {"bad_offer": str(exc)}
        raise ValueError(f"unknown request {kind!r}")

    async def start(self, user: User, agent_id: str, mode: MonitorMode, reason: str,
                    offer_sdp: str, *, spot_check: bool = False) -> dict[str, Any]:
        """Check the request, answer the browser's offer and record the session."""
        hub = self._hub
        request = MonitorRequest(user.username, user.display_name, user.permissions, agent_id,
                                 mode, reason)
        call_id = check_request(request, hub.floor.tiles.get(agent_id), self._active(),
                                max_listeners=self.settings.max_listeners_per_call,
                                require_reason=self.settings.require_reason)
        live = hub.agents.get(agent_id)
        if (live is None or live.call is None or live.call.info.call_id != call_id
                or agent_id not in hub.connections):
            raise MonitorRefused(409, "listen.refused.elsewhere",
                                 "this call is not streaming to this hub")
        rate = live.call.info.sample_rate
        # WebRTC and the Opus codec are loaded on first use: a hub nobody listens to does without
        # them (~30 MB and 0.15 s of start-up)
        from server.call_audio import CallTap, VoiceResampler
        from server.webrtc import MonitorPeer, restrict_host_addresses, rtc_configuration
        if self._rtc is None:
            restrict_host_addresses(self.settings.ice_host_addresses)
            self._rtc = rtc_configuration(self.settings)
        tap = self._taps.get(agent_id)
        if tap is None or tap.sample_rate != rate:
            tap = self._taps[agent_id] = CallTap(
                rate, bitrate=self.settings.opus_bitrate,
                complexity=self.settings.opus_complexity,
                buffer_s=self.settings.listener_buffer_ms / 1000)
        session = _Session(
            ActiveSession(uuid.uuid4().hex, user.username, user.display_name, agent_id, call_id,
                          mode),
            time.time(), tap, tap.open(), extra={"spot_check": spot_check})
        if mode.talks:
            session.voice = VoiceResampler(rate)
        session.peer = MonitorPeer(
            session.active.id, session.queue, self._rtc,
            on_voice=(lambda frame: self._voice(session, frame)) if mode.talks else None,
            on_closed=lambda why: self._ended(session, why))
        try:
            answer = await session.peer.answer(offer_sdp)
        except BaseException:
            tap.release(session.queue)
            await session.peer.close("refused")
            raise
        self._sessions[session.active.id] = session
        hub.store.monitor_started({
            "id": session.active.id, "username": user.username,
            "display_name": user.display_name, "agent_id": agent_id, "call_id": call_id,
            "mode": mode.value, "reason": reason.strip(), "spot_check": int(spot_check),
            "hub": hub.id, "started_at": session.started_at})
        log.info("%s started to %s agent %s (call %s)%s", user.username, mode.value, agent_id,
                 call_id, " as a spot check" if spot_check else "")
        self._announce(agent_id)
        return {"session": session.json(), "sdp": answer, "type": "answer"}

    async def stop(self, session_id: str, user: User) -> dict[str, Any]:
        session = self._sessions.get(session_id)
        if session is None:
            raise MonitorRefused(404, "listen.refused.unknown_session", "no such session")
        if session.active.username != user.username and user.role != "admin":
            raise MonitorRefused(403, "listen.refused.not_yours",
                                 "only its supervisor or an admin can stop this session")
        out = session.json()
        reason = "stopped" if session.active.username == user.username else \
            f"stopped by {user.username}"
        await self._close(session, reason)
        return out

    def close_orphans(self, hub_id: str | None, reason: str) -> None:
        """End the audit entries of sessions that died with their hub (`hub_id`; None: every
        open entry not running here). The end time is when this was noticed."""
        for row in self._hub.store.open_monitor_sessions(hub_id):
            if row["id"] not in self._sessions:
                self._hub.store.monitor_ended(row["id"], time.time(), reason)
                log.warning("monitoring session %s of %s on agent %s ended: %s", row["id"],
                            row["username"], row["agent_id"], reason)

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(self._close(s, reason) for s in list(self._sessions.values())),
                             return_exceptions=True)

    # -- audio --------------------------------------------------------------------------------

    def feed(self, agent_id: str, chunk: AudioChunk) -> None:
        """A chunk of an agent's call arrived (after analysis): out to its listeners."""
        tap = self._taps.get(agent_id)
        if tap is not None and tap.listening:
            tap.push(chunk.offset, chunk.pcm)
            tap_end = chunk.offset + len(chunk.pcm)
            for session in self._sessions.values():
                if session.tap is tap:
                    session.position = tap_end

    async def _voice(self, session: _Session, frame: av.AudioFrame) -> None:
        """The supervisor's microphone, to the agent's desktop (whisper or barge)."""
        ws = self._hub.connections.get(session.active.agent_id)
        if ws is None or ws.closed or session.voice is None:
            return
        pcm = session.voice.convert(frame)
        if not pcm.size:
            return
        header = AUDIO_HEADER.pack(PROTOCOL_VERSION, 1, VOICE_FLAGS[session.active.mode],
                                   session.voice_chunks, session.position)
        session.voice_chunks += 1
        try:
            # live or nothing, like the agent's own audio: a stuck link skips the voice
            async with asyncio.timeout(VOICE_SEND_TIMEOUT_S):
                await ws.send_bytes(header + pcm.astype("<i2").tobytes())
        except TimeoutError:
            session.voice_skipped += 1
        except ConnectionError:
            pass  # the agent's socket is going; the session ends with it

    # -- ending -------------------------------------------------------------------------------

    async def _close(self, session: _Session, reason: str) -> None:
        if session.peer is not None:
            await session.peer.close(reason)  # calls _ended
        else:
            self._ended(session, reason)

    def _ended(self, session: _Session, reason: str) -> None:
        if self._sessions.pop(session.active.id, None) is None:
            return
        session.tap.release(session.queue)
        self._ended_sent += session.queue.delivered
        self._ended_skipped += session.queue.skipped
        agent_id = session.active.agent_id
        tap = self._taps.get(agent_id)
        if tap is session.tap and not tap.listening:
            del self._taps[agent_id]
        self._hub.store.monitor_ended(session.active.id, time.time(), reason)
        log.info("%s stopped to %s agent %s (%s; %d packets sent, %d skipped)",
                 session.active.username, session.active.mode.value, agent_id, reason,
                 session.queue.delivered, session.queue.skipped)
        self._announce(agent_id)

    def _on_event(self, event: object) -> None:
        """End sessions whose call ended or whose agent went away (any hub's tile change)."""
        if not self._sessions or not isinstance(event, TileChanged):
            return  # runs on every tile change of the floor: nothing to do with no session
        fields = event.fields
        if not ({"call_id", "state", "connected"} & fields.keys()):
            return
        for session in list(self._sessions.values()):
            if session.active.agent_id != event.agent_id:
                continue
            why = None
            if "call_id" in fields and fields["call_id"] != session.active.call_id:
                why = "call ended"
            elif fields.get("state", "on_call") != "on_call":
                why = "call ended"
            elif fields.get("connected") is False:
                why = "agent disconnected"
            if why is not None:
                self._hub.spawn(self._close(session, why), name=f"monitor-end-{session.active.id}")

    # -- telling the floor and the agent ------------------------------------------------------

    def _active(self) -> list[ActiveSession]:
        return [s.active for s in self._sessions.values()]

    def _announce(self, agent_id: str) -> None:
        on_agent = [s.active for s in self._sessions.values() if s.active.agent_id == agent_id]
        self._hub.bus.publish(TileChanged(agent_id, {"listeners": listeners_field(on_agent)}))
        ws = self._hub.connections.get(agent_id)
        if ws is None or ws.closed:
            self._notices.pop(agent_id, None)
            return
        notice = agent_notice(on_agent, notify_listen=self.settings.notify_agent)
        if notice == self._notices.get(agent_id, []):
            return
        self._notices[agent_id] = notice
        self._hub.spawn(_send_quietly(ws, dumps({"type": "monitor", "sessions": notice})),
                        name=f"monitor-notice-{agent_id}")


def _user_json(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "display_name": user.display_name,
            "permissions": sorted(user.permissions)}


async def _send_quietly(ws: Any, text: str) -> None:
    try:
        await ws.send_str(text)
    except ConnectionError:
        pass
