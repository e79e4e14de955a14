"""The wall page under load: frame times and long tasks in headless Chromium with a big floor.

    python -m bench.wall_frames --tiles 500 --rate 3 --seconds 20

A real hub (`python -m server.cli serve`, fresh data directory) and `--tiles` real agent
connections speaking ingest protocol v1, one WebSocket each (in this process, on aiohttp). Every
agent sends a status `--rate` times a second — agents on a call flip on_call ⇄ hold, the others
wrap-up → break → ready — so each tile gets up to `--rate` patches a second (the hub coalesces
them to one per tile per `walls.patch_interval_ms`, 250 ms by default). `--alerts` policy phrases
a second (transcript lines) keep the alerts panel busy too. A status change moves the tile in the
default risk order (time in state), so this is the wall's worst case: every update can reorder.

Debian's Chromium (headless, `--disable-gpu`: software compositing) opens the wall at 1920×1080
in desk mode (`--mode wall` for TV mode), signs in, and measures in the page:

* frame times: the deltas between consecutive `requestAnimationFrame` callbacks (a loop that
  asks for every frame, so a frame the page could not produce in time shows as a long delta);
* long tasks: `PerformanceObserver('longtask')`, main-thread tasks over 50 ms — their share of
  the phase's wall time and the longest; long animation frames too;
* the grid's own work: time per `flush` (the patches applied in one animation frame) and per
  `tick` (the 1 s timer update), and the patches actually received per tile per second;
* from /proc, the share of the time the renderer's main thread ran and the share it was
  runnable but waiting for a CPU (other work on the machine, or Chromium's own processes), and
  from that the main thread's CPU per patch received;
* from a Chromium trace (category `toplevel`), the main thread's tasks in thread CPU time:
  CPU ms per second, p99, longest, tasks over 16.7 ms and over 50 ms per second. Frame times and
  long tasks are wall time and grow when the thread waits for a CPU; these do not, so they
  compare two versions of the page fairly on a busy shared machine.

`--baseline REF` also measures the wall's files of an earlier commit (web/ as of REF, from git)
in the same run: same hub, same agents, same browser; phase by phase, the baseline's page and
then the working tree's, each freshly opened in a browser context of its own (phase names get
a `baseline` / `current` prefix), so that the two versions of a phase run minutes apart at
most, under about the same load. The hub serves whichever version was copied into its web
directory last.

Phases, in this order, on the same page and hub, each `--seconds` long after a 3 s settle:

1. `idle`: every tile shown, no updates (agents connected, timers ticking): the baseline for the
   same DOM;
2. `busy`: every tile updating at `--rate`, risk order (the default);
3. `busy-by-name`: the same, sorted by name (updates no longer move tiles: the cost of patching
   alone, as for who-is-speaking and talk-ratio changes);
4. `page-only`: the agents pause and the same kind of patches, at the full `--rate`, are made in
   the page and handed to the grid in one batch per 250 ms as the socket would (skip with
   `--no-page-feed`): what the page costs at the full rate even when the hub cannot deliver it
   on this machine — read the hub backlog and the received rate of phases 2–3 first;
5. `small`: all but `--small-tiles` agents log out; those keep updating at `--rate` — the same
   page with a small floor (24 tiles by default), a second baseline.

Placement: with two or more cores, the hub and the agents run on the first half of the cores and
Chromium on the rest (a supervisor's screen is a different machine from the hub); `--no-pin` lets
everything share. Priority is raised to nice -10 like the other benchmarks (`--nice 0` not to).
The machine may be shared: the work of other processes before the start, the load average and
the CPU used by the hub, by Chromium and by the agents are recorded per phase, as is the hub's
backlog (status messages not yet acknowledged: the hub could not keep up and the page got fewer
updates than offered). Results go to `bench/results/wall_frames-<time>.json` (and
`wall_frames-latest.json`); a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    RESULTS_DIR,
    background_cores,
    boost_priority,
    command_line,
    cpu_seconds,
    machine,
    machine_busy_s,
    restored_process_state,
    save_result,
    wait_quiet,
)
from server.demo import TEAMS, demo_names
from server.store import Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SUPERVISOR = ("bench-sup", "bench-password-1")
PHRASES = ["these are guaranteed returns", "it is risk free", "you cannot lose",
           "double your money", "稳赚不赔", "零风险"]
SETTLE_S = 3.0

# -- in the page --------------------------------------------------------------------------------

INSTRUMENT = """
() => {
  const g = window.floorwatch.grid;
  if (!window.__fwWrapped) {  // wrap once; the arrays are reset per phase
    window.__fwWrapped = true;
    const flush = g.flush.bind(g);
    g.flush = () => {
      const t = performance.now(); flush(); window.__fw.flush.push(performance.now() - t);
    };
    const tick = g.tick.bind(g);
    g.tick = () => {
      const t = performance.now(); tick(); window.__fw.tick.push(performance.now() - t);
    };
    const frame = (ts) => {
      const P = window.__fw;
      if (P.last !== null) P.frames.push(ts - P.last);
      P.last = ts;
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__fw.longtasks.push(e.duration);
    }).observe({ type: 'longtask', buffered: false });
    if (PerformanceObserver.supportedEntryTypes.includes('long-animation-frame')) {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.__fw.loaf.push([e.duration, e.blockingDuration]);
      }).observe({ type: 'long-animation-frame', buffered: false });
    }
  }
  window.__fw = { t0: performance.now(), last: null, frames: [], longtasks: [], loaf: [],
                  flush: [], tick: [], patches0: g.stats.patches,
                  reconnects0: window.floorwatch.socket.reconnects };
}
"""

# The same kind of change as a status flip, generated in the page at `rate` per tile per second
# and handed to the grid in one batch per `interval_ms`, the way the socket hands over a `tiles`
# message: the page's cost at the full rate whatever the hub can deliver on this machine.
PAGE_FEED = """
([rate, intervalMs]) => {
  const g = window.floorwatch.grid;
  const ids = [...g.records.keys()];
  const acc = ids.map((_, i) => (i % 97) / 97);
  const step = ids.map((_, i) => i % 6);  // not in lockstep: a mix of states
  const reasons = ['lunch', 'coffee', 'training'];
  window.__fwFeed = setInterval(() => {
    const since = new Date(window.floorwatch.clock.now()).toISOString();
    const patches = [];
    ids.forEach((id, i) => {
      acc[i] += rate * intervalMs / 1000;
      if (acc[i] < 1) return;
      acc[i] -= 1;
      const rec = g.records.get(id);
      if (!rec) return;
      step[i] += 1;
      let state;
      if (rec.call_id) state = step[i] % 2 ? 'hold' : 'on_call';
      else state = ['wrap_up', 'break', 'ready'][step[i] % 3];
      patches.push({ agent_id: id, state, state_since: since,
                     reason: state === 'break' ? reasons[step[i] % 3] : null });
    });
    g.enqueuePatches(patches, []);
  }, intervalMs);
}
"""

REPORT = """
() => {
  const P = window.__fw;
  const g = window.floorwatch.grid;
  const seconds = (performance.now() - P.t0) / 1000;
  return {
    seconds, frames: P.frames, longtasks: P.longtasks, loaf: P.loaf, flush: P.flush, tick: P.tick,
    patches: g.stats.patches - P.patches0,
    reconnects: window.floorwatch.socket.reconnects - P.reconnects0,
    conn: document.getElementById('conn').dataset.state,
    tiles: document.querySelectorAll('#grid .tile').length,
    density: document.getElementById('grid').dataset.density,
    scroll: document.getElementById('grid').dataset.scroll,
    unacked: Number(document.getElementById('unacked-count').dataset.count),
  };
}
"""


# -- numbers ------------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def summarise(raw: dict[str, Any], cpu: dict[str, float], load: dict[str, Any],
              tiles_sending: int) -> dict[str, Any]:
    frames, longtasks, seconds = raw["frames"], raw["longtasks"], raw["seconds"]
    loaf = raw["loaf"]
    over = sum(max(0.0, d - 50.0) for d in longtasks)
    return {
        "tiles": raw["tiles"], "tiles_updating": tiles_sending, "density": raw["density"],
        "scroll": raw["scroll"] == "true", "seconds": r(seconds, 2),
        "patches_per_tile_s": r(raw["patches"] / seconds / max(1, raw["tiles"]), 2),
        "patches_per_s": r(raw["patches"] / seconds),
        "fps": r(len(frames) / seconds),
        "frame_ms": {"n": len(frames), "p50": r(quantile(frames, 0.5)),
                     "p95": r(quantile(frames, 0.95)), "p99": r(quantile(frames, 0.99)),
                     "max": r(max(frames, default=None))},
        "frames_over_33ms_pct": r(100 * sum(f > 33.4 for f in frames) / max(1, len(frames)), 2),
        "frames_over_50ms_pct": r(100 * sum(f > 50.0 for f in frames) / max(1, len(frames)), 2),
        "longtasks": {"n": len(longtasks), "total_ms": r(sum(longtasks)),
                      "share_pct": r(100 * sum(longtasks) / (seconds * 1000), 2),
                      "blocking_ms_per_s": r(over / seconds, 1),
                      "max_ms": r(max(longtasks, default=0.0))},
        "long_animation_frames": {"n": len(loaf),
                                  "blocking_ms_per_s": r(sum(b for _, b in loaf) / seconds, 1),
                                  "max_ms": r(max((d for d, _ in loaf), default=0.0))},
        "flush_us_per_patch": r(1000 * sum(raw["flush"]) / raw["patches"], 1)
        if raw["patches"] else None,
        "flush_ms": {"n": len(raw["flush"]), "p50": r(quantile(raw["flush"], 0.5), 2),
                     "p95": r(quantile(raw["flush"], 0.95), 2),
                     "max": r(max(raw["flush"], default=None), 2)},
        "tick_ms": {"n": len(raw["tick"]), "p50": r(quantile(raw["tick"], 0.5), 2),
                    "max": r(max(raw["tick"], default=None), 2)},
        "wall_reconnects": raw["reconnects"], "conn": raw["conn"], "unacked": raw["unacked"],
        "cpu_pct": cpu,
        # the renderer main thread's CPU per patch received: unlike frame times, this hardly
        # depends on how long the thread waited for a CPU (a busy shared machine)
        "renderer_cpu_us_per_patch": r(10_000 * cpu["renderer_main_running"] * seconds
                                       / raw["patches"]) if raw["patches"] else None,
        **load,
    }


# -- processes ----------------------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    """Every process below `root` (from /proc; no third-party modules)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def chromium_cpu_s() -> float:
    """CPU seconds of the Chromium processes this benchmark started (living ones)."""
    total = 0.0
    for pid in descendants(os.getpid()):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("chrom"):
            total += cpu_seconds(pid)
    return total


def renderer_main_threads() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the main threads of the
    Chromium renderers this benchmark started (/proc/PID/schedstat of each renderer process)."""
    ran = waited = 0.0
    for pid in descendants(os.getpid()):
        try:
            if b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/schedstat").read_text().split()
        except OSError:
            continue
        ran += int(fields[0]) / 1e9
        waited += int(fields[1]) / 1e9
    return ran, waited


class CpuMeter:
    def __init__(self, hub_pid: int) -> None:
        self.hub_pid = hub_pid
        self.start()

    def read(self) -> dict[str, float]:
        own = os.times()
        ran, waited = renderer_main_threads()
        return {"hub": cpu_seconds(self.hub_pid), "chromium": chromium_cpu_s(),
                "agents": own.user + own.system, "machine": machine_busy_s(),
                "renderer_main_running": ran, "renderer_main_waiting": waited,
                "t": time.monotonic()}

    def start(self) -> None:
        self.t0 = self.read()

    def stop(self) -> dict[str, float]:
        t1 = self.read()
        span = t1["t"] - self.t0["t"]
        return {k: round(100 * (t1[k] - self.t0[k]) / span, 1)
                for k in ("hub", "chromium", "agents", "machine", "renderer_main_running",
                          "renderer_main_waiting")}


def placement(pin: bool) -> tuple[list[int], list[int]]:
    """(CPUs for the hub and the agents, CPUs for Chromium). With two or more cores and `pin`,
    the browser gets cores of its own, as a supervisor's PC or TV would be a separate machine
    from the hub; otherwise everything shares every core."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return cpus, cpus
    half = len(cpus) // 2
    return cpus[:half], cpus[half:]


@contextlib.contextmanager
def affinity(cpus: list[int]) -> Iterator[None]:
    """Run the block (and whatever it starts) on `cpus`; this process's affinity is restored."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def start_hub(workdir: Path, port: int, web_dir: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "FLOORWATCH_SERVER__PORT": str(port),
           "FLOORWATCH_SERVER__WEB_DIR": str(web_dir),
           "FLOORWATCH_SERVER__DATA_DIR": str(workdir / "data"),
           "FLOORWATCH_SERVER__LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
    with (workdir / "hub.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", env=env, stdout=log, stderr=log,
            stdin=asyncio.subprocess.DEVNULL)
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"hub exited with {proc.returncode}; see {workdir}/hub.log")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return proc
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("the hub did not answer /healthz in 30 s")


def provision(data_dir: Path, count: int) -> dict[str, str]:
    store = Store(data_dir / "floorwatch.db")
    try:
        store.add_user(*SUPERVISOR, role="supervisor", display_name="Bench Supervisor")
        return {f"a-{i:04d}": store.add_agent(f"a-{i:04d}", name, TEAMS[i % len(TEAMS)])
                for i, name in enumerate(demo_names(count), 1)}
    finally:
        store.close()


# -- the floor ----------------------------------------------------------------------------------


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Agent:
    """One agent desktop speaking ingest protocol v1 (docs/protocol.md §1) over aiohttp's
    WebSocket client: hello, welcome, numbered status/transcript messages, acks. Not
    `HubConnection`: the `websockets` library under it costs several times more CPU per message,
    and 1,500 messages a second from one process would measure the generator, not the wall."""

    def __init__(self, agent_id: str, token: str, on_call: bool) -> None:
        self.agent_id, self.token, self.on_call = agent_id, token, on_call
        self.session = uuid.uuid4().hex
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.seq = self.acked = 0
        self.step = self.calls = self.sent = 0

    @property
    def call_id(self) -> str:
        return f"{self.agent_id}-c{self.calls}"

    @property
    def pending(self) -> int:
        return self.seq - self.acked

    async def connect(self, http: aiohttp.ClientSession, url: str) -> None:
        self.ws = await http.ws_connect(url, max_msg_size=2**20, heartbeat=None)
        await self.ws.send_str(json.dumps({
            "type": "hello", "protocol": 1, "agent_id": self.agent_id, "token": self.token,
            "session": self.session, "client": "bench-wall-frames"}))
        welcome = json.loads((await self.ws.receive(timeout=60)).data)
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"{self.agent_id}: hub answered {welcome}")
        self.seq = self.acked = welcome["last_seq"]
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
                if message.get("type") == "ack":
                    self.acked = max(self.acked, message["seq"])

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        self.seq += 1
        await self.ws.send_str(json.dumps({**message, "seq": self.seq}, ensure_ascii=False))

    async def status(self, state: str, **extra: Any) -> None:
        await self.send({"type": "status", "at": utc_now_iso(), "state": state, **extra})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


@dataclass
class Floor:
    """The agents, and which of them are sending now."""

    agents: list[Agent]
    rate: float
    sending: set[str] = field(default_factory=set)
    offsets: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    skipped: int = 0

    def call(self, agent: Agent) -> dict[str, Any]:
        return {"id": agent.call_id, "direction": random.choice(["inbound", "outbound"]),
                "customer": "", "sample_rate": 8000}

    async def first_state(self, agent: Agent) -> None:
        await agent.status("logged_in")
        if agent.on_call:
            await agent.status("on_call", call=self.call(agent))
        else:
            await agent.status("ready")

    async def flip(self, agent: Agent) -> None:
        """One tile change: a call goes on hold and back, the others cycle their states."""
        agent.step += 1
        if agent.on_call:
            await agent.status("hold" if agent.step % 2 else "on_call")
        else:
            state = ("wrap_up", "break", "ready")[agent.step % 3]
            await agent.status(state, **({"reason": random.choice(
                ["lunch", "coffee", "training"])} if state == "break" else {}))
        agent.sent += 1

    async def run(self, agent: Agent, stop: asyncio.Event) -> None:
        """`rate` changes a second while the agent is sending; a change that comes due while
        the previous one is still being sent is skipped (counted), never sent late in a burst."""
        loop = asyncio.get_running_loop()
        period = 1 / self.rate
        due = loop.time() + random.uniform(0, period)
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - loop.time()))
            if agent.agent_id in self.sending:
                try:
                    await self.flip(agent)
                except Exception:
                    self.errors += 1
            due += period
            now = loop.time()
            if due < now:
                missed = int((now - due) / period) + 1
                if agent.agent_id in self.sending:
                    self.skipped += missed
                due += missed * period

    async def alerts(self, per_s: float, stop: asyncio.Event) -> None:
        if per_s <= 0:
            return
        while not stop.is_set():
            await asyncio.sleep(1 / per_s)
            talking = [a for a in self.agents if a.on_call and a.agent_id in self.sending
                       and a.step % 2 == 0]
            if talking:
                agent = random.choice(talking)
                offset = self.offsets.get(agent.call_id, 0.0) + 1.0
                self.offsets[agent.call_id] = offset
                await agent.send({"type": "transcript", "call_id": agent.call_id,
                                  "offset_s": offset, "speaker": "agent",
                                  "text": random.choice(PHRASES)})


async def connect_floor(http: aiohttp.ClientSession, ws_url: str, tokens: dict[str, str],
                        rate: float) -> Floor:
    sem = asyncio.Semaphore(50)

    async def one(index: int, agent_id: str, token: str) -> Agent:
        agent = Agent(agent_id, token, on_call=index % 4 != 3)  # three in four on a call
        agent.step = index // 4  # not in lockstep: a mix of states at any moment
        async with sem:
            await agent.connect(http, ws_url)
        return agent

    agents = await asyncio.gather(*(one(i, a, t) for i, (a, t) in enumerate(tokens.items())))
    floor = Floor(list(agents), rate)
    for agent in floor.agents:
        await floor.first_state(agent)
    return floor


# -- the run ------------------------------------------------------------------------------------


def task_cpu(trace: bytes, seconds: float) -> dict[str, Any]:
    """The page's main-thread tasks in thread CPU time (`tdur` of the top-level task events,
    category `toplevel`, of the renderers' main threads): unlike frame times and long tasks,
    which are wall time, these do not grow when the thread waits for a CPU on a busy machine."""
    events = json.loads(trace)["traceEvents"]
    main = {(e["pid"], e["tid"]) for e in events
            if e.get("ph") == "M" and e.get("name") == "thread_name"
            and e.get("args", {}).get("name") == "CrRendererMain"}
    tasks = [e.get("tdur", e.get("dur", 0)) / 1000 for e in events
             if e.get("ph") == "X" and e.get("name") == "ThreadControllerImpl::RunTask"
             and (e.get("pid"), e.get("tid")) in main]
    return {"n": len(tasks), "cpu_ms_per_s": r(sum(tasks) / seconds),
            "p99": r(quantile(tasks, 0.99), 2), "max": r(max(tasks, default=0.0)),
            "over_16ms_per_s": r(sum(t > 16.7 for t in tasks) / seconds, 2),
            "over_50ms_per_s": r(sum(t > 50 for t in tasks) / seconds, 2)}


async def measure(page: Any, seconds: float, meter: CpuMeter, floor: Floor,
                  page_rate: float | None = None) -> dict[str, Any]:
    await asyncio.sleep(SETTLE_S)
    await page.evaluate(INSTRUMENT)
    browser = page.context.browser
    await browser.start_tracing(page=page, categories=["toplevel"])
    meter.start()
    load_before = load_average()
    sent_before = sum(a.sent for a in floor.agents)
    await asyncio.sleep(seconds)
    raw = await page.evaluate(REPORT)
    cpu = meter.stop()
    tasks = task_cpu(await browser.stop_tracing(), raw["seconds"])
    extra = {"loadavg_before": load_before, "loadavg_after": load_average(),
             # status messages offered per tile per second, and those the hub had not yet
             # acknowledged at the end (a growing backlog: the hub could not keep up)
             "offered_per_tile_s": page_rate if page_rate is not None else round(
                 (sum(a.sent for a in floor.agents) - sent_before) / raw["seconds"]
                 / max(1, len(floor.sending)), 2),
             "hub_backlog": sum(a.pending for a in floor.agents)}
    phase = summarise(raw, cpu, extra, raw["tiles"] if page_rate else len(floor.sending))
    phase["task_cpu_ms"] = tasks
    print(f"  {phase['tiles']} tiles: {phase['patches_per_tile_s']} patches/tile/s "
          f"(offered {phase['offered_per_tile_s']}, backlog {phase['hub_backlog']}), "
          f"{phase['fps']} fps, frame p95 {phase['frame_ms']['p95']} ms, long tasks "
          f"{phase['longtasks']['share_pct']} %, main-thread task CPU {tasks}, "
          f"CPU {phase['cpu_pct']}", flush=True)
    return phase


REPO = Path(__file__).resolve().parent.parent


def install_web(source: Path, web_dir: Path) -> None:
    """Put a version of the wall's files where the hub serves them (the hub reads static files
    per request, so the next page load gets this version)."""
    for old in web_dir.iterdir():
        old.unlink()
    for f in source.iterdir():
        if f.is_file():
            shutil.copy2(f, web_dir / f.name)


def web_versions(args: argparse.Namespace, workdir: Path) -> dict[str, Path]:
    """name -> directory of wall files: `current` (the working tree's web/), and with
    `--baseline REF` first `baseline` (web/ as of that commit, from git)."""
    versions: dict[str, Path] = {}
    if args.baseline:
        out = workdir / "web-baseline"
        out.mkdir()
        files = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only",
                                f"{args.baseline}:web"], check=True, capture_output=True,
                               text=True).stdout.split()
        for name in files:
            blob = subprocess.run(["git", "-C", str(REPO), "show", f"{args.baseline}:web/{name}"],
                                  check=True, capture_output=True).stdout
            (out / name).write_bytes(blob)
        versions["baseline"] = out
    versions["current"] = REPO / "web"
    return versions


async def drained(floor: Floor, limit_s: float = 90.0) -> None:
    """Wait until the hub has acknowledged what the agents sent (a backlog from a busy phase
    would otherwise spill into the next measurement)."""
    deadline = time.monotonic() + limit_s
    for _ in range(int(limit_s * 2)):  # polled: the acks arrive on 500 sockets
        if sum(a.pending for a in floor.agents) == 0 or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


async def open_wall(browser: Any, base: str, args: argparse.Namespace, tiles: int,
                    errors: list[str]) -> Any:
    width, height = (int(x) for x in args.viewport.split("x"))
    context = await browser.new_context(viewport={"width": width, "height": height},
                                        locale="en-US")
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/login")
    await page.fill("#username", SUPERVISOR[0])
    await page.fill("#password", SUPERVISOR[1])
    await page.click("#login-submit")
    await page.wait_for_url(f"{base}/")
    if args.mode == "wall":
        await page.goto(f"{base}/?mode=wall")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=30_000)
    await page.wait_for_function(
        "(n) => document.querySelectorAll('#grid .tile').length === n", arg=tiles,
        timeout=180_000)
    return page


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    workdir = Path(tempfile.mkdtemp(prefix="wall-frames-"))
    port = args.port or _free_port()
    base = f"http://127.0.0.1:{port}"
    tokens = provision(workdir / "data", args.tiles)
    versions = web_versions(args, workdir)
    web_dir = workdir / "web"
    web_dir.mkdir()
    install_web(versions["current"], web_dir)
    server_cpus, browser_cpus = placement(args.pin)
    os.sched_setaffinity(0, server_cpus)  # the hub inherits it; the agents run in this process
    hub = await start_hub(workdir, port, web_dir)
    stop = asyncio.Event()
    floor: Floor | None = None
    tasks: list[asyncio.Task[None]] = []
    results: dict[str, Any] = {}
    errors: list[str] = []
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    def key(version: str, phase: str) -> str:
        return phase if len(versions) == 1 else f"{version} {phase}"

    try:
        t_connect = time.monotonic()
        floor = await connect_floor(http, f"ws://127.0.0.1:{port}/ingest/v1", tokens,
                                    args.rate)
        print(f"{len(floor.agents)} agents connected in {time.monotonic() - t_connect:.1f} s",
              flush=True)
        tasks = [asyncio.create_task(floor.run(a, stop)) for a in floor.agents]
        tasks.append(asyncio.create_task(floor.alerts(args.alerts, stop)))
        with affinity(browser_cpus):  # the Playwright driver and Chromium inherit it
            pw = await async_playwright().start()
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            meter = CpuMeter(hub.pid)
            all_ids = {a.agent_id for a in floor.agents}
            # Phase by phase, each version in turn with a page of its own: the versions of one
            # phase are measured minutes apart at most, under about the same load.
            phases = [("idle", f"{args.tiles} tiles, no updates", set(), "risk", False),
                      ("busy", f"{args.tiles} tiles at {args.rate:g} updates/s each, sorted by "
                               f"risk", all_ids, "risk", False),
                      ("busy-by-name", "the same, sorted by name", all_ids, "name", False)]
            if args.page_feed:
                phases.append(("page-only", f"{args.tiles} tiles at {args.rate:g} updates/s "
                               f"each, made in the page (no hub traffic), sorted by risk",
                               set(), "risk", True))
            for phase, what, sending, sort, feed in phases:
                for version, source in versions.items():
                    floor.sending = set(sending)
                    if not sending:
                        await drained(floor)
                    install_web(source, web_dir)
                    page = await open_wall(browser, base, args, args.tiles, errors)
                    if sort != "risk":
                        await page.select_option("#sort", sort)
                    if feed:
                        await page.evaluate(PAGE_FEED, [args.rate, 250])
                    print(f"[{version}] phase {phase}: {what}", flush=True)
                    results[key(version, phase)] = await measure(
                        page, args.seconds, meter, floor, page_rate=args.rate if feed else None)
                    if args.screenshot and version == "current" and phase == "busy":
                        await page.screenshot(path=args.screenshot)
                    await page.context.close()

            keep = {a.agent_id for a in floor.agents[:args.small_tiles]}
            floor.sending = set()
            for agent in floor.agents[args.small_tiles:]:
                await agent.status("logged_out")
            await drained(floor, 180.0)
            for version, source in versions.items():
                install_web(source, web_dir)
                page = await open_wall(browser, base, args, len(keep), errors)
                floor.sending = set(keep)
                print(f"[{version}] phase small: {len(keep)} tiles at {args.rate:g} updates/s "
                      f"each", flush=True)
                results[key(version, "small")] = await measure(page, args.seconds, meter, floor)
                floor.sending = set()
                await page.context.close()
        finally:
            await browser.close()
            await pw.stop()
        return {"phases": results, "page_errors": errors, "versions": list(versions),
                "baseline": args.baseline,
                "cpus": {"hub_and_agents": server_cpus, "chromium": browser_cpus},
                "status_sent": sum(a.sent for a in floor.agents), "send_errors": floor.errors,
                "updates_skipped": floor.skipped}
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if floor is not None:
            await asyncio.gather(*(a.close() for a in floor.agents), return_exceptions=True)
        await http.close()
        if hub.returncode is None:
            hub.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(hub.wait(), 15)
            except TimeoutError:
                hub.kill()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table(result: dict[str, Any]) -> str:
    rows = [
        "| phase | tiles (density) | patches/tile/s received (offered) | fps "
        "| frame p50 / p95 / p99 / max (ms) | frames > 33 ms | long tasks: share · n · longest "
        "| renderer main thread: running · waiting for a CPU | renderer CPU per patch (µs) "
        "| main-thread tasks in CPU time: ms/s · p99 · max · > 16.7 ms/s · > 50 ms/s "
        "| CPU %: Chromium · hub · agents | load avg (1 min) |",
        "|---|---:|---:|---:|---|---:|---|---|---:|---|---|---|",
    ]
    for name, p in result["phases"].items():
        f, lt, cpu = p["frame_ms"], p["longtasks"], p["cpu_pct"]
        tc = p.get("task_cpu_ms") or dict.fromkeys(
            ("cpu_ms_per_s", "p99", "max", "over_16ms_per_s", "over_50ms_per_s"), "–")
        rows.append(
            f"| {name} | {p['tiles']} ({p['density']}) | {p['patches_per_tile_s']} "
            f"({p['offered_per_tile_s']}) | {p['fps']} "
            f"| {f['p50']} / {f['p95']} / {f['p99']} / {f['max']} "
            f"| {p['frames_over_33ms_pct']} % "
            f"| {lt['share_pct']} % · {lt['n']} · {lt['max_ms']} ms "
            f"| {cpu['renderer_main_running']} % · {cpu['renderer_main_waiting']} % "
            f"| {p.get('renderer_cpu_us_per_patch') or '–'} "
            f"| {tc['cpu_ms_per_s']} · {tc['p99']} · {tc['max']} · {tc['over_16ms_per_s']} · "
            f"{tc['over_50ms_per_s']} "
            f"| {cpu['chromium']} · {cpu['hub']} · {cpu['agents']} "
            f"| {p['loadavg_before'][0]} → {p['loadavg_after'][0]} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.wall_frames", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=500, help="agents, one tile each (500)")
    ap.add_argument("--rate", type=float, default=3.0, help="updates per tile per second (3)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase (20)")
    ap.add_argument("--small-tiles", type=int, default=24, help="tiles in the small phase (24)")
    ap.add_argument("--alerts", type=float, default=1.0, help="keyword alerts per second (1)")
    ap.add_argument("--no-page-feed", dest="page_feed", action="store_false",
                    help="skip the page-only phase (updates made in the page, no hub)")
    ap.add_argument("--mode", choices=["desk", "wall"], default="desk")
    ap.add_argument("--viewport", default="1920x1080")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not give Chromium cores of its own (default: hub and agents on the "
                         "first half of the cores, Chromium on the rest)")
    ap.add_argument("--nice", type=int, default=-10,
                    help="niceness of the hub, the agents and Chromium (default -10, as the other "
                         "benchmarks; 0 to not boost)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="wait up to this many seconds for the machine's other work to drop "
                         "under half a core before starting (default 30; 0 to not wait)")
    ap.add_argument("--baseline", metavar="REF",
                    help="also measure the wall's files as of this git commit, in the same run "
                         "(same hub, floor and browser; baseline first, then the working tree)")
    ap.add_argument("--screenshot", help="save a screenshot of the busy page here")
    ap.add_argument("--keep", action="store_true", help="keep the hub's work directory")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    random.seed(1)
    with restored_process_state():
        run_and_report(args, argv)


def run_and_report(args: argparse.Namespace, argv: list[str] | None) -> None:
    niceness = boost_priority(args.nice) if args.nice else os.getpriority(os.PRIO_PROCESS, 0)
    quiet = asyncio.run(wait_quiet(0.5, args.quiet_wait)) if args.quiet_wait > 0 else None
    background = background_cores()
    info = {"benchmark": "wall_frames", "command": command_line("bench.wall_frames", argv),
            "machine": machine(), "loadavg_start": load_average(),
            "environment": {"nice": niceness, "background_cores_before": background,
                            "other_cores_after_quiet_wait": quiet},
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print(f"load average at start: {info['loadavg_start']} on {os.cpu_count()} cores; other work "
          f"kept {background} cores busy; nice {niceness}", flush=True)
    result = asyncio.run(run(args))
    result = {**info, **result, "loadavg_end": load_average()}
    path = save_result("wall_frames", result, args.results_dir)
    print()
    print(table(result))
    print(f"\nload average {info['loadavg_start']} at start, {result['loadavg_end']} at the end "
          f"({os.cpu_count()} cores); other work kept {background} cores busy just before the "
          f"start; hub and agents on CPUs {result['cpus']['hub_and_agents']}, Chromium on "
          f"{result['cpus']['chromium']}; hub backlog at the end of each phase: "
          + ", ".join(f"{k} {v['hub_backlog']}" for k, v in result["phases"].items()))
    if result["page_errors"]:
        print(f"page errors: {result['page_errors']}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
