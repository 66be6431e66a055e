"""Configuration: precedence, validation of the whole, --check-config and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import ConfigError, load, plain_ws_to_remote

KEY = "k" * 40


def test_defaults() -> None:
    config = load({}, environ={})
    assert config.gateway_url == "http://127.0.0.1:8080"
    assert config.ws_url == "ws://127.0.0.1:8080/v1/ws"
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 9478)
    assert config.heartbeat_seconds == 10.0
    assert (config.reconnect_initial_seconds, config.reconnect_factor,
            config.reconnect_max_seconds) == (1.0, 2.0, 30.0)
    assert config.unauthorized_retry_seconds == 60.0
    assert config.max_frame_bytes == 1_048_576
    assert (config.probe_interval_seconds, config.probe_timeout_seconds) == (5.0, 2.0)


def test_https_gateway_gives_wss() -> None:
    assert load({}, environ={"GATEWAY_URL": "https://gw.example:8443/"}).ws_url == \
        "wss://gw.example:8443/v1/ws"


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("heartbeat_seconds: 3\nprobe_interval_seconds: 7\nmax_symbol_series: 5\n")
    env = {"MONITOR_HEARTBEAT_SECONDS": "4", "MONITOR_PROBE_INTERVAL_SECONDS": "8"}
    config = load({"heartbeat_seconds": "5"}, environ=env, config_file=str(file))
    assert (config.heartbeat_seconds, config.probe_interval_seconds, config.max_symbol_series) == (5, 8, 5)


def test_config_file_from_env(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("listen: 127.0.0.1:1234\n")
    assert load({}, environ={"MONITOR_CONFIG": str(file)}).listen_port == 1234


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("heartbeat_secs: 3\nprobe_timeout_seconds: -1\n")
    env = {
        "GATEWAY_URL": "ftp://gw",
        "MONITOR_LISTEN": "nowhere",
        "LOG_LEVEL": "loud",
        "MONITOR_MAX_FRAME_BYTES": "big",
        "GATEWAY_API_KEY_FILE": str(tmp_path / "missing"),
    }
    with pytest.raises(ConfigError) as info:
        load({"reconnect_factor": "0.5"}, environ=env, config_file=str(file))
    text = str(info.value)
    for expected in ("unknown setting 'heartbeat_secs'", "probe_timeout_seconds in", "GATEWAY_URL must",
                     "got 'ftp://gw'", "MONITOR_LISTEN must be host:port", "LOG_LEVEL must be one of",
                     "MONITOR_MAX_FRAME_BYTES must be a whole number",
                     "--reconnect-factor must be at least 1",
                     "does not exist or is not readable"):
        assert expected in text
    assert len(info.value.problems) == 8


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load({}, environ={}, config_file=str(file))


def test_both_key_sources_rejected(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    with pytest.raises(ConfigError, match="not both"):
        load({"api_key_file": str(key_file)}, environ={"GATEWAY_API_KEY": KEY})


def test_key_never_in_repr() -> None:
    config = load({}, environ={"GATEWAY_API_KEY": KEY})
    assert KEY not in repr(config) and KEY not in str(config)
    assert "<redacted>" in repr(config)


@pytest.mark.parametrize(
    ("url", "with_key", "warn"),
    [
        ("http://gateway.prod:8080", True, True),
        ("http://10.0.0.5:8080", True, True),
        ("http://127.0.0.1:8080", True, False),
        ("http://localhost:8080", True, False),
        ("http://[::1]:8080", True, False),
        ("https://gateway.prod:8443", True, False),
        ("http://gateway.prod:8080", False, False),
    ],
)
def test_plain_ws_warning(url: str, with_key: bool, warn: bool) -> None:
    env = {"GATEWAY_URL": url, **({"GATEWAY_API_KEY": KEY} if with_key else {})}
    assert plain_ws_to_remote(load({}, environ=env)) is warn


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", **(env or {})}, check=False)


def test_check_config_exit_codes() -> None:
    ok = run_cli("--check-config", "--listen", "127.0.0.1:0", env={"GATEWAY_API_KEY": KEY})
    assert ok.returncode == 0, ok.stderr
    assert "configuration is valid" in ok.stdout and KEY not in ok.stdout
    bad = run_cli("--check-config", "--heartbeat-seconds", "x", "--log-format", "xml")
    assert bad.returncode == 1
    assert "--heartbeat-seconds must be a number" in bad.stderr and "LOG_FORMAT" in bad.stderr


def test_invalid_config_at_start_exits_2_before_starting_anything() -> None:
    bad = run_cli("--listen", "127.0.0.1:0", env={"GATEWAY_URL": "gateway:8080", "LOG_LEVEL": "x"})
    assert bad.returncode == 2
    assert "GATEWAY_URL must" in bad.stderr and "LOG_LEVEL must" in bad.stderr
    assert "monitor.started" not in bad.stderr
