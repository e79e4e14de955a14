"""Wire formats shared by the hub's transports: ISO 8601 UTC times and JSON shapes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from server.events import Alert


def iso(ts: float | None) -> str | None:
    """Unix seconds → `2026-11-30T09:15:23.120Z` (millisecond precision, UTC).

    The same text as `datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")`
    (microseconds rounded half to even, then truncated to milliseconds), at half the cost: the
    date and time of day are formatted once per second."""
    if ts is None:
        return None
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1
        us -= 1_000_000
    elif us < 0:
        whole -= 1
        us += 1_000_000
    second = int(whole)
    cached = _second_text
    if cached[0] != second:
        cached = _cache_second(second)
    return f"{cached[1]}.{us // 1000:03d}Z"


_second_text: tuple[int | None, str] = (None, "")


def _cache_second(second: int) -> tuple[int, str]:
    global _second_text
    _second_text = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return _second_text


def parse_iso(text: str) -> float:
    """ISO 8601 → unix seconds. A time without a zone is refused: wire times are UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone; send UTC like 2026-11-30T09:15:23Z")
    return dt.timestamp()


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind.value,
        "agent_id": alert.agent_id,
        "call_id": alert.call_id,
        "severity": alert.severity.value,
        "started_at": iso(alert.started_at),
        "offset_s": None if alert.offset_s is None else round(alert.offset_s, 3),
        "duration_s": None if alert.duration_s is None else round(alert.duration_s, 3),
        "detail": alert.detail,
        "acked_by": alert.acked_by,
        "acked_at": iso(alert.acked_at),
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
