"""A supervisor in Chromium listens to, then whispers to, a streamed call — run inside a private
network namespace (tests/test_listen_browser.py starts it with `unshare -n`, as root).

Headless Chromium ignores loopback ICE candidates, so the hub offers its media on one end of a veth
pair made here (10.203.0.1); the browser reaches it as it would a hub on the LAN. Prints one JSON
line of findings; the test asserts on them.

    unshare -n python tests/netns_listen.py --wav CALL.wav --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from aiohttp import web

from agent_client.connection import HubConnection
from agent_client.stream import read_wav, stream_call
from agent_client.supervisor import BargeMixer, SupervisorVoice, VoiceRecorder
from bench.netns import HUB_IP, make_veth_network
from server.app import create_app
from server.config import load_settings
from server.hub import HUB

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 # hand the hub real host candidates rather than mDNS names it cannot resolve here
                 "--disable-features=WebRtcHideLocalIpsWithMdns",
                 # browsers give the microphone to secure origins only: a real floor serves the
                 # wall over HTTPS (docs/deployment.md); this test's hub is plain HTTP
                 f"--unsafely-treat-insecure-origin-as-secure=http://{HUB_IP}:8740"]


async def main(wav: Path, out: Path) -> dict:
    from playwright.async_api import async_playwright

    make_veth_network()
    findings: dict = {}
    started = time.monotonic()
    steps: dict[str, float] = {}  # seconds since start at which each step was done, for failures
    findings["steps"] = steps

    def step(name: str) -> None:
        steps[name] = round(time.monotonic() - started, 1)
    settings = load_settings(None, {}, server={"data_dir": str(out / "data"), "host": HUB_IP},
                             walls={"patch_interval_ms": 100},
                             listen={"ice_host_addresses": [HUB_IP]})
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HUB_IP, 8740)
    await site.start()
    hub = app[HUB]
    hub.store.add_user("boss", "boss-password", "admin", "Big Boss")
    token = hub.store.add_agent("a1", "Maya Singh", "Sales A")
    base = f"http://{HUB_IP}:8740"

    pcm, rate = read_wav(wav)
    # the conversation three times over (~2.5 min): on a loaded CI machine the browser's start,
    # sign-in and ICE can take most of a minute, and the call must still be live for the whisper
    pcm = np.concatenate([pcm, pcm, pcm])
    conn = HubConnection(f"ws://{HUB_IP}:8740/ingest/v1", "a1", token)
    recorder = VoiceRecorder(out / "agent-heard.wav", rate)
    mixer = BargeMixer(rate)
    voice = SupervisorVoice(recorder.add, mixer=mixer)
    conn.on_voice = voice
    notices: list = []
    conn.on_monitor = notices.append
    conn.start()
    await conn.wait_connected(timeout=10)
    await conn.send_status("logged_in", name="Maya Singh")
    await conn.send_status("ready")
    streaming = asyncio.create_task(stream_call(conn, pcm, rate, call_id="call-browser",
                                                mixer=mixer))

    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = await browser.new_page(viewport={"width": 1400, "height": 850})
        page.set_default_timeout(15000)
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        findings["console"] = console
        await page.goto(f"{base}/login")
        await page.fill("#username", "boss")
        await page.fill("#password", "boss-password")
        await page.click("#login-submit")
        step("signed in")
        tile = page.locator('.tile[data-agent-id="a1"]')
        await tile.wait_for()
        await page.wait_for_function(
            "() => document.querySelector('.tile[data-agent-id=\"a1\"]').dataset.state"
            " === 'on_call'")
        step("tile on call")
        await tile.click()
        await page.locator('#drawer [data-listen-mode="listen"]').click()
        await page.wait_for_function(  # ICE takes a while on a loaded machine
            "() => window.fwMonitor && window.fwMonitor.state === 'connected'", timeout=40000)
        step("listening")
        # sample what the page hears for a few seconds: bytes in, level per channel
        samples = []
        for _ in range(30):
            await asyncio.sleep(0.2)
            samples.append(await page.evaluate(
                "async () => ({bytes: await window.fwMonitor.inboundBytes(), "
                "levels: window.fwMonitor.levels})"))
        findings["listen"] = {
            "bytes": [s["bytes"] for s in samples],
            "max_left": max(s["levels"][0] for s in samples),
            "max_right": max(s["levels"][1] for s in samples),
        }
        findings["tile_listeners"] = await page.evaluate(
            "() => window.floorwatch.grid.record('a1')?.listeners ?? null")
        await page.screenshot(path=str(out / "listening.png"))
        # whisper with Chromium's fake microphone (a beep): it must reach the agent
        await page.locator('#drawer [data-listen-mode="whisper"]').click()
        await page.wait_for_function("() => window.fwMonitor.session?.mode === 'whisper' && "
                                     "window.fwMonitor.state === 'connected'", timeout=40000)
        step("whispering")
        await asyncio.sleep(3.0)
        findings["whisper_frames"] = voice.frames["whisper"]
        findings["barge_mixed"] = mixer.mixed_samples
        await page.locator("#monitor-bar .monitor-stop").click()
        await page.wait_for_function("() => window.fwMonitor.session === null")
        step("stopped")
        await asyncio.sleep(0.5)
        findings["audit"] = hub.store.monitor_sessions()
        # the audit page shows both sessions
        await page.goto(f"{base}/audit")
        await page.locator("#audit-table tbody tr").nth(1).wait_for()
        findings["audit_rows_shown"] = await page.locator("#audit-table tbody tr").count()
        await page.screenshot(path=str(out / "audit.png"))
    except Exception as exc:  # say what the page showed, for the test's failure message
        findings["error"] = repr(exc)
        findings["url"] = page.url
        findings["call_still_streaming"] = not streaming.done()
        bar = page.locator("#monitor-bar")
        if await bar.count():  # the audit page has none; never let the report hide the error
            findings["bar"] = await bar.text_content(timeout=1000)
        await page.screenshot(path=str(out / "failure.png"))
        brief = {k: findings.get(k) for k in ("error", "steps", "url", "call_still_streaming",
                                               "bar")}
        print(json.dumps(findings, default=str), file=sys.stderr)
        print(json.dumps(brief, default=str), file=sys.stderr)  # last: the test shows the tail
        raise
    finally:
        await browser.close()
        await pw.stop()
        streaming.cancel()
        await conn.close()
        await runner.cleanup()
    recorder.write()
    findings["notices"] = notices
    findings["agent_heard_samples"] = int(recorder._position)
    return findings


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(main(args.wav, args.out))
    print(json.dumps(result, default=str))
