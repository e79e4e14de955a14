"""Who is asking: supervisor sessions (cookie), API tokens (Bearer), and Origin checks.

The middleware resolves the caller once per request into `request[USER]` (a `User`, or None);
handlers then require what they need. Browser WebSockets and cookie-authenticated writes must come
from our own origin (or one listed in `server.allowed_origins`), which stops another site from
riding a supervisor's session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.hub import HUB
from server.store import Store, User, hash_token

log = logging.getLogger("floorwatch.auth")

COOKIE = "fw_session"
USER = web.RequestKey("user", User | None)
VIA_TOKEN = web.RequestKey("via_token", bool)
PUBLIC_PATHS = ("/login", "/healthz", "/metrics", "/ingest/", "/static/")


def caller(request: web.Request) -> User | None:
    return request.get(USER)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    hub = request.app[HUB]
    store: Store = hub.store
    user: User | None = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = header.removeprefix("Bearer ").strip()
        name = store.api_token_name(token)
        if name is None and await hub.bus.fetch_row("api_tokens", hash_token(token)):
            name = store.api_token_name(token)  # made on another hub a moment ago
        if name is None:
            return web.json_response({"error": "bad API token"}, status=401)
        user = User(f"api:{name}", "api", name)
        request[VIA_TOKEN] = True
    elif COOKIE in request.cookies:
        token = request.cookies[COOKIE]
        user = store.session_user(token)
        if user is None and await hub.bus.fetch_row("sessions", hash_token(token)):
            user = store.session_user(token)  # signed in on another hub a moment ago
    request[USER] = user
    path = request.path
    if user is None and not path.startswith(PUBLIC_PATHS):
        if path.startswith(("/api/", "/ws/")):
            return web.json_response({"error": "sign in first"}, status=401)
        raise web.HTTPFound("/login")
    if (request.method not in ("GET", "HEAD", "OPTIONS") and not request.get(VIA_TOKEN)
            and not origin_ok(request)):
        log.warning("refused %s %s from origin %s", request.method, path,
                    request.headers.get("Origin"))
        return web.json_response({"error": "cross-origin request refused"}, status=403)
    return await handler(request)


def origin_ok(request: web.Request) -> bool:
    """True for same-origin requests, listed origins, and non-browser clients (no Origin)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = request.app[HUB].settings.server.allowed_origins
    own = f"{request.scheme}://{request.host}"
    forwarded = request.headers.get("X-Forwarded-Proto")
    candidates = {own} | ({f"{forwarded}://{request.host}"} if forwarded else set())
    return origin in candidates or origin in allowed


async def login(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "malformed JSON"}, status=400)
    else:
        body = dict(await request.post())
    username, password = str(body.get("username", "")), str(body.get("password", ""))
    loop = asyncio.get_running_loop()
    # scrypt takes tens of milliseconds on purpose: keep it off the event loop
    user = await loop.run_in_executor(None, hub.store.check_password, username, password)
    # a browser posting the form itself (the page's script not loaded yet) gets pages, not JSON
    page = request.content_type != "application/json" and "text/html" in request.headers.get(
        "Accept", "")
    if user is None:
        log.warning("failed sign-in for %r from %s", username[:64], request.remote)
        if page:
            raise web.HTTPSeeOther("/login?error=bad_credentials")
        return web.json_response({"error": "bad_credentials"}, status=401)
    settings = hub.settings.auth
    token = hub.store.new_session(user.username, settings.session_ttl_h * 3600)
    await hub.bus.sync()  # the session is shared before the browser can use it on another hub
    log.info("%s signed in from %s", user.username, request.remote)
    response = (web.Response(status=303, headers={"Location": "/"}) if page
                else web.json_response({"user": user_json(user)}))
    response.set_cookie(COOKIE, token, httponly=True, samesite="Lax",
                        secure=settings.cookie_secure, max_age=int(settings.session_ttl_h * 3600),
                        path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    token = request.cookies.get(COOKIE)
    if token:
        request.app[HUB].store.end_session(token)
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


def user_json(user: User) -> dict[str, object]:
    return {"username": user.username, "role": user.role, "display_name": user.display_name,
            "permissions": sorted(user.permissions)}
