"""Keyword spotting off the event loop: a few worker processes, each call sticky to one of them.

    pool = KwsPool(workers=2)
    await pool.start()                                   # spawn workers, load pocketsphinx
    pool.open_call(key, keyphrases, sample_rate)
    spots = await pool.feed(key, piece.offset, piece.pcm, final=piece.final)
    spots += await pool.close_call(key)
    await pool.close()

Why it is shaped like this:

* A decoder keeps state across a call (CMN, the open utterance), so every piece of one call must
  reach the same process, in order. Each worker is a single-process `ProcessPoolExecutor`: its
  tasks run one at a time in submission order, and a call is pinned to one worker when opened
  (the one with fewest calls).
* Decoding ~0.03 CPU-s per audio-s is cheap but not free, and it holds the GIL; in the hub
  process it would stall ingest and the walls. Only speech pieces (see kws.KwsGate) cross the
  process boundary, batched to ~0.25 s, so there are few messages.
* If the workers fall behind, audio is dropped and counted, never queued without bound: each
  worker accepts at most `max_backlog_s` of audio not yet decoded. The spotter treats a dropped
  piece as a gap, so times stay exact; an alert may be missed, which `stats()` shows.
* A worker that dies is replaced; its calls reopen on the next piece with a fresh decoder.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.analysis.kws import Keyphrase, KeywordSpotter, Spotted, SpotterParams

log = logging.getLogger("floorwatch.kws")


@dataclass
class _CallSlot:
    worker: int
    keyphrases: tuple[Keyphrase, ...]
    sample_rate: int
    generation: int = -1  # the worker generation that holds this call's spotter


class KwsPool:
    def __init__(self, workers: int | None = None, *, max_backlog_s: float = 10.0,
                 params: SpotterParams | None = None, mp_context: str = "spawn") -> None:
        self.workers = workers or len(os.sched_getaffinity(0))
        self.max_backlog_s = max_backlog_s
        self.params = params or SpotterParams()
        self._ctx = multiprocessing.get_context(mp_context)
        self._executors: list[ProcessPoolExecutor | None] = [None] * self.workers
        self._generation = [0] * self.workers
        self._backlog_s = [0.0] * self.workers
        self._calls: dict[str, _CallSlot] = {}
        self.audio_s = 0.0  # decoded, as reported by the workers
        self.cpu_s = 0.0  # workers' CPU time spent decoding
        self.dropped_pieces = 0
        self.dropped_s = 0.0
        self._closed = False

    async def start(self) -> None:
        """Spawn the workers and import pocketsphinx in them now, not on the first call."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(asyncio.wrap_future(self._executor(w).submit(_w_ping), loop=loop)
                               for w in range(self.workers)))

    def open_call(self, call_key: str, keyphrases: Sequence[Keyphrase],
                  sample_rate: int) -> None:
        worker = min(range(self.workers), key=lambda w: (self._load(w), self._backlog_s[w]))
        self._calls[call_key] = _CallSlot(worker, tuple(keyphrases), sample_rate)

    def submit(self, call_key: str, offset: int, pcm: np.ndarray,
               final: bool = False) -> asyncio.Future[list[Spotted]] | None:
        """Queue a piece of the call's audio; None if it was dropped (the worker is behind)."""
        slot = self._calls.get(call_key)
        if slot is None or self._closed:
            return None
        seconds = len(pcm) / slot.sample_rate
        w = slot.worker
        if self._backlog_s[w] + seconds > self.max_backlog_s:
            self.dropped_pieces += 1
            self.dropped_s += seconds
            if not final:
                return None
            pcm, seconds = pcm[:0], 0.0  # still close the speech region
        executor = self._executor(w)
        if slot.generation != self._generation[w]:
            slot.generation = self._generation[w]
            opened = executor.submit(_w_open, call_key, slot.keyphrases, slot.sample_rate,
                                     self.params)
            opened.add_done_callback(_log_failure)
        self._backlog_s[w] += seconds
        future = asyncio.wrap_future(executor.submit(_w_feed, call_key, offset, pcm, final))
        return self._track(future, w, seconds)

    async def feed(self, call_key: str, offset: int, pcm: np.ndarray,
                   final: bool = False) -> list[Spotted]:
        future = self.submit(call_key, offset, pcm, final)
        if future is None:
            return []
        try:
            return await future
        except BrokenProcessPool:
            return []

    async def close_call(self, call_key: str) -> list[Spotted]:
        """The call ended: finish its spotter (late detections come back) and free it."""
        slot = self._calls.pop(call_key, None)
        if slot is None or self._closed or slot.generation != self._generation[slot.worker]:
            return []
        future = asyncio.wrap_future(self._executor(slot.worker).submit(_w_close, call_key))
        try:
            return await self._track(future, slot.worker, 0.0)
        except BrokenProcessPool:
            return []

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers: queued work is cancelled, running work gets `timeout_s`."""
        self._closed = True
        for executor in filter(None, self._executors):
            try:
                await asyncio.wait_for(asyncio.to_thread(
                    executor.shutdown, wait=True, cancel_futures=True), timeout_s)
            except TimeoutError:
                log.warning("kws worker did not stop within %.0f s", timeout_s)
        self._executors = [None] * self.workers

    def stats(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "calls": len(self._calls),
            "audio_s": round(self.audio_s, 1),
            "cpu_s": round(self.cpu_s, 2),
            "backlog_s": [round(b, 2) for b in self._backlog_s],
            "dropped_pieces": self.dropped_pieces,
            "dropped_s": round(self.dropped_s, 1),
        }

    # -- internals ----------------------------------------------------------------------

    def _load(self, worker: int) -> int:
        return sum(1 for slot in self._calls.values() if slot.worker == worker)

    def _executor(self, worker: int) -> ProcessPoolExecutor:
        executor = self._executors[worker]
        if executor is None:
            executor = ProcessPoolExecutor(1, mp_context=self._ctx, initializer=_w_init,
                                           initargs=(os.getpid(),))
            self._executors[worker] = executor
        return executor

    def _track(self, future: asyncio.Future, worker: int,
               seconds: float) -> asyncio.Future[list[Spotted]]:
        """Keep the backlog and CPU counts, and replace a worker that died."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[list[Spotted]] = loop.create_future()
        generation = self._generation[worker]

        def done(f: asyncio.Future) -> None:
            self._backlog_s[worker] = max(0.0, self._backlog_s[worker] - seconds)
            if f.cancelled():
                result.cancel()
                return
            exc = f.exception()
            if isinstance(exc, BrokenProcessPool):
                self._replace(worker, generation)
            if exc is not None:
                if not result.done():
                    result.set_exception(exc)
                return
            spots, audio_s, cpu_s = f.result()
            self.audio_s += audio_s
            self.cpu_s += cpu_s
            if not result.done():
                result.set_result(spots)

        future.add_done_callback(done)
        return result

    def _replace(self, worker: int, generation: int) -> None:
        if self._generation[worker] != generation or self._closed:
            return  # already replaced
        log.error("kws worker %d died; starting a new one (its calls restart their decoders)",
                  worker)
        old = self._executors[worker]
        self._executors[worker] = None
        self._generation[worker] += 1
        self._backlog_s[worker] = 0.0
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)


def _log_failure(future: Any) -> None:
    exc = None if future.cancelled() else future.exception()
    if exc is not None and not isinstance(exc, BrokenProcessPool):
        log.error("kws: could not start a spotter: %s", exc)


# -- in the worker processes ----------------------------------------------------------------

_spotters: dict[str, KeywordSpotter] = {}


def _w_init(parent: int) -> None:
    """A worker outlives a hub that was killed (SIGKILL, OOM): it would wait on its queue for
    ever. Watch the parent and leave when it is gone."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="kws-parent-watch", daemon=True).start()


def _w_ping() -> int:
    import pocketsphinx  # noqa: F401  (the import is the warm-up)

    return os.getpid()


def _w_open(call_key: str, keyphrases: tuple[Keyphrase, ...], sample_rate: int,
            params: SpotterParams) -> None:
    _spotters[call_key] = KeywordSpotter(keyphrases, sample_rate, params)


def _w_feed(call_key: str, offset: int, pcm: np.ndarray,
            final: bool) -> tuple[list[Spotted], float, float]:
    spotter = _spotters.get(call_key)
    if spotter is None:
        return [], 0.0, 0.0
    t0, audio0 = time.process_time(), spotter.audio_s
    spots = spotter.feed(offset, pcm, final=final)
    return spots, spotter.audio_s - audio0, time.process_time() - t0


def _w_close(call_key: str) -> tuple[list[Spotted], float, float]:
    spotter = _spotters.pop(call_key, None)
    if spotter is None:
        return [], 0.0, 0.0
    t0, audio0 = time.process_time(), spotter.audio_s
    spots = spotter.finish()
    return spots, spotter.audio_s - audio0, time.process_time() - t0
