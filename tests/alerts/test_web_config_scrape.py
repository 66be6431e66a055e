"""A real Prometheus scrapes the monitor over HTTPS with basic auth, as the web config file sets up.

The monitor runs as a process with a web config file, a certificate from a test CA made
here and a bcrypt hash; Prometheus (Debian's 2.42) scrapes it with `tls_config` and
`basic_auth`, once with the right password and once with a wrong one, and once over plain
HTTP. Then the certificate is rotated under the running monitor, and every output channel
is searched for the password and its hash.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from cryptography import x509
from harness.net import free_port
from processes import HOST, ManagedProcess, get_json, prometheus_config
from tls_support import TestCA

USER, PASSWORD = "prometheus", "real-scrape-password-" + "r" * 16
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@dataclass
class HttpsMonitor(ManagedProcess):
    """`python -m monitor` serving HTTPS; readiness is polled through the test CA."""

    ca_file: Path | None = None

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    async def wait_ready(self, timeout: float = 20.0) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                assert self.popen is not None
                if self.popen.poll() is not None:
                    pytest.fail(f"monitor exited with {self.popen.returncode}:\n{self.log_tail()}")
                try:
                    async with session.get(f"{self.base_url}/-/ready", ssl=context) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        pytest.fail(f"monitor not ready within {timeout}s:\n{self.log_tail()}")

    async def get(self, path: str, auth: str | None) -> tuple[int, str]:
        context = ssl.create_default_context(cafile=self.ca_file)
        headers = {"Authorization": auth} if auth else {}
        async with aiohttp.ClientSession() as session, \
                session.get(f"{self.base_url}{path}", ssl=context, headers=headers) as resp:
            return resp.status, await resp.text()


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()


def served_serial(port: int, ca_file: Path) -> int:
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((HOST, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=HOST) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
async def https_monitor(tmp_path: Path) -> Any:
    ca = TestCA(tmp_path)
    ca.issue("tls")
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"},
        "basic_auth_users": {USER: HASH},
    }), encoding="utf-8")
    port = free_port()
    argv = [sys.executable, "-m", "monitor", "--gateway-url", "http://127.0.0.1:9",
            "--listen", f"{HOST}:{port}", "--web.config.file", str(web_config)]
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "debug", "PYTHONPATH": str(REPO)}
    mon = HttpsMonitor("monitor", argv, port, tmp_path / "monitor", env=env, ca_file=ca.ca_file)
    mon.start()
    try:
        await mon.wait_ready()
        yield mon, ca, web_config
    finally:
        await asyncio.to_thread(mon.stop)


def scrape_job(name: str, port: int, ca: TestCA, password_file: Path | None) -> dict[str, Any]:
    job: dict[str, Any] = {"job_name": name, "static_configs": [{"targets": [f"{HOST}:{port}"]}]}
    if password_file is not None:
        job |= {"scheme": "https", "tls_config": {"ca_file": str(ca.ca_file)},
                "basic_auth": {"username": USER, "password_file": str(password_file)}}
    return job


async def up_values(prometheus: ManagedProcess) -> dict[str, float]:
    answer = await get_json(f"{prometheus.base_url}/api/v1/query?query=up")
    return {r["metric"]["job"]: float(r["value"][1]) for r in answer["data"]["result"]}


async def wait_up(prometheus: ManagedProcess, expected: dict[str, float], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := await up_values(prometheus)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"up is {got}, expected {expected}")
        await asyncio.sleep(0.5)


async def test_prometheus_scrapes_over_tls_with_basic_auth(https_monitor, prometheus_factory,
                                                           tmp_path: Path) -> None:
    mon, ca, web_config = https_monitor
    good, wrong = tmp_path / "password", tmp_path / "wrong-password"
    good.write_text(PASSWORD)
    wrong.write_text("not-" + PASSWORD)
    prometheus = await prometheus_factory(prometheus_config(
        [scrape_job("gateway-monitor", mon.port, ca, good),
         scrape_job("wrong-password", mon.port, ca, wrong),
         scrape_job("plain-http", mon.port, ca, None)], [], None))
    await wait_up(prometheus, {"gateway-monitor": 1, "wrong-password": 0, "plain-http": 0})
    targets = await get_json(f"{prometheus.base_url}/api/v1/targets")
    errors = {t["labels"]["job"]: t["lastError"] for t in targets["data"]["activeTargets"]}
    assert errors["gateway-monitor"] == ""
    assert "401" in errors["wrong-password"]
    built = await get_json(f"{prometheus.base_url}/api/v1/query?query=gateway_monitor_build_info")
    assert [r["metric"]["job"] for r in built["data"]["result"]] == ["gateway-monitor"]

    # Rotation under the running monitor: the next handshake gets the new certificate.
    first = await asyncio.to_thread(served_serial, mon.port, ca.ca_file)
    _chain, _key, new_cert = ca.issue("rotated")
    for suffix in ("crt", "key"):
        os.replace(tmp_path / f"rotated.{suffix}", tmp_path / f"tls.{suffix}")
    assert await asyncio.to_thread(served_serial, mon.port, ca.ca_file) == new_cert.serial_number != first
    assert mon.popen is not None and mon.popen.poll() is None
    await asyncio.sleep(3)  # a few more scrapes after the rotation
    assert (await up_values(prometheus))["gateway-monitor"] == 1

    # The password and its hash on no channel: logs at debug, pages, 401s, --check-config.
    served = [await mon.get(path, auth) for path in ("/", "/metrics", "/-/ready", "/nope")
              for auth in (basic(PASSWORD), basic("wrong"), None)]
    check = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "--check-config", "--web.config.file", str(web_config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    out, err = await asyncio.wait_for(check.communicate(), timeout=30)
    assert check.returncode == 0 and b"basic_auth_users=['prometheus']" in out
    await asyncio.to_thread(mon.stop)
    channels = {"monitor log (debug)": mon.log_path.read_text(), "check-config": (out + err).decode(),
                **{f"response {n}": text for n, (_status, text) in enumerate(served)}}
    assert '"level":"debug"' in channels["monitor log (debug)"]
    assert "monitor.web.tls_reloaded" in channels["monitor log (debug)"]
    leaks = [name for name, text in channels.items() if PASSWORD in text or HASH in text
             or HASH.split("$")[-1] in text]
    assert leaks == []
