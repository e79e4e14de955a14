"""Rules for every recognizer (sans-I/O): one cooldown across sources, not-said verdicts, team
settings, and the [kws]/[asr] settings documented and stated in the example file."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.analysis.keywords import NOT_SAID_GRACE_S, KeywordMatcher, RuleError, load_pack
from server.config import ConfigError, Settings, load_settings
from server.events import PhraseNotSaid, Severity, Speaker

ROOT = Path(__file__).resolve().parent.parent
AGENT, CUSTOMER = Speaker.AGENT, Speaker.CUSTOMER


def rules(*packs: str):
    return tuple(rule for pack in packs for rule in load_pack(pack).rules)


def test_a_spot_and_a_transcript_line_of_one_rule_raise_one_alert() -> None:
    matcher = KeywordMatcher(rules("builtin:en-core"), cooldown_s=30)
    [first] = matcher.spotted(12.4, AGENT, "en-core/false-promise", "guaranteed returns")
    assert first.offset_s == 12.4 and first.severity is Severity.HIGH
    assert matcher.match(11.9, AGENT, "This fund has guaranteed returns.") == []  # cooldown
    assert matcher.spotted(50.0, AGENT, "en-core/false-promise", "zero risk")
    # the rule's speaker filter applies to spots too; unknown rules are ignored
    assert matcher.spotted(80.0, CUSTOMER, "en-core/sensitive-data", "your password") == []
    assert matcher.spotted(80.0, AGENT, "other/rule", "x") == []


def test_a_spotted_phrase_fires_every_rule_that_has_it(tmp_path: Path) -> None:
    pack = tmp_path / "cust.toml"
    pack.write_text('id = "cust"\n[[rule]]\nid = "scam"\nspeaker = "customer"\n'
                    'phrases = ["the other company is a scam"]\n')
    matcher = KeywordMatcher(rules("builtin:en-core", str(pack)))
    said = matcher.spotted(3.0, CUSTOMER, "en-core/disparage-competitor",
                           "the other company is a scam")
    assert [m.rule_id for m in said] == ["cust/scam"]  # en-core's rule is for the agent


def test_not_said_alerts_at_the_deadline_once_recognition_caught_up() -> None:
    matcher = KeywordMatcher(rules("builtin:en-core", "builtin:mandatory"))
    notice = next(r for r in matcher._required if r.id == "mandatory/recording-notice")
    within = notice.within_s
    assert within == 20
    assert matcher.due(within) == []  # a phrase may still be in progress at the deadline
    assert matcher.due(within + NOT_SAID_GRACE_S - 0.01) == []
    missed = matcher.due(within + NOT_SAID_GRACE_S)
    assert missed == [PhraseNotSaid(within, AGENT, "mandatory/recording-notice",
                                    "recording_notice", Severity.HIGH, None)]
    assert matcher.due(100.0) == []  # judged once


@pytest.mark.parametrize("source", ["text", "audio", "chinese"])
def test_not_said_is_satisfied_by_any_source_before_the_deadline(source: str) -> None:
    matcher = KeywordMatcher(rules("builtin:mandatory"))
    if source == "text":
        assert matcher.match(3.0, AGENT, "Hi, this call is recorded for training.") == []
    elif source == "audio":
        assert matcher.spotted(3.0, AGENT, "mandatory/recording-notice",
                               "this call is recorded") == []
    else:
        assert matcher.match(3.0, AGENT, "您好，本通话将被录音。") == []
    assert matcher.due(60.0) == []


def test_not_said_counts_only_the_right_speaker_and_in_time() -> None:
    matcher = KeywordMatcher(rules("builtin:mandatory"))
    matcher.match(2.0, CUSTOMER, "is this call recorded? this call is recorded, right?")
    matcher.match(25.0, AGENT, "By the way, this call is recorded.")  # too late
    [missed] = matcher.due(25.0 + NOT_SAID_GRACE_S)
    assert missed.offset_s == 20 and missed.said_at_s == 25.0


def test_not_said_at_the_end_of_a_call() -> None:
    short = KeywordMatcher(rules("builtin:mandatory"))
    assert short.due(12.0, final=True) == []  # ended before the deadline: not judged
    ended = KeywordMatcher(rules("builtin:mandatory"))
    assert [m.rule_id for m in ended.due(20.5, final=True)] == ["mandatory/recording-notice"]


def test_not_said_rule_parsing(tmp_path: Path) -> None:
    pack = tmp_path / "p.toml"
    pack.write_text('[[rule]]\nid = "x"\nkind = "not_said"\nphrases = ["hello there"]\n')
    with pytest.raises(RuleError, match="needs within_s"):
        load_pack(pack)
    pack.write_text('[[rule]]\nid = "x"\nwithin_s = 5\nphrases = ["hello there"]\n')
    with pytest.raises(RuleError, match="only for kind"):
        load_pack(pack)
    pack.write_text('[[rule]]\nid = "x"\nkind = "maybe"\nphrases = ["hello there"]\n')
    with pytest.raises(RuleError, match="kind must be"):
        load_pack(pack)


def test_team_disables_rules_and_sets_its_deadlines(tmp_path: Path) -> None:
    settings = load_settings(None, {}, analysis={
        "rule_packs": ["builtin:en-core", "builtin:mandatory"],
        "disabled_rules": ["en-core/disparage-competitor"],
        "not_said_within_s": {"mandatory/recording-notice": 8}})
    by_id = {r.id: r for r in settings.default_team.rules}
    assert "en-core/disparage-competitor" not in by_id
    assert by_id["mandatory/recording-notice"].within_s == 8
    with pytest.raises(ConfigError, match="disabled_rules: no rule 'en-core/nope'"):
        load_settings(None, {}, analysis={"disabled_rules": ["en-core/nope"]})
    with pytest.raises(ConfigError, match="not a not_said rule"):
        load_settings(None, {}, analysis={"not_said_within_s": {"en-core/false-promise": 5}})
    with pytest.raises(ConfigError, match="recognizers"):
        load_settings(None, {}, analysis={"recognizers": ["kws", "magic"]})
    with pytest.raises(ConfigError, match=r"asr\.url"):
        load_settings(None, {}, asr={"url": "http://x"})
    with pytest.raises(ConfigError, match=r"kws\.workers"):
        load_settings(None, {}, kws={"workers": -1})


def test_kws_and_asr_settings_are_documented_and_in_the_example() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    settings = Settings()
    for section in ("kws", "asr"):
        for name in vars(type(getattr(settings, section)))["__dataclass_fields__"]:
            assert f"`{section}.{name}`" in doc, f"{section}.{name} missing from the docs"
    example = load_settings(ROOT / "deploy" / "floorwatch.example.toml", {})
    defaults = load_settings(None, {})
    assert example.kws == defaults.kws and example.asr == defaults.asr
    assert example.analysis == defaults.analysis
