"""HTTP edge for supervisors and integrations: pages, REST API, wall socket, health, metrics."""

from __future__ import annotations

import gc
import logging
import time

from aiohttp import WSMsgType, web

from server import gc_policy
from server.auth import caller, origin_ok, user_json
from server.events import AlertChanged
from server.hub import HUB, Hub
from server.wire import alert_json, dumps, iso, parse_iso

log = logging.getLogger("floorwatch.api")

routes = web.RouteTableDef()


def _hub(request: web.Request) -> Hub:
    return request.app[HUB]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


# -- pages ------------------------------------------------------------------------------------


@routes.get("/")
async def wall_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(_hub(request).settings.server.web_dir / "index.html")


@routes.get("/login")
async def login_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(_hub(request).settings.server.web_dir / "login.html")


# -- REST -------------------------------------------------------------------------------------


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    user = caller(request)
    assert user is not None
    listen = _hub(request).settings.listen
    # the browser needs the ICE servers before it makes its offer (docs/protocol.md §4)
    ice = [{"urls": url, **({"username": listen.ice_username, "credential": listen.ice_credential}
                             if url.startswith("turn") and listen.ice_username else {})}
           for url in listen.ice_servers]
    return web.json_response({"user": user_json(user), "monitoring": {
        "enabled": listen.enabled, "ice_servers": ice,
        "require_reason": listen.require_reason,
        "max_listeners_per_call": listen.max_listeners_per_call}})


@routes.get("/api/tiles")
async def tiles(request: web.Request) -> web.Response:
    floor = _hub(request).floor
    return web.json_response({"server_time": iso(time.time()),
                              "tiles": list(floor.tiles.values())}, dumps=dumps)


@routes.get("/api/alerts")
async def alerts(request: web.Request) -> web.Response:
    q = request.query
    since = None
    if q.get("since"):
        try:
            since = parse_iso(q["since"])
        except ValueError as exc:
            return _error(400, f"since: {exc}")
    try:
        limit = min(int(q.get("limit", "500")), 5000)
    except ValueError:
        return _error(400, "limit: expected a whole number")
    kind = q.get("kind") or None
    if kind is not None and kind not in ("silence", "overtalk", "keyword", "state"):
        return _error(400, "kind: one of silence, overtalk, keyword, state")
    found = _hub(request).store.alerts(
        call_id=q.get("call_id") or None, agent_id=q.get("agent_id") or None, since=since,
        kind=kind, unacked=q.get("unacked") in ("1", "true"), limit=limit,
    )
    return web.json_response({"alerts": [alert_json(a) for a in found]}, dumps=dumps)


@routes.post("/api/alerts/{alert_id}/ack")
async def ack(request: web.Request) -> web.Response:
    hub = _hub(request)
    user = caller(request)
    assert user is not None
    alert_id = request.match_info["alert_id"]
    alert = hub.store.ack_alert(alert_id, user.username)
    if alert is None:
        return _error(404, f"no alert {alert_id}")
    hub.bus.publish(AlertChanged(alert))
    log.info("alert %s acknowledged by %s", alert_id, user.username)
    return web.json_response(alert_json(alert), dumps=dumps)


@routes.get("/api/agents/{agent_id}/history")
async def history(request: web.Request) -> web.Response:
    since = time.time() - 24 * 3600
    if request.query.get("since"):
        try:
            since = parse_iso(request.query["since"])
        except ValueError as exc:
            return _error(400, f"since: {exc}")
    rows = _hub(request).store.status_history(request.match_info["agent_id"], since)
    for row in rows:
        row["at"] = iso(row["at"])
    return web.json_response({"history": rows}, dumps=dumps)


@routes.get("/api/agents/{agent_id}/call")
async def current_call(request: web.Request) -> web.Response:
    """The agent's current call: speech timeline, masked transcript and the call's alerts."""
    hub = _hub(request)
    live = hub.agents.get(request.match_info["agent_id"])
    try:
        window_s = min(max(float(request.query.get("window_s", "300")), 10.0), 3600.0)
    except ValueError:
        return _error(400, "window_s: expected seconds")
    view = live.call_view(window_s) if live is not None else None
    if view is None:
        return web.json_response({"call": None})
    alerts = hub.store.alerts(call_id=view["call_id"], limit=200)
    view["alerts"] = [alert_json(a) for a in alerts]
    return web.json_response({"call": view}, dumps=dumps)


# -- wall socket ------------------------------------------------------------------------------


@routes.get("/ws/wall")
async def wall_socket(request: web.Request) -> web.WebSocketResponse:
    hub = _hub(request)
    user = caller(request)
    assert user is not None
    if not origin_ok(request):
        log.warning("wall socket from foreign origin %s refused", request.headers.get("Origin"))
        raise web.HTTPForbidden(text="cross-origin wall socket refused")
    # no per-message deflate: it would compress every broadcast once per wall
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096, compress=False)
    await ws.prepare(request)
    wall = hub.walls.open(ws, user.username, dumps(hub.floor.snapshot()), request.transport)
    try:
        async for msg in ws:  # walls only listen; anything they send is ignored
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        await hub.walls.close(wall)
        log.info("wall %d closed (%d messages sent)", wall.id, wall.sent)
    return ws


# -- operations -------------------------------------------------------------------------------


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    hub = _hub(request)
    ok = hub.bus.healthy and not hub.stopping
    body = {"status": "ok" if ok else ("stopping" if hub.stopping else "degraded"),
            "agents": len(hub.connections), "walls": len(hub.walls.walls),
            # keyword spotting and ASR: workers, backlog, audio dropped for want of CPU
            "recognition": [r.stats() for r in hub.recognition.recognizers.values()]}
    return web.json_response(body, status=200 if not hub.stopping else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    hub = _hub(request)
    m = hub.metrics
    calls = sum(1 for a in hub.agents.values() if a.call is not None)
    lines = []

    def metric(name: str, kind: str, help_text: str, value: float) -> None:
        lines.extend([f"# HELP floorwatch_{name} {help_text}", f"# TYPE floorwatch_{name} {kind}",
                      f"floorwatch_{name} {value}"])

    metric("agents_connected", "gauge", "Agent clients connected to this hub.",
           len(hub.connections))
    metric("walls_connected", "gauge", "Wall sockets connected to this hub.", len(hub.walls.walls))
    metric("calls_active", "gauge", "Calls open on this hub.", calls)
    metric("tiles", "gauge", "Tiles on the floor.", len(hub.floor.tiles))
    metric("audio_chunks_total", "counter", "Audio chunks analysed.", m.chunks)
    metric("audio_seconds_total", "counter", "Seconds of stereo call audio analysed.",
           round(m.audio_s, 3))
    metric("frames_analysed_total", "counter", "Stereo VAD frames analysed.", m.frames)
    metric("analysis_cpu_seconds_total", "counter", "Time spent analysing audio.",
           round(m.analysis_s, 6))
    metric("analysis_lag_seconds", "gauge",
           "Event-loop lag at the last tick: how late analysis and fan-out run.",
           round(m.loop_lag_s, 6))
    metric("analysis_lag_max_seconds", "gauge", "Largest event-loop lag seen.",
           round(m.loop_lag_max_s, 6))
    metric("control_messages_total", "counter", "Status and transcript messages.", m.messages)
    gc_pauses = gc_policy.PAUSES
    lines.extend(["# HELP floorwatch_gc_collections_total Garbage collections, by generation.",
                  "# TYPE floorwatch_gc_collections_total counter"]
                 + [f'floorwatch_gc_collections_total{{generation="{g}"}} {n}'
                    for g, n in enumerate(gc_pauses.collections)]
                 + ["# HELP floorwatch_gc_pause_seconds_total Time the hub stood still in "
                    "garbage collections, by generation.",
                    "# TYPE floorwatch_gc_pause_seconds_total counter"]
                 + [f'floorwatch_gc_pause_seconds_total{{generation="{g}"}} {round(t, 6)}'
                    for g, t in enumerate(gc_pauses.seconds)])
    metric("gc_pause_max_seconds", "gauge", "Longest garbage-collection pause seen.",
           round(gc_pauses.longest_s, 6))
    metric("gc_frozen_objects", "gauge",
           "Start-up objects the garbage collector no longer walks (server.gc_young_threshold).",
           gc.get_freeze_count())
    metric("refused_connections_total", "counter", "Agent connections closed for bad input.",
           m.refused)
    metric("wall_messages_total", "counter", "Messages delivered to walls.", hub.walls.delivered)
    metric("walls_dropped_total", "counter", "Walls dropped for falling behind.",
           hub.walls.dropped)
    mon = hub.monitoring.counters()
    metric("monitor_sessions", "gauge", "Listen/whisper/barge sessions running on this hub.",
           mon["sessions"])
    metric("monitor_packets_sent_total", "counter",
           "Opus packets handed to listeners (ended sessions included).", mon["sent"])
    metric("monitor_packets_skipped_total", "counter",
           "Packets skipped because a listener's queue was full (a listener or the hub "
           "fell behind).", mon["skipped"])
    return web.Response(text="\n".join(lines) + "\n",
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
