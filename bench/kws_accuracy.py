"""Keyword-spotting accuracy: recall on policy phrases, false alarms per 10 min of clean speech.

    .venv/bin/python -m bench.kws_accuracy            # evaluate the shipped thresholds
    .venv/bin/python -m bench.kws_accuracy --tune     # score everything, suggest thresholds
    .venv/bin/python -m bench.kws_accuracy --seed-cmn # the CMN vector to seed decoders with
    .venv/bin/python -m bench.kws_accuracy --mandatory --rates 8000  # recording-notice phrases

The corpus is generated: every spottable en-core phrase in three carrier sentences, and ~60
keyword-free call-centre sentences (with near misses: "guarantee", "return", "risk", "code",
"card", "password reset"), spoken by espeak-ng voices at two speeds, over quiet (-65 dBFS) and
noisy (-40 dBFS) lines, at 8 and 16 kHz. The real recordings of Debian's pocketsphinx-testdata
(~50 s) are added to the false-alarm side. Each condition is one call, run the production way:
CallAnalyzer (webrtcvad) -> KwsGate -> KeywordSpotter.

A hit is a spot of the utterance's rule within 1 s of the utterance; any other spot is a false
alarm. Tuning runs the decoder with a lenient threshold and keeps every detection with its score
(log10 likelihood ratio), so any threshold can be evaluated offline: a detection survives a
threshold exactly when its best score passes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pickle
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from callgen import (
    STANDARD_CALL,
    SpeechClip,
    Utterance,
    generate_call,
    load_clip,
    read_stereo_wav,
    synthesize,
)

from server.analysis.call import CallAnalyzer
from server.analysis.kws import (
    Keyphrase,
    KeywordSpotter,
    KwsGate,
    Spotted,
    SpotterParams,
    keyphrases_from_packs,
)
from server.analysis.params import AnalysisParams

#: Sentences a phrase is spoken in. The first half tunes the thresholds, the second half tests
#: them (as do the odd-numbered NEGATIVE sentences), so the reported figures are held out.
CARRIERS = (
    "Honestly, {p}, that is what I tell everyone.",
    "I can promise you this, {p}.",
    "Listen to me, {p}, and then we can talk about the rest.",
    "{p}, I said it before and I will say it again.",
    "The thing is that {p} on this account.",
    "Between you and me, {p}, okay?",
)

NEGATIVE = (
    "Thank you for calling Northwind, my name is Alex, how can I help you today?",
    "Let me pull up your account, it will only take a moment.",
    "I can see the order you placed on the fourteenth of March.",
    "Our standard delivery takes three to five working days.",
    "Would you like me to send the brochure to your email address?",
    "The annual fee is forty nine pounds and it is charged in January.",
    "I understand that this has been frustrating for you.",
    "We do offer a warranty on that model, it covers parts for two years.",
    "You can return the item within thirty days for a full refund.",
    "Every investment carries some risk, and the value can go down as well as up.",
    "I would recommend reading the key information document first.",
    "Could you confirm the first line of your address for me?",
    "The reference for this conversation is written in your welcome letter.",
    "I will make a note on the account so my colleagues can see it.",
    "Is there anything else I can help you with this afternoon?",
    "Our opening hours are nine until six on weekdays.",
    "I am going to transfer you to the billing team now.",
    "The price includes installation and the first service visit.",
    "We sent a reminder by text message last Tuesday.",
    "Past performance is not a reliable guide to future results.",
    "I cannot guarantee the delivery date, but I will check with the warehouse.",
    "You can reset the password yourself from the login page.",
    "The code of conduct is published on our website.",
    "Please keep your card safe and never share it with anyone.",
    "The fund invests in companies across Europe and Asia.",
    "Your contract renews automatically unless you cancel it.",
    "I will call you back tomorrow morning at ten o'clock.",
    "Can I ask what made you interested in this product?",
    "The interest rate is fixed for the first two years.",
    "We are running a promotion until the end of the month.",
    "Let me explain the charges before you decide anything.",
    "The engineer will phone you half an hour before arriving.",
    "Your parcel is with the courier and should arrive today.",
    "I am sorry for the wait, we have a lot of calls this morning.",
    "There is a cooling off period of fourteen days.",
    "Do you have any questions about the terms and conditions?",
    "We will need a copy of a recent utility bill.",
    "Your balance at the moment is two hundred and twelve pounds.",
    "That option would lower your monthly payment a little.",
    "I have updated your phone number in our records.",
    "The manager is not available, but I can take a message.",
    "Would a morning or an afternoon appointment suit you better?",
    "Our customers usually choose the premium plan for the extra support.",
    "The returns on this fund have varied a lot over the years.",
    "You will receive a confirmation email in a few minutes.",
    "Please hold the line while I check that for you.",
    "The offer is only open to existing customers.",
    "We can split the payment into three instalments.",
    "I really appreciate your patience today.",
    "Let me read the summary back to you to make sure it is right.",
    "The discount applies to the first year only.",
    "That is a very good question, let me find out.",
    "My colleague in the sales team handled your last order.",
    "The registration number is printed on the back of the device.",
    "It was lovely speaking with you, have a great weekend.",
    "We value your feedback and will pass it on.",
    "This call may be recorded for training and quality purposes.",
    "I would like to go through a few security questions first.",
    "Can you tell me your date of birth, please?",
    "The other plan has more data but costs a bit more each month.",
    "I have booked the appointment for Thursday at half past two.",
    "Our technician found a fault in the power supply.",
    "You should receive the new card within seven working days.",
    "The statement shows two payments on the same day.",
    "I can offer you a free upgrade to the faster broadband.",
    "Do you still live at the same address in Manchester?",
    "That will be added to your next bill as a credit.",
    "We had a problem with the system earlier this morning.",
    "You are entitled to a refund under the consumer rights act.",
    "Let me check whether that model is in stock.",
    "The pension fund is managed by a separate company.",
    "Our advisers are regulated by the financial conduct authority.",
    "I will email you the quote so you can compare it.",
    "How many people live in the household?",
    "There are no hidden charges on this tariff.",
    "The savings account pays a variable rate of interest.",
    "I can see that you called us last week about the same issue.",
    "Is the best number to reach you the one ending in four five?",
    "We will cancel the direct debit for you today.",
    "The return label is included in the box.",
    "Some customers prefer to pay once a year.",
    "I am afraid that offer ended on Sunday.",
    "Your order number starts with the letters A and B.",
    "We can arrange a collection from your home.",
    "I have raised a complaint on your behalf.",
    "The shares can fall in value, so please think carefully.",
    "Would you like to add insurance to the phone?",
    "I will stay on the line while you look for it.",
    "Our new range is available online and in stores.",
    "The company was founded nearly fifty years ago.",
    "Let me give you the direct number for the claims team.",
    "You can manage everything from the mobile app.",
    "The installation usually takes about two hours.",
    "I know the previous agent told you something different.",
    "We check every application before we approve it.",
    "You might want to speak to an independent adviser.",
    "Your loyalty points will be added automatically.",
    "Could you spell your surname for me, please?",
    "This product is suitable for people saving for the long term.",
    "I can see the payment has gone through successfully.",
    "We need your permission before we run a credit check.",
    "The delivery driver will ask for a signature.",
    "Is it a good time to talk about your renewal?",
    "Let me find the cheapest option for you.",
    "The fees are explained on page three of the document.",
    "I will pass your comments to the product team.",
    "The warranty does not cover accidental damage.",
    "Sorry, the line is a bit quiet, could you repeat that?",
    "We can lock the price for twelve months.",
    "Many of our clients start with a small monthly amount.",
    "I will make sure someone calls you before Friday.",
    "The account will be closed once the balance is zero.",
    "Our terms changed slightly in April.",
    "That sounds like a sensible plan to me.",
    "Please do not share your security details with anyone, including us.",
    "Can I put you on hold for two minutes?",
    "The market has been quite volatile this year.",
    "We can also help with moving your broadband to the new house.",
    "Thank you, that is all the information I need.",
)

#: Real human speech for the false-alarm side (file, sample rate); raw files are 16 kHz.
TESTDATA = Path("/usr/share/pocketsphinx/test/data")
REAL_CLIPS = (
    "goforward.raw", "numbers.raw", "something.raw",
    "cards/001.wav", "cards/002.wav", "cards/003.wav", "cards/004.wav", "cards/005.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
)

GAP_S = 1.5  # silence between utterances: the VAD closes each region


@dataclass(frozen=True)
class Condition:
    voice: str
    speed: int
    noise_dbfs: float
    rate: int

    @property
    def name(self) -> str:
        return f"{self.voice}/{self.speed}wpm/{self.noise_dbfs:g}dB/{self.rate // 1000}k"


@dataclass(frozen=True)
class Item:
    text: str
    keyphrase: Keyphrase | None
    split: str  # "tune" or "test"
    clip: SpeechClip | None = None


def default_conditions() -> list[Condition]:
    out = []
    for voice in ("en-us", "en-gb", "en-us+m3", "en-us+f2"):
        for rate in (8000, 16000):
            out.append(Condition(voice, 160, -65, rate))
            if voice == "en-us":
                out += [Condition(voice, 140, -40, rate), Condition(voice, 185, -65, rate)]
    return out


def corpus(keyphrases: list[Keyphrase]) -> list[Item]:
    half = len(CARRIERS) // 2
    positives = [Item(c.format(p=k.text), k, "tune" if i < half else "test")
                 for k in keyphrases for i, c in enumerate(CARRIERS)]
    negatives = [Item(t, None, "tune" if i % 2 == 0 else "test") for i, t in enumerate(NEGATIVE)]
    return positives + negatives + standard_call_items(keyphrases)


def standard_call_items(keyphrases: list[Keyphrase]) -> list[Item]:
    """The lines of callgen.STANDARD_CALL (two of them carry phrases), on the tuning side."""
    by_text = {k.text: k for k in keyphrases}
    items = []
    for utt in STANDARD_CALL:
        spoken = [p for p in by_text if p in utt.text.lower()]
        items.append(Item(utt.text, by_text[max(spoken, key=len)] if spoken else None, "tune"))
    return items


def real_items() -> list[Item]:
    clips = [TESTDATA / name for name in REAL_CLIPS if (TESTDATA / name).is_file()]
    return [Item(p.name, None, "test", SpeechClip(p, 16000, "")) for p in clips]


def build_call(cond: Condition, items: list[Item], cache: Path) -> tuple[np.ndarray, list]:
    """`items` one after another on the agent channel of one call (customer silent)."""
    script, t = [], 0.5
    for item in items:
        script.append(Utterance("agent", round(t, 3), item.text, cond.voice, cond.speed,
                                item.clip))
        if item.clip is not None:
            t += len(load_clip(item.clip, 16000)) / 16000 + GAP_S
        else:
            t += len(synthesize(item.text, cond.voice, cond.speed, cond.rate)) / cond.rate + GAP_S
    call = generate_call(script, cond.rate, cache, noise_dbfs=cond.noise_dbfs)
    pcm, _ = read_stereo_wav(call.wav)
    return pcm, call.truth.spans["agent"]


def spot_call(pcm: np.ndarray, rate: int, keyphrases: list[Keyphrase],
              params: SpotterParams | None = None,
              chunk_s: float = 0.1) -> tuple[list[Spotted], float, KeywordSpotter]:
    """The production path: 100 ms chunks through the VAD, the gate and the spotter.
    Returns the spots, the spotter's CPU seconds, and the spotter. Each spot's `LATENCY` entry
    is how much call audio had arrived after the phrase's end when it was reported."""
    analyzer = CallAnalyzer(rate, AnalysisParams())
    gate = KwsGate(rate)
    spotter = KeywordSpotter(keyphrases, rate, params)
    agent = analyzer.gates[0]
    step = int(chunk_s * rate)
    spots: list[Spotted] = []
    cpu = 0.0
    for offset in range(0, len(pcm), step):
        chunk = pcm[offset : offset + step]
        analyzer.feed(offset, chunk)
        speaking = agent.speaking or agent.pending_start is not None
        pieces = gate.push(offset, np.ascontiguousarray(chunk[:, 0]), speaking)
        t0 = time.process_time()
        for piece in pieces:
            found = spotter.feed(piece.offset, piece.pcm, final=piece.final)
            arrived = (offset + len(chunk)) / rate
            LATENCY.update({id(s): arrived - s.end_s for s in found})
            spots += found
        cpu += time.process_time() - t0
    for piece in gate.flush():
        spots += spotter.feed(piece.offset, piece.pcm, final=piece.final)
    spots += spotter.finish()
    return spots, cpu, spotter


#: id(spot) -> seconds of audio received after the phrase's end when it was reported
LATENCY: dict[int, float] = {}


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class Result:
    """What the spotter said about one utterance."""

    item: Item
    seconds: float
    spots: list[Spotted]  # spots within 1 s of the utterance


def attribute(items: list[Item], spans: list, spots: list[Spotted]) -> list[Result]:
    results = [Result(item, e - s, []) for item, (s, e) in zip(items, spans, strict=True)]
    for spot in spots:
        i = min(range(len(spans)), key=lambda i: _distance(spot.offset_s, spans[i]))
        if _distance(spot.offset_s, spans[i]) <= 1.0:
            results[i].spots.append(spot)
        # spots further away are in the gaps between utterances, which are silent
    return results


def _distance(t: float, span: tuple[float, float]) -> float:
    return max(span[0] - t, 0.0, t - span[1])


@dataclass(frozen=True)
class Figures:
    recall: float | None
    positives: int
    false_alarms: int
    speech_s: float

    @property
    def fa_per_10min(self) -> float:
        return self.false_alarms / max(self.speech_s, 1e-9) * 600


def evaluate(results: list[Result], thresholds: dict[str, float], split: str) -> Figures:
    """Recall on the phrases, and false alarms (alerts: one per rule per utterance) of `split`
    at `thresholds` (log10 ratios). A false alarm is an alert of a rule that was not spoken, in
    any utterance: the keyword-free ones and, for other rules, the phrase carriers too. Their
    rate is per 10 minutes of all the speech they could fire in."""
    found = positives = false = 0
    speech_s = 0.0
    for r in results:
        if r.item.split != split:
            continue
        passing = {s.rule_id for s in r.spots if s.score >= thresholds[s.phrase]}
        spoken = r.item.keyphrase.rule_id if r.item.keyphrase else None
        speech_s += r.seconds
        false += len(passing - {spoken})
        if spoken is not None:
            positives += 1
            found += spoken in passing
    return Figures(found / positives if positives else None, positives, false, speech_s)


def best_true(r: Result) -> float | None:
    assert r.item.keyphrase is not None
    rule = r.item.keyphrase.rule_id
    return max((s.score for s in r.spots if s.rule_id == rule), default=None)


def suggest(results: list[Result], keyphrases: list[Keyphrase],
            splits: tuple[str, ...] = ("tune",), margin: float = 10.0) -> dict[str, float]:
    """Per phrase, a log10 threshold in the middle of the gap between its best false score on
    `splits` (in speech where its rule was not spoken) and its weaker true scores (the second
    lowest, so one freak does not decide), and at least `margin` decades above that false
    score: false alarms win where the two overlap. The middle, not the edge, because held-out
    speech lands on both sides of the tuning data; 10 decades because a phrase's score moves by
    a few decades with the call's context (held out, margin 3 -> 10: en-gb at 16 kHz 7.3 -> 0.7
    false alarms per 10 min, en-us recall 0.98 -> 0.97 at 16 kHz, 0.77 -> 0.69 at 8 kHz)."""
    false: dict[str, float] = defaultdict(lambda: -60.0)
    true: dict[str, list[float]] = defaultdict(list)
    for r in results:
        if r.item.split not in splits:
            continue
        spoken = r.item.keyphrase.rule_id if r.item.keyphrase else None
        for s in r.spots:
            if s.rule_id != spoken:
                false[s.phrase] = max(false[s.phrase], s.score)
        if r.item.keyphrase is not None:
            best = best_true(r)
            true[r.item.keyphrase.text].append(-60.0 if best is None else best)
    out = {}
    for k in keyphrases:
        scores = sorted(true[k.text])
        weak = scores[1] if len(scores) > 2 else (scores[0] if scores else false[k.text])
        gap_mid = (false[k.text] + weak) / 2
        out[k.text] = float(math.ceil(max(gap_mid, false[k.text] + margin)))
    return out


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tune", action="store_true", help="score everything, suggest thresholds")
    ap.add_argument("--seed-cmn", action="store_true", help="print a CMN seed vector")
    ap.add_argument("--mandatory", action="store_true",
                    help="thresholds for the recording notice's phrases (builtin:mandatory)")
    ap.add_argument("--quick", action="store_true", help="default voice, 160 wpm only")
    ap.add_argument("--voices", help="comma-separated espeak-ng voices (default: all four)")
    ap.add_argument("--plp", type=float, default=SpotterParams().plp)
    ap.add_argument("--rates", default="8000,16000", help="sample rates to run")
    ap.add_argument("--margin", type=float, default=10.0,
                    help="--tune: decades a threshold sits at least above the best false score")
    ap.add_argument("--hf-fill", type=float, help="8 kHz: noise in the 4-8 kHz band (dBFS)")
    ap.add_argument("--mllr", help="acoustic-model transform for 8 kHz decoders: a path, or "
                    "'none' (default: the shipped one, bench/kws_adapt.py)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/floorwatch-kws-bench"))
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--dump", type=Path, help="pickle every spot here, for offline analysis")
    ap.add_argument("--load", type=Path, nargs="+",
                    help="analyse --dump files of --tune runs (merged), no decoding")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    if args.seed_cmn:
        print(seed_cmn(args.cache))
        return
    rates = tuple(int(r) for r in args.rates.split(","))
    if args.mandatory:
        mllr = None if args.mllr is None else ("" if args.mllr == "none" else args.mllr)
        for rate in rates:
            table = mandatory(rate, SpotterParams(mllr=mllr), args.margin)
            print(f"{rate}:", json.dumps({k: int(v) for k, v in table.items()}))
        return
    keyphrases = {r: keyphrases_from_packs(["builtin:en-core"], sample_rate=r) for r in rates}
    if args.load:
        runs = {name: run for path in args.load
                for name, run in pickle.loads(path.read_bytes()).items()}
        cpu_s = audio_s = 0.0
        args.tune = True
    else:
        runs, cpu_s, audio_s = decode_all(args, keyphrases)
    if args.dump:
        args.dump.write_bytes(pickle.dumps(runs))
    output: dict = {}
    if args.tune:
        held_out, shipped = {}, {}
        for rate in rates:
            default = [r for name, (rt, rs) in runs.items()
                       if name.startswith("en-us/") and rt == rate for r in rs]
            if default:
                held_out[rate] = suggest(default, keyphrases[rate], ("tune",), args.margin)
                shipped[rate] = suggest(default, keyphrases[rate], ("tune", "test"),
                                        args.margin)
        print("== thresholds fitted on the tuning half, figures on the held-out half (test):")
        output["held_out"] = report(runs, held_out)
        print("== thresholds fitted on both halves (ship these), figures in-sample for en-us:")
        output["shipped"] = report(runs, shipped)
        for rate, table in shipped.items():
            print(f"TUNED_THRESHOLDS[{rate}] =", json.dumps({k: int(v) for k, v in table.items()},
                                                         indent=1))
        output["thresholds"] = shipped
        thresholds = shipped
    else:
        thresholds = {r: {k.text: math.log10(k.threshold) for k in ks}
                      for r, ks in keyphrases.items()}
        output["shipped"] = report(runs, thresholds)
    lat = latencies(runs, thresholds)
    if lat:
        print(f"alert latency after the phrase's end (hits, audio time): median "
              f"{np.median(lat):.2f} s, 95th percentile {np.percentile(lat, 95):.2f} s, "
              f"max {max(lat):.2f} s")
        output["latency_s"] = {"median": round(float(np.median(lat)), 2),
                               "p95": round(float(np.percentile(lat, 95)), 2),
                               "max": round(max(lat), 2)}
    if audio_s:
        print(f"decoder CPU: {cpu_s:.1f} s for {audio_s:.0f} s of calls "
              f"({cpu_s / audio_s:.4f} s per call-second, VAD-gated)")
    if args.json:
        args.json.write_text(json.dumps(output, indent=1))


def decode_all(args: argparse.Namespace, keyphrases: dict[int, list[Keyphrase]]
               ) -> tuple[dict[str, tuple[int, list[Result]]], float, float]:
    conds = [c for c in default_conditions() if c.rate in keyphrases]
    if args.quick:
        conds = [c for c in conds if c.voice == "en-us" and c.speed == 160]
    if args.voices:
        conds = [c for c in conds if c.voice in args.voices.split(",")]
    mllr = None if args.mllr is None else ("" if args.mllr == "none" else args.mllr)
    params = SpotterParams(plp=args.plp, hf_fill_dbfs=args.hf_fill, mllr=mllr)
    if args.tune:  # every detection, with its score
        keyphrases = {r: [replace(k, threshold=1e-60) for k in ks] for r, ks in keyphrases.items()}
        params = replace(params, dedupe=False)
    items = corpus(next(iter(keyphrases.values())))  # texts; thresholds differ per rate
    real = real_items()
    runs: dict[str, tuple[int, list[Result]]] = {}
    audio_s = cpu_s = 0.0
    for cond in conds:
        pcm, spans = build_call(cond, items, args.cache)
        spots, cpu, _ = spot_call(pcm, cond.rate, keyphrases[cond.rate], params)
        runs[cond.name] = cond.rate, attribute(items, spans, spots)
        audio_s, cpu_s = audio_s + len(pcm) / cond.rate, cpu_s + cpu
        if real and cond.voice == "en-us" and cond.speed == 160:
            pcm, spans = build_call(cond, real, args.cache)
            spots, cpu, _ = spot_call(pcm, cond.rate, keyphrases[cond.rate], params)
            runs[f"real speech/{cond.rate // 1000}k"] = cond.rate, attribute(real, spans, spots)
        print(f"{cond.name}: spotted", file=sys.stderr)
    return runs, cpu_s, audio_s


def report(runs: dict[str, tuple[int, list[Result]]],
           thresholds: dict[int, dict[str, float]]) -> dict:
    """Print and return recall and false alarms per condition and split."""
    print(f"{'condition':28} {'split':5} {'recall':>7} {'positives':>9} {'FAs':>4} "
          f"{'speech':>12} {'FA/10min':>8}")
    table = {}
    for name, (rate, results) in runs.items():
        for split in ("tune", "test"):
            f = evaluate(results, thresholds[rate], split)
            if not f.positives and not f.speech_s:
                continue
            rec = "-" if f.recall is None else f"{f.recall:.3f}"
            print(f"{name:28} {split:5} {rec:>7} {f.positives:9d} {f.false_alarms:4d} "
                  f"{f.speech_s:10.0f} s {f.fa_per_10min:8.2f}")
            table[f"{name} {split}"] = {"recall": f.recall, "positives": f.positives,
                                        "false_alarms": f.false_alarms,
                                        "speech_s": round(f.speech_s, 1),
                                        "fa_per_10min": round(f.fa_per_10min, 2)}
    return table


def latencies(runs: dict[str, tuple[int, list[Result]]],
              thresholds: dict[int, dict[str, float]]) -> list[float]:
    out = []
    for rate, results in runs.values():
        for r in results:
            if r.item.keyphrase is None:
                continue
            hits = [s for s in r.spots if s.rule_id == r.item.keyphrase.rule_id
                    and s.score >= thresholds[rate][s.phrase] and id(s) in LATENCY]
            if hits:
                out.append(LATENCY[id(hits[0])])
    return out


#: Sentences a recording-notice phrase (builtin:mandatory) is spoken in, for --mandatory.
NOTICE_CARRIERS = ("Before we start, {p}, for training purposes.",
                   "Hello, {p}, is that okay with you?", "Just so you know, {p}.")


def mandatory(rate: int, params: SpotterParams, margin: float) -> dict[str, float]:
    """Thresholds for the recording notice's phrases (not-said rules): each phrase in three
    sentences by en-us and en-gb at 160 wpm against every keyword-free sentence by both voices;
    per phrase, the middle of the gap between the best false score and the weakest true one,
    at least `margin` above the false score and at least +10 (a phrase no keyword-free sentence
    came near would otherwise get a threshold below zero). Printed with the scores."""
    keyphrases = [replace(k, threshold=1e-60)
                  for k in keyphrases_from_packs(["builtin:mandatory"], sample_rate=rate)]
    params = replace(params, dedupe=False)

    def best(text: str, voice: str) -> dict[str, float]:
        pad = np.zeros(rate // 2, np.int16)
        spotter = KeywordSpotter(keyphrases, rate, params)
        pcm = np.concatenate((pad, synthesize(text, voice, 160, rate), pad))
        out: dict[str, float] = {}
        for s in spotter.feed(0, pcm, final=True):
            out[s.phrase] = max(out.get(s.phrase, -99.0), s.score)
        return out

    voices = ("en-us", "en-gb")
    false: dict[str, float] = defaultdict(lambda: -99.0)
    for text in NEGATIVE:
        if "recorded" not in text:
            for voice in voices:
                for phrase, score in best(text, voice).items():
                    false[phrase] = max(false[phrase], score)
    table = {}
    for k in keyphrases:
        true = sorted(best(c.format(p=k.text), v).get(k.text, -99.0)
                      for c in NOTICE_CARRIERS for v in voices)
        table[k.text] = float(math.ceil(max((false[k.text] + true[0]) / 2,
                                            false[k.text] + margin, 10.0)))
        print(f"{k.text:42} true {' '.join(f'{x:+.0f}' for x in true)}  best false "
              f"{false[k.text]:+.0f}  -> {table[k.text]:+.0f}")
    return table


def seed_cmn(cache: Path) -> str:
    """Mean CMN of decoders after a call of mixed speech, per sample rate (SEED_CMN): 8 kHz
    audio upsampled has an empty 4-8 kHz band, so its cepstral mean differs a lot."""
    keyphrases = keyphrases_from_packs(["builtin:en-core"])
    negatives = [i for i in corpus(keyphrases) if i.keyphrase is None][:16]
    lines = []
    for rate in (8000, 16000):
        vectors = []
        for voice, items in (("en-us", negatives), ("en-gb", negatives), ("en-us", real_items())):
            pcm, _ = build_call(Condition(voice, 160, -65, rate), items, cache)
            _, _, spotter = spot_call(pcm, rate, keyphrases)
            vectors.append([float(x) for x in spotter.cmn().split(",")])
        lines.append(f"{rate}: \"{','.join(f'{x:.2f}' for x in np.mean(vectors, axis=0))}\",")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
