"""Sign-in, sessions, API tokens, Origin checks, the REST API and the admin commands."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest
from conftest import SUPERVISOR


async def test_pages_and_api_need_a_session(running_hub):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running_hub.url}/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/login"
        async with http.get(f"{running_hub.url}/api/tiles") as r:
            assert r.status == 401 and (await r.json())["error"] == "sign in first"


async def test_wall_socket_refused_without_session(running_hub):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{running_hub.url}/ws/wall")
    assert info.value.status == 401


async def test_login_logout_and_bad_password(running_hub):
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(f"{running_hub.url}/login",
                             json={"username": SUPERVISOR[0], "password": "wrong"}) as r:
            assert r.status == 401 and (await r.json()) == {"error": "bad_credentials"}
        async with http.post(f"{running_hub.url}/login",
                             data={"username": SUPERVISOR[0], "password": SUPERVISOR[1]}) as r:
            assert r.status == 200
            assert "HttpOnly" in r.headers["Set-Cookie"]
        async with http.get(f"{running_hub.url}/api/me") as r:
            assert (await r.json())["user"]["username"] == SUPERVISOR[0]
        # a browser posting the form natively (its script not loaded yet) gets pages back
        browser = {"Accept": "text/html,application/xhtml+xml"}
        async with http.post(f"{running_hub.url}/login", headers=browser, allow_redirects=False,
                             data={"username": SUPERVISOR[0], "password": "wrong"}) as r:
            assert r.status == 303 and r.headers["Location"] == "/login?error=bad_credentials"
        async with http.post(f"{running_hub.url}/login", headers=browser, allow_redirects=False,
                             data={"username": SUPERVISOR[0], "password": SUPERVISOR[1]}) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
            assert "HttpOnly" in r.headers["Set-Cookie"]
        async with http.post(f"{running_hub.url}/logout",
                             headers={"Origin": running_hub.url}) as r:
            assert r.status == 200
        async with http.get(f"{running_hub.url}/api/me") as r:
            assert r.status == 401


async def test_cross_origin_wall_socket_and_writes_are_refused(running_hub, wall_factory):
    wall = await wall_factory(running_hub.url, connect=False)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await wall.http.ws_connect(f"{running_hub.url}/ws/wall", origin="https://evil.example")
    assert info.value.status == 403
    async with wall.http.post(f"{running_hub.url}/api/alerts/x/ack",
                              headers={"Origin": "https://evil.example"}) as r:
        assert r.status == 403


async def test_api_token_reads_alerts_and_bad_queries_are_explained(running_hub):
    async with aiohttp.ClientSession(headers=running_hub.api_headers) as http:
        async with http.get(f"{running_hub.url}/api/alerts",
                            params={"since": "yesterday"}) as r:
            assert r.status == 400 and "since" in (await r.json())["error"]
        async with http.get(f"{running_hub.url}/api/alerts", params={"kind": "x"}) as r:
            assert r.status == 400
        async with http.post(f"{running_hub.url}/api/alerts/nope/ack") as r:
            assert r.status == 404
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer fwt_bad"}) as http:
        async with http.get(f"{running_hub.url}/api/tiles") as r:
            assert r.status == 401


async def test_healthz_and_metrics(running_hub):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running_hub.url}/healthz") as r:
            health = await r.json()
            assert health["status"] == "ok"
            assert isinstance(health["recognition"], list)  # spotter workers, backlog, drops
        async with http.get(f"{running_hub.url}/metrics") as r:
            text = await r.text()
    for name in ("agents_connected", "walls_connected", "calls_active", "frames_analysed_total",
                 "analysis_lag_seconds"):
        assert f"\nfloorwatch_{name} " in text


def test_admin_commands(tmp_path):
    def fw(*args: str, stdin: str = "") -> str:
        result = subprocess.run([sys.executable, "-m", "server.cli", "--data-dir",
                                 str(tmp_path), *args], input=stdin, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "created admin root" in fw("create-admin", "root", "--password-stdin",
                                      stdin="long-enough\n")
    fw("add-supervisor", "lee", "--name", "Lee", "--password-stdin", stdin="also-long\n")
    fw("add-supervisor", "kim", "--can", "listen,whisper", "--password-stdin",
       stdin="also-long\n")
    assert "lee may now: listen, barge" in fw("grant", "lee", "listen,barge")
    token = fw("add-agent", "a-1", "--name", "Ann", "--team", "Sales").splitlines()[-1]
    assert token.startswith("fwa_")
    assert fw("add-api-token", "bi").splitlines()[-1].startswith("fwt_")
    listing = fw("list")
    assert "root" in listing and "lee" in listing and "a-1" in listing and token not in listing
    assert "listen,whisper" in listing and "barge,listen" in listing
    assert "audit,barge,listen,whisper" in listing  # an admin may do everything by default
    refused = subprocess.run([sys.executable, "-m", "server.cli", "--data-dir", str(tmp_path),
                              "grant", "lee", "eavesdrop"], capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode != 0 and "unknown permission 'eavesdrop'" in refused.stderr
    short = subprocess.run([sys.executable, "-m", "server.cli", "--data-dir", str(tmp_path),
                            "add-supervisor", "x", "--password-stdin"], input="short\n",
                           capture_output=True, text=True, timeout=30)
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
