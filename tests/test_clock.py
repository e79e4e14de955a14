"""An agent desktop whose clock is wrong: the hub moves its status times onto the hub's clock."""

from __future__ import annotations

import json
import logging
import time

import aiohttp
import pytest

from server.clock import TOLERANCE_S, ClientClock, describe_offset
from server.wire import iso, parse_iso

HUB_NOW = 1_800_000_000.0


def test_a_clock_within_the_tolerance_is_trusted_exactly():
    clock = ClientClock.learn(HUB_NOW - 0.4, HUB_NOW)
    assert not clock.skewed
    assert clock.to_hub(HUB_NOW - 30.0, HUB_NOW) == HUB_NOW - 30.0


def test_an_older_client_without_client_time_is_trusted():
    assert ClientClock.learn(None, HUB_NOW) == ClientClock()


@pytest.mark.parametrize("skew_s", [-600.0, -TOLERANCE_S - 1, TOLERANCE_S + 1, 192.0])
def test_a_skewed_desktop_is_moved_onto_the_hub_clock(skew_s):
    # the desktop reads HUB_NOW + skew when the hub reads HUB_NOW
    clock = ClientClock.learn(HUB_NOW + skew_s, HUB_NOW)
    assert clock.skewed and clock.offset_s == pytest.approx(-skew_s)
    # a status that happened 5 s ago by the desktop's clock, received now
    assert clock.to_hub(HUB_NOW + skew_s - 5.0, HUB_NOW) == pytest.approx(HUB_NOW - 5.0)


def test_no_time_is_put_after_the_moment_the_hub_received_it():
    clock = ClientClock()
    assert clock.to_hub(HUB_NOW + 90.0, HUB_NOW) == HUB_NOW


def test_describe_offset():
    assert describe_offset(192.4) == "3 min 12 s behind"
    assert describe_offset(-40.0) == "40 s ahead of"


# -- through a real hub ---------------------------------------------------------------------


async def _hello(running_hub, agent_id: str, **extra):
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(running_hub.ws_url)
    await ws.send_str(json.dumps({"type": "hello", "protocol": 1, "agent_id": agent_id,
                                  "token": running_hub.tokens[agent_id], "session": "s1",
                                  **extra}))
    return http, ws


def _status(seq: int, at: float, state: str) -> str:
    return json.dumps({"type": "status", "seq": seq, "at": iso(at), "state": state})


async def test_a_desktop_five_minutes_slow_shows_true_times_on_the_wall(running_hub,
                                                                         wall_factory, caplog):
    caplog.set_level(logging.WARNING, "floorwatch.ingest")
    wall = await wall_factory(running_hub.url)
    slow = time.time() - 300.0  # the desktop's clock
    http, ws = await _hello(running_hub, "a1", client_time=iso(slow))
    try:
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        # logged in 10 s ago by the desktop's clock, ready now
        await ws.send_str(_status(1, slow - 10.0, "logged_in"))
        await ws.send_str(_status(2, slow, "ready"))
        assert [(await ws.receive_json(timeout=5))["seq"] for _ in range(2)] == [1, 2]
        await wall.wait_for(lambda w: w.tiles.get("a1", {}).get("state") == "ready")
        shown = parse_iso(wall.tiles["a1"]["state_since"])
        assert abs(shown - time.time()) < 3.0, "the wall would show 'ready 5:00' at once"
        history = running_hub.hub.store.status_history("a1", 0)
        assert [h["state"] for h in history] == ["logged_in", "ready"]
        assert history[1]["at"] - history[0]["at"] == pytest.approx(10.0, abs=0.01)
        assert abs(history[1]["at"] - time.time()) < 3.0
    finally:
        await ws.close()
        await http.close()
    assert any("a1: the desktop's clock is 5 min 0 s behind the hub's" in r.getMessage()
               for r in caplog.records)


async def test_a_status_from_the_future_is_dated_at_its_arrival(running_hub):
    http, ws = await _hello(running_hub, "a2")  # an older client: no client_time
    try:
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.send_str(_status(1, time.time() + 3600.0, "logged_in"))
        assert (await ws.receive_json(timeout=5))["seq"] == 1
        (event,) = running_hub.hub.store.status_history("a2", 0)
        assert event["at"] <= time.time()
    finally:
        await ws.close()
        await http.close()


async def test_a_bad_client_time_is_refused_with_a_reason(running_hub):
    http, ws = await _hello(running_hub, "a3", client_time="yesterday")
    try:
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "error" and "bad field 'client_time'" in error["reason"]
        await ws.receive(timeout=5)
        assert ws.close_code == 4400
    finally:
        await http.close()
