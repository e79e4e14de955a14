"""A synthetic floor: N agents, each with its own connection, shift and calls, in real time.

Each agent follows `floor_script.plan_agent_cycle` (ready → call → wrap-up → ready, breaks,
holds). Calls carry speech-like audio on both channels (webrtcvad hears it as speech) with the
plan's scripted dead air, overtalk and policy phrases; the phrases go out as transcript lines, the
way a desktop ASR would send them. Everything is seeded, so a floor can be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from pathlib import Path

from agent_client.connection import HubConnection
from agent_client.floor_script import CallPlan, call_info, call_states, plan_agent_cycle, render
from agent_client.speech import SpeechSynth
from server.ingest_protocol import encode_audio

log = logging.getLogger("floorwatch.simulate")

CHUNK_S = 0.1
CUSTOMER_VOICES = 16


def read_tokens(path: Path) -> dict[str, str]:
    """Lines of `agent_id token` (blank lines and # comments ignored)."""
    tokens = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            agent_id, token = line.split()[:2]
            tokens[agent_id] = token
    return tokens


class Voices:
    """Each agent has its own voice; customers share a pool (a voice costs ~40 ms to build)."""

    def __init__(self, rate: int, seed: int) -> None:
        self.rate = rate
        self._seed = seed
        self._customers: list[SpeechSynth] = []

    def agent(self, index: int) -> SpeechSynth:
        return SpeechSynth(self.rate, seed=self._seed * 10_000 + index)

    def customer(self, rng: random.Random) -> SpeechSynth:
        if len(self._customers) < CUSTOMER_VOICES:
            self._customers.append(SpeechSynth(self.rate, seed=self._seed * 10_000 + 5_000
                                               + len(self._customers)))
            return self._customers[-1]
        return rng.choice(self._customers)


async def simulate_floor(url: str | list[str],
                         agents: int, *, tokens: Mapping[str, str] | None = None,
                         token: str | None = None, tokens_file: Path | None = None,
                         seed: int = 1, rate: int = 8000,
                         duration_s: float | None = None) -> None:
    """Run `agents` simulated agents until cancelled (or for `duration_s`)."""
    if tokens is None:
        if tokens_file is not None:
            tokens = read_tokens(tokens_file)
        elif token is not None:
            tokens = {f"a-{i:03d}": token for i in range(1, agents + 1)}
        else:
            raise ValueError("give the agents' tokens (a tokens file) or one shared token")
    agent_ids = list(tokens)[:agents]
    voices = Voices(rate, seed)
    tasks = [
        asyncio.create_task(
            run_agent(url, agent_id, tokens[agent_id], random.Random(f"{seed}/{agent_id}"),
                      voices, index),
            name=f"sim-{agent_id}")
        for index, agent_id in enumerate(agent_ids)
    ]
    log.info("simulating %d agents against %s", len(tasks), url)
    try:
        if duration_s is None:
            await asyncio.gather(*tasks)
        else:
            await asyncio.wait(tasks, timeout=duration_s)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_agent(url: str | list[str],
                    agent_id: str, token: str, rng: random.Random, voices: Voices,
                    index: int) -> None:
    conn = HubConnection(url, agent_id, token, client="floorwatch-simulator")
    conn.start()
    voice = voices.agent(index)
    try:
        await conn.wait_connected(timeout=30)
        await asyncio.sleep(rng.uniform(0, 2))  # agents do not all log in at the same instant
        warmup = 2  # logged_in and the first ready are cut short: get the floor busy quickly
        for step in plan_agent_cycle(rng, call_id_prefix=agent_id, min_call_s=30,
                                     max_call_s=180):
            if step[0] == "call":
                await play_call(conn, step[1], voice, voices.customer(rng), voices.rate)
                continue
            _, state, extra, dwell = step
            await conn.send_status(state, **extra)
            if warmup > 0 or state == "logged_in":
                dwell = min(dwell, rng.uniform(0.5, 15))  # staggered, so calls do not align
            warmup -= 1
            await asyncio.sleep(dwell)
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def play_call(conn: HubConnection, plan: CallPlan, agent: SpeechSynth,
                    customer: SpeechSynth, rate: int) -> None:
    """Stream one planned call in real time: states, audio chunks and transcript lines."""
    loop = asyncio.get_running_loop()
    states = list(call_states(plan))
    lines = sorted(plan.lines, key=lambda line: line.offset_s)
    step = round(rate * CHUNK_S)
    total = round(plan.duration_s * rate)
    t0 = loop.time()
    for chunk_no, offset in enumerate(range(0, total, step)):
        position = offset / rate
        while states and states[0][0] <= position:
            _, state = states.pop(0)
            extra = {"call": call_info(plan, rate)} if state == "on_call" else {}
            await conn.send_status(state, **extra)
        delay = t0 + position - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        n = min(step, total - offset)
        await conn.send_audio(encode_audio(chunk_no, offset,
                                           render(plan, agent, customer, offset, n, rate)))
        end = (offset + n) / rate
        while lines and lines[0].offset_s < end:
            line = lines.pop(0)
            await conn.send_transcript(plan.call_id, line.offset_s, line.speaker, line.text)
    await conn.send_status("wrap_up")
