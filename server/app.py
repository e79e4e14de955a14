"""The aiohttp application factory and the server runner."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from server import api, gc_policy, listen_api
from server.auth import auth_middleware, login, logout
from server.bus import Bus
from server.config import Settings
from server.hub import HUB, Hub
from server.ingest import ingest_handler

log = logging.getLogger("floorwatch")


def create_app(settings: Settings, *, bus: Bus | None = None) -> web.Application:
    """Build the hub's application from settings. Nothing starts until the app starts."""
    app = web.Application(middlewares=[auth_middleware],
                          client_max_size=64 * 1024, handler_args={"max_field_size": 16384})
    hub = Hub(settings, bus=bus)
    app[HUB] = hub
    app.router.add_get("/ingest/v1", ingest_handler)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_routes(api.routes)
    app.router.add_routes(listen_api.routes)
    app.router.add_static("/static/", settings.server.web_dir, follow_symlinks=False)

    async def start(_app: web.Application) -> None:
        await hub.start()

    async def stop(_app: web.Application) -> None:
        await hub.stop()

    app.on_response_prepare.append(_headers)
    app.on_startup.append(start)
    # on_shutdown runs before aiohttp force-closes open sockets: close ours politely first
    app.on_shutdown.append(stop)
    return app


PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "microphone=(self), camera=()",  # whisper and barge use the mic
}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Pages may only load our own files; the wall's files are revalidated on every load, so a
    deploy reaches every TV on its next reload."""
    if request.path.startswith(("/static/", "/login", "/audit")) or request.path == "/":
        response.headers.update(PAGE_HEADERS)
        response.headers.setdefault("Cache-Control", "no-cache")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve(settings: Settings, *,
                extra: Callable[[web.Application], Awaitable[None]] | None = None) -> None:
    """Run the hub until SIGINT/SIGTERM; `extra` runs alongside it (the demo's simulator)."""
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=
                           settings.server.shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    log.info("floorwatch hub listening on http://%s:%d", settings.server.host,
             settings.server.port)
    gc_policy.tune(settings.server.gc_young_threshold)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    side: asyncio.Task[None] | None = None
    if extra is not None:
        side = asyncio.create_task(extra(app), name="demo-side-task")
        side.add_done_callback(lambda t: t.cancelled() or t.exception() is None or stop.set())
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        if side is not None:
            side.cancel()
            try:
                await side
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("demo side task failed")
        await runner.cleanup()


def run(settings: Settings, **kwargs: object) -> None:
    if settings.server.uvloop:
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop not installed; using the default asyncio loop")
        else:
            uvloop.run(serve(settings, **kwargs))  # type: ignore[arg-type]
            return
    asyncio.run(serve(settings, **kwargs))  # type: ignore[arg-type]
