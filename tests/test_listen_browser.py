"""A supervisor in real Chromium listens to a streamed call, whispers to the agent, and stops;
the audit trail (API and page) records both sessions.

Headless Chromium ignores ICE candidates on loopback, so the scenario (tests/netns_listen.py) runs
in a private network namespace with a veth pair (`unshare -n`, as root — CI runs as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import callgen
import pytest
from conftest import need, need_tools
from test_listen import LISTEN_CALL

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCENARIO = Path(__file__).resolve().parent / "netns_listen.py"
# the listening call's conversation four times over (~45 s): speech whenever the browser joins
LONG_CALL = [callgen.Utterance(u.channel, u.start_s + 11.5 * i, u.text, u.voice)
             for i in range(4) for u in LISTEN_CALL]


def test_chromium_listens_whispers_and_the_audit_trail_shows_it(tmp_path):
    need_tools("espeak-ng", "sox", "unshare", "ip")
    need(Path("/usr/bin/chromium").exists(), "no Chromium at /usr/bin/chromium")
    need(os.geteuid() == 0, "a private network namespace needs root (unshare -n)")
    call = callgen.generate_call(LONG_CALL, 16000, tmp_path, tail_s=2.0)
    result = subprocess.run([shutil.which("unshare"), "-n", sys.executable, str(SCENARIO),
                             "--wav", str(call.wav), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    listen = found["listen"]
    print(json.dumps({k: v for k, v in found.items() if k != "audit"}, indent=1))
    # audio bytes keep arriving, and the page hears both sides (agent left, customer right)
    assert listen["bytes"][-1] > listen["bytes"][0] > 0
    assert listen["max_left"] > 0.01 and listen["max_right"] > 0.01, listen
    assert found["tile_listeners"] == [{"user": "Big Boss", "username": "boss", "mode": "listen"}]
    # the whisper (Chromium's fake microphone) reached the agent, and not the call
    assert found["whisper_frames"] > 50 and found["agent_heard_samples"] > 16000
    assert found["barge_mixed"] == 0
    audit = sorted(found["audit"], key=lambda r: r["started_at"])
    assert [r["mode"] for r in audit] == ["listen", "whisper"]
    assert all(r["username"] == "boss" and r["ended_at"] for r in audit)
    # switching to whisper ended the listen session first; the stop button ended the whisper
    assert audit[0]["ended_at"] <= audit[1]["started_at"] + 1.0
    assert audit[1]["end_reason"] == "stopped"
    assert found["audit_rows_shown"] == 2
    assert {"user": "Big Boss", "mode": "listen"} in found["notices"][0]
