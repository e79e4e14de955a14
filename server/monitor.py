"""Supervisor monitoring of live calls — listen, whisper, barge — as rules, with no I/O.

Who may do what, how many may listen to one call, which call a spot check picks, and what the
agent is told: all decided here, so it is tested exactly. The WebRTC edge (`server/webrtc.py`)
and the HTTP edge (`server/listen_api.py`) only carry the decisions out.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class MonitorMode(enum.StrEnum):
    LISTEN = "listen"  # the supervisor hears the call; nobody hears the supervisor
    WHISPER = "whisper"  # ... and the agent (only) hears the supervisor
    BARGE = "barge"  # ... and the agent and the customer hear the supervisor

    @property
    def talks(self) -> bool:
        return self is not MonitorMode.LISTEN


# Permissions a user can hold. `audit` lets a user read the monitoring audit trail.
PERMISSIONS = ("listen", "whisper", "barge", "audit")
ROLE_DEFAULTS = {"admin": PERMISSIONS, "supervisor": ("listen",)}

# how much more likely a spot check lands on a call per unacknowledged alert of each severity
SPOT_CHECK_WEIGHTS = {"critical": 8.0, "high": 4.0, "medium": 2.0, "low": 1.0}


class BadOffer(ValueError):
    """The browser's SDP offer cannot be answered (not SDP, no audio, no shared codec)."""


class MonitorRefused(Exception):
    """A monitoring request that cannot be granted; `key` names the user-facing message."""

    def __init__(self, status: int, key: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.key = key
        self.message = message

    def json(self) -> dict[str, Any]:
        return {"error": self.message, "error_key": self.key}


def parse_permissions(text: str) -> tuple[str, ...]:
    """'listen, whisper' -> ('listen', 'whisper'); unknown names are an error."""
    names = tuple(dict.fromkeys(p.strip() for p in text.replace(" ", ",").split(",") if p.strip()))
    unknown = [n for n in names if n not in PERMISSIONS]
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}; choose from {', '.join(PERMISSIONS)}")
    return names


@dataclass(frozen=True, slots=True)
class MonitorRequest:
    username: str
    display_name: str
    permissions: frozenset[str]
    agent_id: str
    mode: MonitorMode
    reason: str


@dataclass(frozen=True, slots=True)
class ActiveSession:
    id: str
    username: str
    display_name: str
    agent_id: str
    call_id: str
    mode: MonitorMode


def check_request(request: MonitorRequest, tile: Mapping[str, Any] | None,
                  active: Iterable[ActiveSession], *, max_listeners: int,
                  require_reason: bool) -> str:
    """Return the call id the request may join, or raise `MonitorRefused` saying why not."""
    if request.mode.value not in request.permissions:
        raise MonitorRefused(403, "listen.refused.permission",
                             f"you do not have the {request.mode.value} permission")
    if require_reason and not request.reason.strip():
        raise MonitorRefused(400, "listen.refused.reason",
                             "a reason is required to monitor a call")
    if tile is None:
        raise MonitorRefused(404, "listen.refused.unknown_agent", "no such agent on this floor")
    call_id = tile.get("call_id")
    if tile.get("state") != "on_call" or not call_id:
        raise MonitorRefused(409, "listen.refused.no_call", "this agent is not on a call")
    if not tile.get("connected", True):
        raise MonitorRefused(409, "listen.refused.disconnected",
                             "this agent's desktop is not connected")
    on_call = [s for s in active if s.call_id == call_id]
    if any(s.username == request.username for s in on_call):
        raise MonitorRefused(409, "listen.refused.already",
                             "you are already monitoring this call")
    if len(on_call) >= max_listeners:
        raise MonitorRefused(409, "listen.refused.full",
                             f"this call already has the maximum of {max_listeners} listeners")
    if request.mode is MonitorMode.BARGE and any(s.mode is MonitorMode.BARGE for s in on_call):
        raise MonitorRefused(409, "listen.refused.barged",
                             "another supervisor has already barged into this call")
    return str(call_id)


def pick_spot_check(tiles: Iterable[Mapping[str, Any]], unacked_severities: Mapping[str, list[str]],
                    active: Iterable[ActiveSession], username: str, *, max_listeners: int,
                    rng: random.Random) -> str | None:
    """Pick an agent whose live call to spot-check: at random, weighted toward calls with
    unacknowledged alerts (weight 1 + the severities' weights); None when no call qualifies.

    `unacked_severities` maps agent id -> severities of that agent's unacknowledged alerts."""
    active = list(active)
    listeners: dict[str, int] = {}
    mine: set[str] = set()
    for s in active:
        listeners[s.call_id] = listeners.get(s.call_id, 0) + 1
        if s.username == username:
            mine.add(s.call_id)
    candidates: list[str] = []
    weights: list[float] = []
    for tile in sorted(tiles, key=lambda t: t["agent_id"]):  # the same draw for the same seed
        call_id = tile.get("call_id")
        if (tile.get("state") != "on_call" or not call_id or not tile.get("connected", True)
                or call_id in mine or listeners.get(call_id, 0) >= max_listeners):
            continue
        agent_id = tile["agent_id"]
        candidates.append(agent_id)
        weights.append(1.0 + sum(SPOT_CHECK_WEIGHTS.get(s, 1.0)
                                 for s in unacked_severities.get(agent_id, ())))
    if not candidates:
        return None
    return rng.choices(candidates, weights=weights)[0]


def listeners_field(sessions: Iterable[ActiveSession]) -> list[dict[str, str]]:
    """The tile's `listeners` field: who is monitoring the agent's call, and how."""
    return [{"user": s.display_name, "username": s.username, "mode": s.mode.value}
            for s in sorted(sessions, key=lambda s: (s.display_name, s.id))]


def agent_notice(sessions: Iterable[ActiveSession], *, notify_listen: bool) -> list[dict[str, str]]:
    """What the agent's desktop is told. Whisper and barge announce themselves (the agent hears
    the supervisor); silent listening is shown unless configuration says otherwise."""
    return [{"user": s.display_name, "mode": s.mode.value}
            for s in sorted(sessions, key=lambda s: (s.display_name, s.id))
            if notify_listen or s.mode.talks]


def sessions_on_tiles(tiles: Iterable[Mapping[str, Any]]) -> list[ActiveSession]:
    """The floor's monitoring sessions as its tiles show them (every hub's, through the bus)."""
    return [ActiveSession("", entry.get("username", ""), entry.get("user", ""), tile["agent_id"],
                          str(tile.get("call_id") or ""), MonitorMode(entry["mode"]))
            for tile in tiles for entry in tile.get("listeners") or ()
            if entry.get("mode") in MonitorMode.__members__.values()]
