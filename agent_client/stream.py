"""Stream one call to the hub: a stereo WAV (left = agent, right = customer), paced in real time.

Pacing follows an absolute schedule (chunk i goes at t0 + i * chunk / speed), so the stream
neither drifts nor bunches up. At real time the call is treated as live: if the process falls
behind by more than a second (a stalled socket, a suspended laptop) the late chunks are skipped
and counted, and the hub sees a gap in the audio offsets, exactly as after a network outage.
Faster than real time (`--speed 10`) it is a replay for analysis: nothing is dropped, and the
replay waits for the link when the hub reads slower than the chosen speed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent_client.connection import HubConnection
from agent_client.supervisor import BargeMixer
from server.ingest_protocol import encode_audio

log = logging.getLogger("floorwatch.agent_client")

SAMPLE_RATES = (8000, 16000)


class SourceError(ValueError):
    """The WAV or transcript cannot be streamed; the message says why."""


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    offset_s: float
    speaker: str
    text: str


@dataclass
class StreamReport:
    call_id: str
    chunks_sent: int = 0
    chunks_dropped: int = 0
    audio_s: float = 0.0
    transcript_lines: int = 0


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A stereo 16-bit WAV at 8 or 16 kHz → (samples × 2 int16 array, rate)."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (OSError, wave.Error, EOFError) as exc:
        raise SourceError(f"{path}: not a readable WAV file ({exc})") from None
    if channels != 2:
        raise SourceError(f"{path}: {channels} channel(s); need stereo (left agent, right "
                          "customer)")
    if width != 2:
        raise SourceError(f"{path}: {8 * width}-bit samples; need 16-bit PCM")
    if rate not in SAMPLE_RATES:
        raise SourceError(f"{path}: {rate} Hz; need 8000 or 16000 Hz (resample with sox first)")
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2), rate


def read_transcript(path: Path) -> list[TranscriptEntry]:
    """JSON lines `{"offset_s": 12.4, "speaker": "agent", "text": "…"}`, in any order."""
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            entry = TranscriptEntry(float(raw["offset_s"]), str(raw["speaker"]), str(raw["text"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{path}:{number}: expected JSON with offset_s, speaker, text "
                              f"({exc})") from None
        if entry.speaker not in ("agent", "customer"):
            raise SourceError(f"{path}:{number}: speaker must be agent or customer")
        entries.append(entry)
    return sorted(entries, key=lambda e: e.offset_s)


async def paced_chunks(pcm: np.ndarray, rate: int, chunk_s: float, speed: float,
                       max_late_s: float = 1.0) -> AsyncIterator[tuple[int, np.ndarray | None]]:
    """Yield (sample offset, chunk) on schedule; chunk is None when it was skipped as too late."""
    loop = asyncio.get_running_loop()
    step = round(rate * chunk_s)
    t0 = loop.time()
    for index, offset in enumerate(range(0, len(pcm), step)):
        due = t0 + index * chunk_s / speed
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = loop.time() - due
        yield offset, (None if late > max_late_s else pcm[offset : offset + step])


async def stream_call(conn: HubConnection, pcm: np.ndarray, rate: int,
                      transcript: list[TranscriptEntry] | None = None, *, speed: float = 1.0,
                      chunk_s: float = 0.1, call_id: str | None = None,
                      direction: str = "inbound", customer: str = "",
                      mixer: BargeMixer | None = None,
                      sent: list[np.ndarray] | None = None) -> StreamReport:
    """Open a call, stream its audio and transcript on schedule, and leave it in wrap-up.

    With a `mixer`, a barging supervisor's voice is mixed into the agent channel, the audio that
    goes to the call; `sent` collects every chunk as it went out (for `--sent-wav`)."""
    call_id = call_id or f"call-{uuid.uuid4().hex[:12]}"
    report = StreamReport(call_id)
    await conn.send_status("on_call", call={"id": call_id, "direction": direction,
                                            "customer": customer, "sample_rate": rate})
    lines = list(transcript or [])
    next_line = 0
    chunk_no = 0
    # at real time this is a live call: late audio is dropped. Faster, it is a replay for
    # analysis: nothing is dropped for lateness, the replay just runs as fast as it can.
    live = speed <= 1.0
    max_late_s = 1.0 if live else float("inf")
    async for offset, chunk in paced_chunks(pcm, rate, chunk_s, speed, max_late_s):
        position = (offset + (0 if chunk is None else len(chunk))) / rate
        if chunk is not None and mixer is not None:
            chunk = mixer.mix_into(chunk)
        if chunk is not None and sent is not None:
            sent.append(chunk)
        if chunk is None or not await conn.send_audio(encode_audio(chunk_no, offset, chunk),
                                                      live=live):
            report.chunks_dropped += 1
        else:
            report.chunks_sent += 1
            report.audio_s += len(chunk) / rate
        chunk_no += 1
        # a line is "heard" once the audio it starts in has gone out
        while next_line < len(lines) and lines[next_line].offset_s < position:
            entry = lines[next_line]
            await conn.send_transcript(call_id, entry.offset_s, entry.speaker, entry.text)
            report.transcript_lines += 1
            next_line += 1
    for entry in lines[next_line:]:
        await conn.send_transcript(call_id, entry.offset_s, entry.speaker, entry.text)
        report.transcript_lines += 1
    await conn.send_status("wrap_up")
    return report

