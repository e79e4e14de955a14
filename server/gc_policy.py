"""How the hub process runs Python's garbage collector: rarely, and not over start-up objects.

A hub carrying a floor holds ~120 container objects per live call (its analyser, gates and
detectors, the socket's aiohttp and asyncio objects, the agent's tile) spread over a heap of
100+ MB. A full collection walks every one of them, with a cache miss at nearly each step:
~0.7 µs an object here, ~100 ms at 1,000 calls, during which no audio is read. With Python's
default thresholds (700, 10, 10) a hub at a steady 1,000 calls ran one every 1.5–7 s, and the
step just above its capacity failed on one (docs/performance.md, issue 7 step 8).

Why so often with nothing growing: objects that live a few hundred milliseconds (a tile change
waiting for the wall's tick, a message in flight) survive two young collections when those
run every 700 net allocations, so they are counted as long-lived; a full collection runs each
time that count reaches a quarter of the old generation, although reference counting frees
them soon after. A young threshold of 20,000 lets them die before a young collection sees
them: at a steady floor the collector then hardly runs at all, and cycles are still found, as
the count of surviving objects reaches the threshold. A young collection then scans up to
20,000 objects (a few ms).

`tune` also moves everything alive after start-up (modules, rule packs, the app: ~45,000
objects) out of the collector's sight with `gc.freeze()`: they live as long as the process,
and the full collections that remain no longer walk them. It runs once, when the hub is
serving; tests that build the app in their own process do not call it.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger("floorwatch.gc")

LONG_PAUSE_S = 0.05  # a collection this long is logged: the loop lag budget is 0.1 s


class Pauses:
    """Collections of this process and how long each stopped it, per generation (/metrics)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest_s = 0.0
        self._began = 0.0
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._on_gc)
            self.installed = True

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        pause = time.perf_counter() - self._began
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += pause
        self.longest_s = max(self.longest_s, pause)
        if pause >= LONG_PAUSE_S:
            log.info("garbage collection of generation %d stopped the hub for %.0f ms "
                     "(%d objects freed)", generation, pause * 1000, info["collected"])


PAUSES = Pauses()


def tune(young_threshold: int) -> None:
    """Start counting collections; then, unless `young_threshold` is 0 (Python's settings
    kept), collect once, freeze what is alive and set the young generation's threshold."""
    PAUSES.install()
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    log.debug("garbage collector: %d start-up objects frozen, thresholds %s",
              gc.get_freeze_count(), gc.get_threshold())
