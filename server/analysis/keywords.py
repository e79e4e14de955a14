"""Policy keyword rules on transcript text: rule packs, and a matcher per call.

A rule pack is a TOML file of rules; each rule has phrases and/or regular expressions, a
category, a severity and a speaker filter. Matching is case- and width-insensitive (NFKC +
casefold). English phrases match on word boundaries with any run of spaces between words; Chinese
phrases match as substrings with optional spaces between characters, so no word segmentation is
needed. One rule repeated within `cooldown_s` of audio on the same call raises one alert.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from server.events import KeywordMatched, Severity, Speaker

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "rules"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class RuleError(ValueError):
    """A rule pack that cannot be loaded; the message names the file and the rule."""


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


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
    )


class KeywordMatcher:
    """Matches transcript lines of one call against rules, with a per-rule cooldown."""

    def __init__(self, rules: tuple[Rule, ...], cooldown_s: float = 30.0) -> None:
        self._rules = rules
        self._cooldown_s = cooldown_s
        self._last: dict[str, float] = {}

    def match(self, offset_s: float, speaker: Speaker, text: str) -> list[KeywordMatched]:
        norm = normalise(text)
        out = []
        for rule in self._rules:
            if rule.speaker is not None and rule.speaker is not speaker:
                continue
            phrase = rule.find(norm)
            if phrase is None:
                continue
            last = self._last.get(rule.id)
            if last is not None and abs(offset_s - last) < self._cooldown_s:
                continue
            self._last[rule.id] = offset_s
            out.append(
                KeywordMatched(offset_s, speaker, rule.id, rule.category, phrase, rule.severity)
            )
        return out
