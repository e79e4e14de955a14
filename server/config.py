"""Settings: one object, built once at start-up from a TOML file plus environment overrides.

    settings = load_settings(Path("floorwatch.toml"), os.environ)

Every setting has a default, a type and a check. A bad value stops start-up with a message that
names the setting (`analysis.dead_air_s: must be > 0, got -1`). Environment variables override the
file: `FLOORWATCH_<SECTION>__<KEY>` (e.g. `FLOORWATCH_SERVER__PORT=9000`), parsed as TOML values
where they look like one (numbers, booleans, arrays) and as strings otherwise. All settings are
documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.analysis.keywords import Rule, RuleError, load_pack
from server.analysis.params import AnalysisParams
from server.events import AgentState, Severity

ENV_PREFIX = "FLOORWATCH_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names it."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8740
    data_dir: Path = Path("./data")
    web_dir: Path = REPO_ROOT / "web"
    allowed_origins: tuple[str, ...] = ()
    max_message_bytes: int = 256 * 1024
    hello_timeout_s: float = 10.0
    shutdown_timeout_s: float = 5.0
    log_level: str = "info"
    uvloop: bool = True
    gc_young_threshold: int = 20_000  # 0: Python's default collector settings (server/gc_policy.py)


@dataclass(frozen=True)
class AuthSettings:
    session_ttl_h: float = 12.0
    cookie_secure: bool = False


@dataclass(frozen=True)
class WallSettings:
    queue_size: int = 256
    patch_interval_ms: int = 250


@dataclass(frozen=True)
class KwsSettings:
    enabled: bool = True  # needs pocketsphinx; without it the hub logs that it is off
    workers: int = 0  # 0: one worker process per CPU core the hub may use
    max_backlog_s: float = 120.0


@dataclass(frozen=True)
class AsrSettings:
    url: str = ""  # ws://host:2700: a streaming ASR server (Vosk protocol); empty: none
    connect_timeout_s: float = 3.0
    max_streams: int = 200
    pad_s: float = 0.6


@dataclass(frozen=True)
class RedisSettings:
    url: str = ""  # empty: the embedded default, one hub and no Redis
    key_prefix: str = "fw:"
    stream_maxlen: int = 100_000
    hub_id: str = ""


@dataclass(frozen=True)
class ListenSettings:
    enabled: bool = True
    max_listeners_per_call: int = 5
    require_reason: bool = False
    notify_agent: bool = True
    ice_servers: tuple[str, ...] = ()  # empty: no STUN/TURN at all (a LAN)
    ice_username: str = ""
    ice_credential: str = ""
    ice_host_addresses: tuple[str, ...] = ()  # empty: every non-loopback interface
    opus_bitrate: int = 32000
    opus_complexity: int = 1  # 0-10: libopus CPU/quality trade (its default, 10, costs ~3x more)
    listener_buffer_ms: int = 300


@dataclass(frozen=True)
class AnalysisSettings:
    vad_frame_ms: int = 20
    vad_aggressiveness: int = 3
    speech_start_ms: int = 100
    speech_stop_ms: int = 300
    dead_air_s: float = 5.0
    overtalk_s: float = 1.0
    interruption_s: float = 0.5
    monologue_gap_s: float = 1.5
    keyword_cooldown_s: float = 30.0
    rule_packs: tuple[str, ...] = ("builtin:en-core", "builtin:zh-core")
    disabled_rules: tuple[str, ...] = ()
    not_said_within_s: Mapping[str, float] = field(default_factory=dict)
    recognizers: tuple[str, ...] = ("kws", "transcript")
    recognize_channels: tuple[str, ...] = ("agent",)
    severity_silence: str = "medium"
    severity_overtalk: str = "low"
    severity_state: str = "medium"
    state_limits_s: Mapping[str, float] = field(
        default_factory=lambda: {"break": 900.0, "wrap_up": 120.0, "hold": 120.0, "on_call": 1200.0}
    )

    def params(self) -> AnalysisParams:
        return AnalysisParams(
            vad_frame_ms=self.vad_frame_ms,
            vad_aggressiveness=self.vad_aggressiveness,
            speech_start_s=self.speech_start_ms / 1000,
            speech_stop_s=self.speech_stop_ms / 1000,
            dead_air_s=self.dead_air_s,
            overtalk_s=self.overtalk_s,
            interruption_s=self.interruption_s,
            monologue_gap_s=self.monologue_gap_s,
        )


@dataclass(frozen=True)
class TeamProfile:
    """What analysis uses for one team: thresholds and loaded rules (resolved once)."""

    name: str
    analysis: AnalysisSettings
    params: AnalysisParams
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    walls: WallSettings = field(default_factory=WallSettings)
    kws: KwsSettings = field(default_factory=KwsSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    teams: Mapping[str, TeamProfile] = field(default_factory=dict)
    default_team: TeamProfile | None = None

    def team(self, name: str | None) -> TeamProfile:
        assert self.default_team is not None
        return self.teams.get(name or "", self.default_team)


_SECTIONS = {"server": ServerSettings, "auth": AuthSettings, "walls": WallSettings,
             "redis": RedisSettings, "analysis": AnalysisSettings, "listen": ListenSettings}

_SECTIONS |= {"kws": KwsSettings, "asr": AsrSettings}


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read `path` (optional), apply env overrides, then keyword overrides like server={...}."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    for key, value in (env or {}).items():
        if key.startswith(ENV_PREFIX) and "__" in key:
            section, name = key.removeprefix(ENV_PREFIX).lower().split("__", 1)
            raw.setdefault(section, {})[name] = _env_value(value)
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return build_settings(raw)


def build_settings(raw: Mapping[str, Any]) -> Settings:
    unknown = set(raw) - set(_SECTIONS) - {"teams"}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    built = {name: _build_section(name, cls, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    _check(built)
    analysis: AnalysisSettings = built["analysis"]
    default_team = _profile("", analysis)
    teams = {}
    for team, values in (raw.get("teams") or {}).items():
        merged = {**_as_dict(analysis), **values}
        teams[team] = _profile(team, _build_section(f"teams.{team}", AnalysisSettings, merged))
    return Settings(**built, teams=teams, default_team=default_team)


def _profile(name: str, analysis: AnalysisSettings) -> TeamProfile:
    where = f"teams.{name}" if name else "analysis"
    _check_analysis(where, analysis)
    rules: list[Rule] = []
    for source in analysis.rule_packs:
        try:
            rules += load_pack(source).rules
        except RuleError as exc:
            raise ConfigError(f"{where}.rule_packs: {exc}") from None
    rules = _team_rules(where, analysis, rules)
    return TeamProfile(name, analysis, analysis.params(), tuple(rules))


def _team_rules(where: str, analysis: AnalysisSettings, rules: list[Rule]) -> list[Rule]:
    """The team's rules less `disabled_rules`, with its own not-said deadlines."""
    known = {rule.id: rule for rule in rules}
    for rule_id in analysis.disabled_rules:
        if rule_id not in known:
            raise ConfigError(f"{where}.disabled_rules: no rule {rule_id!r} in its rule packs")
    for rule_id, within in analysis.not_said_within_s.items():
        if rule_id not in known or not known[rule_id].not_said:
            raise ConfigError(f"{where}.not_said_within_s.{rule_id}: not a not_said rule of "
                              "its rule packs")
        if within <= 0:
            raise ConfigError(f"{where}.not_said_within_s.{rule_id}: must be > 0")
    return [dataclasses.replace(rule, within_s=analysis.not_said_within_s[rule.id])
            if rule.id in analysis.not_said_within_s else rule
            for rule in rules if rule.id not in analysis.disabled_rules]


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _build_section(where: str, cls: type, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown setting")
    defaults = cls()
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(f"{where}.{name}", value, getattr(defaults, name))
    return dataclasses.replace(defaults, **kwargs)


def _coerce(where: str, value: Any, default: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: expected {expected}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if isinstance(default, Path):
        if not isinstance(value, str | Path):
            raise bad("a path")
        return Path(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise bad("a table")
        out = dict(default)
        for k, v in value.items():
            out[k] = _coerce(f"{where}.{k}", v, 0.0)
        return out
    raise AssertionError(f"no coercion for {where}")


def _check(built: dict[str, Any]) -> None:
    server: ServerSettings = built["server"]
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"server.port: must be 0–65535, got {server.port}")
    if not (server.web_dir / "index.html").is_file():
        raise ConfigError(f"server.web_dir: no index.html in {server.web_dir} (point it at the "
                          "web/ folder of the floorwatch source)")
    if not 4096 <= server.max_message_bytes <= 4 * 1024 * 1024:
        raise ConfigError(
            f"server.max_message_bytes: must be 4096–4194304, got {server.max_message_bytes}"
        )
    if server.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"server.log_level: must be debug, info, warning or error, got "
                          f"{server.log_level!r}")
    if not (server.gc_young_threshold == 0 or 700 <= server.gc_young_threshold <= 1_000_000):
        raise ConfigError("server.gc_young_threshold: must be 0 (Python's default) or "
                          f"700–1000000, got {server.gc_young_threshold}")
    for name in ("hello_timeout_s", "shutdown_timeout_s"):
        if getattr(server, name) <= 0:
            raise ConfigError(f"server.{name}: must be > 0")
    redis: RedisSettings = built["redis"]
    if redis.url and not redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"redis.url: expected redis://host:port/db, got {redis.url!r}")
    if redis.stream_maxlen < 1000:
        raise ConfigError(f"redis.stream_maxlen: must be >= 1000, got {redis.stream_maxlen}")
    if built["auth"].session_ttl_h <= 0:
        raise ConfigError("auth.session_ttl_h: must be > 0")
    _check_recognition(built["kws"], built["asr"])
    walls: WallSettings = built["walls"]
    if walls.queue_size < 8:
        raise ConfigError(f"walls.queue_size: must be >= 8, got {walls.queue_size}")
    if not 50 <= walls.patch_interval_ms <= 5000:
        raise ConfigError(
            f"walls.patch_interval_ms: must be 50–5000, got {walls.patch_interval_ms}"
        )
    _check_listen(built["listen"])


def _check_listen(listen: ListenSettings) -> None:
    if not 1 <= listen.max_listeners_per_call <= 50:
        raise ConfigError("listen.max_listeners_per_call: must be 1–50, got "
                          f"{listen.max_listeners_per_call}")
    for url in listen.ice_servers:
        if not url.startswith(("stun:", "turn:", "turns:")):
            raise ConfigError(f"listen.ice_servers: expected stun:, turn: or turns: URLs, "
                              f"got {url!r}")
    for address in listen.ice_host_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"listen.ice_host_addresses: {address!r} is not an IP "
                              "address") from None
    if not 6000 <= listen.opus_bitrate <= 256000:
        raise ConfigError(f"listen.opus_bitrate: must be 6000–256000, got {listen.opus_bitrate}")
    if not 0 <= listen.opus_complexity <= 10:
        raise ConfigError(f"listen.opus_complexity: must be 0–10, got {listen.opus_complexity}")
    if not 40 <= listen.listener_buffer_ms <= 5000:
        raise ConfigError("listen.listener_buffer_ms: must be 40–5000, got "
                          f"{listen.listener_buffer_ms}")


def _check_recognition(kws: KwsSettings, asr: AsrSettings) -> None:
    if not 0 <= kws.workers <= 64:
        raise ConfigError(f"kws.workers: must be 0 (one per core) to 64, got {kws.workers}")
    if kws.max_backlog_s <= 0:
        raise ConfigError("kws.max_backlog_s: must be > 0")
    if asr.url and not asr.url.startswith(("ws://", "wss://")):
        raise ConfigError(f"asr.url: expected ws://host:port, got {asr.url!r}")
    for name in ("connect_timeout_s", "pad_s"):
        if getattr(asr, name) <= 0:
            raise ConfigError(f"asr.{name}: must be > 0")
    if asr.max_streams < 1:
        raise ConfigError("asr.max_streams: must be >= 1")


def _check_analysis(where: str, a: AnalysisSettings) -> None:
    if a.vad_frame_ms not in (10, 20, 30):
        raise ConfigError(f"{where}.vad_frame_ms: must be 10, 20 or 30, got {a.vad_frame_ms}")
    if a.vad_aggressiveness not in (0, 1, 2, 3):
        raise ConfigError(f"{where}.vad_aggressiveness: must be 0–3, got {a.vad_aggressiveness}")
    for name in ("speech_start_ms", "speech_stop_ms", "dead_air_s", "overtalk_s",
                 "interruption_s", "monologue_gap_s"):
        if getattr(a, name) <= 0:
            raise ConfigError(f"{where}.{name}: must be > 0, got {getattr(a, name)}")
    if a.keyword_cooldown_s < 0:
        raise ConfigError(f"{where}.keyword_cooldown_s: must be >= 0")
    for value in a.recognizers:
        if value not in ("kws", "transcript", "asr"):
            raise ConfigError(f"{where}.recognizers: each must be kws, transcript or asr, "
                              f"got {value!r}")
    for value in a.recognize_channels:
        if value not in ("agent", "customer"):
            raise ConfigError(f"{where}.recognize_channels: each must be agent or customer, "
                              f"got {value!r}")
    for name in ("severity_silence", "severity_overtalk", "severity_state"):
        value = getattr(a, name)
        if value not in Severity.__members__.values():
            raise ConfigError(f"{where}.{name}: must be one of low, medium, high, critical, "
                              f"got {value!r}")
    states = {s.value for s in AgentState}
    for state, limit in a.state_limits_s.items():
        if state not in states:
            raise ConfigError(f"{where}.state_limits_s.{state}: not a state "
                              f"({', '.join(sorted(states))})")
        if limit <= 0:
            raise ConfigError(f"{where}.state_limits_s.{state}: must be > 0")


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
