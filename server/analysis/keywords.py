"""Policy keyword rules on transcript text: rule packs, and a matcher per call.

A rule pack is a TOML file of rules; each rule has phrases and/or regular expressions, a
category, a severity and a speaker filter. Matching is case- and width-insensitive (NFKC +
casefold). English phrases match on word boundaries with any run of spaces between words; Chinese
phrases match as substrings with optional spaces between characters, so no word segmentation is
needed. One rule repeated within `cooldown_s` of audio on the same call raises one alert.

A rule of kind `not_said` is the other way round: one of its phrases must be said within
`within_s` of the call's start, or an alert is raised at that offset. Whether it was said is
known only once recognition has caught up with the deadline, so the caller passes how far that
is (`KeywordMatcher.due(heard_until_s)`): time comes with the audio, never from a clock.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from server.events import KeywordMatched, PhraseNotSaid, Severity, Speaker
from server.pii import mask_text

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "rules"
#: A phrase that starts before a not-said deadline may still be being said at it: the verdict
#: waits until recognition is this far past the deadline (a phrase is rarely longer).
NOT_SAID_GRACE_S = 2.5
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class RuleError(ValueError):
    """A rule pack that cannot be loaded; the message names the file and the rule."""


# typographic apostrophes and dashes (phones, word processors, some ASR engines) as ASCII, so
# "you’re an idiot" matches "you're an idiot" and "risk‑free" matches "risk-free"
_PUNCTUATION = str.maketrans({**dict.fromkeys("\u2018\u2019\u02bc\u2032\u00b4`", "'"),
                              **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212",
                                              "-")})


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).translate(_PUNCTUATION).casefold()
                    .split())


def _phrase_regex(phrase: str) -> str:
    words = normalise(phrase).split(" ")
    if _CJK.search(phrase):
        chars = [c for c in "".join(words)]
        return r"\s*".join(re.escape(c) for c in chars)
    return r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    severity: Severity
    speaker: Speaker | None  # None: either party
    regex: re.Pattern[str]
    pack: str
    phrases: tuple[str, ...] = ()  # as written in the pack (audio keyword spotting uses them)
    within_s: float | None = None  # set: a "not said" rule, one phrase due within this time

    @property
    def not_said(self) -> bool:
        return self.within_s is not None

    def find(self, normalised_text: str) -> str | None:
        m = self.regex.search(normalised_text)
        return m.group(0) if m else None


@dataclass(frozen=True, slots=True)
class RulePack:
    id: str
    language: str
    description: str
    rules: tuple[Rule, ...]


def load_pack(source: str | Path) -> RulePack:
    """Load `builtin:<name>` (shipped in server/rules/) or a path to a TOML rule pack."""
    path = resolve_pack_path(source)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"rule pack {source}: {exc}") from exc
    pack_id = str(data.get("id") or path.stem)
    rules = []
    for i, raw in enumerate(data.get("rule", [])):
        where = f"rule pack {source}, rule #{i + 1} ({raw.get('id', '?')})"
        rules.append(_parse_rule(raw, pack_id, where))
    if not rules:
        raise RuleError(f"rule pack {source}: no [[rule]] entries")
    return RulePack(pack_id, str(data.get("language", "")), str(data.get("description", "")),
                    tuple(rules))


def resolve_pack_path(source: str | Path) -> Path:
    text = str(source)
    if text.startswith("builtin:"):
        path = BUILTIN_DIR / f"{text.removeprefix('builtin:')}.toml"
        if not path.is_file():
            known = ", ".join(sorted(f"builtin:{p.stem}" for p in BUILTIN_DIR.glob("*.toml")))
            raise RuleError(f"unknown rule pack {text} (built in: {known})")
        return path
    return Path(text)


def _parse_rule(raw: dict, pack_id: str, where: str) -> Rule:
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleError(f"{where}: 'id' must be a non-empty string")
    try:
        severity = Severity(raw.get("severity", "medium"))
    except ValueError:
        raise RuleError(f"{where}: severity must be one of {[s.value for s in Severity]}") from None
    speaker_raw = raw.get("speaker", "any")
    if speaker_raw not in ("agent", "customer", "any"):
        raise RuleError(f"{where}: speaker must be agent, customer or any")
    phrases = raw.get("phrases", [])
    patterns = raw.get("patterns", [])
    if not phrases and not patterns:
        raise RuleError(f"{where}: needs 'phrases' or 'patterns'")
    kind = raw.get("kind", "said")
    if kind not in ("said", "not_said"):
        raise RuleError(f"{where}: kind must be said or not_said, got {kind!r}")
    within_s = raw.get("within_s")
    if kind == "not_said":
        if isinstance(within_s, bool) or not isinstance(within_s, int | float) or within_s <= 0:
            raise RuleError(f"{where}: a not_said rule needs within_s, a number of seconds > 0")
        within_s = float(within_s)
    elif within_s is not None:
        raise RuleError(f"{where}: within_s is only for kind = \"not_said\"")
    parts = [_phrase_regex(p) for p in phrases if str(p).strip()]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RuleError(f"{where}: bad pattern {pattern!r}: {exc}") from None
        parts.append(f"(?:{pattern})")
    return Rule(
        id=f"{pack_id}/{rule_id}",
        category=str(raw.get("category", rule_id)),
        severity=severity,
        speaker=None if speaker_raw == "any" else Speaker(speaker_raw),
        regex=re.compile("|".join(parts), re.IGNORECASE),
        pack=pack_id,
        phrases=tuple(str(p) for p in phrases if str(p).strip()),
        within_s=within_s,
    )


class KeywordMatcher:
    """Matches one call's speech against rules: transcript lines (`match`) and phrases spotted
    in the audio (`spotted`) share one per-rule cooldown, so a phrase found by both raises one
    alert. Not-said rules are satisfied by either and judged by `due`."""

    def __init__(self, rules: tuple[Rule, ...], cooldown_s: float = 30.0) -> None:
        self._rules = tuple(r for r in rules if not r.not_said)
        self._required = tuple(r for r in rules if r.not_said)
        self._by_id = {r.id: r for r in rules}
        self._cooldown_s = cooldown_s
        self._last: dict[str, float] = {}
        self._said: dict[str, float] = {}  # not-said rule -> earliest offset it was said at
        self._judged: set[str] = set()

    def match(self, offset_s: float, speaker: Speaker, text: str) -> list[KeywordMatched]:
        norm = normalise(text)
        for rule in self._required:
            if _hears(rule, speaker) and rule.find(norm) is not None:
                self._note_said(rule, offset_s)
        out = []
        for rule in self._rules:
            if not _hears(rule, speaker):
                continue
            phrase = rule.find(norm)
            if phrase is None:
                continue
            event = self._fire(rule, offset_s, speaker, phrase)
            if event is not None:
                out.append(event)
        return out

    def spotted(self, offset_s: float, speaker: Speaker, rule_id: str,
                phrase: str) -> list[KeywordMatched]:
        """A phrase of `rule_id` was found in `speaker`'s audio at `offset_s`. The spotter
        knows one rule per phrase; any other rule with the same phrase fires too."""
        norm = normalise(phrase)
        rules = [r for r in self._by_id.values()
                 if r.id == rule_id or r.find(norm) is not None]
        out = []
        for rule in rules:
            if not _hears(rule, speaker):
                continue
            if rule.not_said:
                self._note_said(rule, offset_s)
                continue
            event = self._fire(rule, offset_s, speaker, phrase)
            if event is not None:
                out.append(event)
        return out

    def due(self, heard_until_s: float, *, final: bool = False) -> list[PhraseNotSaid]:
        """Not-said rules whose deadline has passed unmet, once recognition has caught up to
        `heard_until_s` (all speech before it is matched). `final`: the call ended and every
        result is in, so no grace is needed; a call that ended before a deadline is not judged
        on that rule."""
        grace = 0.0 if final else NOT_SAID_GRACE_S
        out = []
        for rule in self._required:
            assert rule.within_s is not None
            if rule.id in self._judged or heard_until_s < rule.within_s + grace:
                continue
            self._judged.add(rule.id)
            said = self._said.get(rule.id)
            if said is None or said > rule.within_s:
                out.append(PhraseNotSaid(rule.within_s, rule.speaker, rule.id, rule.category,
                                         rule.severity, said))
        return out

    def skip_not_said(self) -> None:
        """Judge no not-said rule on this call (one picked up midway, after a hub restart:
        what was said before is unknown)."""
        self._judged.update(rule.id for rule in self._required)

    def _note_said(self, rule: Rule, offset_s: float) -> None:
        self._said[rule.id] = min(offset_s, self._said.get(rule.id, offset_s))

    def _fire(self, rule: Rule, offset_s: float, speaker: Speaker,
              phrase: str) -> KeywordMatched | None:
        last = self._last.get(rule.id)
        if last is not None and abs(offset_s - last) < self._cooldown_s:
            return None
        self._last[rule.id] = offset_s
        # a pack's pattern may take in digits ("card number is [\d ]+"): the phrase is shown in
        # the drawer and the alert, so it is masked here, once, for every consumer
        return KeywordMatched(offset_s, speaker, rule.id, rule.category, mask_text(phrase),
                              rule.severity)


def _hears(rule: Rule, speaker: Speaker) -> bool:
    return rule.speaker is None or rule.speaker is speaker
