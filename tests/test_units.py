"""Fast synchronous tests of the pure parts: ingest protocol, keywords, state timers, store, PII."""

from __future__ import annotations

import json

import numpy as np
import pytest

from server.analysis.keywords import KeywordMatcher, RuleError, load_pack
from server.analysis.state_timers import StateTimer
from server.events import AgentState, Speaker
from server.ingest_protocol import (
    ProtocolError,
    Status,
    Transcript,
    encode_audio,
    parse_audio,
    parse_hello,
    parse_message,
)
from server.pii import mask_phone
from server.store import Store, hash_password, verify_password

# -- ingest protocol ------------------------------------------------------------------------


def test_audio_frames_round_trip():
    pcm = np.arange(1600, dtype=np.int16).reshape(800, 2)
    chunk = parse_audio(encode_audio(7, 12345, pcm), max_samples=16000)
    assert (chunk.chunk, chunk.offset) == (7, 12345)
    assert np.array_equal(chunk.pcm, pcm)


def test_status_parsing_masks_the_customer_number():
    status = parse_message(json.dumps({
        "type": "status", "seq": 4, "at": "2026-11-30T09:00:00Z", "state": "on_call",
        "call": {"id": "c1", "customer": "+86 138 1234 5678", "sample_rate": 16000}}))
    assert isinstance(status, Status)
    assert status.call is not None and status.call.customer == "861****5678"
    assert status.call.direction == "inbound"
    assert status.at == 1796029200.0
    assert "12345678" not in json.dumps(status.payload())


def test_transcript_parsing():
    line = parse_message(json.dumps({"type": "transcript", "seq": 2, "call_id": "c1",
                                     "offset_s": 3, "speaker": "customer", "text": "hi"}))
    assert line == Transcript(2, "c1", 3.0, Speaker.CUSTOMER, "hi")


@pytest.mark.parametrize(("hello", "code"), [
    ({"type": "hello", "protocol": 2, "agent_id": "a", "token": "t", "session": "s"}, 4426),
    ({"type": "hello", "protocol": 1, "agent_id": "", "token": "t", "session": "s"}, 4400),
    ({"type": "status", "protocol": 1}, 4400),
])
def test_bad_hello(hello, code):
    with pytest.raises(ProtocolError) as info:
        parse_hello(json.dumps(hello))
    assert info.value.code == code


def test_refused_message_carries_its_seq():
    with pytest.raises(ProtocolError) as info:
        parse_message(json.dumps({"type": "status", "seq": 9, "at": "2026-11-30T09:00:00",
                                  "state": "ready"}))
    assert info.value.seq == 9
    assert "no zone" in info.value.reason
    assert info.value.message()["seq"] == 9


# -- keyword rules ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matcher_rules():
    return load_pack("builtin:en-core").rules + load_pack("builtin:zh-core").rules


def test_english_phrases_match_on_word_boundaries_any_case_and_spacing(matcher_rules):
    m = KeywordMatcher(matcher_rules)
    assert [k.rule_id for k in m.match(1, Speaker.AGENT, "It has GUARANTEED\treturns!")] == [
        "en-core/false-promise"]
    assert m.match(2, Speaker.AGENT, "no guaranteed returnsx here") == []
    assert m.match(3, Speaker.AGENT, "shut upstairs door") == []


def test_chinese_phrases_match_without_segmentation(matcher_rules):
    m = KeywordMatcher(matcher_rules)
    hits = m.match(5, Speaker.AGENT, "我们这个产品稳 赚不赔，而且保本保息")
    assert [h.rule_id for h in hits] == ["zh-core/false-promise"]
    assert hits[0].phrase in ("稳 赚不赔", "保本保息")
    # full-width and half-width forms are the same after NFKC
    assert m.match(100, Speaker.AGENT, "请把验证码告诉我")[0].category == "sensitive_data"


def test_speaker_filter_and_cooldown(matcher_rules):
    m = KeywordMatcher(matcher_rules, cooldown_s=30)
    assert m.match(1, Speaker.CUSTOMER, "is there no risk at all?") == []
    assert len(m.match(10, Speaker.AGENT, "there is no risk at all")) == 1
    assert m.match(25, Speaker.AGENT, "really, zero risk") == []  # same rule within 30 s
    assert len(m.match(41, Speaker.AGENT, "zero risk")) == 1


def test_bad_rule_pack_names_file_and_rule(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[rule]]\nid = "x"\npatterns = ["(unclosed"]\n', encoding="utf-8")
    with pytest.raises(RuleError, match=r"bad.toml, rule #1 \(x\): bad pattern"):
        load_pack(path)


# -- state timers -------------------------------------------------------------------------


def test_state_timer_alerts_once_per_episode():
    timer = StateTimer({"break": 900, "on_call": 1200})
    timer.on_state(AgentState.BREAK, since=1000)
    assert timer.check(1899) is None
    over = timer.check(1900)
    assert over is not None and (over.state, over.since, over.threshold_s) == (
        AgentState.BREAK, 1000, 900)
    assert timer.check(5000) is None
    timer.on_state(AgentState.READY, since=5000)
    assert timer.check(99999) is None  # no limit for ready


def test_call_length_is_not_realerted_after_a_hold():
    timer = StateTimer({"on_call": 100, "hold": 1000})
    timer.on_state(AgentState.ON_CALL, since=0)
    assert timer.check(100) is not None
    timer.on_state(AgentState.HOLD, since=150)
    timer.on_state(AgentState.ON_CALL, since=0)  # back from hold: the call's start again
    assert timer.check(200) is None


# -- store and secrets ----------------------------------------------------------------------


def test_passwords_are_scrypt_hashed():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("Correct horse", stored)


def test_store_dedupes_status_events_and_keeps_tokens_hashed(tmp_path):
    store = Store(tmp_path / "fw.db")
    token = store.add_agent("a1", "Ann", "sales")
    assert store.agent_for_token("a1", token) is not None
    assert store.agent_for_token("a1", token + "x") is None
    assert store.record_status("a1", "s", 1, 0.0, "ready", {"state": "ready"})
    assert not store.record_status("a1", "s", 1, 0.0, "ready", {"state": "ready"})
    assert store.last_seq("a1", "s") == 1 and store.last_seq("a1", "other") == 0
    store.close()
    raw = (tmp_path / "fw.db").read_bytes()
    assert token.encode() not in raw


def test_mask_phone():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("138****5678") == "****5678"
    assert mask_phone("") == ""


@pytest.mark.parametrize(("text", "masked"), [
    ("card 4111 1111 1111 1111 ok", "card **** **** **** 1111 ok"),
    ("卡号4111-1111-1111-1111", "卡号**** **** **** 1111"),
    ("身份证11010519491231002X", "身份证110105********002X"),
    ("电话13812345678", "电话138****5678"),
    ("call +86 138 1234 5678", "call 861****5678"),
    ("the code is 482913 thanks", "the code is ****** thanks"),
    ("验证码是 4829", "验证码是 ****"),
    ("I am 42, order 2024, room 3301", "I am 42, order 2024, room 3301"),
    ("4111 1111 1111 1112 fails Luhn", "411****1112 fails Luhn"),
    ("11010519491231002Y wrong check", "110****1002Y wrong check"),
    # read or typed other ways: double spaces, spaced dashes, no-break and ideographic spaces
    ("card 4111  1111  1111  1111", "card **** **** **** 1111"),
    ("4111 - 1111 - 1111 - 1111", "**** **** **** 1111"),
    ("4111\u00a01111\u00a01111\u00a01111", "**** **** **** 1111"),
    ("卡号4111\u30001111\u30001111\u30001111", "卡号**** **** **** 1111"),
    # numbers read one after the other: each masked, the CVV with them
    ("card 4111 1111 1111 1111 11010519491231002X", "card **** **** **** 1111 110105********002X"),
    ("4111 1111 1111 1111 123", "**** **** **** 1111 ***"),
    # glued to letters: card, ID and mobile numbers masked, order numbers kept
    ("card4111111111111111, ID11010519491231002X", "card**** **** **** 1111, ID110105********002X"),
    ("order A12345678, tel13812345678", "order A12345678, tel138****5678"),
    # dots and slashes: only a card or ID number is masked, dates and amounts stay
    ("4111.1111.1111.1111 on 2024.11.30, 125000.00",
     "**** **** **** 1111 on 2024.11.30, 125000.00"),
    ("4111/1111/1111/1111 30/11/2024", "**** **** **** 1111 30/11/2024"),
])
def test_mask_text(text, masked):
    from server.pii import mask_text

    assert mask_text(text) == masked
