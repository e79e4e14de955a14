"""Call plans and agent cycles: seeded, well-formed, and their audio shows what they script."""

from __future__ import annotations

import random
import re
import tomllib
from itertools import islice, pairwise
from pathlib import Path

import numpy as np
import pytest
import webrtcvad

from agent_client.floor_script import (
    BACKCHANNEL_MAX_S,
    MANDATORY_PHRASES,
    CallPlan,
    Span,
    call_info,
    call_states,
    plan_agent_cycle,
    plan_call,
    render,
)
from agent_client.speech import SpeechSynth

SEEDS = range(300)
EPS = 1e-6  # plan times are rounded to the millisecond
RULES_DIR = Path(__file__).resolve().parent.parent / "server" / "rules"


@pytest.fixture(scope="module")
def plans() -> list[CallPlan]:
    return [plan_call(random.Random(seed), f"c-{seed}") for seed in SEEDS]


def overlaps(a: tuple[Span, ...], b: tuple[Span, ...]) -> list[Span]:
    """Intersections of two sorted, disjoint span lists."""
    out = []
    for x in a:
        for y in b:
            lo, hi = max(x.start_s, y.start_s), min(x.end_s, y.end_s)
            if lo < hi:
                out.append(Span(lo, hi))
    return out


def speaking(spans: tuple[Span, ...], t0: float, t1: float) -> bool:
    return any(s.start_s < t1 and t0 < s.end_s for s in spans)


def test_plans_are_deterministic() -> None:
    for seed in (1, 2, 3):
        assert plan_call(random.Random(seed), "c") == plan_call(random.Random(seed), "c")
    assert plan_call(random.Random(1), "c") != plan_call(random.Random(2), "c")
    a = list(islice(plan_agent_cycle(random.Random(5)), 50))
    assert a == list(islice(plan_agent_cycle(random.Random(5)), 50))


def test_plan_shape(plans: list[CallPlan]) -> None:
    for p in plans:
        assert 40.0 <= p.duration_s <= 240.0
        assert p.direction in ("inbound", "outbound")
        assert re.fullmatch(r"1[3-9]\d\*{4}\d{4}", p.customer_masked)
        assert p.agent[0].start_s < p.customer[0].start_s  # the agent greets first
        for spans in (p.agent, p.customer):
            assert all(0 < s.start_s < s.end_s <= p.duration_s for s in spans)
            assert all(a.end_s <= b.start_s for a, b in pairwise(spans))
            for s in spans[:-1]:  # turns of 1-8 s, or back-channels under 0.4 s
                assert (
                    1.0 - EPS <= s.duration_s <= 8.0 + EPS
                    or 0.1 <= s.duration_s < BACKCHANNEL_MAX_S
                )
        assert 0.4 - EPS <= p.customer[-1].duration_s <= 1.2 + EPS  # "bye"
        assert p.agent[-1].end_s < p.customer[-1].start_s
        greeting = p.lines[0]
        assert greeting.speaker == "agent"
        assert (MANDATORY_PHRASES[p.language] in greeting.text) == p.disclosure_said


def test_lines_lie_inside_their_speakers_speech(plans: list[CallPlan]) -> None:
    for p in plans:
        assert len(p.lines) >= len(p.agent) + len(p.customer)
        for line in p.lines:
            spans = p.agent if line.speaker == "agent" else p.customer
            assert any(s.contains(line.offset_s) for s in spans), (p.call_id, line)
        for line in p.policy_lines:
            assert line.speaker == "agent"


def test_incidents_are_what_they_claim(plans: list[CallPlan]) -> None:
    for p in plans:
        for d in p.dead_air:
            assert 6.0 - EPS <= d.duration_s <= 15.0 + EPS
            assert not speaking(p.agent, d.start_s, d.end_s)
            assert not speaking(p.customer, d.start_s, d.end_s)
        for h in p.holds:
            assert 20.0 - EPS <= h.duration_s <= 60.0 + EPS
            assert not speaking(p.agent, h.start_s, h.end_s)
            assert not speaking(p.customer, h.start_s, h.end_s)
        assert len(p.overtalk_by) == len(p.overtalk)
        scripted = set(p.overtalk)
        for o in overlaps(p.agent, p.customer):
            if o in scripted:
                assert 1.5 - EPS <= o.duration_s <= 4.0 + EPS
            else:  # back-channels only
                assert o.duration_s < BACKCHANNEL_MAX_S, (p.call_id, o)
        assert scripted <= set(overlaps(p.agent, p.customer))
        for o, by in zip(p.overtalk, p.overtalk_by, strict=True):
            interrupter = p.agent if by == "agent" else p.customer
            assert any(s.start_s == o.start_s for s in interrupter)  # who started second


def test_normal_gaps_are_short(plans: list[CallPlan]) -> None:
    """Silences outside scripted dead air and holds stay under any dead-air threshold."""
    for p in plans:
        speech = sorted(p.agent + p.customer, key=lambda s: s.start_s)
        assert speech[0].start_s <= 0.8
        silences, end = [], speech[0].end_s
        for s in speech[1:]:
            if s.start_s > end:
                silences.append((end, s.start_s))
            end = max(end, s.end_s)
        assert p.duration_s - end <= 1.0
        for a, b in silences:
            # Cut the scripted incidents out of the silence; what is left is ordinary gaps.
            for e in sorted(p.dead_air + p.holds, key=lambda e: e.start_s):
                if a <= e.start_s and e.end_s <= b:
                    assert e.start_s - a <= 1.5, (p.call_id, a, e)
                    a = e.end_s
            assert b - a <= 1.5, (p.call_id, a, b)


def test_incident_mix(plans: list[CallPlan]) -> None:
    share = sum(p.has_incident for p in plans) / len(plans)
    assert 0.25 <= share <= 0.42, share
    assert sum(bool(p.dead_air) for p in plans) >= 20
    assert sum(bool(p.holds) for p in plans) >= 15
    assert {by for p in plans for by in p.overtalk_by} == {"agent", "customer"}
    assert {p.language for p in plans if p.policy_lines} == {"en", "zh"}
    assert sum(not p.has_incident and not p.holds for p in plans) > len(plans) // 2


def test_incident_rate_knob() -> None:
    calm = [plan_call(random.Random(s), "c", incident_rate=0.0, hold_rate=0.0) for s in SEEDS]
    assert not any(p.has_incident or p.holds for p in calm)
    busy = [plan_call(random.Random(s), "c", incident_rate=1.0, min_s=120) for s in range(50)]
    assert all(p.has_incident for p in busy)


def test_policy_lines_match_the_builtin_rule_packs(plans: list[CallPlan]) -> None:
    """Policy lines must trip the hub's built-in rules and ordinary lines must not."""
    packs = {"en": RULES_DIR / "en-core.toml", "zh": RULES_DIR / "zh-core.toml"}
    if not all(path.exists() for path in packs.values()):
        pytest.skip("rule packs not present")
    phrases = {
        lang: [
            ph.lower()
            for rule in tomllib.loads(path.read_text("utf-8"))["rule"]
            for ph in rule.get("phrases", ())
        ]
        for lang, path in packs.items()
    }
    for p in plans:
        policy = set(p.policy_lines)
        for line in p.lines:
            hit = any(ph in line.text.lower() for ph in phrases[p.language])
            assert hit == (line in policy), (p.language, line.text)


def test_agent_cycle() -> None:
    steps = list(islice(plan_agent_cycle(random.Random(3), call_id_prefix="a7"), 1500))
    assert steps[0][:2] == ("status", "logged_in")
    states = {"logged_in", "ready", "wrap_up", "break", "logged_out"}
    call_ids = []
    for prev, step, nxt in zip(steps, steps[1:], steps[2:], strict=False):
        if step[0] == "call":
            plan = step[1]
            assert prev[:2] == ("status", "ready") and nxt[:2] == ("status", "wrap_up")
            call_ids.append(plan.call_id)
        else:
            _, state, extra, dwell = step
            assert state in states and dwell > 0
            assert ("reason" in extra) == (state == "break")
    assert len(set(call_ids)) == len(call_ids) > 300
    assert all(cid.startswith("a7-") for cid in call_ids)
    dwell = {}
    for step in steps:
        if step[0] == "status":
            dwell.setdefault(step[1], []).append(step[3])
    assert 5.0 <= min(dwell["ready"]) and 5.0 <= min(dwell["wrap_up"])
    assert max(dwell["wrap_up"]) > 120.0  # some wrap-ups run long enough to alert
    assert max(dwell["break"]) > 900.0 and len(dwell["break"]) > 10
    assert "logged_out" in dwell
    reasons = {s[2]["reason"] for s in steps if s[0] == "status" and s[1] == "break"}
    assert {"lunch", "coffee", "training"} <= reasons


def test_call_states_and_info() -> None:
    plan = next(
        p
        for s in range(100)
        if (p := plan_call(random.Random(s), "c-h", hold_rate=1.0, min_s=120)).holds
    )
    h = plan.holds[0]
    assert call_states(plan)[:3] == ((0.0, "on_call"), (h.start_s, "hold"), (h.end_s, "on_call"))
    assert call_info(plan, 8000) == {
        "id": "c-h",
        "direction": plan.direction,
        "customer": plan.customer_masked,
        "sample_rate": 8000,
    }


# -- audio ---------------------------------------------------------------------------------


def vad_flags(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    vad = webrtcvad.Vad(3)
    n = sample_rate // 50
    data = np.ascontiguousarray(samples, dtype=np.int16)
    starts = range(0, len(data) - n + 1, n)
    return np.array([vad.is_speech(data[i : i + n].tobytes(), sample_rate) for i in starts])


@pytest.fixture(scope="module")
def incident_plan() -> CallPlan:
    """The first seed whose plan has dead air, overtalk and a hold."""
    for seed in range(1000):
        p = plan_call(random.Random(seed), "c-x", incident_rate=1.0, hold_rate=1.0, min_s=150)
        if p.dead_air and p.overtalk and p.holds:
            return p
    raise AssertionError("no plan with all incidents")


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_rendered_audio_shows_the_script(incident_plan: CallPlan, sample_rate: int) -> None:
    p = incident_plan
    agent, customer = SpeechSynth(sample_rate, 1, 115.0), SpeechSynth(sample_rate, 2, 205.0)
    audio = render(p, agent, customer, 0, round(p.duration_s * sample_rate), sample_rate)
    assert audio.shape == (round(p.duration_s * sample_rate), 2) and audio.dtype == np.int16
    flags = [vad_flags(audio[:, 0], sample_rate), vad_flags(audio[:, 1], sample_rate)]
    t = np.arange(len(flags[0])) * 0.02  # frame starts

    def frames(t0: float, t1: float) -> np.ndarray:
        return (t >= t0) & (t + 0.02 <= t1)

    for d in list(p.dead_air) + list(p.holds):  # silence once the VAD hangover has passed
        window = frames(d.start_s + 0.2, d.end_s)
        assert window.sum() > 200
        assert not flags[0][window].any() and not flags[1][window].any()
    for o in p.overtalk:
        window = frames(o.start_s + 0.1, o.end_s)
        assert flags[0][window].mean() >= 0.9 and flags[1][window].mean() >= 0.9
    for col, spans in ((0, p.agent), (1, p.customer)):
        inside = np.zeros(len(t), bool)
        near = np.zeros(len(t), bool)
        for s in spans:
            inside |= frames(s.start_s + 0.1, s.end_s)
            near |= (t + 0.02 > s.start_s) & (t < s.end_s + 0.25)
        assert flags[col][inside].mean() >= 0.95
        assert flags[col][~near].mean() <= 0.01  # the first ~100 ms may be flagged


def test_render_slices_equal_the_whole(incident_plan: CallPlan) -> None:
    sr = 8000
    agent, customer = SpeechSynth(sr, 3, bank_s=2.0), SpeechSynth(sr, 4, bank_s=2.0)
    n = round(60.0 * sr)
    whole = render(incident_plan, agent, customer, 0, n, sr)
    rng = random.Random(0)
    cuts = sorted({0, n, *(rng.randrange(n) for _ in range(300))})
    parts = [render(incident_plan, agent, customer, a, b - a, sr) for a, b in pairwise(cuts)]
    assert np.array_equal(np.concatenate(parts), whole)
    assert np.array_equal(render(incident_plan, agent, customer, 800, 800, sr), whole[800:1600])


def test_render_checks_the_sample_rate(incident_plan: CallPlan) -> None:
    with pytest.raises(ValueError):
        render(incident_plan, SpeechSynth(8000, 1), SpeechSynth(16000, 1), 0, 800, 8000)
