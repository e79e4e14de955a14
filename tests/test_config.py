"""Settings: file + environment, validation messages that name the setting, per-team profiles."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import _SECTIONS, ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "floorwatch.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "floorwatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_states_every_default():
    example = load_settings(EXAMPLE, {})
    defaults = load_settings(None, {})
    for section in _SECTIONS:
        assert getattr(example, section) == getattr(defaults, section), section


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    settings = Settings()
    for section in _SECTIONS:
        for name in vars(type(getattr(settings, section)))["__dataclass_fields__"]:
            assert f"`{section}.{name}`" in doc, f"{section}.{name} missing from the docs"


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, "[server]\nport = 9000\n[analysis]\ndead_air_s = 4.0\n")
    settings = load_settings(path, {"FLOORWATCH_SERVER__PORT": "9100",
                                    "FLOORWATCH_ANALYSIS__RULE_PACKS": "builtin:zh-core",
                                    "FLOORWATCH_SERVER__LOG_LEVEL": "debug",
                                    "UNRELATED": "x"})
    assert settings.server.port == 9100
    assert settings.server.log_level == "debug"
    assert settings.analysis.dead_air_s == 4.0
    assert settings.analysis.rule_packs == ("builtin:zh-core",)
    assert {r.pack for r in settings.default_team.rules} == {"zh-core"}


def test_teams_override_analysis_and_fall_back_to_the_default(tmp_path):
    path = write(tmp_path, '[analysis]\ndead_air_s = 6.0\n'
                           '[teams."Collections"]\ndead_air_s = 3.0\n'
                           'rule_packs = ["builtin:en-core"]\n')
    settings = load_settings(path, {})
    collections = settings.team("Collections")
    assert collections.params.dead_air_s == 3.0
    assert {r.pack for r in collections.rules} == {"en-core"}
    assert settings.team("Sales").params.dead_air_s == 6.0
    assert settings.team(None).params.dead_air_s == 6.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 70000\n", "server.port: must be 0–65535, got 70000"),
        ("[server]\nport = 'x'\n", "server.port: expected a whole number, got 'x'"),
        ("[server]\nprot = 1\n", "server.prot: unknown setting"),
        ("[sever]\nport = 1\n", "unknown section(s): sever"),
        ("[analysis]\ndead_air_s = -1\n", "analysis.dead_air_s: must be > 0, got -1.0"),
        ("[analysis]\nvad_frame_ms = 25\n", "analysis.vad_frame_ms: must be 10, 20 or 30"),
        ("[analysis]\nseverity_silence = 'loud'\n", "analysis.severity_silence: must be one of"),
        ("[analysis.state_limits_s]\nnap = 10\n", "analysis.state_limits_s.nap: not a state"),
        ("[analysis]\nrule_packs = ['builtin:nope']\n",
         "analysis.rule_packs: unknown rule pack builtin:nope"),
        ("[teams.x]\novertalk_s = 0\n", "teams.x.overtalk_s: must be > 0"),
        ("[walls]\nqueue_size = 2\n", "walls.queue_size: must be >= 8, got 2"),
        ("[server]\ngc_young_threshold = 10\n",
         "server.gc_young_threshold: must be 0 (Python's default) or 700–1000000, got 10"),
        ("[redis]\nurl = 'localhost'\n", "redis.url: expected redis://host:port/db"),
        ("[server\n", "config file"),
    ],
)
def test_bad_values_name_the_setting(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(write(tmp_path, text), {})


def test_a_bad_value_stops_the_hub_with_a_clear_message(tmp_path):
    path = write(tmp_path, "[analysis]\novertalk_s = 'soon'\n")
    result = subprocess.run([sys.executable, "-m", "server.cli", "--config", str(path), "serve"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert ("configuration error: analysis.overtalk_s: expected a number, got 'soon'"
            in result.stderr)
