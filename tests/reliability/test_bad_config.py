"""Bad configuration: every invalid setting named at start-up, all at once, exit 2, nothing bound."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from harness.net import free_port

from monitor.config import SETTINGS, ConfigError, load

# One invalid value per setting, as an operator might really mistype it.
INVALID: dict[str, str] = {
    "gateway_url": "gateway:8080",
    "api_key_file": "/nonexistent/api-key",
    "listen": "9478",
    "log_level": "verbose",
    "log_format": "xml",
    "heartbeat_seconds": "10s",
    "connect_timeout_seconds": "0",
    "reconnect_initial_seconds": "-1",
    "reconnect_factor": "0.5",
    "reconnect_max_seconds": "thirty",
    "reconnect_reset_after_seconds": "-5",
    "unauthorized_retry_seconds": "1m",
    "max_frame_bytes": "1MiB",
    "probe_interval_seconds": "0",
    "probe_timeout_seconds": "-2",
    "reconcile_grace_seconds": "15s",
    "max_symbol_series": "1e3",
    "wait_for_client": "maybe",
    "web_config_file": "/nonexistent/web-config.yml",
    "feed_health": "sometimes",
    "silence_floor_seconds": "1m",
    "silence_multiple": "0.5",
    "silence_overrides": "saxo-live:EURUSD=120",
    "subscriptions": "EURUSD,GBPUSD",
}
# Run `gateway-monitor` with socket.bind recorded, to prove that nothing was bound.
BIND_RECORDER = """
import socket, sys
record, argv = sys.argv[1], sys.argv[2:]
original = socket.socket.bind
def bind(self, address):
    with open(record, "a") as out:
        out.write(repr(address) + "\\n")
    return original(self, address)
socket.socket.bind = bind
from monitor.cli import main
raise SystemExit(main(argv))
"""


def test_every_setting_has_an_invalid_example() -> None:
    assert set(INVALID) == {s.name for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_each_invalid_setting_is_named_with_its_value(setting) -> None:
    value = INVALID[setting.name]
    with pytest.raises(ConfigError) as info:
        load({}, environ={setting.env: value})
    problem = info.value.problems[0]  # a value below a minimum may break a relation too: listed after
    assert setting.env in problem and value in problem, problem


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                                ("on", True), ("false", False), ("0", False), ("No", False),
                                                (" off ", False)])
def test_wait_for_client_reads_booleans(text: str, expected: bool) -> None:
    assert load({}, environ={"MONITOR_WAIT_FOR_CLIENT": text}).wait_for_client is expected


def test_wait_for_client_from_yaml_and_flag(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("wait_for_client: yes\n")  # YAML 1.1: a real boolean
    assert load({}, environ={}, config_file=str(file)).wait_for_client is True
    assert load({"wait_for_client": "false"}, environ={}, config_file=str(file)).wait_for_client is False
    assert load({}, environ={}).wait_for_client is False
    file.write_text("wait_for_client: 2\n")
    with pytest.raises(ConfigError, match=r"wait_for_client in .* must be true or false .* got 2"):
        load({}, environ={}, config_file=str(file))


async def run_cli(record: Path, *args: str, env: dict[str, str],
                  stop_after: float | None = None) -> tuple[int | None, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BIND_RECORDER, str(record), *args, env={"PATH": "/usr/bin:/bin", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if stop_after is not None:
        await asyncio.sleep(stop_after)
        proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode, out.decode(), err.decode()


async def test_all_invalid_settings_at_once_exit_2_and_bind_nothing(tmp_path: Path, figures) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("heartbeat_secs: 5\nprobe_interval_seconds: [1, 2]\n")
    record = tmp_path / "binds"
    env = {s.env: INVALID[s.name] for s in SETTINGS} | {"MONITOR_CONFIG": str(config),
                                                        "GATEWAY_API_KEY": "k" * 40}
    code, out, err = await run_cli(record, env=env)
    problems = [line[4:] for line in err.splitlines() if line.startswith("  - ")]
    figures.inputs("invalid configuration: every setting wrong at once, plus an unknown YAML key",
                   tried=len(SETTINGS) + 2, outcome=f"exit {code}, {len(problems)} problems listed, "
                   f"{len(record.read_text().splitlines()) if record.exists() else 0} sockets bound")
    assert code == 2
    assert err.startswith("gateway-monitor: invalid configuration:")
    for setting in SETTINGS:
        assert any(setting.env in p for p in problems), f"{setting.env} not reported: {problems}"
    assert any("unknown setting 'heartbeat_secs'" in p for p in problems)
    assert any("not both" in p for p in problems)  # key in the env and a key file
    assert out == ""
    assert "k" * 40 not in err
    assert not record.exists()  # nothing was bound, not even for a moment


async def test_the_bind_recorder_sees_a_valid_start(tmp_path: Path) -> None:
    """The control for the test above: a valid start is recorded binding its port."""
    record = tmp_path / "binds"
    port = free_port()
    code, _out, err = await run_cli(record, "--listen", f"127.0.0.1:{port}", "--gateway-url",
                                    f"http://127.0.0.1:{free_port()}", env={"LOG_FORMAT": "json"},
                                    stop_after=1.5)
    assert code == 0, err
    assert f"('127.0.0.1', {port})" in record.read_text()
