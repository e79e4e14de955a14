"""An agent desktop whose clock is wrong: the hub moves its status times onto the hub's clock."""

from __future__ import annotations

import pytest

from server.clock import TOLERANCE_S, ClientClock, describe_offset

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
