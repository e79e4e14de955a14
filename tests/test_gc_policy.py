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


def test_a_call_leaves_no_cyclic_garbage(tmp_path):
    """The policy counts on reference counting to free an ended call: its analyser, gates,
    detectors, alerts and tile changes must not form cycles (which only a full collection —
    now rare — would free)."""
    import json
    import time

    from bench.audio import ProbeScript, probe_loop
    from server.agent_live import AgentLive
    from server.bus import LocalBus
    from server.config import load_settings
    from server.floor import Floor
    from server.ingest_protocol import parse_audio, parse_message
    from server.store import Store
    from server.walls import WallHub
    from server.wire import iso

    rate = 8000
    script = ProbeScript(dead_air_s=2.0, overtalk_s=1.0, chunk_s=0.1)
    audio = probe_loop(script, rate)
    profile = load_settings(None, {}, analysis={"dead_air_s": 2.0}).default_team
    store = Store(tmp_path / "floorwatch.db")
    bus = LocalBus()
    floor = Floor(store, WallHub(256))
    bus.subscribe(floor.on_event)
    live = AgentLive("a-1", "A1", "default", profile, bus)
    events: list[str] = []
    bus.subscribe(lambda event: events.append(type(event).__name__))

    def status(seq: int, state: str, call: str | None = None) -> object:
        body = {"type": "status", "seq": seq, "at": iso(time.time()), "state": state}
        if call:
            body["call"] = {"id": call, "direction": "inbound", "customer": "+4930 1234567",
                            "sample_rate": rate}
        return parse_message(json.dumps(body))

    def one_call(n: int) -> None:
        live.on_status(status(2 * n + 1, "on_call", f"c-{n}"), time.time())
        for i in range(int(2 * script.cycle_s * 10)):  # two incident cycles
            live.on_audio(parse_audio(audio.frame(i), 16000), time.time())
            if i % 3 == 0:
                floor.flush()
        live.on_status(status(2 * n + 2, "wrap_up"), time.time())
        floor.flush()

    one_call(0)  # the first call warms caches (rule packs, translations) that live on
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        one_call(1)
        found = gc.collect()
        garbage = sorted({type(o).__qualname__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        store.close()
    assert "AlertChanged" in events  # the call raised its dead-air and overtalk alerts
    assert found == 0, garbage
