"""HTTP edge of monitoring: start and stop listen/whisper/barge sessions, and the audit trail.

    POST   /api/monitor          {agent_id | spot_check: true, mode, reason, sdp} -> answer
    GET    /api/monitor          the sessions running on this hub
    DELETE /api/monitor/{id}     stop a session (its supervisor, or an admin)
    GET    /api/audit            the monitoring audit trail (permission `audit`, or an API token)
    GET    /audit                the audit page

Refusals carry a readable `error` and an `error_key` the wall translates (docs/protocol.md §3).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from server.auth import caller
from server.hub import HUB
from server.monitor import BadOffer, MonitorMode, MonitorRefused
from server.wire import dumps, iso, parse_iso

log = logging.getLogger("floorwatch.listen_api")

routes = web.RouteTableDef()
MAX_SDP = 64 * 1024
MAX_REASON = 500


def _refused(exc: MonitorRefused, who: str) -> web.Response:
    log.info("monitoring refused to %s: %s", who, exc.message)
    return web.json_response(exc.json(), status=exc.status)


@routes.post("/api/monitor")
async def start_monitor(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    user = caller(request)
    assert user is not None
    if not hub.settings.listen.enabled:
        return _refused(MonitorRefused(403, "listen.refused.disabled",
                                       "monitoring is turned off on this floor"), user.username)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response({"error": "expected a JSON object"}, status=400)
    mode_text, sdp, reason = body.get("mode", "listen"), body.get("sdp"), body.get("reason", "")
    if mode_text not in tuple(MonitorMode):
        return web.json_response({"error": "mode: one of listen, whisper, barge"}, status=400)
    if not isinstance(sdp, str) or not sdp or len(sdp) > MAX_SDP:
        return web.json_response({"error": "sdp: expected the browser's SDP offer"}, status=400)
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        return web.json_response({"error": f"reason: at most {MAX_REASON} characters"},
                                 status=400)
    spot_check = body.get("spot_check") is True
    try:
        if spot_check:
            agent_id = hub.monitoring.pick(user)
        else:
            agent_id = body.get("agent_id")
            if not isinstance(agent_id, str) or not agent_id:
                return web.json_response({"error": "agent_id: expected an agent id (or "
                                                   "spot_check: true)"}, status=400)
        answer = await hub.monitoring.start_anywhere(user, agent_id, MonitorMode(mode_text),
                                                     reason, sdp, spot_check=spot_check)
    except MonitorRefused as exc:
        return _refused(exc, user.username)
    except BadOffer as exc:
        log.warning("monitoring: bad offer from %s: %s", user.username, exc)
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(answer, status=201, dumps=dumps)


@routes.get("/api/monitor")
async def list_monitors(request: web.Request) -> web.Response:
    return web.json_response({"sessions": request.app[HUB].monitoring.sessions()}, dumps=dumps)


@routes.delete("/api/monitor/{session_id}")
async def stop_monitor(request: web.Request) -> web.Response:
    user = caller(request)
    assert user is not None
    try:
        session = await request.app[HUB].monitoring.stop_anywhere(
            request.match_info["session_id"], user)
    except MonitorRefused as exc:
        return _refused(exc, user.username)
    return web.json_response({"session": session}, dumps=dumps)


@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    user = caller(request)
    assert user is not None
    if user.role != "api" and "audit" not in user.permissions:
        return web.json_response({"error": "you do not have the audit permission"}, status=403)
    q = request.query
    since = time.time() - 7 * 24 * 3600
    if q.get("since"):
        try:
            since = parse_iso(q["since"])
        except ValueError as exc:
            return web.json_response({"error": f"since: {exc}"}, status=400)
    try:
        limit = min(int(q.get("limit", "500")), 5000)
    except ValueError:
        return web.json_response({"error": "limit: expected a whole number"}, status=400)
    rows = request.app[HUB].store.monitor_sessions(since=since, agent_id=q.get("agent_id") or None,
                                                   limit=limit)
    for row in rows:
        row["started_at"] = iso(row["started_at"])
        row["ended_at"] = iso(row["ended_at"]) if row["ended_at"] is not None else None
        row["spot_check"] = bool(row["spot_check"])
    return web.json_response({"sessions": rows}, dumps=dumps)


@routes.get("/audit")
async def audit_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[HUB].settings.server.web_dir / "audit.html")
