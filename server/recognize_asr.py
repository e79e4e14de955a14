"""A streaming ASR server as a recognizer: the Vosk WebSocket protocol, one socket per stream.

The protocol (vosk-server's `asr_server.py`, also spoken by its Kaldi and Chinese model images):

    client -> {"config": {"sample_rate": 8000, "words": 1}}      text, first
    client -> binary frames of 16-bit little-endian mono PCM
    server -> one JSON reply per frame: {"partial": "..."} while a sentence goes on, or
              {"result": [{"word", "start", "end", "conf"}...], "text": "..."} when it ended
    client -> {"eof": 1}; server -> the last result, then it closes

Only speech reaches the server (`KwsGate` pieces): a region's audio is sent as it comes, then
`pad_s` of silence so the server's end-of-sentence detection closes the sentence at once. The
server's times count the audio *it* received, so the stream keeps a table from stream samples
back to call samples: a word's `start` maps to exact call time, whatever was cut out between
regions. Because the server answers every frame, the frames not yet answered tell how far its
results are in (`pending_from`), which the not-said check waits for.

Each stream is driven by one task (connect, send, read) that this recognizer owns. A server
that is down or slow costs recognition, never ingest: pieces wait in a bounded queue and are
dropped and counted beyond it; a failed connection is retried at the next speech region.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.analysis.kws import AudioPiece
from server.recognize import Heard, Sink, TeamRules

log = logging.getLogger("floorwatch.asr")
# the websockets library logs every frame at DEBUG, payloads included: recognised speech (card
# numbers read out) must never reach a log, whatever the hub's log level
_socket_log = logging.getLogger("floorwatch.asr.socket")
_socket_log.setLevel(logging.INFO)

MAX_QUEUE = 200  # pieces (~50 s of speech) waiting per stream before they are dropped
CLOSE_WAIT_S = 30.0  # at call end, the server's last sentences are awaited this long at most
RETRY_S = 5.0  # a stream whose connection failed tries again after this (at a region start)
#: vosk-server compares the end-of-stream message as a string, spacing included
EOF = '{"eof" : 1}'


_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
                "零": "0", "〇": "0", "幺": "1", "一": "1", "二": "2", "两": "2", "三": "3",
                "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_EN = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_ZH = "[零〇幺一二两三四五六七八九]"
_SPOKEN_NUMBER = re.compile(rf"\b{_EN}(?:[\s,-]+{_EN}){{3,}}\b|{_ZH}(?:\s*{_ZH}){{3,}}",
                            re.IGNORECASE)


def digits_from_words(text: str) -> str:
    """Runs of 4 or more spoken digits as digits ("four one one one" -> "4111", 六二二二 ->
    6222), so the PII masker, which reads digits, catches card and ID numbers an ASR server
    writes out in words."""
    def to_digits(m: re.Match[str]) -> str:
        return "".join(_DIGIT_WORDS[w] for w in re.findall(rf"{_EN}|{_ZH}", m.group(0).lower()))

    return _SPOKEN_NUMBER.sub(to_digits, text)


@dataclass
class _Frame:
    call_offset: int | None  # None: padding
    samples: int


@dataclass
class _Stream:
    name: str
    sample_rate: int
    sink: Sink
    queue: asyncio.Queue[AudioPiece | None] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    task: asyncio.Task[None] | None = None
    sent: deque[_Frame] = field(default_factory=deque)  # frames not yet answered
    # stream sample -> call sample, one entry per contiguous stretch sent
    map_stream: list[int] = field(default_factory=list)
    map_call: list[int | None] = field(default_factory=list)
    stream_pos: int = 0
    failed_at: float | None = None
    dropped: int = 0


class AsrServerRecognizer:
    name = "asr"

    def __init__(self, settings: Any) -> None:
        self.url: str = settings.url
        self.connect_timeout_s: float = settings.connect_timeout_s
        self.max_streams: int = settings.max_streams
        self.pad_s: float = settings.pad_s
        self._streams: dict[str, _Stream] = {}
        self.results = 0
        self.dropped_pieces = 0
        self.failures = 0

    async def start(self) -> None:
        log.info("asr: streaming speech to %s (Vosk protocol)", self.url)

    def open(self, stream: str, sample_rate: int, team: TeamRules, sink: Sink) -> bool:
        if len(self._streams) >= self.max_streams:
            log.warning("asr: %d streams open (asr.max_streams); %s not recognised",
                        len(self._streams), stream)
            return False
        self._streams[stream] = _Stream(stream, sample_rate, sink)
        return True

    def feed(self, stream: str, piece: AudioPiece) -> None:
        s = self._streams.get(stream)
        if s is None:
            return
        if s.task is None or s.task.done():
            if s.failed_at is not None and \
                    asyncio.get_running_loop().time() - s.failed_at < RETRY_S:
                s.dropped += 1
                self.dropped_pieces += 1
                return
            s.task = asyncio.create_task(self._run(s), name=f"asr-{stream}")
        try:
            s.queue.put_nowait(piece)
        except asyncio.QueueFull:
            s.dropped += 1
            self.dropped_pieces += 1

    def pending_from(self, stream: str) -> float | None:
        s = self._streams.get(stream)
        if s is None or s.task is None or s.task.done():
            return None
        offsets = [f.call_offset for f in s.sent if f.call_offset is not None]
        if not s.queue.empty():
            offsets.append(s.queue._queue[0].offset)  # type: ignore[attr-defined]
        return min(offsets) / s.sample_rate if offsets else None

    async def close(self, stream: str) -> None:
        s = self._streams.pop(stream, None)
        if s is None or s.task is None:
            return
        if not s.task.done():
            try:
                s.queue.put_nowait(None)  # eof: the server sends its last result and closes
            except asyncio.QueueFull:
                s.task.cancel()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.shield(s.task)
        except TimeoutError:
            s.task.cancel()
            log.warning("asr: %s did not finish in time; its last words are lost", stream)
        except (asyncio.CancelledError, Exception):
            pass

    async def aclose(self) -> None:
        for s in list(self._streams.values()):
            if s.task is not None:
                s.task.cancel()
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._streams.clear()

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "streams": len(self._streams),
                "results": self.results, "dropped_pieces": self.dropped_pieces,
                "failures": self.failures}

    # -- one stream ---------------------------------------------------------------------------

    async def _run(self, s: _Stream) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        try:
            async with asyncio.timeout(self.connect_timeout_s):
                ws = await connect(self.url, open_timeout=self.connect_timeout_s,
                                   max_size=2**20, compression=None, logger=_socket_log)
        except (OSError, TimeoutError, WebSocketException) as exc:
            self._failed(s, f"cannot connect: {exc}")
            return
        try:
            await ws.send(json.dumps({"config": {"sample_rate": s.sample_rate, "words": 1}}))
            reader = asyncio.create_task(self._read(s, ws), name=f"asr-read-{s.name}")
            try:
                await self._send(s, ws)
                await reader  # after eof the server sends its last result and closes
            finally:
                reader.cancel()
        except (OSError, WebSocketException) as exc:
            self._failed(s, f"connection lost: {exc}")
        finally:
            await ws.close()
            s.sent.clear()

    def _failed(self, s: _Stream, why: str) -> None:
        self.failures += 1
        s.failed_at = asyncio.get_running_loop().time()
        s.sent.clear()
        while not s.queue.empty():  # what waited is dropped: it would arrive too late
            if s.queue.get_nowait() is not None:
                s.dropped += 1
                self.dropped_pieces += 1
        log.warning("asr: %s: %s %s (retrying at a later speech region)", s.name, self.url, why)

    async def _send(self, s: _Stream, ws: Any) -> None:
        next_offset: int | None = None
        while True:
            piece = await s.queue.get()
            if piece is None:
                await ws.send(EOF)
                return
            if next_offset is not None and piece.offset != next_offset:
                await ws.send(self._pad(s))  # a jump with no final piece: end the sentence
            if len(piece.pcm):
                self._map(s, piece.offset, len(piece.pcm))
                s.sent.append(_Frame(piece.offset, len(piece.pcm)))
                await ws.send(np.ascontiguousarray(piece.pcm, dtype="<i2").tobytes())
            next_offset = piece.offset + len(piece.pcm)
            if piece.final:
                await ws.send(self._pad(s))
                next_offset = None

    def _pad(self, s: _Stream) -> bytes:
        """Silence after a region, so the server ends its sentence now."""
        n = int(self.pad_s * s.sample_rate)
        end = self._call_at(s, s.stream_pos)
        self._map(s, None, n)
        s.sent.append(_Frame(end, n))
        return bytes(2 * n)

    def _map(self, s: _Stream, call_offset: int | None, samples: int) -> None:
        s.map_stream.append(s.stream_pos)
        s.map_call.append(call_offset)
        s.stream_pos += samples
        if len(s.map_stream) > 4096:  # long calls: keep the recent stretches
            del s.map_stream[:2048], s.map_call[:2048]

    def _call_at(self, s: _Stream, stream_sample: int) -> int | None:
        """Call sample of a stream sample; inside padding, the end of the speech before it."""
        i = bisect_right(s.map_stream, stream_sample) - 1
        while i >= 0:
            call = s.map_call[i]
            if call is not None:
                start = s.map_stream[i]
                length = (s.map_stream[i + 1] if i + 1 < len(s.map_stream)
                          else s.stream_pos) - start
                return call + min(stream_sample - start, length)
            stream_sample = s.map_stream[i]
            i -= 1
        return None

    async def _read(self, s: _Stream, ws: Any) -> None:
        async for message in ws:
            if s.sent:
                s.sent.popleft()  # one reply per frame: everything before it is recognised
            try:
                reply = json.loads(message)
            except (TypeError, ValueError):
                log.warning("asr: %s: a reply that is not JSON; ignored", s.name)
                continue
            words = reply.get("result") or []
            text = str(reply.get("text") or "").strip()
            if not text:
                continue  # a partial, or a sentence with nothing recognised
            rate = s.sample_rate
            first = words[0].get("start", 0.0) if words else 0.0
            last = words[-1].get("end", first) if words else first
            start = self._call_at(s, round(float(first) * rate))
            end = self._call_at(s, round(float(last) * rate))
            if start is None:
                continue
            self.results += 1
            s.sink(Heard(round(start / rate, 3), round((end or start) / rate, 3),
                         digits_from_words(text)))
