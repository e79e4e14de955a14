"""Recognizers: what turns a call channel's speech into keyword evidence, behind one interface.

    recognition = Recognition.from_settings(settings)      # one per hub
    await recognition.start()
    call = recognition.open_call("a1/c9", 8000, team_profile, sink_for)   # per call
    call.feed(offset, stereo_pcm, speaking=(agent_speaking, customer_speaking))
    call.heard_until_s(position_s)                         # all results before this are in
    call.close(on_done)                                    # late results, then on_done()
    await recognition.aclose()

Three sources sit behind `Recognizer`:

* `SpotterRecognizer` (`kws`): the built-in pocketsphinx keyword spotter in worker processes
  (`server/kws_pool.py`); results are `Spotted` phrases with their rule ids.
* transcript text (`transcript`): lines the agent client or a third-party ASR sends on the
  ingest socket. They arrive as protocol messages, not audio, so no object is needed here:
  `AgentLive.on_transcript` is that source, and a team without `transcript` in its
  `analysis.recognizers` ignores them for alerts.
* `AsrServerRecognizer` (`asr`, server/recognize_asr.py): streams the speech to a streaming ASR
  server by URL (the Vosk WebSocket protocol) and turns its sentences into `Heard` text, which
  is masked and matched like transcript lines. The way to plug in a Mandarin model.

Every audio recognizer gets the same feed: `KwsGate` pieces of one channel (speech plus
pre-roll, exact sample offsets, `final` at the end of each speech region), so silence costs
nothing and times stay exact. Results are handed to the stream's sink on the event loop.
Nothing here blocks the loop: decoding happens in worker processes or on the ASR server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from server.analysis.kws import AudioPiece, Keyphrase, KwsGate, Spotted
from server.events import Speaker

log = logging.getLogger("floorwatch.recognize")

#: The not-said check never waits longer than this for a recognizer that has fallen behind
#: (or an ASR server that does not answer): past it, the verdict is given on what is known.
MAX_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Heard:
    """Text an ASR server recognised in a channel, in call audio time (not yet masked)."""

    offset_s: float
    end_s: float
    text: str


Result = Spotted | Heard
Sink = Callable[[Result], None]


class TeamRules(Protocol):
    """What a recognizer needs of a team (config.TeamProfile has it)."""

    @property
    def name(self) -> str: ...

    @property
    def rules(self) -> tuple[Any, ...]: ...


class Recognizer(Protocol):
    """Turns one channel of a call into results, off the event loop.

    A stream is one channel of one call (`"agent-id/call-id/agent"`). `feed` never blocks: a
    recognizer that cannot keep up drops audio and counts it. `close` flushes the stream; its
    late results reach the sink before the returned awaitable completes.
    """

    name: str

    async def start(self) -> None: ...

    def open(self, stream: str, sample_rate: int, team: TeamRules, sink: Sink) -> bool: ...

    def feed(self, stream: str, piece: AudioPiece) -> None: ...

    def pending_from(self, stream: str) -> float | None:
        """Call audio time of the oldest audio fed but not yet recognised; None if none."""
        ...

    async def close(self, stream: str) -> None: ...

    async def aclose(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


# -- the built-in spotter ----------------------------------------------------------------------


@dataclass
class _SpotStream:
    sample_rate: int
    sink: Sink
    inflight: deque[int] = field(default_factory=deque)  # offsets of pieces being decoded
    pending: set[asyncio.Future] = field(default_factory=set)
    dropped: bool = False  # logged once per stream


class SpotterRecognizer:
    """The rule packs' English phrases, spotted by pocketsphinx in `KwsPool` workers."""

    name = "kws"

    def __init__(self, pool: Any, teams: Sequence[TeamRules] = ()) -> None:
        self.pool = pool
        self._teams = list(teams)
        self._keyphrases: dict[tuple[str, int], list[Keyphrase]] = {}
        self._streams: dict[str, _SpotStream] = {}

    async def start(self) -> None:
        # the pronunciation dictionary is read once (~0.3 s): not on the loop, not mid-call
        await asyncio.to_thread(self._warm)
        await self.pool.start()
        log.info("keyword spotting in audio: %d worker process(es)", self.pool.workers)

    def _warm(self) -> None:
        for team in self._teams:
            for rate in (8000, 16000):
                self.keyphrases(team, rate)

    def keyphrases(self, team: TeamRules, sample_rate: int) -> list[Keyphrase]:
        key = (team.name, sample_rate)
        found = self._keyphrases.get(key)
        if found is None:
            from server.analysis.kws import keyphrases_from_rules

            found = keyphrases_from_rules(team.rules, sample_rate=sample_rate)
            self._keyphrases[key] = found
        return found

    def open(self, stream: str, sample_rate: int, team: TeamRules, sink: Sink) -> bool:
        keyphrases = self.keyphrases(team, sample_rate)
        if not keyphrases:  # e.g. a team with Chinese packs only
            return False
        self.pool.open_call(stream, keyphrases, sample_rate)
        self._streams[stream] = _SpotStream(sample_rate, sink)
        return True

    def feed(self, stream: str, piece: AudioPiece) -> None:
        s = self._streams.get(stream)
        if s is None:
            return
        future = self.pool.submit(stream, piece.offset, piece.pcm, piece.final)
        if future is None:  # dropped: the workers are behind (counted by the pool)
            if not s.dropped:
                s.dropped = True
                log.warning("kws: workers behind, audio of %s dropped (phrases in it are "
                            "missed; see pool stats)", stream)
            return
        s.inflight.append(piece.offset)
        s.pending.add(future)
        future.add_done_callback(lambda f: self._done(s, piece.offset, f))

    def _done(self, s: _SpotStream, offset: int, future: asyncio.Future) -> None:
        s.pending.discard(future)
        try:
            s.inflight.remove(offset)
        except ValueError:
            pass
        if future.cancelled() or future.exception() is not None:
            return  # the pool logged a dead worker
        for spot in future.result():
            s.sink(spot)

    def pending_from(self, stream: str) -> float | None:
        s = self._streams.get(stream)
        if s is None or not s.inflight:
            return None
        return min(s.inflight) / s.sample_rate

    async def close(self, stream: str) -> None:
        s = self._streams.pop(stream, None)
        if s is None:
            return
        if s.pending:
            await asyncio.gather(*s.pending, return_exceptions=True)
        for spot in await self.pool.close_call(stream):
            s.sink(spot)

    async def aclose(self) -> None:
        await self.pool.close()

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "streams": len(self._streams), **self.pool.stats()}


# -- per hub, per call ---------------------------------------------------------------------------


class Recognition:
    """The hub's recognizers, and the calls streaming to them."""

    def __init__(self, recognizers: dict[str, Recognizer]) -> None:
        self.recognizers = recognizers
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Any) -> Recognition:
        recognizers: dict[str, Recognizer] = {}
        teams = [settings.default_team, *settings.teams.values()]
        wants = {name for team in teams for name in team.analysis.recognizers}
        if "kws" in wants:
            if not settings.kws.enabled:
                log.info("keyword spotting in audio is off (kws.enabled = false)")
            elif importlib.util.find_spec("pocketsphinx") is None:
                log.warning("keyword spotting in audio is OFF: pocketsphinx is not installed "
                            "(pip install 'floorwatch[kws]'); keyword alerts come from "
                            "transcript text only")
            else:
                from server.kws_pool import KwsPool

                pool = KwsPool(settings.kws.workers or None,
                               max_backlog_s=settings.kws.max_backlog_s)
                recognizers["kws"] = SpotterRecognizer(pool, teams)
        if "asr" in wants:
            if not settings.asr.url:
                log.warning("a team asks for the asr recognizer but asr.url is not set; "
                            "it is off")
            else:
                from server.recognize_asr import AsrServerRecognizer

                recognizers["asr"] = AsrServerRecognizer(settings.asr)
        return cls(recognizers)

    async def start(self) -> None:
        for recognizer in self.recognizers.values():
            await recognizer.start()

    def open_call(self, call_key: str, sample_rate: int, team: Any,
                  sink_for: Callable[[Speaker], Sink]) -> CallRecognition:
        """Open the team's recognizers on its configured channels of a call."""
        names = [n for n in team.analysis.recognizers if n in self.recognizers]
        channels = [Speaker(c) for c in team.analysis.recognize_channels]
        streams: list[_ChannelStreams] = []
        for speaker in channels:
            opened = []
            for name in names:
                stream = f"{call_key}/{speaker.value}"
                recognizer = self.recognizers[name]
                if recognizer.open(stream, sample_rate, team, sink_for(speaker)):
                    opened.append((recognizer, stream))
            if opened:
                streams.append(_ChannelStreams(speaker, KwsGate(sample_rate), opened))
        return CallRecognition(self, streams)

    def spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._closing.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("closing %s failed", task.get_name(), exc_info=task.exception())

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Let calls being closed deliver their last results, then stop the recognizers."""
        if self._closing:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(*self._closing, return_exceptions=True)
            except TimeoutError:
                log.warning("recognition: %d call(s) still closing after %.0f s",
                            len(self._closing), timeout_s)
        for recognizer in self.recognizers.values():
            try:
                await recognizer.aclose()
            except Exception:
                log.exception("recognizer %s did not close cleanly", recognizer.name)

    def stats(self) -> dict[str, Any]:
        return {name: r.stats() for name, r in self.recognizers.items()}


@dataclass
class _ChannelStreams:
    speaker: Speaker
    gate: KwsGate
    streams: list[tuple[Recognizer, str]]


class CallRecognition:
    """One call's channels on their way to the recognizers."""

    def __init__(self, owner: Recognition, channels: list[_ChannelStreams]) -> None:
        self._owner = owner
        self._channels = channels
        self.closed = False

    @property
    def active(self) -> bool:
        return bool(self._channels)

    def feed(self, offset: int, pcm: np.ndarray, speaking: Sequence[bool]) -> None:
        """A chunk of the call's stereo audio; `speaking[i]`: channel i is (about to be)
        speaking after this chunk, from the call's VAD."""
        if self.closed:
            return
        for ch in self._channels:
            index = 0 if ch.speaker is Speaker.AGENT else 1
            mono = np.ascontiguousarray(pcm[:, index])
            for piece in ch.gate.push(offset, mono, speaking[index]):
                for recognizer, stream in ch.streams:
                    recognizer.feed(stream, piece)

    def heard_until_s(self, position_s: float) -> float:
        """How far every result is in: the audio position, less what is still being
        recognised or waits in a gate (at most MAX_WAIT_S behind)."""
        until = position_s
        for ch in self._channels:
            if ch.gate.open:
                until = min(until, ch.gate.pending_s)
            for recognizer, stream in ch.streams:
                pending = recognizer.pending_from(stream)
                if pending is not None:
                    until = min(until, pending)
        return max(until, position_s - MAX_WAIT_S)

    def close(self, on_done: Callable[[], None], name: str = "call") -> None:
        """The call ended: flush the gates and recognizers; `on_done()` runs once their late
        results have reached the sinks (in a task the hub's Recognition owns)."""
        if self.closed:
            return
        self.closed = True
        if not self._channels:
            on_done()
            return
        for ch in self._channels:
            for piece in ch.gate.flush():
                for recognizer, stream in ch.streams:
                    recognizer.feed(stream, piece)

        async def finish() -> None:
            try:
                await asyncio.gather(*(r.close(s) for ch in self._channels
                                       for r, s in ch.streams), return_exceptions=True)
            finally:
                on_done()

        self._owner.spawn(finish(), name=f"recognition-close-{name}")
