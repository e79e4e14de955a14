"""Status messages: how many the hub stores, applies and acknowledges per second, and its CPU per
message, with every agent keeping one message in flight.

    python -m bench.status --agents 200 --seconds 10
    python -m bench.status --trees e8a3a61,.      # versions of the hub compared in one run

Each agent flips ready ⇄ break with a reason and sends the next status as soon as the previous
one is acknowledged: the hub parses it, stores it (SQLite), applies it to the agent's tile, waits
until it is durable and acks. The clients run in this process on the client core, the hub alone
on its core (as in bench.capacity). With `--trees`, each git ref's hub (unpacked as in
`bench.micro --trees`; `.` is the working tree) is measured in turn for `--rounds` rounds, and the
medians are compared with the first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    command_line,
    machine,
    pct,
    prepare,
    restored_process_state,
    save_result,
    unpack_tree,
)
from bench.servers import hub_process, provision
from server.wire import iso


async def _agent(url: str, agent_id: str, token: str, stop_at: float,
                 rtts: list[float]) -> int:
    acked = 0
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, compress=0) as ws:
            await ws.send_str(json.dumps({"type": "hello", "protocol": 1, "agent_id": agent_id,
                                          "token": token, "session": uuid.uuid4().hex,
                                          "client": "bench-status"}))
            welcome = await ws.receive_json()
            if welcome.get("type") != "welcome":
                raise ConnectionError(f"hello refused: {welcome}")
            seq = 0
            while time.monotonic() < stop_at:
                seq += 1
                sent = time.monotonic()
                await ws.send_str(json.dumps({
                    "type": "status", "seq": seq, "at": iso(time.time()),
                    "state": "break" if seq % 2 else "ready",
                    "reason": f"reason {seq % 7}" if seq % 2 else None}))
                while True:
                    reply = await ws.receive_json()
                    if reply.get("type") == "ack" and reply.get("seq") == seq:
                        break
                    if reply.get("type") == "error":
                        raise ConnectionError(f"refused: {reply}")
                rtts.append(time.monotonic() - sent)
                acked += 1
    return acked


async def measure(root: Path | None, agents: int, seconds: float, workdir: Path) -> dict:
    tokens = provision(workdir / "data", agents)
    hub = hub_process(workdir, gc_log=False, root=root)
    await hub.start()
    try:
        rtts: list[float] = []
        warm = time.monotonic() + 2.0
        await asyncio.gather(*(_agent(hub.ws_url, a, t, warm, []) for a, t in tokens.items()))
        cpu0, t0 = hub.cpu_s(), time.monotonic()
        counts = await asyncio.gather(*(_agent(hub.ws_url, a, t, t0 + seconds, rtts)
                                        for a, t in tokens.items()))
        elapsed, cpu = time.monotonic() - t0, hub.cpu_s() - cpu0
    finally:
        await hub.stop()
    total = sum(counts)
    return {"statuses_per_s": round(total / elapsed, 1),
            "hub_cores": round(cpu / elapsed, 3),
            "hub_us_per_status": round(cpu / total * 1e6, 1) if total else None,
            "ack_rtt_ms": pct([r * 1000 for r in rtts])}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    trees = args.trees or ["."]
    runs: dict[str, list[dict]] = {t: [] for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {t: None if t == "." else unpack_tree(t, Path(tmp) / f"tree{i}")
                 for i, t in enumerate(trees)}
        for r in range(args.rounds):
            for i, tree in enumerate(trees):
                result = await measure(roots[tree], args.agents, args.seconds,
                                       Path(tmp) / f"run{r}-{i}")
                print(f"  {tree}: {result}", flush=True)
                runs[tree].append(result)
    medians = {t: {k: statistics.median(r[k] for r in rs)
                   for k in ("statuses_per_s", "hub_cores", "hub_us_per_status")}
               for t, rs in runs.items()}
    return {"trees": trees, "runs": runs, "medians": medians}


def markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    first = result["trees"][0]
    lines = [f"#### Status messages, {p['agents']} agents each with one in flight "
             f"(median of {p['rounds']} × {p['seconds']:g} s)", "",
             "| hub | statuses/s | hub cores | hub µs per status | ÷ first | ack RTT p50/p99 ms |",
             "|---|---:|---:|---:|---:|---:|"]
    for tree in result["trees"]:
        m = result["medians"][tree]
        last = result["runs"][tree][-1]["ack_rtt_ms"]
        ratio = m["hub_us_per_status"] / result["medians"][first]["hub_us_per_status"]
        lines.append(f"| `{tree}` | {m['statuses_per_s']:.0f} | {m['hub_cores']:.3f} | "
                     f"{m['hub_us_per_status']:.1f} | {ratio:.2f} | "
                     f"{last.get('p50')} / {last.get('p99')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.status",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--trees", type=lambda s: [x for x in s.split(",") if x], default=None)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--nice", type=int, default=-10)
    p.add_argument("--results", type=Path, default=None)
    args = p.parse_args(argv)
    with restored_process_state():
        environment = prepare(args.nice)
        result = asyncio.run(run(args))
    result = {"benchmark": "status", "command": command_line("bench.status", argv),
              "machine": machine(), "environment": environment,
              "params": {"agents": args.agents, "seconds": args.seconds,
                         "rounds": args.rounds}, **result}
    path = save_result("status", result, args.results)
    text = markdown(result)
    path.with_suffix(".md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
