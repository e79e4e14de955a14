"""The agent ingest WebSocket (`/ingest/v1`): the aiohttp edge of docs/protocol.md §1.

Parsing lives in `ingest_protocol` (sans-I/O); the state lives in `AgentLive`. This module only
moves bytes: it authenticates the hello, stores each reliable message before acknowledging it,
feeds audio to the agent's analysis, and turns any `ProtocolError` into an `error` message, a
close code with its reason and one log line — for that agent only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import WSMsgType, web, web_ws

from server.agent_live import AgentLive
from server.clock import ClientClock, describe_offset
from server.hub import HUB, Hub
from server.ingest_protocol import (
    CLOSE_BAD_TOKEN,
    CLOSE_INVALID,
    CLOSE_REPLACED,
    CLOSE_TOO_BIG,
    PROTOCOL_VERSION,
    ProtocolError,
    Status,
    parse_audio,
    parse_hello,
    parse_message,
)
from server.wire import dumps, iso

log = logging.getLogger("floorwatch.ingest")


_BaseQueue: Any = getattr(web_ws, "WebSocketDataQueue", None)


if _BaseQueue is not None:
    class _AudioQueue(_BaseQueue):  # type: ignore[misc, valid-type]
        """aiohttp's queue of received messages, which can also take a message at once.

        aiohttp's frame parser puts every message it completes here, and the handler awaits
        them one by one: for a call's 100 ms chunk that is a future, a wake-up of the handler's
        task and a trip through `receive()` — more CPU than the chunk's own parsing, and for a
        status message one more turn of the event loop before it is stored and acknowledged.
        While `audio` and `text` are set, an audio frame or a reliable (text) message that finds
        nothing queued before it is handed to them right here, inside the parser's
        `data_received`, in arrival order: the socket is read no faster than its audio is
        analysed (backpressure as before), and a reliable message is still acknowledged only
        after every frame before it has been analysed. Anything else (close, ping, errors), or
        a message behind a queued one, waits in the queue as before. If a handler raises, the
        message is queued with the error in `failed` (the handler task raises it when it
        reaches the message), and nothing more is taken at once.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.audio: Callable[[bytes], None] | None = None
            self.text: Callable[[str], None] | None = None
            self.failed: Exception | None = None

        def feed_data(self, data: Any, size: int) -> None:
            audio = self.audio
            if audio is not None and not self._buffer:
                kind = data.type
                take = (audio if kind is WSMsgType.BINARY
                        else self.text if kind is WSMsgType.TEXT else None)
                if take is not None:
                    try:
                        take(data.data)
                        return
                    except Exception as exc:  # raised by the handler task, in order
                        self.audio = self.text = None
                        self.failed = exc
            super().feed_data(data, size)
else:  # pragma: no cover - an aiohttp without this queue: every message through receive()
    _AudioQueue = None


class IngestSocket(web.WebSocketResponse):
    """The agent socket: aiohttp's, with a reason on 1009 and audio taken as it is parsed."""

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        # aiohttp builds the message queue here; have it build ours (same constructor)
        if _AudioQueue is None:
            return super()._post_start(request, protocol, writer)
        web_ws.WebSocketDataQueue = _AudioQueue
        try:
            super()._post_start(request, protocol, writer)
        finally:
            web_ws.WebSocketDataQueue = _BaseQueue

    if _AudioQueue is not None and hasattr(web.WebSocketResponse, "_flush_heartbeat_reset"):
        def _on_data_received(self) -> None:
            # Called for every read from the socket. aiohttp's schedules a callback that
            # re-arms the heartbeat timer (~2.5 µs a chunk); moving its deadline is enough, as
            # the timer re-arms itself for a later deadline when it fires. A ping is answered
            # (or the socket is closing) when no timer is armed: then aiohttp's own way.
            if self._heartbeat_cb is not None:
                self._heartbeat_when = self._loop.time() + self._heartbeat  # type: ignore[union-attr, operator]
            else:
                super()._on_data_received()

    def take_messages(self, audio: Callable[[bytes], None] | None,
                      text: Callable[[str], None] | None = None) -> Any:
        """Hand audio frames to `audio` and text messages to `text` as they are parsed (None:
        stop); returns the queue (its `failed` holds an error they raised), or None when
        aiohttp's queue is not ours (then every message comes through `receive()`)."""
        queue = self._reader
        if _AudioQueue is None or not isinstance(queue, _AudioQueue):
            return None
        if self.closed or audio is None or text is None:
            audio = text = None
        queue.audio, queue.text = audio, text
        return queue

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        self.take_messages(None)  # whatever arrives now is read (and dropped) by close()
        # aiohttp closes an oversize message with 1009 and no reason; give the client one
        if code == CLOSE_TOO_BIG and not message:
            message = f"message too big: the limit is {self._max_msg_size} bytes".encode()
        return await super().close(code=code, message=message, drain=drain)


async def ingest_handler(request: web.Request) -> web.WebSocketResponse:
    hub: Hub = request.app[HUB]
    settings = hub.settings.server
    # close handshakes are bounded by `timeout`: a dead link is aborted after 2 s
    ws = IngestSocket(max_msg_size=settings.max_message_bytes, heartbeat=20.0, timeout=2.0)
    peer = request.remote or "?"
    try:
        await ws.prepare(request)
    except ConnectionError:  # the client gave up before the upgrade (an overloaded hub)
        log.info("agent connection from %s closed before the upgrade", peer)
        return ws
    agent_id = "?"
    try:
        hello = await _receive_hello(ws, settings.hello_timeout_s)
        clock = ClientClock.learn(hello.client_time, time.time())
        agent_id = hello.agent_id
        account = hub.store.agent_for_token(hello.agent_id, hello.token)
        if account is None and await hub.bus.fetch_row("agents", hello.agent_id):
            account = hub.store.agent_for_token(hello.agent_id, hello.token)  # just added
        if account is None:
            raise ProtocolError(CLOSE_BAD_TOKEN, "bad agent token")
        previous = hub.connections.get(account.agent_id)
        if previous is not None and not previous.closed:
            log.warning("agent %s connected again from %s; closing the older connection",
                        agent_id, peer)
            # the old link may be dead (a cut cable): never make the new one wait for it
            hub.spawn(previous.close(code=CLOSE_REPLACED, message=b"agent connected elsewhere"),
                      name=f"replace-{agent_id}")
        hub.connections[account.agent_id] = ws
        live = hub.agent(account)
        live.set_connected(True)
        last_seq = max(hub.store.last_seq(account.agent_id, hello.session),
                       await hub.bus.shared_last_seq(account.agent_id, hello.session))
        await ws.send_str(dumps({
            "type": "welcome", "protocol": PROTOCOL_VERSION, "agent_id": account.agent_id,
            "session": hello.session, "last_seq": last_seq, "server_time": iso(time.time()),
            "max_message_bytes": settings.max_message_bytes,
        }))
        log.info("agent %s connected from %s (%s, session %s, resumes after seq %d)",
                 agent_id, peer, hello.client, hello.session[:8], last_seq)
        if clock.skewed:
            log.warning("agent %s: the desktop's clock is %s the hub's; its status times are "
                        "corrected by that", agent_id, describe_offset(clock.offset_s))
        try:
            await _serve(hub, ws, live, hello.session, clock)
        except ConnectionError as exc:  # the agent went away while we answered it
            log.info("agent %s: connection lost (%s)", agent_id, exc)
        finally:
            if hub.connections.get(account.agent_id) is ws:
                del hub.connections[account.agent_id]
                live.set_connected(False)
    except ProtocolError as exc:
        hub.metrics.refused += 1
        log.warning("agent %s from %s refused: %s (close %d)", agent_id, peer, exc.reason,
                    exc.code)
        if not ws.closed:
            await ws.send_str(dumps(exc.message()))
            await ws.close(code=exc.code, message=exc.reason.encode()[:120])
    if ws.close_code not in (None, 1000, 1001) and agent_id != "?":
        log.info("agent %s disconnected (close %s)", agent_id, ws.close_code)
    elif agent_id != "?":
        log.info("agent %s disconnected", agent_id)
    return ws


async def _receive_hello(ws: web.WebSocketResponse, timeout: float):
    try:
        msg = await ws.receive(timeout=timeout)
    except TimeoutError:
        raise ProtocolError(4400, f"no hello within {timeout:g} s") from None
    if msg.type is WSMsgType.TEXT:
        return parse_hello(msg.data)
    if msg.type is WSMsgType.BINARY:
        raise ProtocolError(4400, "expected hello first")
    raise ProtocolError(CLOSE_INVALID, "connection closed before hello")


def _audio_handler(hub: Hub, live: AgentLive) -> Callable[[bytes], None]:
    """What the hub does with one binary message of an agent: the audio to the call's analysis
    and its listeners. Synchronous: called by the socket's queue as the frame is parsed, or
    by `_serve` for a frame that had to wait in the queue."""
    metrics, monitoring, agent_id = hub.metrics, hub.monitoring, live.agent_id
    on_audio, clock, perf_counter = live.on_audio, time.time, time.perf_counter
    max_samples = 16000  # one second at the highest rate we accept

    def audio(data: bytes) -> None:
        chunk = parse_audio(data, max_samples)
        started = perf_counter()
        metrics.frames += on_audio(chunk, clock())
        metrics.analysis_s += perf_counter() - started
        monitoring.feed(agent_id, chunk)
        metrics.chunks += 1
        metrics.audio_s += len(chunk.pcm) / live.call.info.sample_rate  # type: ignore[union-attr]

    return audio


def _message_handler(hub: Hub, ws: IngestSocket, live: AgentLive, session: str,
                     clock: ClientClock) -> Callable[[str], None]:
    """What the hub does with one reliable (text) message of an agent: check it, store it in
    this loop turn's commit, apply it to the agent's tile, and have it acknowledged once the
    commit is durable. Synchronous, like `_audio_handler`."""
    metrics = hub.metrics

    def text(data: str) -> None:
        now = time.time()
        message = parse_message(data)
        metrics.messages += 1
        if isinstance(message, Status):
            at = clock.to_hub(message.at, now)  # the desktop's clock onto the hub's
            if at != message.at:
                message = replace(message, at=at)
            live.validate(message)
            payload, state, at = message.payload(), message.state.value, message.at
        else:
            payload = {"call_id": message.call_id, "offset_s": message.offset_s,
                       "speaker": message.speaker.value}  # the text itself is not stored
            state, at = "transcript", now
        stored, committed = hub.store_status(live.agent_id, session, message.seq, at,
                                             state, payload)
        if stored:
            if isinstance(message, Status):
                live.on_status(message, now)
            else:
                live.on_transcript(message)
        # acknowledged once durable (one SQLite commit per loop turn, then Redis when there
        # is one) — by a task of its own, so this agent's audio never waits for Redis
        hub.spawn(_ack_when_durable(hub, ws, committed, message.seq),
                  name=f"ack-{live.agent_id}-{message.seq}")

    return text


async def _serve(hub: Hub, ws: IngestSocket, live: AgentLive, session: str,
                 clock: ClientClock) -> None:
    audio = _audio_handler(hub, live)
    text = _message_handler(hub, ws, live, session, clock)
    queue = ws.take_messages(audio, text)
    try:
        await _receive_loop(ws, live, audio, text, queue)
    finally:
        ws.take_messages(None)


async def _receive_loop(ws: IngestSocket, live: AgentLive, audio: Callable[[bytes], None],
                        text: Callable[[str], None], queue: Any) -> None:
    async for msg in ws:
        failed = None if queue is None else queue.failed
        if failed is not None:  # this message, taken as it was parsed, raised
            queue.failed = None
            raise failed
        # a message that waited behind another one (or every message, without our queue)
        if msg.type is WSMsgType.BINARY:
            audio(msg.data)
        elif msg.type is WSMsgType.TEXT:
            text(msg.data)
        elif msg.type is WSMsgType.ERROR:
            exc = ws.exception()
            log.warning("agent %s: socket error: %s", live.agent_id, exc)
            break


async def _ack_when_durable(hub: Hub, ws: web.WebSocketResponse, committed: asyncio.Future,
                            seq: int) -> None:
    try:
        await asyncio.shield(committed)
    except Exception:  # not stored (logged by the hub): the agent must reconnect and resend
        await ws.close(code=1011, message=b"could not store a message; resend it")
        return
    await hub.bus.sync()
    if not ws.closed:
        try:
            await ws.send_str(dumps({"type": "ack", "seq": seq}))
        except ConnectionError:
            pass  # the agent resends it after reconnecting; the hub stores it once
