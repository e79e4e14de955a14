"""Garbage-collector pauses and event-loop stalls of a process, logged without touching its code.

Put this directory first on PYTHONPATH and set FLOORWATCH_BENCH_GC_LOG to a file: Python imports
`sitecustomize` at start-up, and this one registers a `gc.callbacks` hook. Every collection of
generation 1 or 2, and any collection over 5 ms, is written as one JSON line
`{"t": monotonic, "gen": g, "ms": pause, "collected": n}`; generation-0 collections are counted
and summed, one line per second. A pause here is a pause of the event loop: nothing else runs.

FLOORWATCH_BENCH_GC_CENSUS_AT_S=10,14 adds a census at those seconds after start-up (from a
thread, holding the interpreter lock): the objects in each generation, the 40 commonest types
of tracked objects, the largest containers of the old generation, and three timed full
collections — which stop the process for as long as they take, so keep a census out of a
measured window. This is how the hub's collector settings (`server/gc_policy.py`) were chosen.

FLOORWATCH_BENCH_STALL_LOG=file starts a thread that samples the main thread's stack every
5 ms and writes, as JSON lines, where it stood still for 50 ms or more (`_watch_main_thread`):
how the stalls that are not collections were found. It takes the interpreter lock 200 times a
second: a diagnostic, not for measured runs.
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

_CENSUS_AT = os.environ.get("FLOORWATCH_BENCH_GC_CENSUS_AT_S")
if _PATH and _CENSUS_AT:
    import collections
    import threading

    _CONTAINERS = (list, dict, set, tuple, collections.deque, frozenset)

    def _census() -> None:
        started = time.perf_counter()
        counts = {}
        for generation in (0, 1, 2):
            counts[generation] = len(gc.get_objects(generation))
        old = gc.get_objects(2)
        types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        big = sorted(((len(o), type(o).__qualname__, repr(list(o)[:3])[:200])
                      for o in old if isinstance(o, _CONTAINERS) and len(o) > 2000),
                     reverse=True)
        del old
        collect_ms = []
        for _ in range(3):
            began = time.perf_counter()
            gc.collect()
            collect_ms.append(round((time.perf_counter() - began) * 1000, 1))
        _out.write(json.dumps({
            "t": round(time.monotonic(), 4), "census": counts, "frozen": gc.get_freeze_count(),
            "threshold": gc.get_threshold(), "collect_ms": collect_ms,
            "top": types.most_common(40), "big": big[:15],
            "ms": round((time.perf_counter() - started) * 1000, 1)}) + "\n")

    for _at in _CENSUS_AT.split(","):
        _t = threading.Timer(float(_at), _census)
        _t.daemon = True
        _t.start()

_STALL_PATH = os.environ.get("FLOORWATCH_BENCH_STALL_LOG")
if _STALL_PATH:
    import sys
    import threading
    import traceback

    def _watch_main_thread(main_id: int, out: "object", every_s: float = 0.005,
                           stall_s: float = 0.05) -> None:
        """Sample the main thread's innermost frame every 5 ms; a frame (not the idle loop's)
        that stays on top for 50 ms or more (a long C call, or a long Python function), or a
        gap of 50 ms between two samples (the interpreter lock held all along: a collection, a
        C call that keeps it) is written with the stack seen, one JSON line each."""
        top, since, stack, last = None, 0.0, None, time.monotonic()
        idle_depth = 1 << 30  # the shallowest stack seen: the loop waiting for events
        while True:
            time.sleep(every_s)
            now = time.monotonic()
            frame = sys._current_frames().get(main_id)
            if frame is None:
                return
            depth, f = 0, frame
            while f is not None:
                depth, f = depth + 1, f.f_back
            idle_depth = min(idle_depth, depth)
            if depth <= idle_depth:
                frame = None  # idle: not a stall, however long
            if now - last >= stall_s:
                out.write(json.dumps({"t": round(now, 4), "kind": "gap",
                                      "ms": round((now - last) * 1000, 1),
                                      "after": frame and traceback.format_stack(frame)[-12:]})
                          + "\n")
            last = now
            if frame is not top:
                if top is not None and now - since >= stall_s and stack is not None:
                    out.write(json.dumps({"t": round(now, 4), "kind": "frame",
                                          "ms": round((now - since) * 1000, 1),
                                          "stack": stack}) + "\n")
                top, since, stack = frame, now, None
            elif frame is not None and stack is None and now - since >= stall_s:
                stack = traceback.format_stack(frame)[-12:]
            del frame

    _stall_out = open(_STALL_PATH, "a", buffering=1)
    threading.Thread(target=_watch_main_thread, args=(threading.main_thread().ident, _stall_out),
                     name="stall-watch", daemon=True).start()
