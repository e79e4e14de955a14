"""The raw baseline: a minimal aiohttp server that only receives the ingest chunks and runs
webrtcvad on both channels, with none of the hub's analysis, tiles, store or walls.

    python -m bench.baseline --port 8750

It speaks just enough of protocol v1 for the load generator (hello → welcome, every reliable
message → ack, binary audio frames) and exposes the two metrics the capacity benchmark reads,
computed the same way as the hub's: analysed audio seconds, and event-loop lag of a 250 ms ticker.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import numpy as np
import webrtcvad
from aiohttp import WSMsgType, web

from server.ingest_protocol import AUDIO_HEADER

STATS = web.AppKey("stats", dict)


async def ingest(request: web.Request) -> web.WebSocketResponse:
    stats = request.app[STATS]
    ws = web.WebSocketResponse(max_msg_size=256 * 1024)
    await ws.prepare(request)
    vads, rate = (webrtcvad.Vad(3), webrtcvad.Vad(3)), 8000
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            pcm = np.frombuffer(msg.data, "<i2", offset=AUDIO_HEADER.size).reshape(-1, 2)
            step = rate // 50 * 2  # 20 ms frames, in bytes
            for channel, vad in enumerate(vads):
                mono = pcm[:, channel].tobytes()
                for i in range(0, len(mono) - step + 1, step):
                    vad.is_speech(mono[i : i + step], rate)
            stats["audio_s"] += len(pcm) / rate
            stats["chunks"] += 1
        elif msg.type is WSMsgType.TEXT:
            message = json.loads(msg.data)
            if message["type"] == "hello":
                await ws.send_json({"type": "welcome", "protocol": 1, "last_seq": 0})
            else:
                rate = message.get("call", {}).get("sample_rate", rate)
                await ws.send_json({"type": "ack", "seq": message["seq"]})
    return ws


async def metrics(request: web.Request) -> web.Response:
    s = request.app[STATS]
    return web.Response(text=f"floorwatch_audio_seconds_total {s['audio_s']:.3f}\n"
                        f"floorwatch_audio_chunks_total {s['chunks']}\n"
                        f"floorwatch_analysis_lag_seconds {s['lag']:.6f}\n")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ticker(app: web.Application):  # same lag measurement as server.hub._tick_forever
    loop, stats = asyncio.get_running_loop(), app[STATS]

    async def tick() -> None:
        expected = loop.time() + 0.25
        while True:
            await asyncio.sleep(max(0.0, expected - loop.time()))
            now = loop.time()
            stats["lag"], expected = max(0.0, now - expected), now + 0.25

    task = asyncio.create_task(tick(), name="baseline-ticker")
    yield
    task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8750)
    app = web.Application()
    app[STATS] = {"audio_s": 0.0, "chunks": 0, "lag": 0.0}
    app.router.add_get("/ingest/v1", ingest)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(ticker)
    import uvloop

    web.run_app(app, host="127.0.0.1", port=parser.parse_args().port, print=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
