"""The floor bus on Redis: several hubs serve one floor.

Every hub applies its own events at once (its walls never wait for Redis) and appends them to one
Redis Stream; every hub reads the stream from the last id it has seen and applies the others'.
Streams, unlike pub/sub, resume after a disconnect, so nothing is lost across a blip.

Keys (all under `redis.key_prefix`, default `fw:`):

| key | type | holds |
|---|---|---|
| `events` | stream | every floor event: tile changes, alerts, and changed store rows (capped) |
| `tiles` | hash | agent id → the whole tile, so a new hub or wall gets the floor at once |
| `alerts` | hash | alert id → the alert with its duration and acknowledgement (last 24 h) |
| `rows:<table>` | hash | accounts, agents, API tokens, sessions, monitoring audit: every hub |
| `seq` | hash | `agent|session` → highest reliable message stored (exactly-once across hubs) |
| `epoch` | string | changes when Redis lost its data; hubs then republish what they hold |

When Redis is unreachable the hub carries on alone ("degraded" on /healthz): it keeps serving its
own agents and walls and keeps every event it could not write in an outbox (tile changes
coalesced per agent, alerts and rows all kept), which it writes when Redis returns, before it
catches up on the others' events. A Redis that comes back empty is refilled by the hubs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.bus import Handler, HubUnreachable, RequestHandler
from server.events import (
    Alert,
    AlertChanged,
    AlertKind,
    FloorEvent,
    Severity,
    TileChanged,
    TileRemoved,
)
from server.store import REPLICATED, Store

# account rows and the monitoring audit trail: every hub holds all of them
SHARED_TABLES = ("users", "agents", "api_tokens", "sessions", "monitor_sessions")

log = logging.getLogger("floorwatch.bus")

ALERT_KEEP_S = 24 * 3600
HEARTBEAT_S = 1.0
TILE_WRITE_S = 0.1  # tile changes of one agent are merged and written at most this often
HUB_TTL_S = 4
_MAX_SEQ = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, "kind": alert.kind.value, "agent_id": alert.agent_id,
            "call_id": alert.call_id, "severity": alert.severity.value,
            "started_at": alert.started_at, "offset_s": alert.offset_s,
            "duration_s": alert.duration_s, "detail": alert.detail,
            "acked_by": alert.acked_by, "acked_at": alert.acked_at}


def alert_from_dict(d: dict[str, Any]) -> Alert:
    return Alert(**{**d, "kind": AlertKind(d["kind"]), "severity": Severity(d["severity"])})


def encode_event(event: FloorEvent) -> tuple[str, dict[str, Any]]:
    if isinstance(event, TileChanged):
        return "tile", {"agent_id": event.agent_id, "fields": event.fields}
    if isinstance(event, TileRemoved):
        return "tile-", {"agent_id": event.agent_id}
    return "alert", alert_to_dict(event.alert)


def decode_event(kind: str, data: dict[str, Any]) -> FloorEvent:
    if kind == "tile":
        return TileChanged(data["agent_id"], data["fields"])
    if kind == "tile-":
        return TileRemoved(data["agent_id"])
    if kind == "alert":
        return AlertChanged(alert_from_dict(data))
    raise ValueError(f"unknown event kind {kind!r}")


@dataclass(slots=True)
class _Op:
    kind: str  # tile, tile-, alert, row
    data: dict[str, Any]
    number: int


class RedisBus:
    def __init__(self, url: str, store: Store, *, prefix: str = "fw:", hub_id: str = "",
                 stream_maxlen: int = 100_000,
                 tile_of: Callable[[str], dict[str, Any] | None] = lambda _a: None,
                 owned: Callable[[], Collection[str]] = tuple,
                 unacked_alerts: Callable[[], Iterable[Alert]] = tuple,
                 hubs_seen: Callable[[], Collection[str]] = tuple,
                 on_hub_gone: Callable[[str], None] = lambda _h: None) -> None:
        self.url = url
        self.id = hub_id or uuid.uuid4().hex[:12]
        self._p = prefix
        self._maxlen = stream_maxlen
        self._store = store
        self._tile_of = tile_of
        self._owned = owned
        self._unacked_alerts = unacked_alerts
        self._hubs_seen = hubs_seen
        self._on_hub_gone = on_hub_gone
        self._redis = aioredis.from_url(url, decode_responses=True, socket_timeout=5,
                                        socket_connect_timeout=2, health_check_interval=10)
        self._handlers: list[Handler] = []
        self._outbox: deque[_Op] = deque()
        self._tiles_dirty: dict[str, bool] = {}  # agent -> removed?
        self._numbered = 0
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._healthy = False
        self._epoch: str | None = None
        self._last_id = "$"
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.applied = 0
        self._tile_patches: dict[str, dict[str, Any]] = {}  # agent -> fields not written yet
        self._tile_timer: asyncio.TimerHandle | None = None
        self._request_handler: RequestHandler | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._requests: set[asyncio.Task[None]] = set()
        store.on_row_change(self._row_changed)

    # -- Bus interface --------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._healthy

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def publish(self, event: FloorEvent) -> None:
        self._deliver(event)
        kind, data = encode_event(event)
        if kind == "tile":
            # frequent (a call changes its tile ~7 times a second) and superseded by the next:
            # merged per agent and written at most every TILE_WRITE_S. While Redis is away none
            # is kept; the whole tile of each agent this hub serves is sent once it is back
            agent_id = data["agent_id"]
            self._tiles_dirty[agent_id] = False
            if self._healthy:
                self._tile_patches.setdefault(agent_id, {}).update(data["fields"])
                if self._tile_timer is None:
                    self._tile_timer = asyncio.get_running_loop().call_later(
                        TILE_WRITE_S, self._tiles_due)
            return
        if kind == "tile-":
            self._tiles_dirty[data["agent_id"]] = True
            self._tile_patches.pop(data["agent_id"], None)
        self._enqueue(kind, data)
        self._wake.set()

    def _tiles_due(self) -> None:
        self._tile_timer = None
        self._wake.set()

    async def sync(self) -> None:
        """Wait until what was published so far is in Redis (at once when degraded)."""
        if not self._healthy or self._written >= self._numbered:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._numbered, future))
        await future

    async def shared_last_seq(self, agent_id: str, session: str) -> int:
        if not self._healthy:
            return 0
        try:
            value = await self._redis.hget(f"{self._p}seq", f"{agent_id}|{session}")
        except (RedisError, OSError):
            return 0
        return int(value or 0)

    async def fetch_row(self, table: str, key: str) -> bool:
        if not self._healthy:
            return False
        try:
            raw = await self._redis.hget(f"{self._p}rows:{table}", key)
        except (RedisError, OSError):
            return False
        if raw is None:
            return False
        self._store.apply_row(table, json.loads(raw))
        return True

    async def start(self) -> None:
        try:
            await self._connect()
        except (RedisError, OSError) as exc:
            log.warning("redis at %s unreachable at start (%s); serving alone until it is back",
                        self.url, exc)
        self._tasks = [asyncio.create_task(self._write_forever(), name="redis-bus-writer"),
                       asyncio.create_task(self._read_forever(), name="redis-bus-reader"),
                       asyncio.create_task(self._beat_forever(), name="redis-bus-heartbeat"),
                       asyncio.create_task(self._rpc_forever(), name="redis-bus-rpc")]

    async def close(self) -> None:
        # redis-py may turn a cancellation inside a command into a connection error, which the
        # loops would then retry: the flag makes them stop whatever the exception says
        self._closing = True
        self._wake.set()
        for task in (*self._tasks, *self._requests):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._requests, return_exceptions=True)
        if self._tile_timer is not None:
            self._tile_timer.cancel()
        if self._healthy and (self._outbox or self._tiles_dirty or self._tile_patches):
            try:
                async with asyncio.timeout(2):
                    await self._flush()
            except (TimeoutError, RedisError, OSError):
                log.warning("redis bus closed with %d events unwritten", len(self._outbox))
        self._release_waiters()
        await self._redis.aclose()

    # -- outgoing -------------------------------------------------------------------------

    def _row_changed(self, table: str, row: dict[str, Any], deleted: bool) -> None:
        self._enqueue("row", {"table": table, "row": row, "deleted": deleted})
        self._wake.set()

    def _enqueue(self, kind: str, data: dict[str, Any]) -> None:
        self._numbered += 1
        self._outbox.append(_Op(kind, data, self._numbered))

    async def _write_forever(self) -> None:
        backoff = 0.2
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while (self._healthy and (self._outbox or self._tiles_dirty or self._tile_patches)
                   and not self._closing):
                try:
                    await self._flush()
                    backoff = 0.2
                except (RedisError, OSError) as exc:
                    if self._closing:
                        return
                    self._set_unhealthy(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)

    async def _flush(self) -> None:
        batch = [self._outbox[i] for i in range(min(len(self._outbox), 500))]
        tiles = dict(self._tiles_dirty)
        self._tiles_dirty.clear()
        patches, self._tile_patches = self._tile_patches, {}
        p = self._p
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for agent_id, fields in patches.items():  # one entry per agent per write
                    pipe.xadd(f"{p}events", {"o": self.id, "k": "tile", "d": json.dumps(
                        {"agent_id": agent_id, "fields": fields}, ensure_ascii=False)},
                              maxlen=self._maxlen, approximate=True)
                for op in batch:
                    pipe.xadd(f"{p}events", {"o": self.id, "k": op.kind,
                                             "d": json.dumps(op.data, ensure_ascii=False)},
                              maxlen=self._maxlen, approximate=True)
                    if op.kind == "alert":
                        stored = self._store.alert(op.data["id"])
                        merged = alert_to_dict(stored) if stored else op.data
                        pipe.hset(f"{p}alerts", op.data["id"], json.dumps(merged))
                    elif op.kind == "row":
                        self._row_commands(pipe, op.data)
                for agent_id, removed in tiles.items():
                    tile = None if removed else self._tile_of(agent_id)
                    if tile is None:
                        pipe.hdel(f"{p}tiles", agent_id)
                    else:
                        pipe.hset(f"{p}tiles", agent_id, json.dumps(tile, ensure_ascii=False))
                await pipe.execute()
        except BaseException:
            for agent_id, removed in tiles.items():  # not written: keep them for the retry
                self._tiles_dirty.setdefault(agent_id, removed)
            for agent_id, fields in patches.items():  # newer changes win over these
                self._tile_patches[agent_id] = {**fields, **self._tile_patches.get(agent_id, {})}
            raise
        for _ in batch:
            self._outbox.popleft()
        if batch:
            self._written = batch[-1].number
        self._release_waiters(self._written)

    def _row_commands(self, pipe: Any, data: dict[str, Any]) -> None:
        table, row = data["table"], data["row"]
        key = "|".join(str(row[c]) for c in REPLICATED[table])
        if table == "status_events":
            pipe.eval(_MAX_SEQ, 1, f"{self._p}seq", f"{row['agent_id']}|{row['session']}",
                      row["seq"])
        elif data["deleted"]:
            pipe.hdel(f"{self._p}rows:{table}", key)
        else:
            pipe.hset(f"{self._p}rows:{table}", key, json.dumps(row))

    def _release_waiters(self, upto: int | None = None) -> None:
        keep = []
        for number, future in self._waiters:
            if upto is None or number <= upto:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((number, future))
        self._waiters = keep

    # -- incoming -------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        backoff = 0.2
        while not self._closing:
            try:
                if not self._healthy:
                    await self._connect()
                    backoff = 0.2
                reply = await self._redis.xread({f"{self._p}events": self._last_id},
                                                 block=1000, count=500)
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        self._last_id = entry_id
                        if fields.get("o") != self.id:
                            self._apply(fields["k"], json.loads(fields["d"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._closing:
                    return
                self._set_unhealthy(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except (ValueError, KeyError) as exc:
                log.error("skipping a malformed bus entry after %s: %s", self._last_id, exc)

    def _apply(self, kind: str, data: dict[str, Any]) -> None:
        self.applied += 1
        if kind == "row":
            self._store.apply_row(data["table"], data["row"], data["deleted"])
            return
        event = decode_event(kind, data)
        if isinstance(event, TileChanged | TileRemoved) and event.agent_id in self._owned():
            return  # this hub serves that agent now: its own view is the newest
        self._deliver(event)

    def _deliver(self, event: FloorEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("bus subscriber failed on %s", type(event).__name__)

    # -- liveness of the other hubs ----------------------------------------------------------

    async def _beat_forever(self) -> None:
        """Say we are alive; notice hubs that stopped saying so (killed, cut off).

        A dead hub's agents show as disconnected until they reconnect to a live hub; their
        tiles, calls and alerts stay."""
        while not self._closing:
            await asyncio.sleep(HEARTBEAT_S)
            if not self._healthy:
                continue
            try:
                await self._redis.set(f"{self._p}hub:{self.id}", "1", ex=HUB_TTL_S)
                others = [h for h in self._hubs_seen() if h and h != self.id]
                if others:
                    alive = await self._redis.mget([f"{self._p}hub:{h}" for h in others])
                    for hub_id, beat in zip(others, alive, strict=True):
                        if beat is None:
                            log.warning("hub %s stopped beating; its agents are shown "
                                        "disconnected until they reconnect", hub_id)
                            self._on_hub_gone(hub_id)
            except (RedisError, OSError) as exc:
                if self._closing:
                    return
                self._set_unhealthy(exc)

    # -- requests between hubs ------------------------------------------------------------
    # Pub/sub, not the stream: a request is only worth answering now (a supervisor waits), and
    # PUBLISH says at once whether the other hub is listening at all.

    def serve_requests(self, handler: RequestHandler) -> None:
        self._request_handler = handler

    async def request(self, hub_id: str, kind: str, payload: dict[str, Any],
                      timeout: float) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        message = json.dumps({"id": request_id, "from": self.id, "kind": kind,
                              "payload": payload})
        try:
            async with asyncio.timeout(timeout):
                if not await self._redis.publish(f"{self._p}rpc:{hub_id}", message):
                    raise HubUnreachable(f"hub {hub_id} is not listening")
                return await future
        except TimeoutError:
            raise HubUnreachable(f"hub {hub_id} did not answer within {timeout:g} s") from None
        except (RedisError, OSError) as exc:
            raise HubUnreachable(f"redis: {exc}") from None
        finally:
            self._replies.pop(request_id, None)

    async def _rpc_forever(self) -> None:
        requests, replies = f"{self._p}rpc:{self.id}", f"{self._p}rpc-reply:{self.id}"
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(requests, replies)
                async for message in pubsub.listen():
                    data = json.loads(message["data"])
                    if message["channel"] == replies:
                        future = self._replies.get(data.get("id", ""))
                        if future is not None and not future.done():
                            future.set_result(data)
                    else:
                        task = asyncio.create_task(self._answer(data), name="redis-bus-answer")
                        self._requests.add(task)
                        task.add_done_callback(self._requests.discard)
            except (RedisError, OSError, ValueError) as exc:
                if self._closing:
                    return
                log.info("redis requests channel lost (%s); resubscribing", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _answer(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            if self._request_handler is None:
                raise ValueError("this hub answers no requests")
            reply["result"] = await self._request_handler(str(request["kind"]),
                                                          dict(request["payload"]))
        except Exception as exc:  # the asking hub gets the error, this hub carries on
            log.exception("request %s from hub %s failed", request.get("kind"),
                          request.get("from"))
            reply["error"] = f"{type(exc).__name__}: {exc}"
        try:
            await self._redis.publish(f"{self._p}rpc-reply:{request['from']}",
                                      json.dumps(reply))
        except (RedisError, OSError) as exc:
            log.warning("could not answer hub %s: %s", request.get("from"), exc)

    # -- (re)connecting -------------------------------------------------------------------

    async def _connect(self) -> None:
        """Check Redis, refill it if it lost its data, catch up from its snapshot."""
        r, p = self._redis, self._p
        await r.ping()
        await r.set(f"{p}epoch", uuid.uuid4().hex, nx=True)
        epoch = await r.get(f"{p}epoch")
        if self._epoch is not None and epoch != self._epoch:
            log.warning("redis lost its data (new epoch); republishing this hub's state")
            await self._republish()
        elif self._epoch is None:
            await self._seed_accounts()
        self._epoch = epoch
        await self._catch_up()
        was_degraded = not self._healthy
        self._healthy = True
        if was_degraded:
            log.info("redis bus connected to %s as hub %s (%d events queued)", self.url,
                     self.id, len(self._outbox))
        # what piled up while Redis was away is written first; then the whole tile of every
        # agent this hub serves, since the changes made meanwhile were not queued
        for agent_id in self._owned():
            tile = self._tile_of(agent_id)
            if tile is not None:
                self._tiles_dirty[agent_id] = False
                self._enqueue("tile", {"agent_id": agent_id, "fields": tile})
        self._wake.set()

    async def _seed_accounts(self) -> None:
        """First contact: share the accounts this hub's store has (idempotent)."""
        for table in SHARED_TABLES:
            for row in self._store.rows(table):
                self._enqueue("row", {"table": table, "row": row, "deleted": False})

    async def _republish(self) -> None:
        await self._seed_accounts()
        for alert in self._unacked_alerts():
            self._enqueue("alert", alert_to_dict(alert))
        self._last_id = "0-0"

    async def _catch_up(self) -> None:
        """Apply the shared snapshot, then read the stream on from where the snapshot began."""
        r, p = self._redis, self._p
        newest = await r.xrevrange(f"{p}events", count=1)
        start_id = newest[0][0] if newest else "0-0"
        if self._last_id not in ("$", "0-0") and await self._stream_has(self._last_id):
            return  # we only missed a blip: the stream still holds everything after last_id
        for table in SHARED_TABLES:
            for raw in (await r.hgetall(f"{p}rows:{table}")).values():
                self._store.apply_row(table, json.loads(raw))
        owned = set(self._owned())
        for agent_id, raw in (await r.hgetall(f"{p}tiles")).items():
            if agent_id not in owned:
                self._deliver(TileChanged(agent_id, json.loads(raw)))
        cutoff = time.time() - ALERT_KEEP_S
        stale = []
        for alert_id, raw in (await r.hgetall(f"{p}alerts")).items():
            data = json.loads(raw)
            if data["started_at"] < cutoff:
                stale.append(alert_id)
            else:
                self._deliver(AlertChanged(alert_from_dict(data)))
        if stale:
            await r.hdel(f"{p}alerts", *stale)
        self._last_id = start_id

    async def _stream_has(self, entry_id: str) -> bool:
        first = await self._redis.xrange(f"{self._p}events", count=1)
        return bool(first) and _id_key(first[0][0]) <= _id_key(entry_id)

    def _set_unhealthy(self, exc: BaseException) -> None:
        if self._healthy:
            log.warning("redis bus lost (%s); serving this hub's agents and walls alone", exc)
        self._healthy = False
        self._release_waiters()


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def publish_rows(url: str, prefix: str, changes: list[tuple[str, dict[str, Any], bool]]) -> None:
    """Share account changes made outside a running hub (the admin commands) with every hub."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2)
    with client.pipeline(transaction=False) as pipe:
        for table, row, deleted in changes:
            key = "|".join(str(row[c]) for c in REPLICATED[table])
            if deleted:
                pipe.hdel(f"{prefix}rows:{table}", key)
            else:
                pipe.hset(f"{prefix}rows:{table}", key, json.dumps(row))
            pipe.xadd(f"{prefix}events", {"o": "cli", "k": "row", "d": json.dumps(
                {"table": table, "row": row, "deleted": deleted})})
        pipe.execute()
    client.close()
