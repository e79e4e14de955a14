"""A supervisor's monitoring client without a browser: aiortc instead of Chromium.

Signs in like the wall, offers audio (recvonly to listen; sendrecv with a "microphone" for whisper
and barge), posts the offer to `/api/monitor` and records what it hears with arrival times. Used by
the tests (tests/test_listen.py) and the listening benchmark (bench/listen.py).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

RATE = 48000
FRAME = 960  # 20 ms


class ToneMic(MediaStreamTrack):
    """A microphone that says `samples` (mono int16 at 48 kHz) in real time, then silence."""

    kind = "audio"

    def __init__(self, samples: np.ndarray) -> None:
        super().__init__()
        self._samples = samples
        self._sent = 0
        self._start: float | None = None
        self.started_at: float | None = None  # wall clock of the first sample

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
            self.started_at = time.time()
        due = self._start + self._sent / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        chunk = self._samples[self._sent:self._sent + FRAME]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += FRAME
        return frame


@dataclass
class Heard:
    """What the listener received: 48 kHz stereo int16 and when each frame arrived."""

    frames: list[np.ndarray] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.time() per frame

    def pcm(self) -> np.ndarray:
        if not self.frames:
            return np.zeros((0, 2), np.int16)
        return np.concatenate(self.frames)


class Listener:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self._credentials = {"username": username, "password": password}
        self.http: aiohttp.ClientSession | None = None
        self.pc: RTCPeerConnection | None = None
        self.heard = Heard()
        self.session: dict[str, Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.track_ended = asyncio.Event()

    async def login(self) -> None:
        self.http = aiohttp.ClientSession(headers={"Origin": self.base_url},
                                          cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with self.http.post(f"{self.base_url}/login", json=self._credentials) as r:
            r.raise_for_status()

    async def start(self, agent_id: str | None, mode: str = "listen", *, reason: str = "",
                    mic: MediaStreamTrack | None = None) -> tuple[int, dict[str, Any]]:
        """Offer, post, answer. Returns (HTTP status, body); on 201 the audio starts flowing."""
        assert self.http is not None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if mic is not None:
            self.pc.addTransceiver(mic, direction="sendrecv")
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers candidates
        body: dict[str, Any] = {"mode": mode, "reason": reason,
                                "sdp": self.pc.localDescription.sdp}
        if agent_id is None:
            body["spot_check"] = True
        else:
            body["agent_id"] = agent_id
        async with self.http.post(f"{self.base_url}/api/monitor", json=body) as r:
            status, answer = r.status, await r.json()
        if status != 201:
            await self.pc.close()
            return status, answer
        self.session = answer["session"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return status, answer

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
        try:
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    self.heard.frames.append(out.to_ndarray().reshape(-1, 2))
                    self.heard.arrivals.append(time.time())
        except MediaStreamError:
            pass
        finally:
            self.track_ended.set()

    async def wait_heard(self, seconds: float, timeout: float) -> None:
        """Wait until `seconds` of audio have arrived."""
        async with asyncio.timeout(timeout):
            while sum(len(f) for f in self.heard.frames) < seconds * RATE:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def stop(self) -> int:
        assert self.http is not None
        status = 0
        if self.session is not None:
            async with self.http.delete(f"{self.base_url}/api/monitor/{self.session['id']}") as r:
                status = r.status
        await self.close()
        return status

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
        if self.http is not None:
            await self.http.close()
            self.http = None
