"""Keyword spotting in call audio (server/analysis/kws.py) and its worker pool (server/kws_pool.py).

The audio tests are real: calls generated with espeak-ng (tests/callgen.py) run through the
production path (CallAnalyzer's VAD -> KwsGate -> KeywordSpotter) with the shipped thresholds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
from pathlib import Path

import callgen
import numpy as np
import pytest
from callgen import GeneratedCall, Utterance
from conftest import need, need_tools

from server.analysis.call import CallAnalyzer
from server.analysis.kws import (
    AudioPiece,
    KwsGate,
    Lexicon,
    RulePhrases,
    Upsampler2x,
    _note_once,
    keyphrases_from_packs,
    keyphrases_from_rules,
    spoken_form,
)
from server.analysis.params import AnalysisParams

HAVE_POCKETSPHINX = importlib.util.find_spec("pocketsphinx") is not None
RATES = (8000, 16000)


def need_spotter() -> None:
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed (pip install 'pocketsphinx>=5')")
    need_tools("espeak-ng", "sox")


def agent(start_s: float, text: str) -> Utterance:
    return Utterance("agent", start_s, text, "en-us")


def customer(start_s: float, text: str) -> Utterance:
    return Utterance("customer", start_s, text, "en-gb")


# (utterance, text before the phrase, rule) for the policy call
POLICY_LINES = (
    (agent(0.4, "Honestly, no risk at all with this plan."), "Honestly,", "false-promise"),
    (customer(3.6, "Really? My bank told me something different."), None, None),
    (agent(7.0, "This fund has guaranteed returns over any five year period."),
     "This fund has", "false-promise"),
    (customer(12.0, "Okay, and what do you need from me?"), None, None),
    (agent(15.2, "First I need to check your identity."), None, None),
    (agent(18.4, "Please read me the verification code from the text message."),
     "Please read me the", "sensitive-data"),
    (customer(23.8, "One moment please."), None, None),
    (agent(26.0, "Our competitor is useless, the other company is a scam."),
     "Our competitor is useless,", "disparage-competitor"),
)
POLICY_CALL = [line for line, _, _ in POLICY_LINES]

CLEAN_CALL = [
    agent(0.4, "Thank you for calling Northwind, this is Sam, how can I help?"),
    customer(4.4, "Hello, I would like to ask about my savings account."),
    agent(8.3, "Of course. Let me pull up your details, it will only take a moment."),
    customer(13.2, "Thanks. I opened it last spring."),
    agent(16.2, "I can see it here. The interest rate is fixed for two years."),
    customer(20.6, "And can I take money out whenever I want?"),
    agent(23.6, "Yes, withdrawals are free, though the value of investments can go down."),
    customer(29.2, "That is good to know, thank you."),
    agent(31.6, "You are welcome. Is there anything else I can help you with today?"),
    customer(36.0, "No, that is all. Goodbye."),
]


def spot_wav(call: GeneratedCall, keyphrases=None, chunk_s: float = 0.1, params=None):
    """Stream a generated call's agent channel the way the hub would; return spots and gate."""
    from server.analysis.kws import KeywordSpotter

    pcm, rate = callgen.read_stereo_wav(call.wav)
    keyphrases = keyphrases or keyphrases_from_packs(["builtin:en-core"], sample_rate=rate)
    analyzer = CallAnalyzer(rate, AnalysisParams())
    gate = KwsGate(rate)
    spotter = KeywordSpotter(keyphrases, rate, params)
    vad = analyzer.gates[0]
    step = int(chunk_s * rate)
    spots, pieces = [], []
    for offset in range(0, len(pcm), step):
        chunk = pcm[offset : offset + step]
        analyzer.feed(offset, chunk)
        for piece in gate.push(offset, np.ascontiguousarray(chunk[:, 0]),
                               vad.speaking or vad.pending_start is not None):
            pieces.append(piece)
            spots += spotter.feed(piece.offset, piece.pcm, final=piece.final)
    for piece in gate.flush():
        spots += spotter.feed(piece.offset, piece.pcm, final=piece.final)
    spots += spotter.finish()
    return spots, pieces, spotter


def phrase_onset(call: GeneratedCall, index: int, prefix: str | None, rate: int) -> float:
    """Where the phrase starts: the utterance start plus the spoken prefix (and its pause)."""
    start = call.truth.spans["agent"][index][0]
    if not prefix:
        return start
    pause = 0.18 if prefix.endswith(",") else 0.0
    return start + len(callgen.synthesize(prefix, "en-us", 160, rate)) / rate + pause


# -- rule packs to keyphrases (no audio) ----------------------------------------------------


def test_spoken_form() -> None:
    assert spoken_form("Risk-free!") == "risk free"
    assert spoken_form("You’re an IDIOT") == "you're an idiot"
    assert spoken_form("保本保息") is None


def test_keyphrases_skip_short_unknown_and_chinese_phrases(caplog) -> None:
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed")
    rules = [RulePhrases("p/r1", ("guaranteed returns", "shut up", "card number and cvv",
                                  "稳赚不赔", "Guaranteed returns!"))]
    _note_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="floorwatch.kws"):
        keyphrases = keyphrases_from_rules(rules)
        keyphrases_from_rules(rules)  # logged once per process, not per call
    assert [(k.text, k.rule_id) for k in keyphrases] == [("guaranteed returns", "p/r1")]
    messages = [r.getMessage() for r in caplog.records]
    assert any("'shut up'" in m and "syllable" in m for m in messages)
    assert any("cvv not in the pronunciation dictionary" in m for m in messages)
    assert len([m for m in messages if "cvv" in m]) <= 1


def test_builtin_pack_gives_tuned_english_keyphrases() -> None:
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed")
    for rate in RATES:
        keyphrases = keyphrases_from_packs(["builtin:en-core", "builtin:zh-core"],
                                           sample_rate=rate)
        texts = {k.text for k in keyphrases}
        assert {"guaranteed returns", "no risk at all", "verification code"} <= texts
        assert all(k.rule_id.startswith("en-core/") for k in keyphrases)
        assert all(Lexicon.default().syllables(k.text) >= 3 for k in keyphrases)


def test_pronunciation_variants() -> None:
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed")
    lexicon = Lexicon.default()
    assert lexicon.variants("your password", 4) == ["your password", "your__2 password"]
    assert "your__2 Y UH R" in lexicon.entries(["your__2"])


# -- audio plumbing (no decoder) ------------------------------------------------------------


def test_upsampler_keeps_samples_and_streams_like_one_shot() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(8000) * 3000).astype(np.int16)
    whole = Upsampler2x().process(x)
    up = Upsampler2x()
    parts = np.concatenate([up.process(x[i : i + 777]) for i in range(0, len(x), 777)])
    assert len(whole) == 2 * len(x)
    np.testing.assert_array_equal(whole, parts)
    d = Upsampler2x.DELAY
    np.testing.assert_array_equal(whole[2 * d :: 2], x[: len(x) - d])  # even samples: the input


def test_upsampler_passes_speech_band_and_stops_images() -> None:
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    spectrum = np.abs(np.fft.rfft(Upsampler2x().process(tone)[100:16100].astype(float)))
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    tone_level = spectrum[np.argmin(np.abs(freqs - 1000))]
    image_level = spectrum[np.argmin(np.abs(freqs - 7000))]
    assert 20 * np.log10(tone_level / image_level) > 40


def test_gate_sends_preroll_speech_and_closes_regions() -> None:
    rate, step = 8000, 800
    gate = KwsGate(rate, preroll_s=0.3, batch_s=0.25)
    speaking = [False] * 10 + [True] * 8 + [False] * 5 + [True] * 2 + [False]
    pieces: list[AudioPiece] = []
    for i, flag in enumerate(speaking):
        pcm = np.full(step, i, dtype=np.int16)  # each sample says which chunk it came from
        pieces += gate.push(i * step, pcm, flag)
    pieces += gate.flush()
    # first region: 0.3 s pre-roll (chunks 7-9), speech (10-17), closed by chunk 18
    first = [p for p in pieces if p.offset < 20 * step]
    assert first[0].offset == 7 * step
    assert first[-1].final and not any(p.final for p in first[:-1])
    joined = np.concatenate([p.pcm for p in first])
    assert joined[0] == 7 and joined[-1] == 18 and len(joined) == (19 - 7) * step
    for a, b in itertools.pairwise(first):  # contiguous: offsets are exact
        assert b.offset == a.offset + a.samples
    second = [p for p in pieces if p.offset >= 20 * step]
    assert second[0].offset == 20 * step and second[-1].final  # pre-roll: chunks 20-22
    assert sum(p.samples for p in pieces) < len(speaking) * step  # silence is not sent


def test_gate_closes_a_region_at_a_gap_and_drops_overlap() -> None:
    gate = KwsGate(8000, preroll_s=0.1, batch_s=10.0)
    gate.push(0, np.ones(800, np.int16), True)
    out = gate.push(400, np.ones(800, np.int16), True)  # half overlaps
    assert out == []
    out = gate.push(8000, np.ones(800, np.int16), True)  # a gap: the old region ends
    assert len(out) == 1 and out[0].final and out[0].offset == 0 and out[0].samples == 1200


# -- the spotter on real (synthetic) speech -------------------------------------------------


@pytest.fixture(scope="module", params=RATES)
def policy_call(request, calls_dir: Path) -> GeneratedCall:
    need_spotter()
    return callgen.generate_call(POLICY_CALL, request.param, calls_dir)


def test_policy_phrases_are_spotted_at_their_time(policy_call: GeneratedCall) -> None:
    rate = policy_call.truth.sample_rate
    spots, _, _ = spot_wav(policy_call)
    agent_lines = [(line, prefix, rule) for line, prefix, rule in POLICY_LINES
                   if line.channel == "agent"]
    expected = [(i, prefix, rule) for i, (_, prefix, rule) in enumerate(agent_lines) if rule]
    spans = policy_call.truth.spans["agent"]
    for i, prefix, rule in expected:
        start, end = spans[i]
        mine = [s for s in spots if s.rule_id == f"en-core/{rule}"
                and start - 1.0 <= s.offset_s <= end + 1.0]
        assert mine, f"{rule} not spotted in {agent_lines[i][0].text!r} at {rate} Hz: {spots}"
        onset = phrase_onset(policy_call, i, prefix, rate)
        assert abs(mine[0].offset_s - onset) < 0.5, (mine[0], onset)
        assert mine[0].end_s > mine[0].offset_s
    matched = {id(s) for i, _, rule in expected for s in spots
               if s.rule_id == f"en-core/{rule}"
               and spans[i][0] - 1.0 <= s.offset_s <= spans[i][1] + 1.0}
    assert [s for s in spots if id(s) not in matched] == []  # nothing else, nothing twice


@pytest.mark.parametrize("rate", RATES)
def test_clean_call_has_no_spots(rate: int, calls_dir: Path) -> None:
    need_spotter()
    call = callgen.generate_call(CLEAN_CALL, rate, calls_dir)
    spots, pieces, spotter = spot_wav(call)
    assert spots == []
    # VAD gating: only the agent's speech, plus per region 0.5 s of pre-roll, the gate's 0.3 s
    # hangover (rounded up to the chunk) and the spotter's 0.15 s flush, reached the decoder
    agent_speech = sum(e - s for s, e in call.truth.spans["agent"])
    regions = sum(p.final for p in pieces)
    assert len(call.truth.spans["agent"]) <= regions <= 2 * len(call.truth.spans["agent"])
    assert spotter.audio_s < agent_speech + 1.2 * regions
    assert spotter.audio_s < 0.7 * call.truth.duration_s


@pytest.mark.parametrize("rate", RATES)
def test_near_misses_of_the_recording_notice_do_not_count_as_said(rate: int,
                                                                  calls_dir: Path) -> None:
    """A false 'said' would hide a call that never gave the notice."""
    need_spotter()
    script = [Utterance("agent", 0.3, "I have recorded your complaint and someone will call "
                        "you back.", "en-us", speed_wpm=160),
              agent(5.0, "For this conversation, it is written in your welcome letter.")]
    call = callgen.generate_call(script, rate, calls_dir)
    notice = keyphrases_from_packs(["builtin:mandatory"], sample_rate=rate)
    assert spot_wav(call, notice)[0] == []


@pytest.mark.parametrize("rate", RATES)
def test_warm_decoder_finds_a_phrase_in_the_first_two_seconds(rate: int,
                                                              calls_dir: Path) -> None:
    need_spotter()
    script = [agent(0.2, "Guaranteed returns, every year."),
              customer(2.6, "Sounds good to me.")]
    call = callgen.generate_call(script, rate, calls_dir)
    spots, _, _ = spot_wav(call)
    assert [s.rule_id for s in spots] == ["en-core/false-promise"]
    assert abs(spots[0].offset_s - call.truth.spans["agent"][0][0]) < 0.5
    assert spots[0].end_s < 2.0


def test_times_follow_the_audio_offsets(calls_dir: Path) -> None:
    """The same speech fed at another offset is found at that offset: time is the audio's."""
    need_spotter()
    from server.analysis.kws import KeywordSpotter

    call = callgen.generate_call([agent(0.3, "This fund has guaranteed returns.")], 8000,
                                 calls_dir)
    pcm = np.ascontiguousarray(callgen.read_stereo_wav(call.wav)[0][:, 0])
    keyphrases = keyphrases_from_packs(["builtin:en-core"], sample_rate=8000)
    found = []
    for base in (0, 8000 * 3600):  # one hour into a call
        spotter = KeywordSpotter(keyphrases, 8000)
        spots = []
        for i in range(0, len(pcm), 1234):
            spots += spotter.feed(base + i, pcm[i : i + 1234])
        spots += spotter.finish()
        assert len(spots) == 1
        found.append(spots[0].offset_s - base / 8000)
    assert found[0] == pytest.approx(found[1], abs=0.001)


def test_ungated_long_audio_is_cut_without_losing_a_phrase(calls_dir: Path) -> None:
    """Fed without VAD gating, the spotter cuts utterances every max_utterance_s and re-decodes
    an overlap: it finds what one long utterance finds, once, at the same time."""
    need_spotter()
    from server.analysis.kws import KeywordSpotter, SpotterParams

    call = callgen.generate_call(POLICY_CALL, 16000, calls_dir)
    pcm = np.ascontiguousarray(callgen.read_stereo_wav(call.wav)[0][:, 0])
    keyphrases = keyphrases_from_packs(["builtin:en-core"], sample_rate=16000)
    found = {}
    for max_s in (8.0, 600.0):
        spotter = KeywordSpotter(keyphrases, 16000, SpotterParams(max_utterance_s=max_s))
        spots = []
        for i in range(0, len(pcm), 1600):
            spots += spotter.feed(i, pcm[i : i + 1600])
        found[max_s] = spots + spotter.finish()
    assert len(found[600.0]) >= 2
    for whole in found[600.0]:
        same = [s for s in found[8.0] if s.rule_id == whole.rule_id
                and abs(s.offset_s - whole.offset_s) < 0.3]
        assert len(same) == 1, (whole, found[8.0])


def test_8k_decoders_load_the_narrowband_transform(calls_dir: Path) -> None:
    """8 kHz decoders adapt the wideband model to the telephone channel with the shipped MLLR
    transform (bench/kws_adapt.py); 16 kHz decoders do not. A voice the transform never heard
    (en-us+m3) says a policy phrase on an 8 kHz line: found with the transform, and it is the
    transform that lifts the phrase over its threshold."""
    need_spotter()
    from server.analysis.kws import MLLR_FILES, KeywordSpotter, SpotterParams

    path = MLLR_FILES[8000]
    assert path.is_file() and path.stat().st_size < 20_000
    values = path.read_text().split()  # 1 class, 3 streams; each: 13, A 13x13, b 13, h 13
    assert values[:3] == ["1", "3", "13"] and len(values) == 2 + 3 * (1 + 13 * 13 + 13 + 13)
    keyphrases = keyphrases_from_packs(["builtin:en-core"], sample_rate=8000)
    assert KeywordSpotter(keyphrases, 8000)._mllr(8000) == path
    assert KeywordSpotter(keyphrases, 16000)._mllr(16000) is None

    line = Utterance("agent", 0.4, "Please read me the verification code from the text message.",
                     "en-us+m3")
    call = callgen.generate_call([line], 8000, calls_dir)
    spots, _, _ = spot_wav(call)
    assert [s.rule_id for s in spots] == ["en-core/sensitive-data"], spots
    assert spots[0].phrase == "verification code"
    without, _, _ = spot_wav(call, params=SpotterParams(mllr=""))
    assert without == [] or without[0].score < spots[0].score - 20, (without, spots)


def test_the_adaptation_recipe_runs_and_its_transform_loads(tmp_path: Path) -> None:
    """bench/kws_adapt.py end to end on a cut-down corpus, with Debian's sphinxtrain: the
    mixture weights expanded from the model's sendump, bw, mllr_solve, and a decoder that loads
    the transform it wrote and spots with it."""
    need_spotter()
    from bench import kws_adapt

    need((kws_adapt.SPHINXTRAIN / "bw").is_file(), "sphinxtrain is not installed")
    need_tools("sphinx_fe", "pocketsphinx_mdef_convert")
    from pocketsphinx import get_model_path

    from server.analysis.kws import Keyphrase, KeywordSpotter, SpotterParams

    mixw = kws_adapt.sendump_mixw(Path(get_model_path("en-us/en-us/sendump")))
    assert mixw.shape[1:] == (3, 128) and np.allclose(mixw.sum(axis=2), 1.0)
    out = tmp_path / "small.mllr"
    kws_adapt.adapt(tmp_path / "work", out, voices=("en-us+m1", "en-us+f1"), sentences=6,
                    real=False)
    values = out.read_text().split()
    assert values[:3] == ["1", "3", "13"] and len(values) == 590
    pcm = callgen.synthesize("Please read me the verification code now.", "en-us+m3", 160, 8000)
    spotter = KeywordSpotter([Keyphrase("verification code", "r", 1e-60)], 8000,
                             SpotterParams(mllr=str(out)))
    assert spotter._mllr(8000) == out
    assert [s.phrase for s in spotter.feed(0, pcm, final=True)] == ["verification code"]


def test_spotter_rejects_what_it_cannot_do() -> None:
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed")
    from server.analysis.kws import KeywordSpotter

    keyphrases = keyphrases_from_packs(["builtin:en-core"])
    with pytest.raises(ValueError, match="sample_rate"):
        KeywordSpotter(keyphrases, 44100)
    with pytest.raises(ValueError, match="no keyphrases"):
        KeywordSpotter([], 16000)


# -- the worker pool ------------------------------------------------------------------------


async def test_pool_spots_from_asyncio(calls_dir: Path) -> None:
    need_spotter()
    from server.kws_pool import KwsPool

    call = callgen.generate_call(POLICY_CALL, 8000, calls_dir)
    rate = call.truth.sample_rate
    expected, pieces, _ = spot_wav(call)
    keyphrases = keyphrases_from_packs(["builtin:en-core"], sample_rate=rate)
    pool = KwsPool(workers=2)
    try:
        await pool.start()
        pool.open_call("a1/c1", keyphrases, rate)
        pool.open_call("a2/c2", keyphrases, rate)
        ticks = 0

        async def ticker() -> None:  # the loop stays free while workers decode
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        tick_task = asyncio.create_task(ticker(), name="test-ticker")
        results: dict[str, list] = {"a1/c1": [], "a2/c2": []}
        for piece in pieces:  # both calls at once, each piece awaited: a live pace, no drops
            futures = [pool.submit(key, piece.offset, piece.pcm, piece.final) for key in results]
            assert all(f is not None for f in futures)
            for key, spots in zip(results, await asyncio.gather(*futures), strict=True):
                results[key] += spots
        for key in results:
            results[key] += await pool.close_call(key)
        tick_task.cancel()
        assert results["a1/c1"] == expected
        assert results["a2/c2"] == expected
        stats = pool.stats()
        assert stats["dropped_pieces"] == 0 and stats["calls"] == 0
        assert stats["cpu_s"] > 0 and stats["audio_s"] > 0
        assert ticks > 0
    finally:
        await pool.close()


async def test_pool_drops_audio_when_workers_fall_behind() -> None:
    need(HAVE_POCKETSPHINX, "pocketsphinx is not installed")
    from server.kws_pool import KwsPool

    keyphrases = keyphrases_from_packs(["builtin:en-core"], sample_rate=8000)
    pool = KwsPool(workers=1, max_backlog_s=2.0)
    try:
        pool.open_call("c", keyphrases, 8000)
        noise = (np.random.default_rng(0).standard_normal(8000) * 300).astype(np.int16)
        accepted = [pool.submit("c", i * 8000, noise) for i in range(6)]  # 6 s at once
        assert sum(f is not None for f in accepted) == 2
        assert pool.stats()["dropped_pieces"] == 4 and pool.stats()["dropped_s"] == 4.0
        await asyncio.gather(*(f for f in accepted if f is not None))
        assert pool.stats()["backlog_s"] == [0.0]
        assert await pool.feed("c", 6 * 8000, noise, final=True) == []  # accepted again
        assert pool.submit("unknown", 0, noise) is None
        assert await pool.close_call("c") == []
    finally:
        await pool.close()
