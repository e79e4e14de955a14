"""Scripts for simulated agents: what happens on each call, and what the agent does all day.

The simulator has to show a supervisor wall something worth watching, and the hub's tests need
to know what the hub *should* have found.  So conversations are planned up front, seeded and
pure: a plan says when each side talks, which lines are said, and which incidents (dead air,
overtalk, holds, policy phrases) were put in on purpose.  ``render`` then turns any slice of a
plan into stereo audio on demand, so the simulator keeps no audio buffers and can render from
any position (after a reconnect, say) with identical results.

Normal conversation is kept clear of the incident thresholds on purpose: gaps between turns are
0.2-1.2 s (well under any dead-air threshold, and longer than the ~120 ms VAD hangover, so turns
do not smear into overtalk), and back-channels ("mm-hm") overlap the other side by 0.15-0.3 s,
the kind of overlap a hub must not report as overtalk or count as an interruption.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agent_client.speech import SpeechSynth

__all__ = [
    "BACKCHANNEL_MAX_S",
    "MANDATORY_PHRASES",
    "POLICY_PHRASES",
    "CallPlan",
    "Line",
    "Span",
    "Step",
    "call_info",
    "call_states",
    "mask_number",
    "plan_agent_cycle",
    "plan_call",
    "render",
]

BACKCHANNEL_MAX_S = 0.4
"""Back-channel overlaps are always shorter than this; scripted overtalk is at least 1.5 s.
Back-channels are in fact at most 0.3 s, because a VAD stretches them by its ~0.1 s hangover
and a hub typically starts counting interruptions at 0.5 s of overlap."""

POLICY_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "false_promise": ("this fund has guaranteed returns", "there is no risk at all"),
        "sensitive_data": ("can you read me the verification code",),
        "abusive": ("you are an idiot",),
    },
    "zh": {
        "false_promise": ("保本保息", "稳赚不赔"),
        "sensitive_data": ("请告诉我验证码",),
        "abusive": ("你是白痴吗",),
    },
}
"""Phrases that break the sales-conduct policy, by language and category.  A policy Line
contains one of these verbatim, so rule packs can match them."""

MANDATORY_PHRASES: dict[str, str] = {
    "en": "this call may be recorded",
    "zh": "本次通话可能会被录音",
}
"""The recording disclosure an agent must say in the greeting; omitting it is an incident."""

# Sentences a policy phrase is said in, by language and category; "{}" is the phrase.
_POLICY_TEMPLATES = {
    "en": {
        "false_promise": ("Honestly, {}.", "Let me be clear, {}.", "I can tell you {}."),
        "sensitive_data": ("To finish the sign-up, {}?", "Before we go on, {}?"),
        "abusive": ("Look, {}.", "Seriously, {}?"),
    },
    "zh": {
        "false_promise": ("您放心，这个产品{}。", "我跟您说，{}。", "{}，这个您放心。"),
        "sensitive_data": ("为了完成办理，{}。", "{}，我帮您登记一下。"),
        "abusive": ("{}？", "我说了多少遍了，{}？"),
    },
}

_GREETING = {
    "en": "Good morning, this is {name} from Brightway Wealth, {disclosure} for quality.",
    "zh": "您好，我是明达财富的{name}，{disclosure}。",
}
_GREETING_NO_DISCLOSURE = {
    "en": "Good morning, this is {name} from Brightway Wealth.",
    "zh": "您好，我是明达财富的{name}。",
}
_AGENT_NAMES = {"en": ("Alex", "Sam", "Jordan", "Taylor"), "zh": ("小李", "小王", "小张", "小陈")}
_AGENT_LINES = {
    "en": (
        "Is now a good time to talk?",
        "Let me look up your account.",
        "Our savings plan pays a variable return each quarter.",
        "Past performance does not guarantee future results.",
        "I can email you the product brochure.",
        "Could you confirm your date of birth?",
        "The management fee is one point two percent a year.",
        "Would you like me to book a follow-up call?",
        "I will note that question and get back to you.",
        "There is a fourteen day cooling-off period.",
    ),
    "zh": (
        "请问您现在方便吗？",
        "我帮您查一下账户。",
        "这款产品的收益是浮动的，按季度结算。",
        "过往业绩不代表未来表现。",
        "我把产品说明书发到您的邮箱。",
        "麻烦您核对一下出生日期。",
        "管理费是每年百分之一点二。",
        "需要我帮您预约一次回访吗？",
        "这个问题我记下来，稍后给您答复。",
        "购买后有十四天的冷静期。",
    ),
}
_CUSTOMER_OPENERS = {
    "en": ("Hi, yes, I have a few minutes.", "Hello, what is this about?"),
    "zh": ("你好，我现在有几分钟。", "喂，你好，什么事？"),
}
_CUSTOMER_LINES = {
    "en": (
        "What is the fee on that?",
        "I am not sure, I need to think about it.",
        "Can you send me the details?",
        "How long is the money locked in?",
        "My wife usually handles this.",
        "What happens if the market drops?",
        "Okay, that sounds reasonable.",
        "I already have a plan with my bank.",
    ),
    "zh": (
        "手续费是多少？",
        "我再考虑一下吧。",
        "你把资料发给我看看。",
        "这个钱要锁定多久？",
        "这事一般是我爱人管。",
        "如果行情下跌怎么办？",
        "好的，听起来还行。",
        "我在银行已经买了理财。",
    ),
}
_BACKCHANNELS = {"en": ("mm-hm", "right", "okay", "yeah"), "zh": ("嗯", "对", "好的", "是")}
_HOLD_START = {
    "en": "Let me check that for you, please hold for a moment.",
    "zh": "我帮您查一下，请您稍等。",
}
_HOLD_END = {"en": "Thank you for holding.", "zh": "感谢您的耐心等待。"}
_AGENT_BYE = {"en": "Thank you for your time, goodbye.", "zh": "感谢您的接听，再见。"}
_CUSTOMER_BYE = {"en": "Bye.", "zh": "再见。"}

_MOBILE_PREFIXES = tuple(
    "130 133 135 136 137 138 139 150 152 158 159 176 180 182 186 187 188 189 199".split()
)

# Closing turns (agent bye, gap, customer bye, tail) take at most this long.
_CLOSING_MAX_S = 2.5 + 1.2 + 1.2 + 1.0
_CLOSING_MIN_S = 1.0 + 0.2 + 0.4 + 0.3
_FADE_S = 0.008

Speaker = Literal["agent", "customer"]
Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a call, in seconds from the call's first sample; ``end_s`` is exclusive."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def contains(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True, slots=True)
class Line:
    """A transcript line; ``offset_s`` lies inside one of the speaker's speech spans."""

    offset_s: float
    speaker: Speaker
    text: str


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything that happens on one call, decided in advance.

    ``agent``/``customer`` are each sorted and non-overlapping.  ``dead_air`` and ``overtalk``
    list only the incidents scripted on purpose (normal gaps and back-channels are not in
    them); ``overtalk_by[i]`` says who cut in for ``overtalk[i]``.  During ``holds`` nobody
    speaks.
    """

    call_id: str
    direction: Direction
    customer_masked: str
    duration_s: float
    agent: tuple[Span, ...]
    customer: tuple[Span, ...]
    lines: tuple[Line, ...]
    dead_air: tuple[Span, ...]
    overtalk: tuple[Span, ...]
    holds: tuple[Span, ...]
    overtalk_by: tuple[Speaker, ...] = ()
    language: str = "en"
    disclosure_said: bool = True

    @property
    def policy_lines(self) -> tuple[Line, ...]:
        """Lines containing one of ``POLICY_PHRASES`` (case-insensitively)."""
        phrases = [p for group in POLICY_PHRASES[self.language].values() for p in group]
        return tuple(line for line in self.lines if any(p in line.text.lower() for p in phrases))

    @property
    def has_incident(self) -> bool:
        """Whether anything in this call should raise an alert on the hub."""
        return bool(self.dead_air or self.overtalk or self.policy_lines) or not self.disclosure_said


def mask_number(rng: random.Random) -> str:
    """A customer mobile number that was never unmasked: ``138****5678``."""
    return f"{rng.choice(_MOBILE_PREFIXES)}****{rng.randrange(10000):04d}"


def plan_call(
    rng: random.Random,
    call_id: str,
    *,
    min_s: float = 40.0,
    max_s: float = 240.0,
    incident_rate: float = 0.35,
    hold_rate: float = 0.12,
    language: str | None = None,
    direction: Direction | None = None,
) -> CallPlan:
    """Plan one call of ``min_s``..``max_s`` seconds.

    With probability ``incident_rate`` the call gets one or two scripted incidents (dead air,
    overtalk with either side cutting in, a policy phrase, or a greeting without the recording
    disclosure); with probability ``hold_rate`` the agent puts the customer on hold once.  The
    defaults give about one call in three with an incident, enough to keep a demo wall lively.
    Incidents that no longer fit before the call's planned end are dropped.
    """
    if min_s < 20.0 or max_s - min_s < 10.0:
        raise ValueError("need min_s >= 20 and max_s - min_s >= 10")
    lang = language or rng.choice(("en", "zh"))
    chosen_direction: Direction = direction or rng.choice(("inbound", "outbound"))
    customer = mask_number(rng)
    # The body of the call may overrun body_end by one short turn (~2.2 s); the closing adds
    # at most _CLOSING_MAX_S, so the call ends between min_s and max_s.
    target = rng.uniform(min_s + _CLOSING_MAX_S - _CLOSING_MIN_S, max_s - 2.2)
    conv = _Conversation(rng, lang, body_end=target - _CLOSING_MAX_S)

    # Incidents to place: (earliest time, kind, whose turn it must be).  For overtalk that is
    # the side that gets cut in on; dead air, holds and policy phrases come before agent turns.
    pending: list[tuple[float, str, Speaker]] = []
    disclosure = True
    if rng.random() < incident_rate:
        kinds = ["dead_air", "overtalk", "policy", "no_disclosure"]
        chosen = {
            rng.choices(kinds, [0.34, 0.34, 0.24, 0.08])[0] for _ in range(1 + (rng.random() < 0.3))
        }
        for kind in sorted(chosen):
            if kind == "no_disclosure":
                disclosure = False
                continue
            turn_of: Speaker = rng.choice(("agent", "customer")) if kind == "overtalk" else "agent"
            pending.append((rng.uniform(0.1, 0.6) * conv.body_end, kind, turn_of))
    if rng.random() < hold_rate:
        pending.append((rng.uniform(0.2, 0.6) * conv.body_end, "hold", "agent"))
    pending.sort()

    conv.open(disclosure)
    while conv.t < conv.body_end:
        due = next((p for p in pending if p[0] <= conv.t and p[2] == conv.speaker), None)
        kind = due[1] if due else None
        if due:
            pending.remove(due)
        if kind == "dead_air" and conv.fits(16.0):
            conv.dead_air()
        else:
            conv.gap()
        if kind == "hold" and conv.fits(31.0):
            conv.hold()
        elif kind == "overtalk" and conv.fits(12.0):
            conv.overtalk()
        else:
            conv.turn(policy=kind == "policy")
    conv.close()

    return CallPlan(
        call_id=call_id,
        direction=chosen_direction,
        customer_masked=customer,
        duration_s=round(conv.t + rng.uniform(0.3, 1.0), 3),
        agent=tuple(sorted(conv.spans["agent"], key=lambda s: s.start_s)),
        customer=tuple(sorted(conv.spans["customer"], key=lambda s: s.start_s)),
        lines=tuple(sorted(conv.lines, key=lambda line: line.offset_s)),
        dead_air=tuple(conv.dead_airs),
        overtalk=tuple(conv.overtalks),
        holds=tuple(conv.holds),
        overtalk_by=tuple(conv.overtalk_by),
        language=lang,
        disclosure_said=disclosure,
    )


def _other(speaker: Speaker) -> Speaker:
    return "customer" if speaker == "agent" else "agent"


class _Conversation:
    """The conversation so far, while ``plan_call`` walks through it turn by turn.

    ``t`` is the end of everything said so far (nobody speaks after it) and ``speaker`` is who
    talks next.  Times are rounded to the millisecond as they are recorded.
    """

    def __init__(self, rng: random.Random, lang: str, body_end: float) -> None:
        self.rng, self.lang, self.body_end = rng, lang, body_end
        self.t = 0.0
        self.speaker: Speaker = "agent"
        self.spans: dict[Speaker, list[Span]] = {"agent": [], "customer": []}
        self.lines: list[Line] = []
        self.dead_airs: list[Span] = []
        self.overtalks: list[Span] = []
        self.overtalk_by: list[Speaker] = []
        self.holds: list[Span] = []

    def fits(self, seconds: float) -> bool:
        return self.t + seconds < self.body_end

    def say(self, speaker: Speaker, start: float, end: float, texts: list[str]) -> None:
        start, end = round(start, 3), round(end, 3)
        self.spans[speaker].append(Span(start, end))
        step = (end - start) / len(texts)
        for i, text in enumerate(texts):
            self.lines.append(Line(round(start + 0.05 + i * step, 3), speaker, text))

    def line(self, speaker: Speaker) -> str:
        pool = _AGENT_LINES if speaker == "agent" else _CUSTOMER_LINES
        return self.rng.choice(pool[self.lang])

    def open(self, disclosure: bool) -> None:
        """The agent greets (with or without the recording disclosure), the customer answers."""
        rng, lang = self.rng, self.lang
        greeting = (_GREETING if disclosure else _GREETING_NO_DISCLOSURE)[lang].format(
            name=rng.choice(_AGENT_NAMES[lang]), disclosure=MANDATORY_PHRASES[lang]
        )
        start = rng.uniform(0.3, 0.8)  # the line connects before anyone talks
        self.t = start + rng.uniform(3.0, 5.0)
        self.say("agent", start, self.t, [greeting])
        start = self.t + rng.uniform(0.2, 1.2)
        self.t = start + rng.uniform(1.0, 3.0)
        self.say("customer", start, self.t, [rng.choice(_CUSTOMER_OPENERS[lang])])
        self.speaker = "agent"

    def gap(self) -> None:
        self.t += self.rng.uniform(0.2, 1.2)

    def dead_air(self) -> None:
        gap = self.rng.uniform(6.0, 15.0)
        self.dead_airs.append(Span(round(self.t, 3), round(self.t + gap, 3)))
        self.t += gap

    def turn(self, *, policy: bool = False) -> None:
        """A normal turn of 1-8 s, maybe with a short back-channel from the listener."""
        rng, speaker, start = self.rng, self.speaker, self.t
        duration = min(rng.uniform(1.0, 8.0), max(1.0, self.body_end - start))
        if policy:
            texts = [_policy_line(rng, self.lang)]
        else:
            texts = [self.line(speaker) for _ in range(1 + (duration > 5.0))]
        self.say(speaker, start, start + duration, texts)
        if duration >= 2.5 and rng.random() < 0.3:
            at = start + rng.uniform(0.8, duration - 1.0)
            length = rng.uniform(0.15, BACKCHANNEL_MAX_S - 0.1)
            self.say(_other(speaker), at, at + length, [rng.choice(_BACKCHANNELS[self.lang])])
        self.t, self.speaker = start + duration, _other(speaker)

    def overtalk(self) -> None:
        """The current speaker is cut in on for 1.5-4 s; the interrupter talks on after."""
        rng, holder, start = self.rng, self.speaker, self.t
        interrupter = _other(holder)
        overlap = rng.uniform(1.5, 4.0)
        end = start + rng.uniform(overlap + 1.0, 8.0)
        self.say(holder, start, end, [self.line(holder)])
        cut_in, self.t = end - overlap, end + rng.uniform(1.0, 3.0)
        self.say(interrupter, cut_in, self.t, [self.line(interrupter)])
        self.overtalks.append(Span(round(cut_in, 3), round(end, 3)))
        self.overtalk_by.append(interrupter)
        # The one cut in on answers next.

    def hold(self) -> None:
        """The agent announces a hold, nobody speaks for 20-60 s, the agent comes back."""
        rng, lang = self.rng, self.lang
        start = self.t
        self.t = start + rng.uniform(2.0, 3.0)
        self.say("agent", start, self.t, [_HOLD_START[lang]])
        h0 = self.t + rng.uniform(0.5, 1.5)
        h1 = h0 + min(rng.uniform(20.0, 60.0), self.body_end - 5.0 - h0)
        self.holds.append(Span(round(h0, 3), round(h1, 3)))
        start = h1 + rng.uniform(0.3, 1.0)
        self.t = start + rng.uniform(1.0, 2.0)
        self.say("agent", start, self.t, [_HOLD_END[lang]])
        self.speaker = "customer"

    def close(self) -> None:
        """The agent says goodbye (cutting short whatever was due), the customer answers."""
        rng = self.rng
        start = self.t + rng.uniform(0.2, 1.2)
        self.t = start + rng.uniform(1.0, 2.5)
        self.say("agent", start, self.t, [_AGENT_BYE[self.lang]])
        start = self.t + rng.uniform(0.2, 1.2)
        self.t = start + rng.uniform(0.4, 1.2)
        self.say("customer", start, self.t, [_CUSTOMER_BYE[self.lang]])


def _policy_line(rng: random.Random, lang: str) -> str:
    category = rng.choices(["false_promise", "sensitive_data", "abusive"], [0.6, 0.25, 0.15])[0]
    phrase = rng.choice(POLICY_PHRASES[lang][category])
    text = rng.choice(_POLICY_TEMPLATES[lang][category]).format(phrase)
    return text[0].upper() + text[1:]


# -- audio ---------------------------------------------------------------------------------


def render(
    plan: CallPlan,
    synth_agent: SpeechSynth,
    synth_customer: SpeechSynth,
    start_sample: int,
    n_samples: int,
    sample_rate: int,
) -> np.ndarray:
    """Stereo int16 audio of samples ``[start_sample, start_sample + n_samples)`` of the call.

    Column 0 is the agent, column 1 the customer: line noise everywhere, speech inside the
    speaker's spans.  The result depends only on the arguments, so rendering consecutive
    slices gives exactly the samples of rendering them in one go.  Cost is a couple of
    bisections and numpy slice copies per channel, independent of the call's length.
    """
    if synth_agent.sample_rate != sample_rate or synth_customer.sample_rate != sample_rate:
        raise ValueError("synth sample rates must match sample_rate")
    out = np.empty((n_samples, 2), dtype=np.int16)
    for col, spans, synth in ((0, plan.agent, synth_agent), (1, plan.customer, synth_customer)):
        # Offset the customer's noise so one synth used for both sides is not identical.
        out[:, col] = synth.background_samples(start_sample + col * 7919, n_samples)
        _add_speech(out[:, col], spans, synth, start_sample, sample_rate)
    return out


def _add_speech(
    column: np.ndarray, spans: tuple[Span, ...], synth: SpeechSynth, start: int, sr: int
) -> None:
    stop = start + column.shape[0]
    # Spans starting before the slice ends; walk back while they still reach into it.
    i = bisect_left(spans, (stop + 1) / sr, key=lambda s: s.start_s)
    fade = int(_FADE_S * sr)
    while i > 0:
        i -= 1
        span = spans[i]
        s0, s1 = round(span.start_s * sr), round(span.end_s * sr)
        if s1 <= start:
            break
        lo, hi = max(s0, start), min(s1, stop)
        if lo >= hi:
            continue
        # Each turn starts at a different place in the voice's material (golden-ratio hop).
        speech = synth.speech_samples(lo - s0 + int(s0 * 0.618034), hi - lo)
        if lo - s0 < fade or s1 - hi < fade:
            gain = np.minimum(np.arange(lo - s0, hi - s0), np.arange(s1 - lo, s1 - hi, -1))
            speech = (speech * np.minimum(gain / fade, 1.0)).astype(np.int16)
        column[lo - start : hi - start] += speech


# -- the agent's day -----------------------------------------------------------------------


Step = tuple[Literal["status"], str, dict, float] | tuple[Literal["call"], CallPlan]
"""A step of ``plan_agent_cycle``: a status with its extra fields and dwell time, or a call."""

_BREAKS = (  # reason, weight, shortest and longest dwell in seconds
    ("coffee", 0.40, 120.0, 600.0),
    ("restroom", 0.25, 60.0, 300.0),
    ("training", 0.15, 900.0, 2700.0),
    ("lunch", 0.15, 1800.0, 3600.0),
    ("meeting", 0.05, 600.0, 1800.0),
)


def plan_agent_cycle(
    rng: random.Random,
    *,
    call_id_prefix: str = "c",
    min_call_s: float = 40.0,
    max_call_s: float = 240.0,
    incident_rate: float = 0.35,
    language: str | None = None,
) -> Iterator[Step]:
    """Endless steps of one agent's shift.

    logged_in -> ready (5-40 s, sometimes idle for minutes) -> call -> wrap_up (5-60 s,
    sometimes several minutes) -> ready ..., with breaks now and then and, rarely, a log-out
    and back in.  A ``("call", plan)`` step means on_call for ``plan.duration_s`` seconds,
    with the states of ``call_states(plan)`` (holds) inside it.  Long dwells are deliberate:
    they are what a wall's state timers and state alerts are for.
    """
    yield ("status", "logged_in", {}, rng.uniform(2.0, 10.0))
    while True:
        ready = rng.uniform(60.0, 300.0) if rng.random() < 0.08 else rng.uniform(5.0, 40.0)
        yield ("status", "ready", {}, ready)
        call_id = f"{call_id_prefix}-{rng.getrandbits(48):012x}"
        yield (
            "call",
            plan_call(
                rng,
                call_id,
                min_s=min_call_s,
                max_s=max_call_s,
                incident_rate=incident_rate,
                language=language,
            ),
        )
        wrap = rng.uniform(120.0, 420.0) if rng.random() < 0.07 else rng.uniform(5.0, 60.0)
        yield ("status", "wrap_up", {}, wrap)
        roll = rng.random()
        if roll < 0.08:
            reason, _, low, high = rng.choices(_BREAKS, [b[1] for b in _BREAKS])[0]
            yield ("status", "break", {"reason": reason}, rng.uniform(low, high))
        elif roll < 0.09:
            yield ("status", "logged_out", {}, rng.uniform(60.0, 600.0))
            yield ("status", "logged_in", {}, rng.uniform(2.0, 10.0))


def call_states(plan: CallPlan) -> tuple[tuple[float, str], ...]:
    """The in-call state changes as ``(offset_s, state)``: on_call, then hold/on_call pairs."""
    states: list[tuple[float, str]] = [(0.0, "on_call")]
    for hold in plan.holds:
        states += [(hold.start_s, "hold"), (hold.end_s, "on_call")]
    return tuple(states)


def call_info(plan: CallPlan, sample_rate: int) -> dict[str, object]:
    """The ``call`` field of an ``on_call`` status message (protocol section 1.2)."""
    return {
        "id": plan.call_id,
        "direction": plan.direction,
        "customer": plan.customer_masked,
        "sample_rate": sample_rate,
    }
