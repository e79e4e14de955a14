"""Keyword-alert latency end to end: from the end of a phrase in the audio to the alert on a wall.

    .venv/bin/python -m bench.kws_latency                  # 8 + 16 kHz probes, 10 other calls
    .venv/bin/python -m bench.kws_latency --load 30 --rounds 2

A real hub (in this process, its keyword spotter in worker processes as in production), a wall
client signed in over the wall socket, and agents streaming at real time over the ingest socket:
probe calls with policy phrases spoken only in the audio (tests/test_kws.py POLICY_CALL), and
`--load` other agents streaming a clean call at the same time, their agent channels spotted too.

A phrase's end in wall-clock time is when the chunk holding it was sent: the probe's first chunk
goes at `t0` and chunk `i` at `t0 + i x 100 ms`, so the phrase ending at `end_s` of call audio
ended at `t0 + end_s`. `end_s` is what the spotter itself reports for that phrase: the same
audio, gated the same way, is spotted offline first (deterministic), and each alert is matched
to its spot by offset. Latency = the alert's arrival at the wall - (t0 + end_s): pocketsphinx's
report delay, the gate's 0.25 s batching and 0.1 s chunks, the worker's decoding, the hub and the
wall socket. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import callgen
from test_kws import CLEAN_CALL, POLICY_CALL, spot_wav

from agent_client.connection import HubConnection
from server.app import create_app
from server.config import load_settings
from server.hub import HUB
from server.ingest_protocol import encode_audio

CHUNK_S = 0.1


async def stream_live(conn: HubConnection, call: callgen.GeneratedCall, call_id: str) -> float:
    """Stream at real time like `floorwatch-agent stream --speed 1`; returns t0 (loop time at
    which the first chunk was sent)."""
    pcm, rate = callgen.read_stereo_wav(call.wav)
    await conn.send_status("on_call", call={"id": call_id, "direction": "outbound",
                                            "customer": "", "sample_rate": rate})
    loop = asyncio.get_running_loop()
    step = int(rate * CHUNK_S)
    t0 = loop.time()
    for i, offset in enumerate(range(0, len(pcm), step)):
        delay = t0 + i * CHUNK_S - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await conn.send_audio(encode_audio(i, offset, pcm[offset:offset + step]), live=True)
    await asyncio.sleep(1.5)  # let the last phrases report before the call ends
    await conn.send_status("wrap_up")
    return t0


async def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="fw-kws-latency-"))
    calls = {rate: callgen.generate_call(POLICY_CALL, rate, tmp) for rate in (8000, 16000)}
    clean = callgen.generate_call(CLEAN_CALL, 8000, tmp)
    # where each phrase ends, as the hub's spotter will report it (same audio, same gating)
    ends = {rate: {round(s.offset_s, 3): s.end_s for s in spot_wav(call)[0]}
            for rate, call in calls.items()}
    settings = load_settings(None, {}, server={"data_dir": str(tmp / "data"), "port": 0},
                             walls={"patch_interval_ms": 250},
                             kws={"workers": args.workers})
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    hub = app[HUB]
    hub.store.add_user("bench", "bench-password", role="supervisor")
    agents = [f"p{i}" for i in range(2)] + [f"l{i}" for i in range(args.load)]
    tokens = {a: hub.store.add_agent(a, a.upper(), "bench") for a in agents}
    await hub.recognition.recognizers["kws"].pool.start()  # workers up before we measure
    arrivals: dict[str, float] = {}
    alerts: dict[str, dict] = {}
    loop = asyncio.get_running_loop()
    raised: dict[str, float] = {}  # when the hub published it (before the floor and walls)

    def on_bus(event: object) -> None:
        alert = getattr(event, "alert", None)
        if alert is not None:
            raised.setdefault(alert.id, loop.time())

    hub.bus.subscribe(on_bus)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{url}/login", json={"username": "bench",
                                                   "password": "bench-password"}) as r:
            assert r.status == 200
        ws = await http.ws_connect(f"{url}/ws/wall", origin=url)

        async def read_wall() -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    message = json.loads(msg.data)
                    if message["type"] == "alert":
                        alert = message["alert"]
                        arrivals.setdefault(alert["id"], loop.time())
                        alerts[alert["id"]] = alert

        reader = asyncio.create_task(read_wall(), name="bench-wall")
        ws_url = url.replace("http://", "ws://") + "/ingest/v1"
        conns = {a: HubConnection(ws_url, a, tokens[a]) for a in agents}
        for conn in conns.values():
            conn.start()
        for conn in conns.values():
            await conn.wait_connected(timeout=10)
            await conn.send_status("logged_in")
        results = []
        cpu0 = os.times()
        for round_no in range(args.rounds):
            jobs = {f"probe-{rate}-{round_no}": (conns[f"p{i}"], calls[rate])
                    for i, rate in enumerate((8000, 16000))}
            jobs.update({f"load-{a}-{round_no}": (conns[a], clean) for a in agents[2:]})
            t0s = dict(zip(jobs, await asyncio.gather(
                *(stream_live(conn, call, call_id) for call_id, (conn, call) in jobs.items())),
                strict=True))
            await asyncio.sleep(2.0)
            for alert_id, alert in alerts.items():
                call_id = alert["call_id"]
                if not call_id.startswith("probe-") or alert["kind"] != "keyword" \
                        or call_id not in t0s or "end" in alert:
                    continue
                rate = int(call_id.split("-")[1])
                end_s = ends[rate].get(round(alert["offset_s"], 3))
                if end_s is None:
                    continue
                alert["end"] = True
                ended = t0s[call_id] + end_s
                results.append({"rate": rate, "phrase": alert["detail"]["phrase"],
                                "latency_s": arrivals[alert_id] - ended,
                                "raised_s": raised.get(alert_id, float("nan")) - ended})
        cpu1 = os.times()
        for conn in conns.values():
            await conn.close()
        reader.cancel()
        await ws.close()
    stats = hub.recognition.stats()
    await runner.cleanup()
    lat = np.array([r["latency_s"] for r in results])
    load_alerts = [a for a in alerts.values() if a["call_id"].startswith("load-")
                   and a["kind"] == "keyword"]
    out = {
        "alerts_measured": len(lat),
        "latency_s": {"median": round(float(np.median(lat)), 3),
                      "p95": round(float(np.percentile(lat, 95)), 3),
                      "max": round(float(lat.max()), 3)} if len(lat) else None,
        "per_alert": results,
        "other_calls": args.load,
        "false_alerts_on_clean_calls": len(load_alerts),
        "kws": stats.get("kws"),
        "hub_process_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 1),
        "loadavg": os.getloadavg(),
        "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--load", type=int, default=10, help="other agents streaming at once")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="kws workers (0: one per core)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    out = asyncio.run(run(args))
    print(json.dumps({k: v for k, v in out.items() if k != "per_alert"}, indent=1))
    for r in out["per_alert"]:
        print(f"  {r['rate']:5d} Hz  {r['phrase']:32s} {r['latency_s']:.3f} s "
              f"(raised by the hub after {r['raised_s']:.3f} s)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
