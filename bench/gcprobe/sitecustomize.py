"""Garbage-collector pauses of a process, logged without touching its code.

Put this directory first on PYTHONPATH and set FLOORWATCH_BENCH_GC_LOG to a file: Python imports
`sitecustomize` at start-up, and this one registers a `gc.callbacks` hook. Every collection of
generation 1 or 2, and any collection over 5 ms, is written as one JSON line
`{"t": monotonic, "gen": g, "ms": pause, "collected": n}`; generation-0 collections are counted
and summed, one line per second. A pause here is a pause of the event loop: nothing else runs.

To try a collector setting on the unmodified hub (an experiment, not a fix), set
FLOORWATCH_BENCH_GC_FREEZE_AFTER_S=N: N seconds after start-up, `gc.freeze()` moves every object
alive then (imports, rule packs, the app) out of the collector's sight, so later full
collections only walk what the calls created.
"""

import gc
import json
import os
import time

_PATH = os.environ.get("FLOORWATCH_BENCH_GC_LOG")

if _PATH:
    _out = open(_PATH, "a", buffering=1)  # kept open for the life of the process
    _state = {"start": 0.0, "young": 0, "young_ms": 0.0, "flushed": time.monotonic()}

    def _on_gc(phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            _state["start"] = now
            return
        pause = (now - _state["start"]) * 1000
        generation = info["generation"]
        t = time.monotonic()
        if generation >= 1 or pause > 5.0:
            _out.write(json.dumps({"t": round(t, 4), "gen": generation, "ms": round(pause, 3),
                                   "collected": info["collected"]}) + "\n")
        else:
            _state["young"] += 1
            _state["young_ms"] += pause
        if t - _state["flushed"] >= 1.0:
            _out.write(json.dumps({"t": round(t, 4), "gen": 0, "count": _state["young"],
                                   "ms": round(_state["young_ms"], 3)}) + "\n")
            _state.update(young=0, young_ms=0.0, flushed=t)

    gc.callbacks.append(_on_gc)

_FREEZE_AFTER = os.environ.get("FLOORWATCH_BENCH_GC_FREEZE_AFTER_S")
if _FREEZE_AFTER:
    import threading

    _timer = threading.Timer(float(_FREEZE_AFTER), gc.freeze)
    _timer.daemon = True
    _timer.start()
