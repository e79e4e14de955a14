"""The supervisor wall in a real browser (Debian's Chromium driven by Python Playwright) against a
real hub with real agent connections: sign-in, tiles, alerts and acknowledgement across two
walls, filters and sorts, both languages, wall mode, and a hub restart.

Chromium comes from the system (`apt-get install chromium fonts-noto-cjk`), never from
`playwright install`. Without it the tests skip on a developer machine and fail in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from conftest import SUPERVISOR, RunningHub, free_port, need, start_hub

from agent_client.connection import HubConnection
from server.ingest_protocol import encode_audio
from server.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
WEB = Path(__file__).resolve().parent.parent / "web"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1600, "height": 900}

# agent id, name, team: two teams, and names whose order differs from the ids' order
AGENTS = [("a1", "Maya Singh", "Sales A"), ("a2", "Ann Lee", "Retention"),
          ("a3", "Zoe Hart", "Sales A"), ("a4", "Ivy Chen", "Retention"),
          ("a5", "Carl Diaz", "Sales A"), ("a6", "Tom Wu", "Retention")]
NAMES = {agent_id: name for agent_id, name, _ in AGENTS}
TEAMS = {agent_id: team for agent_id, _, team in AGENTS}
RATE = 8000


def call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "direction": "inbound", "customer": "", "sample_rate": RATE}


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    need(HAVE_CHROMIUM, f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
        from playwright.async_api import expect as _expect
    except ImportError:
        need(False, "Python Playwright is not installed (pip install -e '.[test]')")
    _expect.set_options(timeout=10_000)  # generous: a busy 2-core CI machine, not a timing test
    pw = await async_playwright().start()
    try:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
    finally:
        await pw.stop()


class Pages:
    """Opens pages in their own browser contexts (own cookies, own language) and records
    uncaught script errors, which fail the test at the end."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.errors: list[str] = []

    async def new(self, locale: str = "en-US") -> Any:
        context = await self.browser.new_context(viewport=VIEWPORT, locale=locale)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.set_default_timeout(10_000)
        return page


@pytest.fixture
async def pages(browser) -> AsyncIterator[Pages]:
    opened = Pages(browser)
    yield opened
    assert opened.errors == [], "uncaught errors in the page"


async def sign_in(page: Any, base: str, user: tuple[str, str] = SUPERVISOR) -> None:
    """Open the wall, get sent to the login page, sign in there, and wait for live data."""
    await page.goto(f"{base}/")
    await page.wait_for_url(f"{base}/login")
    await page.fill("#username", user[0])
    await page.fill("#password", user[1])
    await page.click("#login-submit")
    await page.wait_for_url(f"{base}/")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def expect(target: Any) -> Any:
    from playwright.async_api import expect as _expect

    return _expect(target)


async def eventually(probe: Callable[[], Awaitable[Any]], want: Any,
                     timeout: float = 5.0) -> None:
    """Poll `probe` until it returns `want` (a generous functional wait, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still {got!r}, wanted {want!r} after {timeout} s")
        await asyncio.sleep(0.1)


def shown_ids(page: Any) -> Callable[[], Awaitable[list[str]]]:
    """The agent ids of the tiles on screen, in screen order (tiles are placed by the page, not
    by their order in the DOM: `aria-posinset` is each tile's slot)."""
    return lambda: page.evaluate(
        "[...document.querySelectorAll('#grid .tile:not([hidden])[aria-posinset]')]"
        ".sort((a, b) => a.getAttribute('aria-posinset') - b.getAttribute('aria-posinset'))"
        ".map((el) => el.dataset.agentId)")


def tile(page: Any, agent_id: str) -> Any:
    return page.locator(f'.tile[data-agent-id="{agent_id}"]')


# -- the floor ----------------------------------------------------------------------------------


async def connect(url: str, agent_id: str, token: str) -> HubConnection:
    conn = HubConnection(url, agent_id, token, max_backoff_s=0.5)
    conn.start()
    await conn.wait_connected(timeout=10)
    return conn


async def staff(hub: RunningHub) -> dict[str, HubConnection]:
    """Six agents, each in a state of its own (oldest state first: a1 … a6)."""
    for agent_id, name, team in AGENTS:
        hub.add_agent(agent_id, team, name)
    conns = {agent_id: await connect(hub.ws_url, agent_id, hub.tokens[agent_id])
             for agent_id, *_ in AGENTS}
    plan = {"a1": ("on_call", {"call": call("c-a1")}), "a2": ("ready", {}),
            "a3": ("on_call", {"call": call("c-a3")}), "a4": ("break", {"reason": "lunch"}),
            "a5": ("on_call", {"call": call("c-a5")}), "a6": ("wrap_up", {})}
    for agent_id, (state, extra) in plan.items():
        await conns[agent_id].send_status("logged_in", name=NAMES[agent_id])
        await conns[agent_id].send_status(state, **extra)
        await asyncio.sleep(0.02)  # distinct times in state, so the risk order is known
    for conn in conns.values():
        assert await conn.drain(timeout=5)
    return conns


async def silence(conn: HubConnection, seconds: float) -> None:
    """Call audio in which nobody speaks (sent faster than real time: analysis runs on the
    audio's own clock)."""
    chunk = np.zeros((RATE // 10, 2), np.int16)
    for i in range(round(seconds * 10)):
        assert await conn.send_audio(encode_audio(i, i * chunk.shape[0], chunk))
        await asyncio.sleep(0.005)


async def speech(conn: HubConnection, seconds: float) -> None:
    """The agent talks (a loud tone on the agent channel; the customer channel silent)."""
    n = RATE // 10
    chunk = np.zeros((n, 2), np.int16)
    chunk[:, 0] = (8000 * np.sin(np.arange(n) * 0.3)).astype(np.int16)
    for i in range(round(seconds * 10)):
        assert await conn.send_audio(encode_audio(i, i * n, chunk))
        await asyncio.sleep(0.005)


async def close_all(conns: dict[str, HubConnection]) -> None:
    for conn in conns.values():
        await conn.close()


# -- tests --------------------------------------------------------------------------------------


async def test_alerts_reach_both_walls_and_an_ack_on_one_clears_the_other(running_hub, pages):
    hub = running_hub  # on the embedded bus, and on Redis
    conns = await staff(hub)
    try:
        first = await pages.new()
        await sign_in(first, hub.url)
        second = await pages.new()
        await sign_in(second, hub.url)

        # a tile for every agent, with its name, team and state, on both walls
        for page in (first, second):
            await expect(page.locator(".tile[data-agent-id]")).to_have_count(len(AGENTS))
        for agent_id, name, team in AGENTS:
            await expect(tile(first, agent_id).locator(".t-name")).to_have_text(name)
            await expect(tile(first, agent_id).locator(".t-team")).to_have_text(team)
        await expect(tile(first, "a4")).to_have_attribute("data-state", "break")
        await expect(tile(first, "a4").locator(".t-state .long")).to_have_text("Break")
        await expect(tile(first, "a1")).to_have_attribute("data-call", "true")
        await expect(tile(first, "a2")).to_have_attribute("data-call", "false")
        await expect(first.locator('button.count[data-count-state="on_call"]')).to_have_attribute(
            "data-count", "3")
        await expect(first.locator("#unacked-count")).to_have_attribute("data-count", "0")
        # the state timer runs on the hub's clock
        timer = tile(first, "a2").locator(".t-state-time")
        await expect(timer).not_to_have_text("")
        before = await timer.text_content()
        await expect(timer).not_to_have_text(before or "", timeout=5000)

        # who is speaking: the agent talks, the customer listens
        await speech(conns["a1"], 1.5)
        await expect(tile(first, "a1").locator('.t-spk[data-who="agent"]')).to_have_attribute(
            "data-on", "true")
        await expect(tile(first, "a1").locator('.t-spk[data-who="customer"]')
                     ).to_have_attribute("data-on", "false")
        await expect(tile(first, "a1").locator(".t-ratio .pct")).to_have_text("100%")

        # the hub hears a false promise: an alert on both walls at once
        said = time.monotonic()
        await conns["a3"].send_transcript("c-a3", 2.0, "agent", "these are guaranteed returns")
        row = '[data-alert-id][data-alert-agent="a3"][data-kind="keyword"]'
        await first.wait_for_selector(row, timeout=5000)
        shown_after = time.monotonic() - said
        await second.wait_for_selector(row, timeout=5000)
        print(f"keyword alert on the wall {shown_after * 1000:.0f} ms after it was said")
        alert_id = await first.get_attribute(row, "data-alert-id")
        assert await first.get_attribute(row, "data-severity") == "high"
        await expect(first.locator(row)).to_contain_text("guaranteed returns")
        await expect(tile(first, "a3")).to_have_attribute("data-severity", "high")
        await expect(tile(first, "a3")).to_have_attribute("data-has-alert", "true")
        for page in (first, second):
            await expect(page.locator("#unacked-count")).to_have_attribute("data-count", "1")

        # a silent call: dead air crosses its threshold, with a running timer and an alert
        await silence(conns["a5"], 7)
        await expect(tile(first, "a5")).to_have_attribute("data-dead-air", "true")
        await expect(tile(first, "a5").locator(".t-dead-time")).to_have_text(
            re.compile(r"0:0[5-9]|0:1\d"))
        dead_row = '[data-alert-id][data-alert-agent="a5"][data-kind="silence"]'
        await second.wait_for_selector(dead_row, timeout=5000)
        await expect(tile(second, "a5")).to_have_attribute("data-severity", "medium")
        for page in (first, second):
            await expect(page.locator("#unacked-count")).to_have_attribute("data-count", "2")

        # risk order: the high alert first, then the dead air, then the longest in state
        await eventually(shown_ids(first), ["a3", "a5", "a1", "a2", "a4", "a6"])

        # acknowledge the keyword alert with a click on the first wall: gone on the second
        await first.click(f'[data-alert-id="{alert_id}"] button.a-ack')
        await second.wait_for_selector(f'[data-alert-id="{alert_id}"]', state="detached",
                                       timeout=5000)
        for page in (first, second):
            await expect(page.locator(f'[data-alert-id="{alert_id}"]')).to_have_count(0)
            await expect(page.locator("#unacked-count")).to_have_attribute("data-count", "1")
            await expect(tile(page, "a3")).to_have_attribute("data-severity", "none")
            await expect(tile(page, "a3")).to_have_attribute("data-has-alert", "false")
        (acked,) = [a for a in await hub.alerts() if a["id"] == alert_id]
        assert acked["acked_by"] == SUPERVISOR[0]

        # a newer alert, acknowledged with the keyboard (`a` = newest) on the first wall
        await conns["a1"].send_transcript("c-a1", 30.0, "agent", "shut up and listen")
        critical = '[data-alert-id][data-alert-agent="a1"][data-severity="critical"]'
        await first.wait_for_selector(critical, timeout=5000)
        await second.wait_for_selector(critical, timeout=5000)
        await expect(first.locator("#announcer")).to_contain_text("Maya Singh")
        first_row = first.locator("li.alert-row").first
        await expect(first_row).to_have_attribute("data-alert-agent", "a1")
        # with no alert row focused (`a` acknowledges the focused row when there is one)
        await first.evaluate("document.activeElement?.blur()")
        await first.keyboard.press("a")
        await second.wait_for_selector(critical, state="detached", timeout=5000)
        await expect(first.locator(critical)).to_have_count(0)
        for page in (first, second):  # the dead-air alert is still waiting
            await expect(page.locator("#unacked-count")).to_have_attribute("data-count", "1")
            await expect(page.locator(dead_row)).to_have_count(1)
    finally:
        await close_all(conns)


async def test_filters_sorts_and_wall_mode(aiohttp_server, tmp_path, pages):
    hub = await start_hub(aiohttp_server, tmp_path)
    conns = await staff(hub)
    try:
        page = await pages.new()
        await sign_in(page, hub.url)
        await expect(page.locator(".tile[data-agent-id]")).to_have_count(len(AGENTS))
        everyone = [agent_id for agent_id, *_ in AGENTS]
        ids = shown_ids(page)
        await eventually(ids, everyone)  # risk order with no alert: longest in state first

        # team
        await page.select_option("#filter-team", "Retention")
        await eventually(ids, ["a2", "a4", "a6"])
        await expect(page.locator(".tile[hidden]")).to_have_count(3)
        assert "team=Retention" in page.url
        await expect(page.locator("#showing")).to_have_text("Showing 3 of 6")
        # team and state together, from the select and from a header chip
        await page.select_option("#filter-state", "break")
        await eventually(ids, ["a4"])
        await page.select_option("#filter-team", "")
        await page.select_option("#filter-state", "")
        await eventually(ids, everyone)
        await page.click('button.count[data-count-state="on_call"]')
        await eventually(ids, ["a1", "a3", "a5"])
        await expect(page.locator('button.count[data-count-state="on_call"]')).to_have_attribute(
            "aria-pressed", "true")
        await page.click('button.count[data-count-state="on_call"]')
        await eventually(ids, everyone)

        # text: a name, an agent id, nothing at all
        await page.fill("#filter-text", "ivy")
        await eventually(ids, ["a4"])
        assert "q=ivy" in page.url
        await page.fill("#filter-text", "A6")
        await eventually(ids, ["a6"])
        await page.fill("#filter-text", "nobody here")
        await eventually(ids, [])
        await expect(page.locator("#no-match")).to_be_visible()
        await page.click("#clear-filters")
        await eventually(ids, everyone)

        # a tile that starts to match a filter shows up live
        await page.select_option("#filter-state", "hold")
        await eventually(ids, [])
        await conns["a5"].send_status("hold")
        await eventually(ids, ["a5"])
        await page.select_option("#filter-state", "")

        # sort by name, by team, and by risk (an alerted agent comes first)
        by_name = sorted(everyone, key=lambda a: NAMES[a])
        await page.select_option("#sort", "name")
        await eventually(ids, by_name)
        # the slots are where the tiles are drawn: rows top to bottom, left to right
        assert await page.evaluate("""[...document.querySelectorAll('#grid .tile:not([hidden])')]
            .map((el) => [el.getBoundingClientRect(), el.dataset.agentId])
            .sort(([a], [b]) => a.top - b.top || a.left - b.left).map(([, id]) => id)""") == by_name
        assert "sort=name" in page.url
        await page.select_option("#sort", "team")
        await eventually(ids, sorted(everyone, key=lambda a: (TEAMS[a], NAMES[a])))
        await page.select_option("#sort", "risk")
        await conns["a6"].send_status("on_call", call=call("c-a6"))
        await conns["a6"].send_transcript("c-a6", 1.0, "agent", "it is risk free, trust me")
        await page.wait_for_selector('[data-alert-agent="a6"][data-kind="keyword"]')
        await eventually(lambda: first_of(page), "a6")

        # the URL carries the choice: a wall opened with it starts filtered and sorted
        await page.goto(f"{hub.url}/?team=Sales%20A&sort=name&q=ar")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await eventually(ids, ["a5", "a3"])  # Carl Diaz, Zoe Hart (not Maya Singh)
        assert await page.input_value("#filter-team") == "Sales A"
        assert await page.input_value("#sort") == "name"

        # wall mode (a TV): from the URL, no controls or alerts panel, larger type; `w` toggles
        desk_fs = await page.evaluate("getComputedStyle(document.body).fontSize")
        await page.goto(f"{hub.url}/?mode=wall")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator("body")).to_have_attribute("data-mode", "wall")
        await expect(page.locator(".tile[data-agent-id]:not([hidden])")).to_have_count(
            len(AGENTS))
        for hidden in (".bar-controls", "#alerts"):
            await expect(page.locator(hidden)).to_be_hidden()
        for shown in ("#counts", "#conn", "#grid"):
            await expect(page.locator(shown)).to_be_visible()
        wall_fs = await page.evaluate("getComputedStyle(document.body).fontSize")
        assert float(wall_fs.removesuffix("px")) > float(desk_fs.removesuffix("px"))
        await page.keyboard.press("w")
        await expect(page.locator("body")).to_have_attribute("data-mode", "desk")
        await expect(page.locator("#alerts")).to_be_visible()
        assert "mode=wall" not in page.url
        await page.keyboard.press("w")
        await expect(page.locator("body")).to_have_attribute("data-mode", "wall")
        assert "mode=wall" in page.url
    finally:
        await close_all(conns)


async def first_of(page: Any) -> str | None:
    ids = await shown_ids(page)()
    return ids[0] if ids else None


async def test_chinese_and_english(aiohttp_server, tmp_path, pages):
    hub = await start_hub(aiohttp_server, tmp_path)
    conns = await staff(hub)
    try:
        # a browser set to Chinese: the login page, its error and the wall speak Chinese
        zh = await pages.new(locale="zh-CN")
        await zh.goto(f"{hub.url}/")
        await zh.wait_for_url(f"{hub.url}/login")
        await expect(zh.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(zh.locator("#login-form h2")).to_have_text("登录")
        await zh.fill("#username", SUPERVISOR[0])
        await zh.fill("#password", "not-the-password")
        await zh.click("#login-submit")
        await expect(zh.locator("#login-error")).to_have_text("用户名或密码错误。")
        await zh.fill("#password", SUPERVISOR[1])
        await zh.click("#login-submit")
        await zh.wait_for_url(f"{hub.url}/")
        await expect(zh.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(zh.locator("#conn .conn-label")).to_have_text("实时")
        await expect(tile(zh, "a1").locator(".t-state .long")).to_have_text("通话中")
        await expect(tile(zh, "a4").locator(".t-state .long")).to_have_text("休息")
        await expect(tile(zh, "a5").locator(".t-dir")).to_have_text("呼入")
        await expect(zh.locator('button.count[data-count-state="on_call"] .c-label')
                     ).to_have_text("通话中")
        await expect(zh.locator("#alerts-title")).to_have_text("告警")
        await conns["a3"].send_transcript("c-a3", 2.0, "agent", "这个产品稳赚不赔")
        row = zh.locator('[data-alert-agent="a3"][data-kind="keyword"]')
        await expect(row.locator(".sev-badge")).to_have_text("高危")
        await expect(row.locator(".a-ack")).to_have_text("确认")
        keys = json.loads((WEB / "strings.json").read_text(encoding="utf-8"))["zh-CN"]
        shown = await zh.evaluate("document.body.innerText")
        assert [key for key in keys if key in shown] == [], "untranslated keys on the page"

        # the switch: everything English at once, and the choice is kept
        await zh.select_option("#lang", "en")
        await expect(zh.locator("html")).to_have_attribute("lang", "en")
        await expect(tile(zh, "a1").locator(".t-state .long")).to_have_text("On call")
        await expect(zh.locator("#conn .conn-label")).to_have_text("Live")
        await expect(row.locator(".sev-badge")).to_have_text("High")
        await zh.reload()
        await expect(tile(zh, "a4").locator(".t-state .long")).to_have_text("Break")
        await expect(zh.locator("#lang")).to_have_value("en")

        # an English browser: English login page and error, and the switch there too
        en = await pages.new(locale="en-US")
        await en.goto(f"{hub.url}/login")
        await expect(en.locator("#login-form h2")).to_have_text("Sign in")
        await en.fill("#username", "nobody")
        await en.fill("#password", "wrong-password")
        await en.click("#login-submit")
        await expect(en.locator("#login-error")).to_have_text("Wrong username or password.")
        await en.select_option("#lang", "zh-CN")
        await expect(en.locator("#login-error")).to_have_text("用户名或密码错误。")
        await expect(en.locator("#login-submit")).to_have_text("登录")

        # ?lang= wins over the saved choice (and the browser's language)
        await zh.goto(f"{hub.url}/?lang=zh-CN")
        await expect(tile(zh, "a1").locator(".t-state .long")).to_have_text("通话中")
    finally:
        await close_all(conns)


# -- a hub restart ------------------------------------------------------------------------------


async def start_hub_process(data_dir: Path, port: int, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "FLOORWATCH_SERVER__PORT": str(port),
           "FLOORWATCH_SERVER__DATA_DIR": str(data_dir),
           "FLOORWATCH_WALLS__PATCH_INTERVAL_MS": "100"}
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server.cli", "serve",
                                                    env=env, stderr=out)
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)


async def test_the_wall_goes_stale_and_recovers_when_the_hub_restarts(tmp_path, pages):
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "hub.log"
    store = Store(data_dir / "floorwatch.db")
    store.add_user(*SUPERVISOR, role="supervisor")
    tokens = {agent_id: store.add_agent(agent_id, name, team)
              for agent_id, name, team in AGENTS[:3]}
    store.close()
    base, ingest = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ingest/v1"
    hub = await start_hub_process(data_dir, port, log)
    conns: dict[str, HubConnection] = {}
    try:
        for agent_id, token in tokens.items():
            conns[agent_id] = await connect(ingest, agent_id, token)
            await conns[agent_id].send_status("ready")
        page = await pages.new()
        snapshots: list[float] = []
        page.on("websocket", lambda ws: ws.on(
            "framereceived",
            lambda frame: snapshots.append(time.monotonic())
            if isinstance(frame, str) and frame.startswith('{"type":"snapshot"') else None))
        await sign_in(page, base)
        await expect(page.locator(".tile[data-agent-id]")).to_have_count(3)
        await expect(tile(page, "a2")).to_have_attribute("data-state", "ready")
        assert len(snapshots) == 1
        grid_filter = "getComputedStyle(document.getElementById('grid')).filter"
        assert await page.evaluate(grid_filter) == "none"

        # the hub dies: the wall says so, keeps the last picture but greys it out
        hub.send_signal(signal.SIGKILL)
        await hub.wait()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator("body")).not_to_have_attribute("data-conn", "live")
        await expect(page.locator("#stale-banner")).to_be_visible()
        assert "grayscale" in await page.evaluate(grid_filter)
        await expect(page.locator(".tile[data-agent-id]")).to_have_count(3)
        await expect(page.locator("#conn .conn-age")).not_to_have_text("")
        # meanwhile an agent goes on break (its client keeps the event until the hub is back)
        await conns["a2"].send_status("break", reason="lunch")

        hub = await start_hub_process(data_dir, port, log)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live",
                                                             timeout=15_000)
        await expect(page.locator("body")).to_have_attribute("data-conn", "live")
        await expect(page.locator("#stale-banner")).to_be_hidden()
        assert await page.evaluate(grid_filter) == "none"
        assert len(snapshots) >= 2  # started again from a fresh snapshot
        assert await page.evaluate("floorwatch.socket.reconnects") >= 1
        await expect(tile(page, "a2")).to_have_attribute("data-state", "break", timeout=10_000)
        await expect(tile(page, "a2").locator(".t-reason")).to_have_text("lunch")
        for agent_id in tokens:
            await expect(tile(page, agent_id)).to_have_attribute("data-connected", "true")
    finally:
        for conn in conns.values():
            await conn.close()
        if hub.returncode is None:
            hub.send_signal(signal.SIGTERM)
            await hub.wait()


# -- the agent drawer ---------------------------------------------------------------------------


async def conversation(conn: HubConnection, seconds: float,
                       agent: list[tuple[float, float]],
                       customer: list[tuple[float, float]]) -> None:
    """Call audio from its first sample: a loud tone on the agent channel during the `agent`
    intervals and another on the customer channel during the `customer` ones (seconds), silence
    elsewhere; sent faster than real time (the analysis runs on the audio's own clock)."""
    n = RATE // 10
    t = np.arange(n)
    for i in range(round(seconds * 10)):
        start = i / 10
        chunk = np.zeros((n, 2), np.int16)
        if any(a <= start < b for a, b in agent):
            chunk[:, 0] = (8000 * np.sin(t * 0.3)).astype(np.int16)
        if any(a <= start < b for a, b in customer):
            chunk[:, 1] = (8000 * np.sin(t * 0.45)).astype(np.int16)
        assert await conn.send_audio(encode_audio(i, i * n, chunk))
        await asyncio.sleep(0.005)


async def focused_agent(page: Any) -> str | None:
    return await page.evaluate("document.activeElement?.dataset?.agentId ?? null")


async def test_agent_drawer_timeline_transcript_alerts_history(aiohttp_server, tmp_path, pages):
    hub = await start_hub(aiohttp_server, tmp_path)
    conns = await staff(hub)
    try:
        # Maya's call: she talks, the customer cuts in (1.5 s of overtalk), the customer
        # talks, then 6.5 s where nobody speaks (dead air), then Maya again.
        await conversation(conns["a1"], 14.0, agent=[(0.0, 3.0), (12.5, 14.0)],
                           customer=[(1.5, 5.0)])
        await conns["a1"].send_transcript(
            "c-a1", 4.0, "agent",
            "These are Guaranteed Returns, just read me the card 4111 1111 1111 1111")
        await conns["a1"].send_transcript("c-a1", 4.8, "customer", "I am not sure")
        assert await conns["a1"].drain(timeout=5)

        page = await pages.new()
        await sign_in(page, hub.url)
        await expect(page.locator("#drawer")).not_to_have_attribute("open", "")
        await page.wait_for_selector('[data-alert-agent="a1"][data-kind="keyword"]')

        # a click on the tile opens the drawer
        await tile(page, "a1").click()
        drawer = page.locator("#drawer")
        await expect(drawer).to_have_attribute("open", "")
        await expect(drawer).to_have_attribute("data-agent-id", "a1")
        await expect(drawer.locator("#drawer-title")).to_have_text("Maya Singh")
        await expect(drawer.locator(".d-team")).to_have_text("Sales A")
        await expect(drawer.locator(".d-state")).to_have_text("On call")
        await expect(drawer.locator(".d-call")).to_have_text("Call c-a1")
        await expect(drawer).to_have_attribute("aria-label", "Details of Maya Singh")
        assert await page.evaluate("document.activeElement.id") == "drawer-close"

        # the timeline: both speakers, the overtalk and the dead air, the alerts as markers
        timeline = drawer.locator("#drawer-timeline")
        for kind in ("agent", "customer", "overtalk", "dead_air"):
            await expect(timeline.locator(f'.d-span[data-kind="{kind}"]').first).to_be_visible()
        for kind in ("keyword", "overtalk", "silence"):
            await expect(timeline.locator(f'.d-mark[data-kind="{kind}"]')).to_have_count(1)
        await expect(timeline).to_have_attribute("aria-label", re.compile(
            r"agent spoke .*customer spoke .*1 overtalk and 1 dead-air spans; 3 alerts"))
        # spans are placed in order along the call
        lefts = await timeline.evaluate("""(box) => Object.fromEntries(
            ['agent', 'overtalk', 'dead_air'].map((k) => [k,
              box.querySelector(`.d-span[data-kind="${k}"]`).getBoundingClientRect().left]))""")
        assert lefts["agent"] < lefts["overtalk"] < lefts["dead_air"]

        # the transcript: masked, with the policy phrase highlighted
        transcript = drawer.locator("#drawer-transcript")
        await expect(transcript.locator("li")).to_have_count(2)
        flagged = transcript.locator('li[data-match="true"]')
        await expect(flagged).to_have_count(1)
        await expect(flagged.locator("mark.d-hit")).to_have_text("Guaranteed Returns")
        await expect(flagged).to_contain_text("**** **** **** 1111")
        assert "4111 1111" not in await transcript.inner_text()
        await expect(transcript.locator('li[data-speaker="customer"] mark')).to_have_count(0)

        # the call's alerts, acknowledged from the drawer: gone from the panel too
        keyword = drawer.locator('#drawer-alerts [data-alert-id][data-kind="keyword"]')
        await expect(keyword.locator("button.d-ack")).to_have_text("Acknowledge")
        await expect(drawer.locator('#drawer-alerts [data-kind="overtalk"]')).to_have_count(1)
        await expect(drawer.locator('#drawer-alerts [data-kind="silence"]')).to_have_count(1)
        alert_id = await keyword.get_attribute("data-alert-id")
        await keyword.locator("button.d-ack").click()
        await expect(keyword).to_have_attribute("data-acked", "true")
        await expect(keyword.locator(".d-acked")).to_have_text(f"Acknowledged by {SUPERVISOR[0]}")
        await expect(page.locator(f'#alert-list [data-alert-id="{alert_id}"]')).to_have_count(0)
        await expect(timeline.locator(f'.d-mark[data-alert-id="{alert_id}"]')
                     ).to_have_attribute("data-acked", "true")

        # today's state history, newest first, kept up to date while open
        history = drawer.locator("#drawer-history li")
        await expect(history.first).to_have_attribute("data-state", "on_call")
        await expect(history.first.locator(".d-hist-dur")).to_have_text("until now")
        await expect(drawer.locator('#drawer-history li[data-state="logged_in"]')).to_have_count(1)
        await conns["a1"].send_status("hold")
        await expect(history.first).to_have_attribute("data-state", "hold", timeout=10_000)
        await expect(drawer.locator(".d-state")).to_have_text("Hold")
        await conns["a1"].send_status("on_call", call=call("c-a1"))

        # the live transcript follows the call while the drawer is open
        await conns["a1"].send_transcript("c-a1", 13.0, "customer", "call me on 13812345678")
        await expect(transcript.locator("li")).to_have_count(3, timeout=10_000)
        assert "13812345678" not in await transcript.inner_text()

        # listen-in buttons: those the user's permissions allow (from /api/me), no others
        perms = await page.evaluate("fetch('/api/me').then((r) => r.json())"
                                    ".then((b) => b.user.permissions ?? b.permissions ?? [])")
        for mode in ("listen", "whisper", "barge"):
            button = drawer.locator(f'#drawer-listen [data-listen-mode="{mode}"]')
            await (expect(button).to_be_visible() if mode in perms
                   else expect(button).to_be_hidden())

        # the drawer is modal: Tab stays inside it; the wall's shortcuts are off
        for _ in range(12):
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.getElementById('drawer').contains("
                                       "document.activeElement)")
        await page.keyboard.press("w")
        await expect(page.locator("body")).to_have_attribute("data-mode", "desk")

        # Esc closes it, and the focus goes back to the tile
        await page.keyboard.press("Escape")
        await expect(drawer).not_to_have_attribute("open", "")
        assert await focused_agent(page) == "a1"

        # from the keyboard: arrows move between tiles in screen order, Enter opens
        order = await shown_ids(page)()
        await page.keyboard.press("ArrowRight")
        assert await focused_agent(page) == order[order.index("a1") + 1]
        await page.keyboard.press("Home")
        assert await focused_agent(page) == order[0]
        await page.keyboard.press("Enter")
        await expect(drawer).to_have_attribute("data-agent-id", order[0])
        await page.keyboard.press("Escape")
        await expect(drawer).not_to_have_attribute("open", "")
        assert await focused_agent(page) == order[0]

        # an agent outside a call: no timeline, the history still there
        await tile(page, "a2").click()
        await expect(drawer).to_have_attribute("data-call", "false")
        await expect(drawer.locator(".d-no-call")).to_have_text("Not on a call.")
        await expect(drawer.locator("#drawer-timeline")).to_be_hidden()
        await expect(drawer.locator('#drawer-history li[data-state="ready"]')).to_have_count(1)
        await drawer.locator("#drawer-close").click()
        await expect(drawer).not_to_have_attribute("open", "")
        assert await focused_agent(page) == "a2"
    finally:
        await close_all(conns)


async def test_drawer_in_chinese_and_listen_in_slot(aiohttp_server, tmp_path, pages):
    hub = await start_hub(aiohttp_server, tmp_path)
    conns = await staff(hub)
    try:
        await conversation(conns["a3"], 3.0, agent=[(0.0, 2.0)], customer=[(1.0, 3.0)])
        await conns["a3"].send_transcript("c-a3", 1.0, "agent", "这个产品稳赚不赔，您放心")
        assert await conns["a3"].drain(timeout=5)

        zh = await pages.new(locale="zh-CN")
        # A user allowed to listen and whisper but not to barge in: the hub's real /api/me
        # answer, with the permissions set on its way to the page (so that this test does not
        # depend on how accounts get their permissions).
        async def with_permissions(route: Any) -> None:
            response = await route.fetch()
            body = await response.json()
            body["user"]["permissions"] = ["listen", "whisper"]
            await route.fulfill(response=response, json=body)

        await zh.route("**/api/me", with_permissions)
        await sign_in(zh, hub.url)
        await zh.wait_for_selector('[data-alert-agent="a3"][data-kind="keyword"]')
        await tile(zh, "a3").click()
        drawer = zh.locator("#drawer")
        await expect(drawer).to_have_attribute("open", "")
        await expect(drawer.locator("#d-timeline-h")).to_contain_text("通话时间线")
        await expect(drawer.locator('.d-lane[data-lane="agent"] .d-lane-label')
                     ).to_have_text("坐席")
        await expect(drawer.locator('.d-lane[data-lane="dead_air"] .d-lane-label')
                     ).to_have_text("冷场")
        await expect(drawer.locator("#d-transcript-h")).to_have_text("实时转写（已脱敏）")
        await expect(drawer.locator("#d-alerts-h")).to_have_text("本通话的告警")
        await expect(drawer.locator("#d-history-h")).to_have_text("今日状态记录")
        await expect(drawer.locator(".d-state")).to_have_text("通话中")
        await expect(drawer.locator("#drawer-close")).to_contain_text("关闭")
        await expect(drawer.locator("#drawer-transcript mark.d-hit")).to_have_text("稳赚不赔")
        await expect(drawer.locator('#drawer-alerts [data-kind="keyword"] button.d-ack')
                     ).to_have_text("确认")
        await expect(drawer.locator("#drawer-history li").first.locator(".d-hist-dur")
                     ).to_have_text("至今")
        keys = json.loads((WEB / "strings.json").read_text(encoding="utf-8"))["zh-CN"]
        shown = await drawer.inner_text()
        assert [key for key in keys if key in shown] == [], "untranslated keys in the drawer"

        # listen-in: the buttons the user may use, each sending `fw-listen` for web/listen.js
        listen = drawer.locator("#drawer-listen")
        await expect(listen).to_be_visible()
        await expect(listen.locator('[data-listen-mode="listen"]')).to_have_text("监听")
        await expect(listen.locator('[data-listen-mode="whisper"]')).to_have_text("耳语")
        await expect(listen.locator('[data-listen-mode="barge"]')).to_be_hidden()
        await zh.evaluate("""() => { window.__listen = [];
            document.addEventListener('fw-listen', (ev) => window.__listen.push(ev.detail)); }""")
        await listen.locator('[data-listen-mode="whisper"]').click()
        assert await zh.evaluate("window.__listen") == [{"agentId": "a3", "mode": "whisper"}]

        # a tile carrying `listeners` shows who listens, on the tile and in the drawer (the hub
        # does not send the field yet: the patch is handed to the grid as the socket would)
        await zh.evaluate("""() => window.floorwatch.grid.enqueuePatches([{agent_id: 'a3',
            listeners: [{user: 'lead', mode: 'listen'}, {user: 'qa', mode: 'barge'}]}], [])""")
        await expect(tile(zh, "a3")).to_have_attribute("data-listen", "barge")
        await expect(tile(zh, "a3").locator(".t-listen .long")).to_have_text("已强插")
        await expect(drawer.locator(".d-listen-marker")).to_have_text(
            "正在介入：lead（监听）, qa（强插）")
        await zh.keyboard.press("Escape")
        await expect(drawer).not_to_have_attribute("open", "")
        await expect(tile(zh, "a1")).to_have_attribute("data-listen", "none")
    finally:
        await close_all(conns)


async def test_a_mouse_acknowledgement_leaves_the_a_key_on_the_newest_alert(
        aiohttp_server, tmp_path, pages):
    hub = await start_hub(aiohttp_server, tmp_path)
    conns = await staff(hub)
    try:
        page = await pages.new()
        await sign_in(page, hub.url)
        # three alerts, oldest first: C (Maya), B (Zoe), A (Carl); the panel shows A, B, C
        said = [("a1", 1.0), ("a3", 5.0), ("a5", 10.0)]
        for agent_id, offset in said:
            await conns[agent_id].send_transcript(f"c-{agent_id}", offset, "agent",
                                                  "these are guaranteed returns")
            await page.wait_for_selector(f'li.alert-row[data-alert-agent="{agent_id}"]')
        rows = page.locator("li.alert-row")
        await expect(rows).to_have_count(3)
        order = [await rows.nth(i).get_attribute("data-alert-agent") for i in range(3)]
        assert order == ["a5", "a3", "a1"]

        # acknowledge the middle one with the mouse, then press `a`: the newest goes (not the
        # row that slid under the pointer)
        await page.click('li.alert-row[data-alert-agent="a3"] button.a-ack')
        await expect(page.locator('li.alert-row[data-alert-agent="a3"]')).to_have_count(0)
        assert await page.evaluate(
            "document.activeElement.closest('[data-alert-id]') === null")
        await page.keyboard.press("a")
        await expect(page.locator('li.alert-row[data-alert-agent="a5"]')).to_have_count(0)
        await expect(page.locator('li.alert-row[data-alert-agent="a1"]')).to_have_count(1)
        await expect(page.locator("#unacked-count")).to_have_attribute("data-count", "1")

        # from the keyboard the focus stays with the list: j to the first row, Tab to its
        # button, Enter; the button keeps the focus while the acknowledgement is on its way
        # (aria-disabled: a disabled button would drop it to the page), then the next row's
        # button has it, and `a` acknowledges that focused row
        await conns["a3"].send_transcript("c-a3", 20.0, "agent", "shut up and listen")
        await expect(rows).to_have_count(2)
        await page.evaluate("document.activeElement?.blur()")
        await page.keyboard.press("j")
        focused = "document.activeElement.closest('[data-alert-id]')?.dataset.alertAgent ?? null"
        assert await page.evaluate(focused) == "a3"
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.matches('button.a-ack')")
        await page.keyboard.press("Enter")
        await expect(page.locator('li.alert-row[data-alert-agent="a3"]')).to_have_count(0)
        await eventually(lambda: page.evaluate(focused), "a1")
        assert await page.evaluate("document.activeElement.matches('button.a-ack')")
        await page.keyboard.press("a")
        await expect(rows).to_have_count(0)
        await expect(page.locator("#unacked-count")).to_have_attribute("data-count", "0")
    finally:
        await close_all(conns)


async def test_drawer_model_and_a_burst_of_patches_in_the_page(aiohttp_server, tmp_path, pages):
    """The drawer's pure logic (web/model.js) with exact expectations, and the grid under a
    burst far above its per-frame budget: every tile ends in its last state, in screen order."""
    hub = await start_hub(aiohttp_server, tmp_path)
    page = await pages.new()
    await sign_in(page, hub.url)
    got = await page.evaluate("""async () => {
      const m = await import('/static/model.js');
      const call = { since_s: 0, position_s: 20, segments: [
        { speaker: 'agent', start: 1, end: 5 }, { speaker: 'customer', start: 4.5, end: 9 },
        { speaker: 'agent', start: 8, end: null }] };
      const alerts = [
        { id: 'd', kind: 'silence', offset_s: 10, duration_s: null, severity: 'medium' },
        { id: 'o', kind: 'overtalk', offset_s: 8, duration_s: 1, severity: 'low' },
        { id: 'k', kind: 'keyword', offset_s: 4, duration_s: null, severity: 'high' },
        { id: 's', kind: 'state', offset_s: null, duration_s: null, severity: 'low' }];
      const tl = m.timelineModel(call, alerts);
      return {
        window: [tl.from, tl.to],
        spans: tl.spans.map((s) => [s.kind, s.start, s.end, s.open]),
        marks: tl.marks.map((x) => [x.alert.id, x.at]),
        totals: tl.totals,
        ticks: m.timelineTicks(0, 300),
        hl: m.highlightRanges('These are GUARANTEED returns, guaranteed returns! 稳赚不赔',
                              ['guaranteed returns', '稳赚不赔', 'risk free']),
        history: m.historyRows([
          { at: '2026-11-30T09:00:00Z', state: 'logged_in' },
          { at: '2026-11-30T09:00:30Z', state: 'on_call' }], Date.parse('2026-11-30T09:02:00Z'))
          .map((r) => [r.state, r.durationMs, r.current]),
      };
    }""")
    assert got["window"] == [0, 30]  # at least 30 s wide
    assert got["spans"] == [
        ["agent", 1, 5, False], ["customer", 4.5, 9, False], ["overlap", 4.5, 5, False],
        ["agent", 8, 20, True], ["overtalk", 8, 9, False], ["dead_air", 10, 20, True]]
    assert got["marks"] == [["k", 4], ["o", 8], ["d", 10]]
    assert got["totals"] == {"agent": 16, "customer": 4.5, "overtalk": 1, "dead_air": 1,
                             "alerts": 3}
    assert got["ticks"] == [0, 60, 120, 180, 240, 300]
    assert got["hl"] == {"ranges": [[10, 28], [30, 48], [50, 54]], "missing": ["risk free"]}
    assert got["history"] == [["on_call", 90_000, True], ["logged_in", 30_000, False]]

    # 400 tiles, then five changes each in one go (2,000 patches): far over the budget
    await page.evaluate("""() => {
      const g = window.floorwatch.grid;
      const since = new Date(window.floorwatch.clock.now()).toISOString();
      g.enqueuePatches(Array.from({ length: 400 }, (_, i) => ({
        agent_id: `x${String(i).padStart(3, '0')}`, name: `X ${String(i).padStart(3, '0')}`,
        team: 'Burst', state: 'ready', state_since: since, connected: true })), []);
      const states = ['on_call', 'hold', 'wrap_up', 'break', 'ready'];
      for (const s of states) {
        g.enqueuePatches(Array.from({ length: 400 }, (_, i) => ({
          agent_id: `x${String(i).padStart(3, '0')}`, state: i % 2 ? s : 'wrap_up',
          state_since: since })), []);
      }
    }""")
    await expect(page.locator(".tile[data-agent-id^=x]")).to_have_count(400)
    await eventually(lambda: page.evaluate("window.floorwatch.grid.stats.backlog"), 0, 20)
    states = await page.evaluate("""[...document.querySelectorAll('.tile[data-agent-id^=x]')]
        .map((el) => el.dataset.state)""")
    assert states == ["ready" if i % 2 else "wrap_up" for i in range(400)]
    await page.select_option("#sort", "name")
    await eventually(shown_ids(page), [f"x{i:03d}" for i in range(400)])


async def test_not_said_alerts_are_described_in_both_languages(aiohttp_server, tmp_path, pages):
    """A missing recording notice (a not-said rule) reads as such on the wall, not as a rule id."""
    hub = await start_hub(aiohttp_server, tmp_path)
    page = await pages.new()
    await sign_in(page, hub.url)
    got = await page.evaluate("""async () => {
      const labels = await import('/static/labels.js');
      const i18n = await import('/static/i18n.js');
      const missing = { kind: 'keyword', detail: { rule: 'mandatory/recording-notice',
        category: 'recording_notice', not_said: true, within_s: 30, said_at_s: null } };
      const late = { kind: 'keyword', detail: { rule: 'mandatory/recording-notice',
        category: 'recording_notice', not_said: true, within_s: 30, said_at_s: 42.5 } };
      const out = { en: [labels.alertDetail(missing), labels.alertDetail(late)] };
      i18n.setLang('zh-CN');
      out.zh = [labels.alertDetail(missing), labels.alertDetail(late)];
      i18n.setLang('en');
      return out;
    }""")
    assert got["en"] == ["recording notice not said within 30 s",
                         "recording notice said late, at 0:42"]
    assert got["zh"] == ["30 秒内未说录音告知", "录音告知说得太晚（0:42）"]
