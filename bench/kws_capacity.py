"""Keyword-spotting capacity: CPU-seconds per audio-second per channel, and calls per core.

    .venv/bin/python -m bench.kws_capacity            # ~2 min call at 8 and 16 kHz
    .venv/bin/python -m bench.kws_capacity --seconds 60 --rates 8000

A realistic call is generated (tests/callgen.py): agent (en-us) and customer (en-gb) take turns
with short pauses and a few long silences, so the agent channel carries ~45 % speech. Its agent
channel is spotted three ways, timing only the spotting (time.process_time, one process):

* ungated: every sample goes to the decoder (cut into 30 s utterances);
* gated: CallAnalyzer's VAD -> KwsGate -> spotter, as the hub runs it;
* gated, through KwsPool: the same pieces sent to one worker process, timing the hub side
  (submitting and collecting) separately from the worker's decoding.

Calls per core = 1 / (CPU-s per audio-s of one channel), agent channel only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from callgen import Utterance, generate_call, read_stereo_wav, synthesize

from bench.kws_accuracy import NEGATIVE
from server.analysis.call import CallAnalyzer
from server.analysis.kws import (
    AudioPiece,
    KeywordSpotter,
    KwsGate,
    SpotterParams,
    keyphrases_from_packs,
)
from server.analysis.params import AnalysisParams


def realistic_script(seconds: float, rate: int) -> list[Utterance]:
    """Turns of agent (two sentences) and customer (one); every fourth turn is followed by 7 s
    of silence (a hold, a look-up). The agent channel ends up ~45 % speech."""
    script, t, i = [], 0.5, 0
    while t < seconds:
        if i % 2 == 0:
            channel, voice = "agent", "en-us"
            text = " ".join(NEGATIVE[(i * 7 + k) % len(NEGATIVE)] for k in (0, 1))
        else:
            channel, voice, text = "customer", "en-gb", NEGATIVE[(i * 7) % len(NEGATIVE)]
        script.append(Utterance(channel, round(t, 3), text, voice))
        t += len(synthesize(text, voice, 160, rate)) / rate + 0.6
        if i % 4 == 3:
            t += 7.0
        i += 1
    return script


def gated_pieces(pcm: np.ndarray, rate: int) -> tuple[list[AudioPiece], float]:
    """The agent channel's pieces as the hub would ship them, and the gate's own CPU time."""
    analyzer = CallAnalyzer(rate, AnalysisParams())
    gate = KwsGate(rate)
    vad = analyzer.gates[0]
    step = rate // 10
    pieces: list[AudioPiece] = []
    gate_cpu = 0.0
    for offset in range(0, len(pcm), step):
        chunk = pcm[offset : offset + step]
        analyzer.feed(offset, chunk)
        t0 = time.process_time()
        pieces += gate.push(offset, np.ascontiguousarray(chunk[:, 0]),
                            vad.speaking or vad.pending_start is not None)
        gate_cpu += time.process_time() - t0
    return pieces + gate.flush(), gate_cpu


def time_spotter(keyphrases, rate: int, feeds) -> float:
    spotter = KeywordSpotter(keyphrases, rate, SpotterParams())
    t0 = time.process_time()
    for offset, pcm, final in feeds:
        spotter.feed(offset, pcm, final=final)
    spotter.finish()
    return time.process_time() - t0


async def time_pool(keyphrases, rate: int, pieces: list[AudioPiece]) -> tuple[float, float, int]:
    """Hub-side CPU to submit and collect the pieces (one at a time, so none is dropped), the
    worker's CPU, and drops."""
    from server.kws_pool import KwsPool

    pool = KwsPool(workers=1)
    await pool.start()
    try:
        pool.open_call("bench", keyphrases, rate)
        t0 = time.process_time()
        for piece in pieces:
            await pool.feed("bench", piece.offset, piece.pcm, piece.final)
        await pool.close_call("bench")
        hub_cpu = time.process_time() - t0
        stats = pool.stats()
        return hub_cpu, stats["cpu_s"], stats["dropped_pieces"]
    finally:
        await pool.close()


def measure(rate: int, seconds: float, cache: Path) -> dict[str, float]:
    call = generate_call(realistic_script(seconds, rate), rate, cache)
    pcm, _ = read_stereo_wav(call.wav)
    duration = len(pcm) / rate
    keyphrases = keyphrases_from_packs(["builtin:en-core"], sample_rate=rate)
    agent = np.ascontiguousarray(pcm[:, 0])
    step = rate // 10
    ungated = time_spotter(keyphrases, rate, ((i, agent[i : i + step], False)
                                              for i in range(0, len(agent), step)))
    pieces, gate_cpu = gated_pieces(pcm, rate)
    gated = time_spotter(keyphrases, rate, ((p.offset, p.pcm, p.final) for p in pieces))
    hub_cpu, worker_cpu, dropped = asyncio.run(time_pool(keyphrases, rate, pieces))
    speech = sum(e - s for s, e in call.truth.spans["agent"])
    sent = sum(p.samples for p in pieces) / rate
    per_s = {
        "ungated": ungated / duration,
        "gated": (gated + gate_cpu) / duration,
        "pool_hub_side": hub_cpu / duration,
        "pool_worker": worker_cpu / duration,
    }
    return {
        "rate": rate,
        "call_s": round(duration, 1),
        "agent_speech_fraction": round(speech / duration, 3),
        "sent_to_decoder_fraction": round(sent / duration, 3),
        "pieces_per_call_s": round(len(pieces) / duration, 2),
        **{f"cpu_per_audio_s_{k}": round(v, 4) for k, v in per_s.items()},
        "calls_per_core_ungated_both_channels": round(1 / (2 * per_s["ungated"]), 1),
        "calls_per_core_ungated_agent": round(1 / per_s["ungated"], 1),
        "calls_per_core_gated_agent": round(1 / per_s["gated"], 1),
        "calls_per_core_gated_agent_via_pool": round(
            1 / (per_s["pool_worker"] + per_s["pool_hub_side"]), 1),
        "pool_dropped_pieces": dropped,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the call")
    ap.add_argument("--rates", default="8000,16000")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/floorwatch-kws-bench"))
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    results = [measure(int(r), args.seconds, args.cache) for r in args.rates.split(",")]
    for result in results:
        print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
