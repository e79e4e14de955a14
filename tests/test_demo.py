"""`floorwatch demo` as a user runs it: one command, 24 simulated agents, a live wall."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest
from conftest import WallClient, free_port

from server.demo import DEMO_USER

pytestmark = pytest.mark.slow


async def test_demo_runs_a_live_floor_of_24_agents(tmp_path):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "--data-dir", str(tmp_path / "demo"), "demo",
        "--agents", "24", "--port", str(port), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wall = WallClient(url)
    try:
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        while "login:" not in banner:
            banner += (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert f"{url}/" in banner and f"{DEMO_USER[0]} / {DEMO_USER[1]}" in banner
        async with asyncio.timeout(20):
            while True:
                try:
                    await wall.login(*DEMO_USER)
                    break
                except (aiohttp.ClientConnectionError, AssertionError):
                    await asyncio.sleep(0.2)
        await wall.connect()
        await wall.wait_for(lambda w: len(w.tiles) == 24, timeout=30)
        # calls start within seconds, with speech heard on both channels
        await wall.wait_for(lambda w: sum(t["state"] == "on_call" for t in w.tiles.values()) >= 6,
                            timeout=40)
        await wall.wait_for(lambda w: any(t["agent_speaking"] for t in w.tiles.values())
                            and any(t["customer_speaking"] for t in w.tiles.values()),
                            timeout=20)
        assert all(t["connected"] and t["name"] for t in wall.tiles.values())
        assert len({t["team"] for t in wall.tiles.values()}) == 3
    finally:
        await wall.close()
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    log = err.decode()
    assert "hub stopped" in log
    assert "Traceback" not in log


async def test_simulate_command_with_a_tokens_file(running_hub, wall_factory, tmp_path):
    wall = await wall_factory(running_hub.url)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# agent token\n" + "".join(
        f"{agent} {token}\n" for agent, token in running_hub.tokens.items()))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent_client.cli", "simulate", "--hub", running_hub.url,
        "--agents", "3", "--tokens", str(tokens), "--duration", "6",
        stderr=asyncio.subprocess.PIPE)
    await wall.wait_for(lambda w: len(w.tiles) == 3, timeout=15)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    # the simulator left: its agents show disconnected, their tiles stay
    await wall.wait_for(lambda w: not any(t["connected"] for t in w.tiles.values()))
