"""Listening over WebRTC: the hub's CPU per listener, mouth-to-ear delay, a stalled listener.

    python -m bench.listen
    python -m bench.listen --calls 6 --levels 0,1,5 --window 20 --repeats 3

Processes: the hub (`floorwatch serve`, alone on the hub core, ICE host candidates on 127.0.0.1);
an **agents** process streaming `--calls` stereo calls (half at 8 kHz, half at 16 kHz) with the
agent client (`HubConnection`, paced in real time by `agent_client.stream.paced_chunks` in 100 ms
chunks); **listener** processes of aiortc supervisors (`bench.listener.Listener`), driven by JSON
lines on their stdin. One listener process holds a single listener, the one the stall test
freezes with SIGSTOP; the others are spread over two processes.

The calls are the ordinary conversation of `bench.audio` (synthetic voices webrtcvad hears as
speech) with a 40 ms 3 kHz tone burst every 2 s at known sample offsets, placed anywhere within a
chunk. Each listener finds the bursts in what it decodes (Opus, 48 kHz) and notes when the
decoded frame holding the onset arrived (`Heard.arrivals`).

1. **Cost per listener.** Each repeat steps through `--levels` listeners per call (0 is the
   baseline, measured in the same repeat) and reads the hub's CPU time (/proc/PID/stat) over a
   `--window`. Per listener = (cores with − cores at 0) / listeners. The first listener of a call
   also starts the call's Opus encoder; later ones only get the same packets, so the first level
   above 0 against the next shows the encode-once fan-out: (first − additional) is the per-call
   encoding cost (cross-checked in-process: `CallTap` encoding a call with no sockets).
   Listeners are counted as connected and as served (decoded audio seconds per second). Other
   work on a shared machine can hold the hub off its core for seconds (its agents then time out
   and the sessions end): such a window (`starved`) is measured again after everyone rejoins.
2. **Mouth-to-ear delay.** A live capture has a chunk only once its last sample was captured, so
   a sample `s` of chunk `i` was *spoken* at `due(i) − chunk + (s − start(i)) / rate`, where
   `due(i)` is paced_chunks' schedule (slip of the sender counts against the delay). Delay =
   arrival of the decoded frame holding the onset − that; i.e. the delay measured from the send
   schedule plus the chunk (100 ms). aiortc hands out decoded frames with no playout clock (its
   receiver only holds 4 packets back); a browser plays from an adaptive jitter buffer. So also
   given: the delay at a player with a fixed playout delay that has 95 % of the frames (within
   5 s) in time — each chunk's five Opus packets leave the hub together, so such a player waits
   for the last frame of a chunk.
3. **A stalled listener.** With every call at the top level, the process holding one of call 0's
   listeners is stopped (SIGSTOP) for `--stall-s`: the hub's analysis lag (/metrics), its CPU and
   the other listeners' delays before, during and after; what the hub logged for the session.
4. **Chromium** (`--chromium auto`: as root, with `unshare` and /usr/bin/chromium): headless
   Chromium ignores loopback ICE candidates, so a second hub, the agents and Chromium run in a
   private network namespace with a veth pair; one listener per rate, played by a media element
   and tapped by WebAudio; getStats (jitterBufferDelay / jitterBufferEmittedCount, target delay,
   concealment) and the bursts' delay at the audio output (`getOutputTimestamp`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.audio import LOAD_LOOP_S, LOAD_SPANS, render
from bench.common import (
    RESULTS_DIR,
    add_run_options,
    command_line,
    cores,
    machine,
    pct,
    prepare,
    publish,
    python_env,
    read_json,
    restored_process_state,
    taskset,
    wait_quiet,
    write_json,
)
from bench.netns import HUB_IP, make_veth_network
from bench.sampler import Sampler
from bench.servers import SUPERVISOR, ServerProcess, hub_process, provision, wait_exit

CHUNK_S = 0.1
RATES = (8000, 16000)
BURST_HZ = 3000.0
BURST_S = 0.04
BURST_LEVEL = 12000
BURST_FIRST_S = 1.0
BURST_PERIOD_S = 2.0
EAR_RATE = 48000  # what aiortc decodes to
EAR_WINDOW = 240  # 5 ms: 15 periods of the burst tone at 48 kHz
EAR_THRESHOLD = 0.35 * BURST_LEVEL
EAR_HOLDOFF = int(0.5 * EAR_RATE)
PLAYER_SPAN_S = 5.0
PLAYER_PCT = 95
REPLY = "@@listen "
JOIN_AT_ONCE = 3  # per listener process
REPLY_LIMIT = 2**26  # a report line holds every onset and per-second count of its listeners
STARVED_WAITING = 1 / 3
STARVED_GAP_S = 2.0
PASSWORD = SUPERVISOR[1]


# -- the calls --------------------------------------------------------------------------------


def burst_offsets(rate: int, count: int) -> np.ndarray:
    """Sample offsets of the bursts: one every 2 s, phase stepping 37 ms within the chunk."""
    k = np.arange(count)
    seconds = BURST_FIRST_S + k * BURST_PERIOD_S + (k * 0.037) % CHUNK_S
    return np.round(seconds * rate).astype(np.int64)


def burst(rate: int) -> np.ndarray:
    n = round(BURST_S * rate)
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.002)
    return (BURST_LEVEL * ramp * np.sin(2 * np.pi * BURST_HZ * t)).astype(np.int16)


class BurstyCall:
    """A long call read chunk by chunk: the conversation loop, with a burst on both channels at
    each of `burst_offsets`. Sliceable like the array `paced_chunks` expects, without holding the
    whole call in memory."""

    def __init__(self, rate: int, seconds: float, seed: int) -> None:
        self.rate = rate
        self._loop = render(LOAD_SPANS, LOAD_LOOP_S, rate, seed)
        self._len = round(seconds * rate)
        self._burst = burst(rate)
        self.bursts = burst_offsets(rate, int(seconds / BURST_PERIOD_S) + 1)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, where: slice) -> np.ndarray:
        a, b = where.start or 0, min(where.stop, self._len)
        out = np.take(self._loop, np.arange(a, b) % len(self._loop), axis=0)
        n = len(self._burst)
        for s in self.bursts[(self.bursts < b) & (self.bursts + n > a)]:
            lo, hi = max(a, s), min(b, s + n)
            out[lo - a:hi - a, :] = self._burst[lo - s:hi - s, None]
        return out


async def _stream(spec: dict[str, Any], call: dict[str, Any], stop: asyncio.Event,
                  seed: int) -> dict[str, Any]:
    from agent_client.connection import HubConnection
    from agent_client.stream import paced_chunks
    from server.ingest_protocol import encode_audio

    rate = call["rate"]
    audio = BurstyCall(rate, spec["seconds"], seed)
    conn = HubConnection(spec["url"], call["agent_id"], call["token"])
    conn.start()
    await conn.wait_connected(timeout=20)
    await conn.send_status("ready")
    await conn.send_status("on_call", call={"id": f"listen-{call['agent_id']}",
                                            "direction": "inbound", "customer": "",
                                            "sample_rate": rate})
    loop = asyncio.get_running_loop()
    t0_wall = t0_loop = 0.0
    slips: list[float] = []
    sent = dropped = 0
    async for offset, chunk in paced_chunks(audio, rate, CHUNK_S, 1.0):  # type: ignore[arg-type]
        index = offset // round(rate * CHUNK_S)
        if index == 0:  # the schedule's origin: paced_chunks yields chunk 0 without sleeping
            t0_wall, t0_loop = time.time(), loop.time()
        else:
            slips.append(loop.time() - (t0_loop + index * CHUNK_S))
        if stop.is_set():
            break
        if chunk is None or not await conn.send_audio(encode_audio(index, offset, chunk)):
            dropped += 1
        else:
            sent += 1
    await conn.send_status("wrap_up")
    await conn.drain(timeout=5)
    await conn.close()
    return {**{k: call[k] for k in ("agent_id", "rate")}, "t0_wall": t0_wall, "sent": sent,
            "dropped": dropped, "slip_ms": pct(slips, (50, 99), scale=1000)}


async def agents_role(spec: dict[str, Any]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    calls = await asyncio.gather(*(_stream(spec, call, stop, 7 + 2 * i)
                                   for i, call in enumerate(spec["calls"])))
    write_json(Path(spec["out"]), {"calls": calls})


# -- the listeners ----------------------------------------------------------------------------


class Ear:
    """Finds the bursts in what one listener decodes: 5 ms windows projected on the burst tone;
    an onset is the first loud window after at least 0.5 s of quiet ones. Also keeps, per decoded
    frame, its arrival minus its place in the stream (the listener's jitter)."""

    def __init__(self) -> None:
        self._mono = np.zeros(0)
        self._arrived = np.zeros(0)
        self._frame_at = np.zeros(0)  # per sample: its frame's start, seconds into the stream
        self._stream_s = 0.0
        self._position = 0  # samples looked at so far
        self._last_loud = -EAR_HOLDOFF
        t = np.arange(EAR_WINDOW) / EAR_RATE
        self._basis = np.stack([np.cos(2 * np.pi * BURST_HZ * t),
                                np.sin(2 * np.pi * BURST_HZ * t)], axis=1)
        self.jitter: list[tuple[float, float]] = []  # (arrival, arrival − stream position)
        self.max_gap_s = 0.0
        self.per_second: collections.Counter[int] = collections.Counter()  # samples by second

    def feed(self, frames: Sequence[np.ndarray], arrivals: Sequence[float]
             ) -> list[tuple[float, float]]:
        """New decoded frames → onsets found, as (arrival, frame's stream position) pairs."""
        if not frames:
            return []
        mono, arrived, frame_at = [self._mono], [self._arrived], [self._frame_at]
        for frame, arrival in zip(frames, arrivals, strict=True):
            n = len(frame)
            if self.jitter:
                self.max_gap_s = max(self.max_gap_s, arrival - self.jitter[-1][0])
            self.jitter.append((arrival, arrival - self._stream_s))
            self.per_second[int(arrival)] += n
            mono.append(frame.mean(axis=1))
            arrived.append(np.full(n, arrival))
            frame_at.append(np.full(n, self._stream_s))
            self._stream_s += n / EAR_RATE
        x, t_arr, t_pos = (np.concatenate(a) for a in (mono, arrived, frame_at))
        whole = len(x) // EAR_WINDOW * EAR_WINDOW
        amp = 2 * np.hypot(*(x[:whole].reshape(-1, EAR_WINDOW) @ self._basis).T) / EAR_WINDOW
        onsets = []
        for w in np.flatnonzero(amp > EAR_THRESHOLD):
            at = self._position + w * EAR_WINDOW
            if at - self._last_loud >= EAR_HOLDOFF:
                onsets.append((float(t_arr[w * EAR_WINDOW]), float(t_pos[w * EAR_WINDOW])))
            self._last_loud = at
        self._position += whole
        self._mono, self._arrived, self._frame_at = x[whole:], t_arr[whole:], t_pos[whole:]
        return onsets

    @property
    def received_s(self) -> float:
        return self._stream_s

    def played(self, arrival: float, stream_s: float) -> float:
        """When a player with a fixed playout delay plays this frame: the delay is the one that
        has 95 % of the frames within 5 s either side in time (late ones would be concealed),
        roughly what a browser's adaptive jitter buffer aims at."""
        near = [j for t, j in self.jitter if abs(t - arrival) <= PLAYER_SPAN_S]
        return stream_s + float(np.percentile(near, PLAYER_PCT))


@dataclass
class Member:
    agent_id: str
    user: str
    listener: Any
    ear: Ear = field(default_factory=Ear)
    onsets: list[tuple[float, float]] = field(default_factory=list)

    def listen(self) -> None:
        from bench.listener import Heard

        heard, self.listener.heard = self.listener.heard, Heard()
        self.onsets.extend(self.ear.feed(heard.frames, heard.arrivals))

    def report(self) -> dict[str, Any]:
        out = {"agent_id": self.agent_id, "user": self.user,
               "onsets": [(a, self.ear.played(a, s)) for a, s in self.onsets],
               "received_s": round(self.ear.received_s, 2),
               "max_gap_s": round(self.ear.max_gap_s, 3),
               "per_second": dict(self.ear.per_second)}
        self.onsets = []
        self.ear.per_second.clear()
        return out


class Crew:
    """The listeners of one process, driven by commands on stdin."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.members: dict[tuple[str, str], Member] = {}
        self.gone: list[Member] = []
        self._signed_in: dict[str, Any] = {}  # user -> its signed-in HTTP session
        self._signing_in = asyncio.Lock()

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["cmd"] == "join":
            return await self.join(cmd["who"])
        if cmd["cmd"] == "leave":
            return await self.leave()
        if cmd["cmd"] == "report":
            self.listen()
            members = [*self.gone, *self.members.values()]
            self.gone = []
            return {"members": [m.report() for m in members]}
        return {}

    async def join(self, who: list[list[str]]) -> dict[str, Any]:
        """Start listening; a few at a time, each user signed in once per process (a sign-in
        is a deliberately slow scrypt on the hub: dozens at once would stall a one-core hub)."""
        gate = asyncio.Semaphore(JOIN_AT_ONCE)

        async def one(agent_id: str, user: str) -> str | None:
            async with gate:
                for attempt in range(3):
                    listener = await self._listener(user)
                    status, body = await listener.start(agent_id)
                    if status == 201:
                        break
                    await self._drop(listener)
                    if status != 409 or attempt == 2:  # 409: e.g. the agent is reconnecting
                        return f"{user} on {agent_id}: {status} {body.get('error')}"
                    await asyncio.sleep(2.0)
                self.members[(agent_id, user)] = Member(agent_id, user, listener)
                await listener.wait_heard(0.3, timeout=20)
                return None

        results = await asyncio.gather(*(one(a, u) for a, u in who), return_exceptions=True)
        errors = [repr(r) if isinstance(r, BaseException) else r for r in results]
        return {"joined": len(self.members), "errors": [e for e in errors if e]}

    async def _listener(self, user: str) -> Any:
        from bench.listener import Listener

        async with self._signing_in:
            if user not in self._signed_in:
                first = Listener(self.base_url, user, PASSWORD)
                await first.login()
                self._signed_in[user] = first.http
        listener = Listener(self.base_url, user, PASSWORD)
        listener.http = self._signed_in[user]
        return listener

    @staticmethod
    async def _drop(listener: Any) -> int:
        """Stop a listener (if it has a session) and close its peer, keeping the sign-in."""
        status = 0
        if listener.session is not None:
            async with listener.http.delete(
                    f"{listener.base_url}/api/monitor/{listener.session['id']}") as r:
                status = r.status
        listener.http = None  # the user's signed-in session outlives this listener
        await listener.close()
        return status

    async def leave(self) -> dict[str, Any]:
        self.listen()
        members = list(self.members.values())
        self.members.clear()
        statuses = await asyncio.gather(*(self._drop(m.listener) for m in members),
                                        return_exceptions=True)
        self.gone.extend(members)
        return {"left": len(members), "statuses": [repr(s) for s in statuses]}

    async def close(self) -> None:
        await self.leave()
        for http in self._signed_in.values():
            await http.close()

    def listen(self) -> None:
        for member in self.members.values():
            member.listen()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        ticker = asyncio.create_task(self._tick(), name="ears")
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "quit":
                    break
                reply = await self.handle(cmd)
                sys.stdout.write(REPLY + json.dumps(reply) + "\n")
                sys.stdout.flush()
        finally:
            ticker.cancel()
            await self.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.listen()


async def listeners_role(spec: dict[str, Any]) -> None:
    from server.webrtc import restrict_host_addresses

    # aioice never offers 127.0.0.1 on its own; the hub offers only that
    restrict_host_addresses(("127.0.0.1",))
    await Crew(spec["base_url"]).run()


class Worker:
    """A listener process and its command pipe."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log

    @classmethod
    async def start(cls, name: str, hub: ServerProcess, workdir: Path) -> Worker:
        spec = write_json(workdir / f"{name}.spec.json", {"role": "listeners",
                                                          "base_url": hub.url})
        log = workdir / f"{name}.log"
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *taskset([sys.executable, "-m", "bench.listen", "--role", str(spec)],
                         cores()[1]),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                env=python_env(), cwd=os.fspath(workdir), limit=REPLY_LIMIT)
        return cls(name, proc, log)

    async def ask(self, cmd: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"listener process {self.name} exited; see {self.log}")
                if line.startswith(REPLY):
                    return json.loads(line[len(REPLY):])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                self.proc.send_signal(signal.SIGCONT)
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                await self.proc.stdin.drain()
        await wait_exit([self.proc], time.monotonic() + 15)


# -- Chromium --------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required",
                 "--disable-features=WebRtcHideLocalIpsWithMdns"]

# A recvonly peer per call, played by a (muted) media element and tapped by WebAudio: a
# ScriptProcessor finds the bursts (the same projection on the tone as `Ear`) and notes when the
# block holding the onset reaches the output (its playbackTime, mapped to the wall clock by
# getOutputTimestamp) and when the page saw it.
PAGE_LISTEN = """async ({agent, hz, threshold}) => {
  window.bench = window.bench || {};
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const track = new Promise(ok => { pc.ontrack = e => ok(new MediaStream([e.track])); });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(ok => {
    if (pc.iceGatheringState === 'complete') return ok();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && ok();
  });
  const r = await fetch('/api/monitor', {method: 'POST', headers: {'Content-Type':
    'application/json'}, body: JSON.stringify({agent_id: agent, mode: 'listen',
    sdp: pc.localDescription.sdp})});
  const body = await r.json();
  if (r.status !== 201) throw new Error(JSON.stringify(body));
  await pc.setRemoteDescription({type: 'answer', sdp: body.sdp});
  const stream = await track;
  const el = new Audio(); el.srcObject = stream; el.muted = true; el.play().catch(() => {});
  const ctx = new AudioContext();
  const rate = ctx.sampleRate, proc = ctx.createScriptProcessor(256, 2, 1);
  const me = {pc, ctx, el, proc, session: body.session.id, onsets: [], rate};
  let seen = 0, loud = -1e12;
  proc.onaudioprocess = e => {
    const a = e.inputBuffer.getChannelData(0), b = e.inputBuffer.getChannelData(1);
    let c = 0, s = 0;
    for (let i = 0; i < a.length; i++) {
      const x = (a[i] + b[i]) / 2, ph = 2 * Math.PI * hz * (seen + i) / rate;
      c += x * Math.cos(ph); s += x * Math.sin(ph);
    }
    if (2 * Math.hypot(c, s) / a.length > threshold) {
      if (seen - loud >= rate / 2) {
        const ts = ctx.getOutputTimestamp();
        me.onsets.push({page: performance.timeOrigin + performance.now(),
                        out: performance.timeOrigin + ts.performanceTime
                             + (e.playbackTime - ts.contextTime) * 1000});
      }
      loud = seen;
    }
    seen += a.length;
  };
  ctx.createMediaStreamSource(stream).connect(proc);
  proc.connect(ctx.destination);
  await ctx.resume();
  window.bench[agent] = me;
  return {session: body.session.id, rate, baseLatency: ctx.baseLatency,
          outputLatency: ctx.outputLatency};
}"""

PAGE_STATS = """async (agent) => {
  const me = window.bench[agent];
  const out = {onsets: me.onsets.splice(0), outputLatency: me.ctx.outputLatency};
  (await me.pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      for (const k of ['jitterBufferDelay', 'jitterBufferEmittedCount', 'jitterBufferTargetDelay',
                       'jitterBufferMinimumDelay', 'packetsReceived', 'packetsLost', 'jitter',
                       'concealedSamples', 'totalSamplesReceived']) out[k] = s[k];
    }
  });
  return out;
}"""


async def chromium_role(spec: dict[str, Any]) -> None:
    """Inside a private network namespace (headless Chromium ignores loopback candidates): a
    hub offering its media on one end of a veth pair, the agents, and Chromium listening."""
    from playwright.async_api import async_playwright

    make_veth_network()
    workdir = Path(spec["workdir"])
    tokens = provision(workdir / "data", len(spec["rates"]))
    calls = [{"agent_id": a, "token": t, "rate": r}
             for (a, t), r in zip(tokens.items(), spec["rates"], strict=True)]
    hub = hub_process(workdir, gc_log=False, settings={
        "server.host": "0.0.0.0", "kws.enabled": "false",
        "listen.ice_host_addresses": f'["{HUB_IP}"]'})
    await hub.start()
    agents_out = workdir / "agents.json"
    agents = await _spawn_agents(hub, calls, spec["seconds"] + 60, workdir, agents_out)
    found: dict[str, Any] = {"calls": {}}
    try:
        await _wait_calls(hub, len(calls))
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            base = f"http://{HUB_IP}:{hub.port}"
            await page.goto(f"{base}/healthz")
            await page.evaluate("async ([u, p]) => { const r = await fetch('/login', {method: "
                                "'POST', headers: {'Content-Type': 'application/json'}, body: "
                                "JSON.stringify({username: u, password: p})}); "
                                "if (!r.ok) throw new Error('login ' + r.status); }",
                                list(SUPERVISOR))
            for call in calls:
                found["calls"][call["agent_id"]] = {"rate": call["rate"], "start": (
                    await page.evaluate(PAGE_LISTEN, {"agent": call["agent_id"], "hz": BURST_HZ,
                                                      "threshold": EAR_THRESHOLD / 32768}))}
            await asyncio.sleep(spec["settle_s"])
            for call in calls:  # the window starts: stats so far, onsets so far discarded
                found["calls"][call["agent_id"]]["before"] = await page.evaluate(
                    PAGE_STATS, call["agent_id"])
            await asyncio.sleep(spec["seconds"])
            for call in calls:
                found["calls"][call["agent_id"]]["after"] = await page.evaluate(
                    PAGE_STATS, call["agent_id"])
            await browser.close()
    finally:
        agents.send_signal(signal.SIGTERM)
        await wait_exit([agents], time.monotonic() + 15)
        await hub.stop()
    streamed = read_json(agents_out)["calls"] if agents_out.exists() else []
    write_json(Path(spec["out"]), {"found": found, "streamed": streamed})


def chromium_figures(raw: dict[str, Any]) -> dict[str, Any]:
    by_agent = {c["agent_id"]: c for c in raw["streamed"]}
    out_rows, page_rows, per_call = [], [], {}
    for agent, got in raw["found"]["calls"].items():
        call = by_agent.get(agent)
        a, b = got.get("before", {}), got.get("after", {})
        if call is None or not b:
            continue
        # (seen by the page, at the output) in place of (arrival, at a player)
        onsets = [[o["page"] / 1000, o["out"] / 1000] for o in b["onsets"]]
        for _, page_delay, out_delay in _delays(onsets, call):
            page_rows.append(page_delay)
            out_rows.append(out_delay)
        emitted = b["jitterBufferEmittedCount"] - a["jitterBufferEmittedCount"]
        per_call[agent] = {
            "rate": call["rate"],
            "jitter_buffer_ms": round(1000 * (b["jitterBufferDelay"] - a["jitterBufferDelay"])
                                      / emitted, 1) if emitted else None,
            "jitter_buffer_target_ms": _ms_per(b, a, "jitterBufferTargetDelay", emitted),
            "jitter_buffer_minimum_ms": _ms_per(b, a, "jitterBufferMinimumDelay", emitted),
            "packets_received": b["packetsReceived"] - a["packetsReceived"],
            "packets_lost": b.get("packetsLost", 0) - a.get("packetsLost", 0),
            "concealed_share": round((b["concealedSamples"] - a["concealedSamples"])
                                     / max(1, b["totalSamplesReceived"]
                                           - a["totalSamplesReceived"]), 4),
            "output_latency_s": b.get("outputLatency"),
        }
    return {"per_call": per_call,
            "mouth_to_output_ms": pct(out_rows, (50, 95, 99), scale=1000),
            "mouth_to_page_ms": pct(page_rows, (50, 95, 99), scale=1000)}


def _ms_per(b: dict[str, Any], a: dict[str, Any], key: str, emitted: int) -> float | None:
    if key not in b or key not in a or not emitted:
        return None
    return round(1000 * (b[key] - a[key]) / emitted, 1)


def _can_unshare() -> bool:
    tools = all(shutil.which(t) is not None for t in ("unshare", "ip"))
    return os.geteuid() == 0 and tools and Path(CHROMIUM).exists()


async def run_chromium(args: argparse.Namespace, workdir: Path) -> dict[str, Any] | None:
    """The Chromium phase, in `unshare -n` ({"skipped": why} when it cannot run here)."""
    if not _can_unshare():
        return {"skipped": "needs root, unshare, ip and /usr/bin/chromium"}
    out = workdir / "chromium.json"
    spec = write_json(workdir / "chromium.spec.json", {
        "role": "chromium", "workdir": str(workdir), "out": str(out), "rates": list(RATES),
        "seconds": args.chromium_s, "settle_s": args.settle})
    with (workdir / "chromium.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            "unshare", "-n", sys.executable, "-m", "bench.listen", "--role", str(spec),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=python_env(),
            cwd=os.fspath(workdir))
    await wait_exit([proc], time.monotonic() + args.chromium_s + 120)
    if proc.returncode != 0 or not out.exists():
        tail = (workdir / "chromium.log").read_text(errors="replace")[-1500:]
        return {"failed": f"exit {proc.returncode}", "log_tail": tail}
    return chromium_figures(read_json(out))


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Window:
    label: str
    level: int  # listeners per call
    repeat: int
    mono: tuple[float, float]
    wall: tuple[float, float]
    attempt: int = 0


async def measure(label: str, level: int, repeat: int, seconds: float) -> Window:
    m0, w0 = time.monotonic(), time.time()
    await asyncio.sleep(seconds)
    return Window(label, level, repeat, (m0, time.monotonic()), (w0, time.time()))


def encode_cost(rate: int, seconds: float = 30.0) -> float:
    """% of a core one call's Opus encoding takes in this process (CallTap, no sockets)."""
    from server.call_audio import CallTap

    audio = BurstyCall(rate, seconds, 7)
    tap = CallTap(rate)
    tap.open()
    step = round(rate * CHUNK_S)
    chunks = [(o, audio[o:o + step]) for o in range(0, len(audio), step)]
    t = time.process_time()
    for offset, pcm in chunks:
        tap.push(offset, pcm)
    return round(100 * (time.process_time() - t) / seconds, 3)


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return Path("/proc/loadavg").read_text().strip()


def plan_seconds(args: argparse.Namespace) -> float:
    """How long the calls last: every window and the stall test measured as often as they may
    be (the calls must outlive the run; the agents stop when told)."""
    per_level = args.quiet_wait + args.settle + args.window + 30.0
    stall = 2 * args.stall_around + args.stall_s + args.settle + 30 if args.stall_s else 0
    return 60 + (1 + args.retries) * (args.repeats * len(args.levels) * per_level + stall)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None  # SIGTERM: stop the servers and clients as on an error
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    environment = prepare(args.nice, measure_background=args.quiet_wait > 0)
    environment["uptime_before"] = load_average()
    results_dir = args.results or RESULTS_DIR
    workdir = results_dir / "work" / "listen"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    tokens = provision(workdir / "data", args.calls)
    top = max(args.levels)
    users = [f"sup-{j}" for j in range(1, top + 1)]
    _add_supervisors(workdir / "data", users)
    calls = [{"agent_id": a, "token": t, "rate": RATES[i % 2] if args.rate == 0 else args.rate}
             for i, (a, t) in enumerate(tokens.items())]
    # settings are TOML values in the environment ("false", not Python's "False")
    hub = hub_process(workdir, gc_log=False,
                      settings={"listen.ice_host_addresses": '["127.0.0.1"]',
                                "kws.enabled": "false"})
    await hub.start()
    agents_out = workdir / "agents.json"
    seconds = plan_seconds(args)
    agents = await _spawn_agents(hub, calls, seconds, workdir, agents_out)
    workers: list[Worker] = []
    windows: list[Window] = []
    stall: dict[str, Any] | None = None
    try:
        workers = [await Worker.start(n, hub, workdir) for n in ("ears-a", "ears-b", "stalled")]
        sampler = Sampler(hub, lambda: [p.pid for p in [agents, *(w.proc for w in workers)]
                                        if p.returncode is None])
        sampling = asyncio.create_task(sampler.run_until(time.monotonic() + seconds + 60),
                                       name="sampler")
        await _wait_calls(hub, len(calls))
        async def relevel(have: int, want: int, fresh: bool = False) -> int:
            """From `have` to `want` listeners per call; `fresh`: everyone leaves first (a
            hub held off its core long enough loses its agents, and their sessions end)."""
            if fresh or want < have:
                await _ask_all(workers, {"cmd": "leave"})
                await _wait_calls(hub, len(calls))
                have = 0
            if want > have:
                await _join(workers, calls, users, have, want)
            return want

        for repeat in range(args.repeats):
            level_now = 0
            for level in args.levels:
                for attempt in range(1 + args.retries):
                    await wait_quiet(max_wait_s=args.quiet_wait)
                    level_now = await relevel(level_now, level, fresh=attempt > 0)
                    await asyncio.sleep(args.settle)
                    window = await measure(f"r{repeat} {level}/call", level, repeat,
                                           args.window)
                    window.attempt = attempt
                    _print_window(window, sampler, len(calls))
                    if not starved(window, sampler):
                        break
                    print("    the hub was held off its core: again", flush=True)
                windows.append(window)
            last = repeat == args.repeats - 1
            if last and args.stall_s and level_now > 1:
                for attempt in range(1 + args.retries):
                    if attempt:
                        level_now = await relevel(level_now, level_now, fresh=True)
                        await asyncio.sleep(args.settle)
                    stall = await _stall(workers, sampler, level_now, args)
                    if not any(p["starved"] for p in stall["phases"].values()):
                        break
                    print("    the hub was held off its core: stalling again", flush=True)
            await _ask_all(workers, {"cmd": "leave"})
        reports = await _ask_all(workers, {"cmd": "report"})
        sampling.cancel()
    finally:
        for worker in workers:
            await worker.stop()
        if agents.returncode is None:
            agents.send_signal(signal.SIGTERM)
        await wait_exit([agents], time.monotonic() + 15)
        await hub.stop()
    chromium = None
    if args.chromium != "no":
        print("  Chromium in a private network namespace ...", flush=True)
        chromium = await run_chromium(args, workdir / "chromium")
    environment["uptime_after"] = load_average()
    streamed = read_json(agents_out)["calls"] if agents_out.exists() else []
    members = [m for r in reports for m in r["members"]]
    result = {
        "benchmark": "listen",
        "command": command_line("bench.listen"),
        "machine": machine(),
        "environment": environment,
        "params": {"calls": len(calls), "rates": sorted({c["rate"] for c in calls}),
                   "levels": args.levels, "window_s": args.window, "settle_s": args.settle,
                   "repeats": args.repeats, "chunk_s": CHUNK_S, "stall_s": args.stall_s,
                   "burst": {"hz": BURST_HZ, "s": BURST_S, "every_s": BURST_PERIOD_S},
                   "listen_settings": _listen_settings()},
        "calls": streamed,
        "cpu": cpu_figures(windows, sampler, len(calls), members),
        "delay": delay_figures(windows, members, streamed, stall),
        "stall": stall,
        "hub_sessions": _hub_sessions(hub.log_path),
        "listeners": [{k: m[k] for k in ("agent_id", "user", "received_s", "max_gap_s")}
                      | {"onsets": len(m["onsets"])} for m in members],
        "encode_in_process_pct": {str(r): encode_cost(r) for r in RATES},
        "chromium": chromium,
    }
    if stall is not None:
        stall.update(_stall_delays(stall, members, streamed))
        stall["hub_sessions_call0"] = _last_sessions(result["hub_sessions"]["rows"],
                                                     streamed[0]["agent_id"] if streamed else "")
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _listen_settings() -> dict[str, Any]:
    """The hub's listening settings in force (its defaults; only the ICE addresses are set)."""
    import dataclasses

    from server.config import ListenSettings

    return {k: v for k, v in dataclasses.asdict(ListenSettings()).items()
            if k in ("opus_bitrate", "opus_complexity", "listener_buffer_ms",
                     "max_listeners_per_call")}


def _add_supervisors(data_dir: Path, users: list[str]) -> None:
    from server.store import Store

    store = Store(data_dir / "floorwatch.db")
    try:
        for user in users:
            store.add_user(user, PASSWORD, role="supervisor")
    finally:
        store.close()


async def _spawn_agents(hub: ServerProcess, calls: list[dict[str, Any]], seconds: float,
                        workdir: Path, out: Path) -> asyncio.subprocess.Process:
    spec = write_json(workdir / "agents.spec.json", {"role": "agents", "url": hub.ws_url,
                                                     "calls": calls, "seconds": seconds,
                                                     "out": str(out)})
    with (workdir / "agents.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            *taskset([sys.executable, "-m", "bench.listen", "--role", str(spec)], cores()[1]),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=python_env(),
            cwd=os.fspath(workdir))


async def _wait_calls(hub: ServerProcess, calls: int, timeout: float = 60.0) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while (await hub.metrics(http)).get("floorwatch_calls_active", 0) < calls:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)


async def _ask_all(workers: list[Worker], cmd: dict[str, Any]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.ask(cmd) for w in workers)))


def _worker_for(workers: list[Worker], call_index: int, user_index: int, top: int) -> Worker:
    """Call 0's last listener is the one that will be stalled; the rest alternate by call."""
    if call_index == 0 and user_index == top - 1 and top > 1:
        return workers[2]
    return workers[call_index % 2]


async def _join(workers: list[Worker], calls: list[dict[str, Any]], users: list[str],
                have: int, want: int) -> None:
    top = len(users)
    who: dict[str, list[list[str]]] = {w.name: [] for w in workers}
    for ci, call in enumerate(calls):
        for ui in range(have, want):
            who[_worker_for(workers, ci, ui, top).name].append([call["agent_id"], users[ui]])
    replies = await asyncio.gather(*(w.ask({"cmd": "join", "who": who[w.name]}, timeout=180)
                                     for w in workers if who[w.name]))
    errors = [e for r in replies for e in r["errors"]]
    if errors:
        raise RuntimeError(f"listeners could not join: {errors[:5]}")


async def _stall(workers: list[Worker], sampler: Sampler, level: int,
                 args: argparse.Namespace) -> dict[str, Any]:
    stalled = workers[2].proc
    before = await measure("stall before", level, -1, args.stall_around)
    stalled.send_signal(signal.SIGSTOP)
    try:
        during = await measure("stall during", level, -1, args.stall_s)
    finally:
        stalled.send_signal(signal.SIGCONT)
    after = await measure("stall after", level, -1, args.stall_around)
    phases = {}
    for name, w in (("before", before), ("during", during), ("after", after)):
        phases[name] = {"wall": w.wall, "hub_cores": sampler.cores(w.mono)["server"],
                        **health(w, sampler), "starved": starved(w, sampler)}
    print(f"  stall: analysis lag p50/max before {_lag(phases['before'])}, during "
          f"{_lag(phases['during'])}, after {_lag(phases['after'])} ms", flush=True)
    return {"stall_s": args.stall_s, "level": level, "phases": phases}


def _lag(phase: dict[str, Any]) -> str:
    lag = phase["analysis_lag_ms"]
    return f"{lag['p50']}/{lag['max']}"


def health(w: Window, sampler: Sampler) -> dict[str, Any]:
    """Was the hub itself held up in the window: the share of it the hub spent runnable but
    waiting for its core, the longest time /metrics went unanswered, chunks analysed per s."""
    times = [t for t, _ in sampler.metrics if w.mono[0] <= t <= w.mono[1]]
    edges = [w.mono[0], *times, w.mono[1]]
    chunks = sampler.rate("floorwatch_audio_chunks_total", w.mono)
    return {"hub_waiting": sampler.cores(w.mono)["server_waiting"],
            "metrics_gap_s": round(max(b - a for a, b in itertools.pairwise(edges)), 2),
            "chunks_per_s": None if chunks is None else round(chunks, 1),
            "analysis_lag_ms": sampler.gauge("floorwatch_analysis_lag_seconds", w.mono,
                                             scale=1000)}


def starved(w: Window, sampler: Sampler) -> bool:
    """The hub spent over a third of the window waiting for its core, or left /metrics
    unanswered for over 2 s: other work on the machine, not listening, decided the figures."""
    h = health(w, sampler)
    return (h["hub_waiting"] or 0) > STARVED_WAITING or h["metrics_gap_s"] > STARVED_GAP_S


def _print_window(w: Window, sampler: Sampler, calls: int) -> None:
    c, h = sampler.cores(w.mono), health(w, sampler)
    print(f"  {w.label}: {w.level * calls} listeners, hub {c['server']} cores (waiting "
          f"{c['server_waiting']}), clients {c['clients']}, other {c['other']}; analysis lag "
          f"p50 {h['analysis_lag_ms']['p50']} ms; /metrics silent at most {h['metrics_gap_s']} "
          f"s; {h['chunks_per_s']} chunks/s", flush=True)


# -- figures ----------------------------------------------------------------------------------


def served(w: Window, members: list[dict[str, Any]]) -> float | None:
    """Listeners actually served in the window: decoded audio seconds per second, all
    listeners together (a listener cut off, or a hub held off its core, serves less)."""
    lo, hi = math.ceil(w.wall[0]), math.floor(w.wall[1])
    if hi <= lo:
        return None
    samples = sum(n for m in members for sec, n in m["per_second"].items() if lo <= int(sec) < hi)
    return round(samples / EAR_RATE / (hi - lo), 2)


def cpu_figures(windows: list[Window], sampler: Sampler, calls: int,
                members: list[dict[str, Any]]) -> dict[str, Any]:
    """Per repeat: hub cores at each level; per listener = (cores − baseline) / listeners, with
    listeners counted as connected and as served (audio decoded per second)."""
    by_repeat: dict[int, dict[int, Window]] = {}
    for w in windows:
        by_repeat.setdefault(w.repeat, {})[w.level] = w
    levels = sorted({w.level for w in windows})
    above = [lv for lv in levels if lv > 0]
    per_repeat = []
    for repeat, ws in sorted(by_repeat.items()):
        cores_ = {lv: sampler.cores(w.mono) for lv, w in ws.items()}
        hub = {lv: c["server"] for lv, c in cores_.items()}
        row: dict[str, Any] = {
            "repeat": repeat, "hub_cores": hub,
            "served": {lv: served(w, members) if lv else 0.0 for lv, w in ws.items()},
            "other_cores": {lv: c["other"] for lv, c in cores_.items()},
            "client_cores": {lv: c["clients"] for lv, c in cores_.items()},
            "attempts": {lv: w.attempt + 1 for lv, w in ws.items()},
            "health": {lv: health(w, sampler) for lv, w in ws.items()}}
        base = hub.get(0)
        if base is not None:
            row["per_listener_pct"] = {lv: round(100 * (hub[lv] - base) / (lv * calls), 3)
                                       for lv in above if hub.get(lv) is not None}
            row["per_served_listener_pct"] = {
                lv: round(100 * (hub[lv] - base) / row["served"][lv], 3)
                for lv in above if hub.get(lv) is not None and row["served"].get(lv)}
            if len(above) >= 2 and all(hub.get(lv) is not None and row["served"].get(lv)
                                       for lv in above[:2]):
                first, nxt = above[:2]
                s1, s2 = row["served"][first], row["served"][nxt]
                row["first_listener_pct"] = round(100 * (hub[first] - base) / s1, 3)
                if s2 - s1 > 0.5:
                    row["additional_listener_pct"] = round(100 * (hub[nxt] - hub[first])
                                                           / (s2 - s1), 3)
        per_repeat.append(row)

    def median(key: str, level: int | None = None) -> float | None:
        vals = [(r.get(key) if level is None else r.get(key, {}).get(level))
                for r in per_repeat]
        vals = [v for v in vals if v is not None]
        return round(float(np.median(vals)), 3) if vals else None

    out: dict[str, Any] = {
        "per_repeat": per_repeat,
        "median_hub_cores": {lv: median("hub_cores", lv) for lv in levels},
        "median_served": {lv: median("served", lv) for lv in levels},
        "median_per_listener_pct": {lv: median("per_listener_pct", lv) for lv in above},
        "median_per_served_listener_pct": {lv: median("per_served_listener_pct", lv)
                                           for lv in above},
        "median_first_listener_pct": median("first_listener_pct"),
        "median_additional_listener_pct": median("additional_listener_pct"),
    }
    first, more = out["median_first_listener_pct"], out["median_additional_listener_pct"]
    out["encode_per_call_pct"] = None if first is None or more is None else round(first - more, 3)
    return out


def _delays(onsets: list[list[float]], call: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(arrival wall time, mouth-to-ear s at arrival, at a player) per onset."""
    rate, t0 = call["rate"], call["t0_wall"]
    spoken = t0 + burst_offsets(rate, 100000) / rate - CHUNK_S  # see the module's docstring
    out = []
    for arrival, played in onsets:
        k = int(np.searchsorted(spoken, arrival)) - 1
        if k < 0:
            continue
        out.append((arrival, arrival - spoken[k], played - spoken[k]))
    return out


def _members_delays(members: list[dict[str, Any]], streamed: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    by_agent = {c["agent_id"]: c for c in streamed}
    rows = []
    for m in members:
        call = by_agent.get(m["agent_id"])
        if call is None:
            continue
        for arrival, ear, play in _delays(m["onsets"], call):
            rows.append({"agent_id": m["agent_id"], "user": m["user"], "rate": call["rate"],
                         "t": arrival, "ear": ear, "play": play})
    return rows


def _stats(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return pct([r[key] for r in rows], (50, 95, 99), scale=1000)


def delay_figures(windows: list[Window], members: list[dict[str, Any]],
                  streamed: list[dict[str, Any]], stall: dict[str, Any] | None
                  ) -> dict[str, Any]:
    rows = _members_delays(members, streamed)
    out: dict[str, Any] = {"by_level": {}, "by_rate": {}}
    inside = []
    for level in sorted({w.level for w in windows if w.level > 0}):
        spans = [w.wall for w in windows if w.level == level]
        sel = [r for r in rows if any(a <= r["t"] <= b for a, b in spans)]
        inside += sel
        out["by_level"][level] = {"mouth_to_ear_ms": _stats(sel, "ear"),
                                  "at_player_ms": _stats(sel, "play")}
    for rate in sorted({r["rate"] for r in inside}):
        sel = [r for r in inside if r["rate"] == rate]
        out["by_rate"][rate] = {"mouth_to_ear_ms": _stats(sel, "ear"),
                                "at_player_ms": _stats(sel, "play")}
    out["all"] = {"mouth_to_ear_ms": _stats(inside, "ear"), "at_player_ms": _stats(inside, "play"),
                  "from_schedule_ms": pct([(r["ear"] - CHUNK_S) for r in inside], (50, 95),
                                          scale=1000)}
    out["onsets_matched"] = {
        "matched": len(rows), "found": sum(len(m["onsets"]) for m in members),
        "bursts_heard": round(sum(m["received_s"] for m in members) / BURST_PERIOD_S)}
    return out


def _stall_delays(stall: dict[str, Any], members: list[dict[str, Any]],
                  streamed: list[dict[str, Any]]) -> dict[str, Any]:
    rows = _members_delays(members, streamed)
    stalled_user = f"sup-{stall['level']}"
    call0 = streamed[0]["agent_id"] if streamed else None
    out: dict[str, Any] = {}
    for phase in stall["phases"].values():
        a, b = phase["wall"]
        sel = [r for r in rows if a <= r["t"] <= b]
        others = [r for r in sel if not (r["agent_id"] == call0 and r["user"] == stalled_user)]
        same_call = [r for r in others if r["agent_id"] == call0]
        stalled = [r for r in sel if r["agent_id"] == call0 and r["user"] == stalled_user]
        phase["others_ms"] = _stats(others, "ear")
        phase["same_call_others_ms"] = _stats(same_call, "ear")
        phase["stalled_ms"] = _stats(stalled, "ear")
        phase["stalled_at_player_ms"] = _stats(stalled, "play")
    gap = [m["max_gap_s"] for m in members if m["agent_id"] == call0 and m["user"] == stalled_user]
    out["stalled_max_gap_s"] = max(gap) if gap else None
    return out


def _last_sessions(rows: list[dict[str, Any]], agent_id: str) -> dict[str, Any]:
    """The hub's record of the last session of each user on one call: {user: [sent, skipped]}."""
    return {r["user"]: [r["sent"], r["skipped"]] for r in rows if r["agent_id"] == agent_id}


SESSION_LINE = re.compile(r"(\S+) stopped to listen agent (\S+) \((.*?); (\d+) packets sent, "
                          r"(\d+) skipped\)")


def _hub_sessions(log: Path) -> dict[str, Any]:
    """What the hub logged when each session ended: packets sent and skipped."""
    rows = []
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if m := SESSION_LINE.search(line):
                rows.append({"user": m[1], "agent_id": m[2], "reason": m[3], "sent": int(m[4]),
                             "skipped": int(m[5])})
    sent, skipped = sum(r["sent"] for r in rows), sum(r["skipped"] for r in rows)
    return {"sessions": len(rows), "sent_total": sent, "skipped_total": skipped,
            "skipped_share": round(skipped / (sent + skipped), 4) if sent + skipped else None,
            "rows": rows}


# -- report -----------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    p, cpu, delay = result["params"], result["cpu"], result["delay"]
    calls = p["calls"]
    lines = [f"#### Listening: {calls} calls ({', '.join(f'{r // 1000} kHz' for r in p['rates'])}"
             f"; Opus {_opus(p)}), hub CPU over {p['window_s']:g} s windows, {p['repeats']} "
             "repeats", "",
             "| listeners per call | listeners | served (median) | hub cores (median) | % of a "
             "core per listener | per served listener |", "|---:|---:|---:|---:|---:|---:|"]
    for level, cores_ in cpu["median_hub_cores"].items():
        per = cpu["median_per_listener_pct"].get(level, "baseline")
        per_served = cpu["median_per_served_listener_pct"].get(level, "–")
        lines.append(f"| {level} | {int(level) * calls} | {cpu['median_served'].get(level)} | "
                     f"{cores_} | {per} | {per_served} |")
    retried = sum(a > 1 for r in cpu["per_repeat"] for a in r["attempts"].values())
    lines += ["", f"- Windows measured again because the hub was held off its core by other "
              f"work: {retried}."]
    if cpu.get("encode_per_call_pct") is not None:
        lines += [f"- First listener of a call: **{cpu['median_first_listener_pct']} %** of a "
                  f"core; each additional listener on the same call: "
                  f"**{cpu['median_additional_listener_pct']} %** (per served listener); the "
                  f"difference, the call's Opus encoding: {cpu['encode_per_call_pct']} % "
                  "(in-process, no sockets: "
                  + ", ".join(f"{int(r) // 1000} kHz {v} %"
                              for r, v in result["encode_in_process_pct"].items()) + ")."]
    lines += ["", "| mouth-to-ear (ms) | n | p50 | p95 | max | at a player p50 / p95 |",
              "|---|---:|---:|---:|---:|---:|"]

    def row(name: str, d: dict[str, Any]) -> str:
        e, pl = d["mouth_to_ear_ms"], d["at_player_ms"]
        return (f"| {name} | {e['n']} | {e['p50']} | {e['p95']} | {e['max']} | "
                f"{pl['p50']} / {pl['p95']} |")

    lines.append(row("all", delay["all"]))
    for level, d in delay["by_level"].items():
        lines.append(row(f"{level} listener(s) per call", d))
    for rate, d in delay["by_rate"].items():
        lines.append(row(f"{int(rate) // 1000} kHz calls", d))
    stall = result.get("stall")
    if stall:
        ph = stall["phases"]
        lines += ["", f"Stalled listener (its process stopped {stall['stall_s']:g} s, "
                  f"{stall['level']} listeners per call):", "",
                  "| phase | analysis lag p50 / max ms | hub cores (waiting) | others' delay p50 / "
                  "max ms "
                  "| same call's others p50 / max | stalled listener p50 / max |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name in ("before", "during", "after"):
            x = ph[name]
            lines.append(
                f"| {name} | {x['analysis_lag_ms']['p50']} / {x['analysis_lag_ms']['max']} | "
                f"{x['hub_cores']} ({x['hub_waiting']}) | {x['others_ms']['p50']} / "
                f"{x['others_ms']['max']} | "
                f"{x['same_call_others_ms']['p50']} / {x['same_call_others_ms']['max']} | "
                f"{x['stalled_ms']['p50']} / {x['stalled_ms']['max']} |")
        hs = result["hub_sessions"]
        lines += ["", f"- The hub's own record: {hs['sessions']} sessions ended, "
                  f"{hs['skipped_total']} of {hs['sent_total'] + hs['skipped_total']} packets "
                  f"skipped in all; on the stalled call [sent, skipped] per listener: "
                  f"{stall.get('hub_sessions_call0')}; the stalled listener's longest gap "
                  f"between decoded frames: {stall.get('stalled_max_gap_s')} s."]
    lines += _chromium_markdown(result.get("chromium"))
    env = result["environment"]
    lines += ["", f"- Load: before `{env.get('uptime_before')}`; after "
              f"`{env.get('uptime_after')}`."]
    return "\n".join(lines) + "\n"


def _opus(params: dict[str, Any]) -> str:
    ls = params.get("listen_settings", {})
    return (f"{ls.get('opus_bitrate', 32000) // 1000} kbit/s, complexity "
            f"{ls.get('opus_complexity', 'libopus default')}")


def _chromium_markdown(ch: dict[str, Any] | None) -> list[str]:
    if not ch:
        return []
    if "per_call" not in ch:
        return ["", f"- Chromium: {ch.get('skipped') or ch.get('failed')}."]
    lines = ["", "Chromium (headless, in a private network namespace over a veth pair; one "
             "listener per call; getStats over the window):", "",
             "| call | jitter buffer ms (delay / emitted) | target ms | packets | lost | "
             "concealed |", "|---|---:|---:|---:|---:|---:|"]
    for agent, c in ch["per_call"].items():
        lines.append(f"| {agent} ({int(c['rate']) // 1000} kHz) | {c['jitter_buffer_ms']} | "
                     f"{c['jitter_buffer_target_ms']} | {c['packets_received']} | "
                     f"{c['packets_lost']} | {100 * c['concealed_share']:.1f} % |")
    o, pg = ch["mouth_to_output_ms"], ch["mouth_to_page_ms"]
    lines += ["", f"- Mouth-to-ear in Chromium, at the audio output (WebAudio playbackTime "
              f"through getOutputTimestamp): p50 {o['p50']} ms, p95 {o['p95']} ms, max "
              f"{o['max']} ms (n={o['n']}); seen by the page's script: p50 {pg['p50']} ms, p95 "
              f"{pg['p95']} ms."]
    return lines


# -- command line -----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.listen",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=6, help="calls streaming (half 8, half 16 kHz)")
    p.add_argument("--rate", type=int, default=0, choices=(0, 8000, 16000),
                   help="all calls at this rate (0: alternate 8 and 16 kHz)")
    p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 5],
                   help="listeners per call, in order; 0 first (the baseline); at most 5")
    p.add_argument("--window", type=float, default=20.0, help="seconds of each CPU window")
    p.add_argument("--settle", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--retries", type=int, default=2,
                   help="measure a window again (up to this many times) when the hub was held "
                        "off its core by other work on the machine")
    p.add_argument("--stall-s", type=float, default=5.0, help="0 skips the stall test")
    p.add_argument("--stall-around", type=float, default=8.0,
                   help="seconds measured before and after the stall")
    p.add_argument("--chromium", choices=("auto", "no"), default="auto",
                   help="also listen in Chromium, in a private network namespace (needs root "
                        "and unshare; skipped otherwise)")
    p.add_argument("--chromium-s", type=float, default=30.0)
    add_run_options(p, spawn_s=2.0, quiet_wait_s=5.0, tree=False)
    p.add_argument("--role", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if args.role is not None:  # a client process of this benchmark
        spec = read_json(args.role)
        role = {"agents": agents_role, "listeners": listeners_role,
                "chromium": chromium_role}[spec["role"]]
        asyncio.run(role(spec))
        return {}
    if args.levels[0] != 0 or max(args.levels) > 5 or sorted(args.levels) != args.levels:
        parser().error("--levels: increasing, starting at 0, at most 5")
    with restored_process_state():
        result = asyncio.run(run(args))
    publish("listen", result, markdown(result), args.results)
    return result


if __name__ == "__main__":
    main()
