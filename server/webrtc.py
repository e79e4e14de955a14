"""The WebRTC edge of monitoring (aiortc): one peer connection per supervisor session.

The browser offers (audio: recvonly to listen, sendrecv to whisper or barge, with every ICE
candidate gathered); the hub answers in one HTTP round trip. The call's audio goes out as the
Opus packets `CallTap` already encoded — aiortc only packetises them — and the supervisor's
microphone, when the mode talks, comes in as decoded frames handed to `on_voice`.

No STUN or TURN server is used unless configured: on a LAN the host candidates are enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from server.call_audio import PacketQueue
from server.config import ListenSettings
from server.monitor import BadOffer

log = logging.getLogger("floorwatch.webrtc")

CONNECT_TIMEOUT_S = 30.0  # from the answer to an established connection


def rtc_configuration(listen: ListenSettings) -> RTCConfiguration:
    servers = [RTCIceServer(urls=url, username=listen.ice_username or None,
                            credential=listen.ice_credential or None)
               if url.startswith("turn") else RTCIceServer(urls=url)
               for url in listen.ice_servers]
    return RTCConfiguration(iceServers=servers)


def restrict_host_addresses(addresses: tuple[str, ...]) -> None:
    """Offer ICE host candidates on these addresses only (a multi-homed server, or a test on
    127.0.0.1, which aioice otherwise never offers). Process-wide: aioice has no per-connection
    setting, so the hub sets it once, before its first session."""
    if not addresses:
        return
    import aioice.ice

    def chosen(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = chosen


class CallTrack(MediaStreamTrack):
    """The call as an outgoing track: pre-encoded Opus packets from a listener's queue."""

    kind = "audio"

    def __init__(self, queue: PacketQueue) -> None:
        super().__init__()
        self._queue = queue

    async def recv(self) -> av.Packet:  # type: ignore[override]
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet


class MonitorPeer:
    """One supervisor's connection to one call."""

    def __init__(self, session_id: str, queue: PacketQueue, config: RTCConfiguration, *,
                 on_voice: Callable[[av.AudioFrame], Awaitable[None]] | None,
                 on_closed: Callable[[str], None]) -> None:
        self.session_id = session_id
        self._queue = queue
        self._pc = RTCPeerConnection(config)
        self._on_voice = on_voice
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.voice_frames = 0
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str) -> str:
        """Answer the browser's offer; the answer carries all our ICE candidates."""
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except (ValueError, AssertionError, IndexError, KeyError) as exc:
            raise BadOffer(f"the SDP offer could not be read: {exc}") from None
        audio = [t for t in self._pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise BadOffer("the SDP offer has no audio")
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"]
        audio[0].setCodecPreferences(opus)
        self._pc.addTrack(CallTrack(self._queue))
        try:
            answer = await self._pc.createAnswer()
        except ValueError as exc:  # e.g. the browser offered no Opus
            raise BadOffer(f"no shared audio codec: {exc}") from None
        await self._pc.setLocalDescription(answer)
        self._spawn(self._watch_connect())
        return self._pc.localDescription.sdp

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._on_voice is not None:
            self._spawn(self._read_voice(track))

    async def _read_voice(self, track: MediaStreamTrack) -> None:
        assert self._on_voice is not None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.voice_frames += 1
            await self._on_voice(frame)  # type: ignore[arg-type]

    async def _watch_connect(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if self._pc.connectionState != "connected":
            log.warning("monitor session %s: no connection after %.0f s (ICE %s)",
                        self.session_id, CONNECT_TIMEOUT_S, self._pc.iceConnectionState)
            await self.close("no connection")

    async def _on_state(self) -> None:
        state = self._pc.connectionState
        log.info("monitor session %s: connection %s", self.session_id, state)
        if state == "connected":
            self._queue.flowing = True  # audio from now on: nothing went stale during ICE/DTLS
        elif state in ("failed", "closed"):
            await self.close("connection " + state)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            await self._pc.close()
        self._on_closed(reason)
