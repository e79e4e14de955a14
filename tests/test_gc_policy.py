"""The hub's garbage-collector settings (server/gc_policy.py): applied by `floorwatch serve`,
visible on /metrics, and a long collection logged."""

from __future__ import annotations

import gc
import logging

import pytest
from processes import HubProcess

from server import gc_policy


@pytest.mark.parametrize(("threshold", "frozen"), [("20000", True), ("0", False)])
async def test_serve_applies_the_setting_and_reports_collections(tmp_path, threshold, frozen):
    hub = HubProcess("gc", tmp_path, env={"FLOORWATCH_SERVER__GC_YOUNG_THRESHOLD": threshold})
    await hub.start()
    try:
        frozen_objects = await hub.metric("gc_frozen_objects")
        # start-up (imports, rule packs, the app) leaves tens of thousands of objects alive
        assert (frozen_objects > 10_000) if frozen else frozen_objects == 0
        for generation in range(3):
            assert await hub.metric(f'gc_collections_total{{generation="{generation}"}}') >= 0
        if frozen:  # the collection `tune` runs before freezing is counted
            assert await hub.metric('gc_collections_total{generation="2"}') >= 1
        assert await hub.metric("gc_pause_max_seconds") < 5
    finally:
        await hub.stop()
    assert hub.proc is not None and hub.proc.returncode == 0


def test_pauses_count_every_collection_and_log_a_long_one(monkeypatch, caplog):
    pauses = gc_policy.Pauses()
    pauses.install()
    try:
        monkeypatch.setattr(gc_policy, "LONG_PAUSE_S", 0.0)  # every collection is "long"
        with caplog.at_level(logging.INFO, logger="floorwatch.gc"):
            ring: list[object] = []
            ring.append(ring)  # a cycle: only the collector frees it
            del ring
            gc.collect(1)
            gc.collect(2)
    finally:
        gc.callbacks.remove(pauses._on_gc)
    assert pauses.collections[1] >= 1 and pauses.collections[2] >= 1
    assert pauses.seconds[2] > 0 and pauses.longest_s >= pauses.seconds[2] / pauses.collections[2]
    messages = [r.getMessage() for r in caplog.records]
    assert any("generation 2 stopped the hub" in m for m in messages), messages
    assert any("generation 1 stopped the hub" in m and "objects freed" in m for m in messages)
