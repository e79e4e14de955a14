"""The floor as walls see it: one tile per logged-in agent, and the open alerts.

The floor subscribes to the bus. Tile changes are merged and marked dirty; `flush()` (called every
`walls.patch_interval_ms`) turns all dirty tiles into one `tiles` message, serialised once and
queued to every wall, so a tile changes on a wall at most a few times a second however fast its
call's audio arrives. Alerts are persisted and sent at once, not coalesced.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from server.events import Alert, AlertChanged, FloorEvent, TileChanged, TileRemoved
from server.store import Store
from server.walls import WallHub
from server.wire import alert_json, dumps, iso

log = logging.getLogger("floorwatch.floor")

UNACKED_WINDOW_S = 24 * 3600


class Floor:
    def __init__(self, store: Store, walls: WallHub) -> None:
        self._store = store
        self._walls = walls
        self.tiles: dict[str, dict[str, Any]] = {}
        self._dirty: dict[str, set[str]] = {}
        self._removed: set[str] = set()
        self._unacked: dict[str, dict[str, Alert]] = {}  # agent_id -> alert_id -> alert
        for alert in store.alerts(unacked=True, since=time.time() - UNACKED_WINDOW_S,
                                  limit=5000):
            self._unacked.setdefault(alert.agent_id, {})[alert.id] = alert

    # -- bus subscriber -------------------------------------------------------------------

    def on_event(self, event: FloorEvent) -> None:
        if isinstance(event, TileChanged):
            self._merge(event.agent_id, event.fields)
        elif isinstance(event, AlertChanged):
            self._on_alert(event.alert)
        elif isinstance(event, TileRemoved):
            if self.tiles.pop(event.agent_id, None) is not None:
                self._dirty.pop(event.agent_id, None)
                self._removed.add(event.agent_id)

    def _merge(self, agent_id: str, fields: dict[str, Any]) -> None:
        tile = self.tiles.get(agent_id)
        if tile is None:
            tile = self.tiles[agent_id] = {"agent_id": agent_id, **_EMPTY_TILE}
            self._removed.discard(agent_id)
            self._apply_alerts(agent_id, tile)
            self._dirty[agent_id] = set(tile)
        dirty = self._dirty.setdefault(agent_id, set())
        for key, value in fields.items():
            if tile.get(key) != value:
                tile[key] = value
                dirty.add(key)

    def _on_alert(self, alert: Alert) -> None:
        self._store.save_alert(alert)
        stored = self._store.alert(alert.id) or alert
        agent_alerts = self._unacked.setdefault(stored.agent_id, {})
        if stored.acked_by is None:
            agent_alerts[stored.id] = stored
        else:
            agent_alerts.pop(stored.id, None)
        tile = self.tiles.get(stored.agent_id)
        if tile is not None:
            self._merge(stored.agent_id, self._alert_fields(stored.agent_id))
        self._walls.broadcast(dumps({"type": "alert", "alert": alert_json(stored)}))

    def _alert_fields(self, agent_id: str) -> dict[str, Any]:
        alerts = self._unacked.get(agent_id) or {}
        if not alerts:
            return {"alert": None, "severity": None}
        latest = max(alerts.values(), key=lambda a: (a.started_at, a.id))
        worst = max(alerts.values(), key=lambda a: a.severity.rank)
        return {"alert": alert_json(latest), "severity": worst.severity.value}

    def _apply_alerts(self, agent_id: str, tile: dict[str, Any]) -> None:
        tile.update(self._alert_fields(agent_id))

    def hubs(self) -> set[str]:
        """The hubs serving the agents on this floor (several with a Redis bus)."""
        return {t["hub"] for t in self.tiles.values() if t.get("hub")}

    def hub_gone(self, hub_id: str) -> None:
        """A hub stopped: its agents are disconnected until they reconnect to another one."""
        for agent_id, tile in self.tiles.items():
            if tile.get("hub") == hub_id:
                self._merge(agent_id, {"connected": False, "hub": None})

    def unacked_alerts(self) -> list[Alert]:
        return [a for per_agent in self._unacked.values() for a in per_agent.values()]

    # -- walls ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        alerts = self.unacked_alerts()
        alerts.sort(key=lambda a: (a.started_at, a.id), reverse=True)
        return {
            "type": "snapshot",
            "server_time": iso(time.time()),
            "tiles": list(self.tiles.values()),
            "alerts": [alert_json(a) for a in alerts[:500]],
        }

    def flush(self) -> int:
        """Send one coalesced patch message for every tile changed since the last flush."""
        if not self._dirty and not self._removed:
            return 0
        patches = []
        for agent_id, keys in self._dirty.items():
            tile = self.tiles.get(agent_id)
            if tile is not None and keys:
                patches.append({"agent_id": agent_id, **{k: tile[k] for k in keys}})
        message: dict[str, Any] = {"type": "tiles", "server_time": iso(time.time()),
                                   "patches": patches}
        if self._removed:
            message["removed"] = sorted(self._removed)
        self._dirty.clear()
        self._removed.clear()
        self._walls.broadcast(dumps(message))
        return len(patches)


_EMPTY_TILE: dict[str, Any] = {
    "name": "",
    "team": "",
    "state": "logged_out",
    "state_since": None,
    "reason": None,
    "call_id": None,
    "call_started_at": None,
    "direction": None,
    "agent_speaking": False,
    "customer_speaking": False,
    "talk_ratio": None,
    "dead_air_since": None,
    "overtalk_count": 0,
    "interruptions": {"agent": 0, "customer": 0},
    "longest_monologue_s": 0,
    "alert": None,
    "severity": None,
    "connected": False,
    "hub": None,
}
