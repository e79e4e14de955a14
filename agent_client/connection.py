"""The agent's connection to the hub: handshake, reliable numbered messages, audio, reconnects.

Reliable messages (status, transcript) get a sequence number and stay in an outbox until the hub
acknowledges them. After any reconnect the hub says which number it has stored last; the client
drops those and resends the rest in order, so each message arrives exactly once however often the
link or the hub goes down. Audio is the opposite: it is live or it is nothing. A chunk that cannot
be sent now is dropped and counted, never queued to be replayed late as if it were live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger("floorwatch.agent_client")

PROTOCOL_VERSION = 1
AUDIO_BACKLOG_BYTES = 64 * 1024  # about 0.5 s of 16 kHz stereo
FATAL_CLOSE_CODES = {4401: "bad agent token", 4409: "agent connected elsewhere",
                     4426: "unsupported protocol version"}


class FatalHubError(Exception):
    """The hub refused us in a way retrying cannot fix (bad token, replaced, wrong version)."""


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HubConnection:
    def __init__(self, url: str | list[str], agent_id: str, token: str, *,
                 client: str = "floorwatch-agent",
                 min_backoff_s: float = 0.2, max_backoff_s: float = 5.0,
                 ping_interval_s: float = 5.0) -> None:
        # several hubs of one floor: after a failure the next one is tried (a dead hub's agents
        # move to the others); behind a load balancer, give just the balancer's URL
        self.urls = [url] if isinstance(url, str) else list(url)
        self._url_index = 0
        self.agent_id = agent_id
        self._token = token
        self._client = client
        self.session = uuid.uuid4().hex
        self._min_backoff, self._max_backoff = min_backoff_s, max_backoff_s
        self._ping_interval = ping_interval_s
        self._seq = 0
        self._outbox: OrderedDict[int, str] = OrderedDict()
        self._sent_upto = 0
        self._ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self._acked = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.fatal: FatalHubError | None = None
        self.connects = 0
        self.audio_sent = 0
        self.audio_dropped = 0
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        # supervisors monitoring this agent's call (docs/protocol.md §1.6)
        self.on_voice: Callable[[bytes], None] | None = None
        self.on_monitor: Callable[[list[dict[str, str]]], None] | None = None
        self.monitors: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return self.urls[self._url_index]

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"hub-connection-{self.agent_id}")

    async def close(self) -> None:
        """Say goodbye (close 1000) and stop reconnecting."""
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            waiter = asyncio.ensure_future(self.connected.wait())
            try:
                while not self.connected.is_set():
                    if self.fatal is not None:
                        raise self.fatal
                    await asyncio.wait({waiter}, timeout=0.1)
            finally:
                waiter.cancel()

    @property
    def pending(self) -> int:
        """Reliable messages not yet acknowledged by the hub."""
        return len(self._outbox)

    async def drain(self, timeout: float) -> bool:
        """Wait until every reliable message is acknowledged; False on timeout or fatal error."""
        try:
            async with asyncio.timeout(timeout), self._acked:
                await self._acked.wait_for(lambda: not self._outbox or self.fatal is not None)
        except TimeoutError:
            return False
        return not self._outbox

    # -- sending ------------------------------------------------------------------------

    async def send_reliable(self, message: dict[str, Any]) -> int:
        self._seq += 1
        seq = self._seq
        text = json.dumps({**message, "seq": seq}, ensure_ascii=False)
        self._outbox[seq] = text
        if self.connected.is_set() and self._sent_upto == seq - 1:
            await self._send_text(seq, text)
        return seq

    async def send_status(self, state: str, **extra: Any) -> int:
        return await self.send_reliable({"type": "status", "at": utc_now_iso(), "state": state,
                                         **extra})

    async def send_transcript(self, call_id: str, offset_s: float, speaker: str,
                              text: str) -> int:
        return await self.send_reliable({"type": "transcript", "call_id": call_id,
                                         "offset_s": round(offset_s, 3), "speaker": speaker,
                                         "text": text})

    async def send_audio(self, frame: bytes, *, live: bool = True) -> bool:
        """Send one audio frame now, or drop it (counted) if the hub is not reachable now.

        Live audio on a link that has stopped moving (a cut cable before the keepalive notices)
        shows as a growing send buffer; past `AUDIO_BACKLOG_BYTES` chunks are dropped rather than
        queued behind it, so the stream never waits and never delivers stale audio in a burst.
        A recording replayed faster than real time (`live=False`) waits for the link instead:
        it has no "now" to fall behind.
        """
        ws = self._ws
        if (ws is None or not self.connected.is_set()
                or (live and ws.transport.get_write_buffer_size() > AUDIO_BACKLOG_BYTES)):
            self.audio_dropped += 1
            return False
        try:
            await ws.send(frame)
        except ConnectionClosed:
            self.audio_dropped += 1
            return False
        self.audio_sent += 1
        return True

    async def _send_text(self, seq: int, text: str) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send(text)
        except ConnectionClosed:
            return  # stays in the outbox; resent after the reconnect
        self._sent_upto = max(self._sent_upto, seq)

    # -- the connection loop ------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._min_backoff
        while True:
            try:
                async with connect(self.url, ping_interval=self._ping_interval,
                                   ping_timeout=self._ping_interval, open_timeout=10,
                                   max_size=2**20, close_timeout=2) as ws:
                    self._ws = ws
                    await self._handshake(ws)
                    backoff = self._min_backoff
                    await self._read(ws)
            except asyncio.CancelledError:
                raise
            except FatalHubError as exc:
                self.fatal = exc
                log.error("hub refused agent %s: %s; not retrying", self.agent_id, exc)
                async with self._acked:
                    self._acked.notify_all()
                return
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                log.warning("agent %s: hub connection lost (%s); retrying in %.1f s",
                            self.agent_id, _describe(exc), backoff)
            except InvalidURI as exc:
                self.fatal = FatalHubError(str(exc))
                return
            finally:
                self._ws = None
                self.connected.clear()
            self._url_index = (self._url_index + 1) % len(self.urls)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self._max_backoff)

    async def _handshake(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"type": "hello", "protocol": PROTOCOL_VERSION,
                                  "agent_id": self.agent_id, "token": self._token,
                                  "session": self.session, "client": self._client,
                                  "client_time": utc_now_iso()}))
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        except ConnectionClosed as exc:
            _raise_if_fatal(exc)
            raise
        if welcome.get("type") == "error":
            reason = f"{welcome.get('reason')} (close {welcome.get('code')})"
            if welcome.get("code") in FATAL_CLOSE_CODES:
                raise FatalHubError(reason)
            raise ConnectionError(f"hub refused hello: {reason}")
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"unexpected reply to hello: {welcome.get('type')!r}")
        last_seq = int(welcome.get("last_seq", 0))
        async with self._acked:
            for seq in [s for s in self._outbox if s <= last_seq]:
                del self._outbox[seq]
            self._acked.notify_all()
        self._sent_upto = last_seq
        # resend what the hub has not stored, in order, before new messages may go out
        while True:
            unsent = [(s, t) for s, t in self._outbox.items() if s > self._sent_upto]
            if not unsent:
                break
            for seq, text in unsent:
                await ws.send(text)
                self._sent_upto = seq
        self.connects += 1
        self.connected.set()
        log.info("agent %s connected to hub (resuming after seq %d, %d resent)",
                 self.agent_id, last_seq, len(self._outbox))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                if isinstance(raw, bytes):  # a supervisor's voice (whisper or barge)
                    if self.on_voice is not None:
                        self.on_voice(raw)
                    continue
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "monitor":
                    self.monitors = list(message.get("sessions") or [])
                    log.info("agent %s: monitored by %s", self.agent_id,
                             ", ".join(f"{m.get('user')} ({m.get('mode')})"
                                       for m in self.monitors) or "nobody")
                    if self.on_monitor is not None:
                        self.on_monitor(self.monitors)
                elif kind == "ack":
                    async with self._acked:
                        self._outbox.pop(int(message["seq"]), None)
                        self._acked.notify_all()
                elif kind == "error":
                    await self._refused(message)
                elif not self.inbox.full():
                    self.inbox.put_nowait(message)
        except ConnectionClosed as exc:
            _raise_if_fatal(exc)
            raise


    async def _refused(self, message: dict[str, Any]) -> None:
        """The hub refused something we sent. A refused reliable message is dropped from the
        outbox: resending it after the reconnect would only be refused again, for ever."""
        seq = message.get("seq")
        log.error("hub refused %s from agent %s: %s",
                  f"message {seq}" if seq is not None else "input", self.agent_id,
                  message.get("reason"))
        if isinstance(seq, int):
            async with self._acked:
                self._outbox.pop(seq, None)
                self._acked.notify_all()


def _raise_if_fatal(exc: ConnectionClosed) -> None:
    rcvd = exc.rcvd
    if rcvd is not None and rcvd.code in FATAL_CLOSE_CODES:
        raise FatalHubError(f"{rcvd.reason or FATAL_CLOSE_CODES[rcvd.code]} (close {rcvd.code})")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return f"closed {exc.rcvd.code} {exc.rcvd.reason}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

