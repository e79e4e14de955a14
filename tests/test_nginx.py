"""The deployment files in deploy/: the nginx config runs for real (Debian's nginx) in front of
two hub processes sharing a Redis; the compose file, the Dockerfile and the systemd unit are
checked for what can be checked without a Docker engine or a booted systemd.

Through nginx: a supervisor signs in and opens the wall; an agent streams status and a policy
phrase; the wall sees the tile and the alert; the hub serving the agent is killed and the agent
carries on through nginx on the other hub, no status event lost or repeated.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import SUPERVISOR, WallClient, free_port, need
from processes import HubProcess, RedisServer

from agent_client.connection import HubConnection

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "floorwatch.conf"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "floorwatch-hub@.service"


def find_nginx() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every user's PATH
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def need_nginx() -> str:
    nginx = find_nginx()
    need(nginx is not None, "nginx not installed (apt-get install nginx)")
    assert nginx is not None
    return nginx


# -- the nginx config, templated for a test run ---------------------------------------------


def render_site(hub_ports: list[int], listen_port: int) -> str:
    """deploy/nginx/floorwatch.conf with only the upstream addresses and `listen` changed."""
    text = NGINX_CONF.read_text()
    block = re.search(r"^upstream floorwatch_hubs \{\n(.*?)^\}", text, re.M | re.S)
    assert block, "no `upstream floorwatch_hubs { … }` block"
    servers = re.findall(r"^(\s*server\s+)[\w.\-]+:\d+", block.group(1), re.M)
    assert len(servers) == len(hub_ports), f"expected {len(hub_ports)} hubs upstream: {servers}"
    ports = iter(hub_ports)
    upstream = re.sub(r"^(\s*server\s+)[\w.\-]+:\d+",
                      lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", block.group(1),
                      flags=re.M)
    text = text[:block.start(1)] + upstream + text[block.end(1):]
    listens = re.findall(r"^\s*listen\s+[^;]*;", text, re.M)
    assert len(listens) == 1, f"expected one plain-HTTP listen: {listens}"
    return re.sub(r"^(\s*)listen\s+[^;]*;", rf"\g<1>listen 127.0.0.1:{listen_port};", text,
                  flags=re.M)


def render_main(prefix: Path, site: Path) -> str:
    """A whole nginx.conf around the site: every path under `prefix`, nothing from /etc/nginx."""
    # as root, workers would switch to `nobody`, who cannot use the test's private temp dirs
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} notice;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n"
            f"    include {site};\n}}\n")


def write_nginx_conf(prefix: Path, hub_ports: list[int], listen_port: int) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    site = prefix / "floorwatch.conf"
    site.write_text(render_site(hub_ports, listen_port))
    main = prefix / "nginx.conf"
    main.write_text(render_main(prefix, site))
    return main


def nginx_command(nginx: str, prefix: Path, conf: Path, *extra: str) -> list[str]:
    return [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log"),
            "-g", "daemon off;", *extra]


class Nginx:
    def __init__(self, nginx: str, prefix: Path, hub_ports: list[int]) -> None:
        self.port = free_port()
        self.prefix = prefix
        self.conf = write_nginx_conf(prefix, hub_ports, self.port)
        self.command = nginx_command(nginx, prefix, self.conf)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()}"
                                   f"{self.log()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown: master and workers exit
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# -- Redis and hub processes (the approach of test_scaleout.py) -------------------------------


@pytest.fixture
async def proxied_floor(tmp_path):
    """Redis, two hubs sharing it, and nginx (deploy/nginx/floorwatch.conf) in front."""
    nginx_bin = need_nginx()
    need(shutil.which("redis-server") is not None, "redis-server not installed")
    redis = RedisServer(tmp_path)
    redis.start()
    hubs = [HubProcess(name, tmp_path, redis.url) for name in ("A", "B")]
    nginx = Nginx(nginx_bin, tmp_path / "nginx", [hub.port for hub in hubs])
    try:
        # accounts made on hub A's store reach every hub through Redis
        hubs[0].admin("add-supervisor", SUPERVISOR[0], "--password-stdin",
                      stdin=SUPERVISOR[1] + "\n")
        token = hubs[0].admin("add-agent", "a1", "--team", "Sales").splitlines()[-1]
        await asyncio.gather(*(hub.start() for hub in hubs))
        nginx.start()
        yield nginx, hubs, token
    finally:
        nginx.stop()
        for hub in hubs:
            await hub.stop(signal.SIGKILL)
        redis.stop()


def session_cookie(wall: WallClient) -> dict[str, str]:
    return {c.key: c.value for c in wall.http.cookie_jar if c.key == "fw_session"}


async def session_known_everywhere(wall: WallClient, hubs: list[HubProcess],
                                   timeout: float = 5.0) -> None:
    cookie = session_cookie(wall)
    assert cookie, "no session cookie after sign-in"
    async with aiohttp.ClientSession(cookies=cookie) as http, asyncio.timeout(timeout):
        for hub in hubs:
            while True:
                async with http.get(f"{hub.url}/api/me") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.01)


# -- the live tests -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.redis
async def test_floor_through_nginx_survives_a_hub_kill(proxied_floor):
    nginx, hubs, token = proxied_floor
    base = nginx.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 404  # per-hub figures: scraped from each hub, not the balancer
        # the hub still refuses a foreign origin behind the proxy
        async with http.post(f"{base}/login", json={"username": SUPERVISOR[0],
                                                    "password": SUPERVISOR[1]},
                             headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403

    wall = WallClient(base)
    conn = HubConnection(f"ws://127.0.0.1:{nginx.port}/ingest/v1", "a1", token,
                         min_backoff_s=0.1, max_backoff_s=0.5)
    sent: list[str] = []

    async def status(state: str, **extra: Any) -> None:
        sent.append(state)
        await conn.send_status(state, **extra)

    late: WallClient | None = None
    try:
        # sign in as the browser does (same-origin POST), then the wall page and its socket
        async with wall.http.post(f"{base}/login", json={"username": SUPERVISOR[0],
                                                         "password": SUPERVISOR[1]},
                                  headers={"Origin": base}) as r:
            assert r.status == 200, await r.text()
        # the new session reaches the other hub through Redis a few ms later (see
        # test_session_is_known_on_every_hub_at_once); a browser's next request may go there
        await session_known_everywhere(wall, hubs)
        async with wall.http.get(f"{base}/", allow_redirects=False) as r:
            assert r.status == 200, r.headers.get("Location")
        snapshot = await wall.connect()  # Origin = the nginx URL: Host and port reach the hub
        assert snapshot["type"] == "snapshot"

        conn.start()
        await conn.wait_connected(timeout=10)
        await status("logged_in")
        await status("on_call", call={"id": "c-nginx", "direction": "outbound",
                                      "customer": "", "sample_rate": 8000})
        await conn.send_transcript("c-nginx", 2.0, "agent", "this fund has guaranteed returns")
        sent.append("transcript")  # reliable too: it takes a number in the same sequence
        assert await conn.drain(timeout=5)
        await wall.wait_for(lambda w: w.tiles.get("a1", {}).get("state") == "on_call")
        await wall.wait_for(lambda w: any(a["kind"] == "keyword" and a["call_id"] == "c-nginx"
                                          for a in w.alerts.values()))

        counts = [await hub.agents_connected() for hub in hubs]
        assert sorted(counts) == [0, 1], counts
        serving, other = (hubs[0], hubs[1]) if counts[0] == 1 else (hubs[1], hubs[0])

        # the serving hub dies mid-call; status changes go on meanwhile
        await status("hold")
        await serving.stop(signal.SIGKILL)
        await status("on_call")
        await status("hold")
        async with asyncio.timeout(10):
            while conn.connects < 2 or not conn.connected.is_set():
                await asyncio.sleep(0.02)
        await status("on_call")
        await status("wrap_up")
        assert await conn.drain(timeout=10)
        assert await other.agents_connected() == 1

        # a wall opened now (as a browser reconnects) gets the whole floor from the survivor
        late = WallClient(base)
        await late.login()
        await late.connect()
        await late.wait_for(lambda w: w.tiles.get("a1", {}).get("state") == "wrap_up"
                            and w.tiles["a1"].get("connected") is True)
        assert any(a["kind"] == "keyword" and a["call_id"] == "c-nginx"
                   for a in late.alerts.values())
        if wall.close_code is None and not wall.ws.closed:  # the first wall was on the survivor
            await wall.wait_for(lambda w: w.tiles["a1"]["state"] == "wrap_up")
    finally:
        await conn.close()
        await wall.close()
        if late is not None:
            await late.close()

    # every status event is stored on the surviving hub once, in order
    await other.stop()
    rows = other.status_rows("a1")
    assert [seq for seq, _ in rows] == list(range(1, len(sent) + 1))
    assert [state for _, state in rows] == sent
    assert "[emerg]" not in nginx.log()


@pytest.mark.slow
@pytest.mark.redis
async def test_session_is_known_on_every_hub_at_once(proxied_floor):
    nginx, hubs, _token = proxied_floor
    misses = 0
    for _ in range(20):
        wall = WallClient(nginx.url)
        try:
            await wall.login()
            async with aiohttp.ClientSession(cookies=session_cookie(wall)) as http:
                for hub in hubs:
                    async with http.get(f"{hub.url}/api/me") as r:
                        misses += r.status != 200
        finally:
            await wall.close()
    assert misses == 0, f"{misses} of 40 requests right after sign-in were not signed in"


# -- config checks that need no running services ------------------------------------------------


def test_nginx_config_is_valid(tmp_path):
    nginx_bin = need_nginx()
    conf = write_nginx_conf(tmp_path, [free_port(), free_port()], free_port())
    result = subprocess.run(nginx_command(nginx_bin, tmp_path, conf, "-t"),
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr


def test_nginx_config_proxies_websockets_and_origin():
    text = NGINX_CONF.read_text()
    for path in ("/ingest/v1", "/ws/wall"):
        match = re.search(rf"location = {re.escape(path)} \{{(.*?)\n    \}}", text, re.S)
        assert match, path
        body = match.group(1)
        for directive in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                          "proxy_set_header Connection", "proxy_set_header Host $http_host;",
                          "proxy_set_header X-Forwarded-Proto $scheme;"):
            assert directive in " ".join(body.split()), (path, directive)
        timeout = re.search(r"proxy_read_timeout (\d+)s;", body)
        assert timeout and int(timeout.group(1)) >= 300, path
    assert re.search(r"max_fails=\d+ fail_timeout=\d+s", text)
    assert "proxy_next_upstream error timeout" in text
    assert "client_max_body_size 64k;" in text
    assert "ip_hash" not in text and "sticky" not in text  # any hub serves anyone


# -- docker compose and the Dockerfile (no Docker engine here) ----------------------------------


def load_yaml(path: Path) -> Any | None:
    """The parsed YAML: PyYAML in this interpreter, else a python3 on PATH that has it."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        return yaml.safe_load(path.read_text())
    for python in {shutil.which("python3"), "/usr/bin/python3"} - {None, sys.executable}:
        if not Path(python).exists():
            continue
        result = subprocess.run(
            [python, "-c", "import json, sys, yaml; "
                           "print(json.dumps(yaml.safe_load(open(sys.argv[1]))))", str(path)],
            capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            return json.loads(result.stdout)
        if "No module named" not in result.stderr:
            raise AssertionError(f"{path} is not valid YAML: {result.stderr}")
    return None


def test_compose_file():
    compose = load_yaml(COMPOSE)
    if compose is None:  # no PyYAML anywhere: a structural check of the text
        text = COMPOSE.read_text()
        assert "\t" not in text, "tabs in YAML"
        for line in text.splitlines():
            indent = len(line) - len(line.lstrip(" "))
            assert indent % 2 == 0, line
        for key in ("services:", "  redis:", "  hub1:", "  hub2:", "  nginx:", "volumes:"):
            assert re.search(rf"^{key}\s*$", text, re.M), key
        assert text.count('FLOORWATCH_REDIS__HUB_ID: "hub') == 2
        assert '"serve", "--redis", "redis://redis:6379/0"' in text
        return

    services = compose["services"]
    assert set(services) >= {"redis", "hub1", "hub2", "nginx"}
    hub_ids, volumes = set(), set()
    for name in ("hub1", "hub2"):
        hub = services[name]
        context = (COMPOSE.parent / hub["build"]["context"]).resolve()
        assert (context / hub["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert (context / "pyproject.toml").exists()
        command = hub["command"]
        assert command[:3] == ["serve", "--redis", "redis://redis:6379/0"], command
        env = hub["environment"]
        assert env["FLOORWATCH_SERVER__HOST"] == "0.0.0.0"
        hub_ids.add(env["FLOORWATCH_REDIS__HUB_ID"])
        (mount,) = [v for v in hub["volumes"] if v.endswith(":/var/lib/floorwatch")]
        volumes.add(mount.split(":")[0])
        assert "redis" in hub["depends_on"]
    assert len(hub_ids) == 2 and len(volumes) == 2
    assert volumes <= set(compose["volumes"])

    nginx = services["nginx"]
    (site,) = [v for v in nginx["volumes"] if v.split(":")[1].startswith("/etc/nginx/conf.d/")]
    assert (COMPOSE.parent / site.split(":")[0]).resolve() == NGINX_CONF
    assert set(nginx["depends_on"]) == {"hub1", "hub2"}
    # the upstream names the hub services on the port the hubs listen on
    upstream = set(re.findall(r"^\s*server\s+([\w.\-]+:\d+)", NGINX_CONF.read_text(), re.M))
    assert upstream == {"hub1:8740", "hub2:8740"}
    assert "redis-server" in " ".join(services["redis"]["command"])


def test_dockerfile():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \. ", text, re.M)
    assert '"redis' in text  # the Redis bus's client library
    assert re.search(r"^COPY web ", text, re.M)
    assert "FLOORWATCH_SERVER__WEB_DIR=/opt/floorwatch/web" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["floorwatch"\]', text, re.M)
    assert re.search(r'^CMD \["serve"\]', text, re.M)
    for path in ("pyproject.toml", "README.md", "server", "agent_client", "web"):
        assert (ROOT / path).exists(), path


# -- systemd --------------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def test_systemd_unit(tmp_path):
    text = UNIT.read_text()
    s = unit_settings(text)
    expected = {"Service.User": "floorwatch", "Service.NoNewPrivileges": "yes",
                "Service.ProtectSystem": "strict", "Service.Restart": "on-failure",
                "Service.KillSignal": "SIGTERM", "Service.StateDirectory": "floorwatch/%i",
                "Service.ReadWritePaths": "/var/lib/floorwatch/%i",
                "Install.WantedBy": "multi-user.target"}
    for key, value in expected.items():
        assert s.get(key) == [value], key
    assert int(s["Service.TimeoutStopSec"][0]) >= 20
    (exec_start,) = s["Service.ExecStart"]
    assert "--data-dir /var/lib/floorwatch/%i" in exec_start
    assert exec_start.endswith("serve --port %i")
    assert any("FLOORWATCH_REDIS__HUB_ID=" in e for e in s["Service.Environment"])

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the structural checks above are all this machine can do
    # verify an instance; ExecStart must exist, so point it at this checkout's floorwatch
    floorwatch = Path(sys.executable).parent / "floorwatch"
    if not floorwatch.exists():
        floorwatch = Path(shutil.which("true") or "/bin/true")
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/floorwatch/venv/bin/floorwatch", str(floorwatch)))
    (tmp_path / "floorwatch-hub@8740.service").symlink_to(unit.name)
    result = subprocess.run([analyze, "verify", "--man=no",
                             str(tmp_path / "floorwatch-hub@8740.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr)
