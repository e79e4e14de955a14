"""Agent ingest protocol v1, sans-I/O: frames in, typed messages out (see docs/protocol.md §1).

Every way a message can be wrong raises `ProtocolError` with the close code and a reason meant
for the developer of the client. Nothing here touches a socket, the store or a clock.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.events import AgentState, CallInfo, Speaker
from server.pii import mask_phone
from server.wire import parse_iso

PROTOCOL_VERSION = 1
AUDIO_HEADER = struct.Struct("<BBHIQ")  # version, channels, reserved, chunk number, offset
SAMPLE_RATES = (8000, 16000)

CLOSE_INVALID = 1007
CLOSE_TOO_BIG = 1009
CLOSE_BAD_REQUEST = 4400
CLOSE_BAD_TOKEN = 4401
CLOSE_REPLACED = 4409
CLOSE_VERSION = 4426


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.seq = seq  # the refused reliable message, so the client can drop it

    def message(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "error", "code": self.code, "reason": self.reason}
        if self.seq is not None:
            out["seq"] = self.seq
        return out


@dataclass(frozen=True, slots=True)
class Hello:
    agent_id: str
    token: str
    session: str
    client: str
    client_time: float | None = None  # what the desktop's clock read as it sent the hello


@dataclass(frozen=True, slots=True)
class Status:
    seq: int
    at: float
    state: AgentState
    call: CallInfo | None
    reason: str | None
    name: str | None
    team: str | None

    def payload(self) -> dict[str, Any]:
        """What is stored: no token, and the customer number only in masked form."""
        out: dict[str, Any] = {"state": self.state.value}
        if self.call is not None:
            out["call"] = {"id": self.call.call_id, "direction": self.call.direction,
                           "customer": self.call.customer, "sample_rate": self.call.sample_rate}
        for key in ("reason", "name", "team"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True, slots=True)
class Transcript:
    seq: int
    call_id: str
    offset_s: float
    speaker: Speaker
    text: str


@dataclass(frozen=True, slots=True)
class AudioChunk:
    chunk: int
    offset: int  # samples since the call's start
    pcm: np.ndarray  # shape (n, 2), int16


def _bad(reason: str) -> ProtocolError:
    return ProtocolError(CLOSE_BAD_REQUEST, reason)


def _str(msg: dict, key: str, *, max_len: int = 128, required: bool = True) -> str | None:
    value = msg.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise _bad(f"bad field {key!r}: expected a string of 1–{max_len} characters")
    return value


def _seq(msg: dict) -> int:
    seq = msg.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise _bad("bad field 'seq': expected an integer >= 1")
    return seq


def decode_json(text: str) -> dict[str, Any]:
    try:
        msg = json.loads(text)
    except ValueError:
        raise ProtocolError(CLOSE_INVALID, "malformed JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(CLOSE_INVALID, "expected a JSON object with a 'type'")
    return msg


def parse_hello(text: str) -> Hello:
    msg = decode_json(text)
    if msg["type"] != "hello":
        raise _bad("expected hello first")
    if msg.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError(CLOSE_VERSION, f"unsupported protocol version {msg.get('protocol')!r};"
                                           f" this hub speaks {PROTOCOL_VERSION}")
    return Hello(
        agent_id=_str(msg, "agent_id", max_len=64) or "",
        token=_str(msg, "token", max_len=256) or "",
        session=_str(msg, "session", max_len=64) or "",
        client=_str(msg, "client", required=False) or "unknown",
        client_time=None if msg.get("client_time") is None else _time(msg, "client_time"),
    )


def parse_message(text: str) -> Status | Transcript:
    msg = decode_json(text)
    parse = _PARSERS.get(msg["type"])
    if parse is None:
        raise _bad(f"unknown message type {msg['type'][:40]!r}")
    try:
        return parse(msg)
    except ProtocolError as exc:
        seq = msg.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1:
            exc.seq = seq
        raise


def _time(msg: dict, name: str) -> float:
    try:
        return parse_iso(_str(msg, name, max_len=40) or "")
    except ValueError as exc:
        raise _bad(f"bad field {name!r}: {exc}") from None


def _status(msg: dict) -> Status:
    seq = _seq(msg)
    at = _time(msg, "at")
    try:
        state = AgentState(msg.get("state"))
    except ValueError:
        raise _bad(f"bad field 'state': one of {', '.join(s.value for s in AgentState)}") from None
    call = None
    if state.in_call and "call" in msg:
        raw = msg["call"]
        if not isinstance(raw, dict):
            raise _bad("bad field 'call': expected an object")
        rate = raw.get("sample_rate")
        if rate not in SAMPLE_RATES:
            raise _bad(f"bad field 'call.sample_rate': one of {SAMPLE_RATES}")
        direction = raw.get("direction", "inbound")
        if direction not in ("inbound", "outbound"):
            raise _bad("bad field 'call.direction': inbound or outbound")
        call = CallInfo(
            call_id=_str(raw, "id") or "",
            direction=direction,
            customer=mask_phone(str(raw.get("customer") or "")),
            sample_rate=rate,
        )
    return Status(
        seq=seq, at=at, state=state, call=call,
        reason=_str(msg, "reason", max_len=64, required=False),
        name=_str(msg, "name", max_len=80, required=False),
        team=_str(msg, "team", max_len=64, required=False),
    )


def _transcript(msg: dict) -> Transcript:
    seq = _seq(msg)
    offset = msg.get("offset_s")
    if not isinstance(offset, int | float) or isinstance(offset, bool) or offset < 0:
        raise _bad("bad field 'offset_s': expected a number >= 0")
    try:
        speaker = Speaker(msg.get("speaker"))
    except ValueError:
        raise _bad("bad field 'speaker': agent or customer") from None
    text = msg.get("text")
    if not isinstance(text, str) or len(text) > 4000:
        raise _bad("bad field 'text': expected a string of at most 4000 characters")
    return Transcript(seq, _str(msg, "call_id") or "", float(offset), speaker, text)


_PARSERS = {"status": _status, "transcript": _transcript}


_HEADER_SIZE = AUDIO_HEADER.size
_UNPACK_HEADER = AUDIO_HEADER.unpack_from
_PCM = np.dtype("<i2")


def parse_audio(data: bytes, max_samples: int) -> AudioChunk:
    """An audio frame (§1.3) → its chunk number, offset and a read-only (n, 2) int16 view of
    its samples (no copy)."""
    payload = len(data) - _HEADER_SIZE
    if payload <= 0 or payload & 3 or payload > max_samples * 4:
        raise _bad_audio(data, max_samples)
    version, channels, _reserved, chunk, offset = _UNPACK_HEADER(data)
    if version != 1 or channels != 2:
        raise _bad_audio(data, max_samples)
    return AudioChunk(chunk, offset, np.frombuffer(data, _PCM, -1, _HEADER_SIZE).reshape(-1, 2))


def _bad_audio(data: bytes, max_samples: int) -> ProtocolError:
    """What is wrong with a frame `parse_audio` refused, checked in the order of §1.3."""
    if len(data) < _HEADER_SIZE:
        return ProtocolError(CLOSE_INVALID, f"audio frame shorter than its {_HEADER_SIZE}-byte"
                                            " header")
    version, channels, *_ = _UNPACK_HEADER(data)
    if version != 1:
        return ProtocolError(CLOSE_INVALID, f"audio frame version {version}, expected 1")
    if channels != 2:
        return ProtocolError(CLOSE_INVALID, f"audio frame has {channels} channels, expected 2")
    payload = len(data) - _HEADER_SIZE
    if payload % 4:
        return ProtocolError(CLOSE_INVALID, "audio payload not a multiple of 4 bytes "
                                            "(16-bit stereo samples)")
    samples = payload // 4
    if samples == 0:
        return ProtocolError(CLOSE_INVALID, "empty audio frame")
    return ProtocolError(CLOSE_INVALID, f"audio frame of {samples} samples is longer than 1 s")


def encode_audio(chunk: int, offset: int, pcm: np.ndarray) -> bytes:
    """The client side of `parse_audio` (used by the agent client and tests)."""
    return AUDIO_HEADER.pack(1, 2, 0, chunk & 0xFFFFFFFF, offset) + pcm.astype("<i2").tobytes()
