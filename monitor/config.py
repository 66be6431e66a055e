"""Settings: defaults < YAML file < environment < command-line flags, validated as a whole."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import feed_config, webconfig
from .feed_config import SilenceOverride, Subscription
from .webconfig import WebConfig


class ConfigError(Exception):
    """Every problem found in the configuration, one operator-readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Setting:
    """One setting: its YAML key / flag name, env var, kind, default and help."""

    name: str
    env: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("gateway_url", "GATEWAY_URL", str, "http://127.0.0.1:8080",
            "Gateway base URL (http:// or https://); the socket is {url}/v1/ws"),
    Setting("api_key_file", "GATEWAY_API_KEY_FILE", str, None,
            "File holding the gateway API key, re-read before every connection attempt"),
    Setting("listen", "MONITOR_LISTEN", str, "0.0.0.0:9478",
            "host:port of the monitor's own HTTP server (/metrics, /-/healthy, /-/ready)"),
    Setting("log_level", "LOG_LEVEL", str, "info", "debug, info, warning or error"),
    Setting("log_format", "LOG_FORMAT", str, "auto",
            "json, console, or auto (console when stderr is a terminal)"),
    Setting("heartbeat_seconds", "MONITOR_HEARTBEAT_SECONDS", float, 10.0,
            "Protocol-level ping interval; a dead socket is detected within 1.5x this",
            minimum=0.1),
    Setting("connect_timeout_seconds", "MONITOR_CONNECT_TIMEOUT_SECONDS", float, 10.0,
            "Time allowed for TCP connect plus WebSocket upgrade", minimum=0.1),
    Setting("reconnect_initial_seconds", "MONITOR_RECONNECT_INITIAL_SECONDS", float, 1.0,
            "First reconnect delay ceiling (full jitter: the wait is uniform in [0, ceiling])",
            minimum=0.0),
    Setting("reconnect_factor", "MONITOR_RECONNECT_FACTOR", float, 2.0,
            "Growth of the delay ceiling per failed attempt", minimum=1.0),
    Setting("reconnect_max_seconds", "MONITOR_RECONNECT_MAX_SECONDS", float, 30.0,
            "Largest delay ceiling", minimum=0.0),
    Setting("reconnect_reset_after_seconds", "MONITOR_RECONNECT_RESET_AFTER_SECONDS", float, 10.0,
            "A connection that stayed up this long resets the delay to the initial value",
            minimum=0.0),
    Setting("unauthorized_retry_seconds", "MONITOR_UNAUTHORIZED_RETRY_SECONDS", float, 60.0,
            "Retry interval after 401/403 (sooner when the key file changes)", minimum=0.1),
    Setting("max_frame_bytes", "MONITOR_MAX_FRAME_BYTES", int, 1_048_576,
            "Frames larger than this are counted as invalid and skipped", minimum=1024),
    Setting("probe_interval_seconds", "MONITOR_PROBE_INTERVAL_SECONDS", float, 5.0,
            "How often /readyz, /livez and /health are probed", minimum=0.1),
    Setting("probe_timeout_seconds", "MONITOR_PROBE_TIMEOUT_SECONDS", float, 2.0,
            "Timeout of one probe request", minimum=0.01),
    Setting("reconcile_grace_seconds", "MONITOR_RECONCILE_GRACE_SECONDS", float, 15.0,
            "How long the event stream and /health may disagree about a broker before /health wins",
            minimum=0.0),
    Setting("max_symbol_series", "MONITOR_MAX_SYMBOL_SERIES", int, 1000,
            "Cap on per-symbol series, applied to stale symbols and to instruments tracked for feed "
            "health each; beyond it they are counted, not tracked", minimum=0),
    Setting("wait_for_client", "MONITOR_WAIT_FOR_CLIENT", bool, False,
            "Defer the WebSocket connection until the gateway's /metrics reports "
            "gateway_ws_connections_active >= 1, so the monitor never starts a backtest"),
    Setting("feed_health", "MONITOR_FEED_HEALTH", bool, True,
            "Track every instrument's ticks: silent instruments, frozen feeds, quote age"),
    Setting("silence_floor_seconds", "MONITOR_SILENCE_FLOOR_SECONDS", float, 60.0,
            "An instrument is silent after max(this, multiple x its usual interval) without a tick",
            minimum=1.0),
    Setting("silence_multiple", "MONITOR_SILENCE_MULTIPLE", float, 20.0,
            "How many usual intervals without a tick make an instrument silent (above the floor)",
            minimum=1.0),
    Setting("silence_overrides", "MONITOR_SILENCE_OVERRIDES", list, None,
            "Per-broker and per-instrument silence settings: a list of {broker, instrument?, "
            "floor_seconds?, multiple?, threshold_seconds?, severity?, enabled?} (JSON in env/flag)"),
    Setting("subscriptions", "SUBSCRIPTIONS", list, None,
            "The gateway's SUBSCRIPTIONS (JSON): its instruments are expected to tick, so one that "
            "never does is silent too"),
    Setting("web_config_file", "MONITOR_WEB_CONFIG_FILE", str, None,
            "Web config file in the exporter-toolkit format (node_exporter's --web.config.file): "
            "TLS, basic auth and headers for the monitor's endpoints"),
)
# Extra spellings of a flag: node_exporter users copy --web.config.file as they know it.
FLAG_ALIASES = {"web_config_file": ("--web.config.file",)}
_BY_NAME = {s.name: s for s in SETTINGS}
_LISTS = {"silence_overrides": feed_config.overrides, "subscriptions": feed_config.subscriptions}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Config:
    """Validated settings of one monitor process."""

    gateway_url: str
    api_key_file: str | None
    listen: str
    log_level: str
    log_format: str
    heartbeat_seconds: float
    connect_timeout_seconds: float
    reconnect_initial_seconds: float
    reconnect_factor: float
    reconnect_max_seconds: float
    reconnect_reset_after_seconds: float
    unauthorized_retry_seconds: float
    max_frame_bytes: int
    probe_interval_seconds: float
    probe_timeout_seconds: float
    reconcile_grace_seconds: float
    max_symbol_series: int
    wait_for_client: bool
    feed_health: bool
    silence_floor_seconds: float
    silence_multiple: float
    silence_overrides: tuple[SilenceOverride, ...]
    subscriptions: tuple[Subscription, ...]
    web_config_file: str | None
    api_key: str | None = None
    web_config: WebConfig | None = None

    def __repr__(self) -> str:
        # The key must never reach a log line or a traceback through repr().
        def show(name: str) -> str:
            value = getattr(self, name)
            return "<redacted>" if name == "api_key" and value else repr(value)

        shown = ", ".join(f"{f.name}={show(f.name)}" for f in fields(self))
        return f"Config({shown})"

    @property
    def ws_url(self) -> str:
        """The gateway's event-stream URL (http→ws, https→wss)."""
        scheme, rest = self.gateway_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}/v1/ws"

    @property
    def http_url(self) -> str:
        """The gateway's base URL for the probes, without a trailing slash."""
        return self.gateway_url.rstrip("/")

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def has_key(self) -> bool:
        return self.api_key is not None or self.api_key_file is not None


def load(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    """Merge file, environment and flags into a Config, or raise ConfigError listing all problems."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    raw: dict[str, tuple[Any, str]] = {}
    path = config_file or environ.get("MONITOR_CONFIG")
    if path:
        for key, value in _read_yaml(path, problems).items():
            if key in _BY_NAME:
                raw[key] = (value, f"{key} in {path}")
            else:
                problems.append(f"unknown setting {key!r} in {path}; known: {', '.join(_BY_NAME)}")
    for setting in SETTINGS:
        if setting.env in environ:
            raw[setting.name] = (environ[setting.env], setting.env)
    for name, value in flags.items():
        if value is not None:
            raw[name] = (value, "--" + name.replace("_", "-"))
    values = {s.name: _coerce(s, *raw[s.name], problems) if s.name in raw else s.default
              for s in SETTINGS}
    for name in _LISTS:  # unset: no overrides, no instruments expected
        values[name] = values[name] or ()
    api_key = environ.get("GATEWAY_API_KEY") or None
    _check(values, api_key, problems)
    web = webconfig.load(values["web_config_file"], problems) if values["web_config_file"] else None
    if problems:
        raise ConfigError(problems)
    return Config(**values, api_key=api_key, web_config=web)


def _read_yaml(path: str, problems: list[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        problems.append(f"config file {path} cannot be read: {err.strerror}")
        return {}
    except yaml.YAMLError as err:
        problems.append(f"config file {path} is not valid YAML: {err}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
        return {}
    return data


def _coerce(setting: Setting, value: Any, source: str, problems: list[str]) -> Any:
    if setting.kind is bool:
        return _coerce_bool(setting, value, source, problems)
    if setting.kind is list:
        return _LISTS[setting.name](value, source, problems)
    if setting.kind is str:
        if value is None or isinstance(value, str):
            return value
        problems.append(f"{source} must be a string, got {value!r}")
        return setting.default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = setting.kind(value)
    except (TypeError, ValueError):
        kind = "a whole number" if setting.kind is int else "a number"
        problems.append(f"{source} must be {kind}, got {value!r}")
        return setting.default
    if setting.minimum is not None and number < setting.minimum:
        problems.append(f"{source} must be at least {setting.minimum:g}, got {number!r}")
    return number


def _coerce_bool(setting: Setting, value: Any, source: str, problems: list[str]) -> Any:
    """YAML gives real booleans; env vars and flags give text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    problems.append(f"{source} must be true or false (also accepted: 1/0, yes/no, on/off), got {value!r}")
    return setting.default


def _check(values: dict[str, Any], api_key: str | None, problems: list[str]) -> None:
    url = urlsplit(values["gateway_url"] or "")
    if url.scheme not in ("http", "https") or not url.hostname:
        problems.append(
            f"GATEWAY_URL must look like http://host:port or https://host:port, "
            f"got {values['gateway_url']!r}"
        )
    else:
        try:
            url.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            problems.append(f"GATEWAY_URL has an invalid port: {values['gateway_url']!r}")
    _host, sep, port = (values["listen"] or "").rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(f"MONITOR_LISTEN must be host:port (e.g. 0.0.0.0:9478), got {values['listen']!r}")
    if values["log_level"] not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {values['log_level']!r}")
    if values["log_format"] not in LOG_FORMATS:
        problems.append(
            f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {values['log_format']!r}"
        )
    if values["reconnect_max_seconds"] < values["reconnect_initial_seconds"]:
        problems.append("MONITOR_RECONNECT_MAX_SECONDS must not be below MONITOR_RECONNECT_INITIAL_SECONDS")
    if values["probe_timeout_seconds"] > values["probe_interval_seconds"]:
        problems.append("MONITOR_PROBE_TIMEOUT_SECONDS must not exceed MONITOR_PROBE_INTERVAL_SECONDS")
    key_file = values["api_key_file"]
    if api_key and key_file:
        problems.append("set GATEWAY_API_KEY or GATEWAY_API_KEY_FILE, not both")
    if key_file and not os.access(key_file, os.R_OK):
        problems.append(f"GATEWAY_API_KEY_FILE {key_file} does not exist or is not readable")


def plain_ws_to_remote(config: Config) -> bool:
    """True when a key would travel unencrypted to a host other than this machine."""
    url = urlsplit(config.gateway_url)
    if url.scheme != "http" or not config.has_key:
        return False
    return not _loopback(url.hostname or "")


def basic_auth_over_http(config: Config) -> bool:
    """True when scrape passwords would cross the network unencrypted (basic auth, no TLS)."""
    web = config.web_config
    if web is None or not web.users or web.tls is not None:
        return False
    return not _loopback(config.listen_host)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (it may resolve anywhere), or "" (every interface)
