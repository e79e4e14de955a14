"""The hub's state and lifecycle: store, bus, floor, walls, live agents, and the owned tasks.

One `Hub` per aiohttp application (kept in app state, never in a module global). `start()` and
`stop()` are called from the app's startup and cleanup hooks; `stop()` closes in order: agents
(told to reconnect elsewhere) → walls → ticker → bus → store, each step bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.agent_live import AgentLive
from server.analysis.call import ScorerFactory, webrtc_scorer
from server.bus import Bus, LocalBus
from server.config import Settings
from server.floor import Floor
from server.monitoring import Monitoring
from server.recognize import Recognition
from server.store import AgentAccount, Store
from server.walls import WallHub
from server.wire import dumps, iso

log = logging.getLogger("floorwatch.hub")

CLOSE_GOING_AWAY = 1001
HEARTBEAT_S = 10.0


@dataclass
class Metrics:
    chunks: int = 0
    audio_s: float = 0.0
    frames: int = 0
    messages: int = 0
    refused: int = 0
    loop_lag_s: float = 0.0
    loop_lag_max_s: float = 0.0
    analysis_s: float = 0.0  # CPU time spent analysing audio
    started_at: float = field(default_factory=time.time)


class Hub:
    """Everything one hub process holds; reached from handlers as `request.app[HUB]`."""

    def __init__(self, settings: Settings, *, bus: Bus | None = None,
                 scorer_factory: ScorerFactory = webrtc_scorer) -> None:
        self.settings = settings
        self.id = settings.redis.hub_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.store = Store(settings.server.data_dir / "floorwatch.db")
        self.walls = WallHub(settings.walls.queue_size)
        self.floor = Floor(self.store, self.walls)
        self.agents: dict[str, AgentLive] = {}
        self.connections: dict[str, web.WebSocketResponse] = {}
        self.bus: Bus = bus or self._make_bus()
        self.bus.subscribe(self.floor.on_event)
        self.metrics = Metrics()
        self.scorer_factory = scorer_factory
        self.recognition = Recognition.from_settings(settings)  # keyword spotting, ASR
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._commit: asyncio.Future[None] | None = None  # this loop turn's group commit
        self.monitoring = Monitoring(self)  # after the bus and the floor: it uses both

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a short side job owned by the hub: referenced, errors logged, awaited on stop."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def store_status(self, agent_id: str, session: str, seq: int, at: float, state: str,
                     payload: dict[str, Any]) -> tuple[bool, asyncio.Future[None]]:
        """Store a reliable message in this loop turn's group commit: whether it was new, and
        the commit to await before acknowledging it (shared by every message stored in the
        same turn, so a burst of status changes costs one commit, not one each)."""
        stored = self.store.record_status(agent_id, session, seq, at, state, payload,
                                          commit=False)
        if self._commit is None:
            loop = asyncio.get_running_loop()
            self._commit = loop.create_future()
            loop.call_soon(self._group_commit)
        return stored, self._commit

    def _group_commit(self) -> None:
        done, self._commit = self._commit, None
        assert done is not None
        try:
            self.store.commit()
        except Exception as exc:  # the waiting handlers fail and their agents resend
            log.exception("storing status messages failed")
            done.set_exception(exc)
        else:
            done.set_result(None)

    def _make_bus(self) -> Bus:
        redis = self.settings.redis
        if not redis.url:
            return LocalBus()
        from server.bus_redis import RedisBus

        return RedisBus(redis.url, self.store, prefix=redis.key_prefix, hub_id=self.id,
                        stream_maxlen=redis.stream_maxlen, tile_of=self.floor.tiles.get,
                        owned=self.connections.keys, unacked_alerts=self.floor.unacked_alerts,
                        hubs_seen=self.floor.hubs, on_hub_gone=self._hub_gone)

    def _hub_gone(self, hub_id: str) -> None:
        """Another hub of the floor stopped beating (killed, cut off)."""
        self.floor.hub_gone(hub_id)
        self.monitoring.close_orphans(hub_id, "its hub stopped")

    @property
    def shared(self) -> bool:
        """Whether other hubs serve the same floor (a Redis bus)."""
        return bool(self.settings.redis.url)

    # -- agents ---------------------------------------------------------------------------

    def agent(self, account: AgentAccount) -> AgentLive:
        """The live state of an agent; created from its last stored status when first needed
        (after a restart, or when the agent moved here from another hub)."""
        live = self.agents.get(account.agent_id)
        if live is None:
            profile = self.settings.team(account.team)
            live = AgentLive(account.agent_id, account.name, account.team, profile, self.bus,
                             self.scorer_factory, hub_id=self.id,
                             recognition=self.recognition)
            self.agents[account.agent_id] = live
            latest = self.store.latest_status(account.agent_id)
            if latest is not None and latest[1].get("state") != "logged_out":
                at, payload = latest
                call = self.store.last_call(account.agent_id) if "call" not in payload else None
                live.restore(payload, at, call)
        return live

    def _restore_tiles(self) -> None:
        """Embedded mode: bring back every logged-in agent's tile after a restart. (With Redis
        the shared snapshot does this, and other hubs may serve those agents now.)"""
        accounts = {a.agent_id: a for a in self.store.agents()}
        restored = 0
        for agent_id, _at, payload in self.store.latest_statuses():
            if agent_id in accounts and payload.get("state") != "logged_out":
                self.agent(accounts[agent_id])
                restored += 1
        if restored:
            log.info("restored %d agent tiles from the store", restored)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        if not self.shared:
            self._restore_tiles()
            # sessions a crashed run left open: none of them can still be running
            self.monitoring.close_orphans(None, "hub restarted")
        self._ticker = asyncio.create_task(self._tick_forever(), name="hub-ticker")
        # worker processes start in the background: serving does not wait for them
        self.spawn(self.recognition.start(), name="recognition-start")
        log.info("hub started (data in %s)", self.settings.server.data_dir)

    async def stop(self) -> None:
        self.stopping = True
        timeout = self.settings.server.shutdown_timeout_s
        await _bounded(self.monitoring.close_all("hub shutting down"), timeout,
                       "ending monitoring sessions")
        connections = list(self.connections.values())
        if connections:
            log.info("closing %d agent connections", len(connections))
            await _bounded(asyncio.gather(
                *(ws.close(code=CLOSE_GOING_AWAY, message=b"hub shutting down")
                  for ws in connections), return_exceptions=True), timeout, "closing agents")
        await _bounded(self.walls.close_all(CLOSE_GOING_AWAY, "hub shutting down"), timeout,
                       "closing walls")
        if self._background:
            await _bounded(asyncio.gather(*self._background, return_exceptions=True), timeout,
                           "background tasks")
        await _bounded(self.recognition.aclose(timeout), 2 * timeout, "closing recognition")
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
        self.floor.flush()
        await _bounded(self.bus.close(), timeout, "closing the bus")
        self.store.close()
        log.info("hub stopped")

    async def _tick_forever(self) -> None:
        interval = self.settings.walls.patch_interval_ms / 1000
        loop = asyncio.get_running_loop()
        next_second = loop.time() + 1.0
        next_heartbeat = loop.time() + HEARTBEAT_S
        expected = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, expected - loop.time()))
            now_loop = loop.time()
            lag = max(0.0, now_loop - expected)
            self.metrics.loop_lag_s = lag
            self.metrics.loop_lag_max_s = max(self.metrics.loop_lag_max_s, lag)
            # a fixed grid: a late tick does not push every later one back
            expected = max(expected + interval, now_loop)
            try:
                self.floor.flush()
                if now_loop >= next_second:
                    next_second = now_loop + 1.0
                    now = time.time()
                    for live in tuple(self.agents.values()):
                        live.tick(now)
                if now_loop >= next_heartbeat:  # keeps walls' clocks right, shows they are live
                    next_heartbeat = now_loop + HEARTBEAT_S
                    self.walls.broadcast(dumps({"type": "heartbeat",
                                                "server_time": iso(time.time())}))
            except Exception:
                log.exception("hub tick failed; carrying on")


async def _bounded(awaitable: object, timeout: float, step: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            await awaitable  # type: ignore[misc]
    except TimeoutError:
        log.warning("shutdown: %s timed out after %.1f s", step, timeout)


HUB = web.AppKey("hub", Hub)
