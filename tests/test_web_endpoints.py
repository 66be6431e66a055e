"""The monitor's endpoints behind the web config file: TLS, basic auth, headers, mTLS, rotation.

A real monitor on 127.0.0.1 and real HTTPS clients (aiohttp, Python's ssl); the
certificates come from a test CA made here.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from cryptography import x509
from harness.net import HOST
from structlog.testing import capture_logs
from tls_support import TestCA

from monitor import webauth
from monitor.app import Monitor
from monitor.webauth import BasicAuth

USER, PASSWORD = "prometheus", "scrape-password-" + "p" * 20
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()


def basic(user: str, password: str) -> str:
    """An Authorization header value (aiohttp.BasicAuth is deprecated)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD, WRONG = basic(USER, PASSWORD), basic(USER, "not-the-password")
HEADERS = {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
           "Strict-Transport-Security": "max-age=31536000"}
Start = Callable[..., Awaitable[Monitor]]


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def write_web_config(ca: TestCA, tls: dict[str, Any] | None = None, users: bool = True) -> Path:
    chain, key, _cert = ca.issue("server")
    config: dict[str, Any] = {
        "tls_server_config": {"cert_file": chain.name, "key_file": key.name, **(tls or {})},
        "http_server_config": {"headers": HEADERS},
    }
    if users:
        config["basic_auth_users"] = {USER: HASH}
    path = ca.directory / "web-config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def secure_monitor(monitor: Start, ca: TestCA, **kwargs: Any) -> Monitor:
    return await monitor("http://127.0.0.1:9", web_config_file=str(write_web_config(ca, **kwargs)))


def client_context(ca: TestCA, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca.ca_file)
    if cert:
        context.load_cert_chain(*cert)
    return context


async def get(mon: Monitor, path: str, ca: TestCA | None = None, auth: str | None = None,
              context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], str]:
    scheme = "http" if ca is None else "https"
    ssl_arg: Any = (context or client_context(ca)) if ca else False
    async with aiohttp.ClientSession() as session, session.get(
            f"{scheme}://{HOST}:{mon.port}{path}", headers={"Authorization": auth} if auth else None,
            ssl=ssl_arg) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_metrics_and_status_page_need_the_password(monitor: Start, ca: TestCA) -> None:
    mon = await secure_monitor(monitor, ca)
    for path in ("/metrics", "/"):
        for auth in (None, WRONG, basic("someone", PASSWORD)):
            status, headers, body = await get(mon, path, ca, auth)
            assert status == 401, (path, auth)
            assert headers["WWW-Authenticate"].startswith("Basic realm=")
            assert "gateway_monitor" not in body and "Gateway" not in body
    status, _headers, body = await get(mon, "/metrics", ca, GOOD)
    assert status == 200 and "gateway_monitor_ws_connected" in body
    status, _headers, body = await get(mon, "/", ca, GOOD)
    assert status == 200 and "<html" in body.lower()


async def test_probes_stay_open_without_credentials(monitor: Start, ca: TestCA) -> None:
    mon = await secure_monitor(monitor, ca)
    assert (await get(mon, "/-/healthy", ca))[::2] == (200, "Healthy.\n")
    assert (await get(mon, "/-/ready", ca))[::2] == (200, "Ready.\n")
    assert (await get(mon, "/nothing-here", ca))[0] == 401  # everything else needs credentials
    assert (await get(mon, "/nothing-here", ca, GOOD))[0] == 404


async def test_plain_http_gets_no_metrics(monitor: Start, ca: TestCA) -> None:
    mon = await secure_monitor(monitor, ca, users=False)
    for path in ("/metrics", "/-/healthy"):
        with pytest.raises(aiohttp.ClientError):
            await get(mon, path)
    assert (await get(mon, "/metrics", ca))[0] == 200  # TLS alone, no users: open, as exporter-toolkit


async def test_configured_headers_on_every_response(monitor: Start, ca: TestCA) -> None:
    mon = await secure_monitor(monitor, ca)
    for path, auth, status in (("/metrics", GOOD, 200), ("/metrics", None, 401), ("/-/ready", None, 200),
                               ("/missing", GOOD, 404)):
        got, headers, _body = await get(mon, path, ca, auth)
        assert got == status
        assert {k: headers.get(k) for k in HEADERS} == HEADERS, path


async def test_a_good_password_is_checked_with_bcrypt_once_then_cached(
        monitor: Start, ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = webauth._bcrypt_ok

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(webauth, "_bcrypt_ok", counting)
    mon = await secure_monitor(monitor, ca)
    results = await asyncio.gather(*(get(mon, "/metrics", ca, GOOD) for _ in range(5)))
    assert [r[0] for r in results] == [200] * 5
    for _ in range(5):
        assert (await get(mon, "/metrics", ca, GOOD))[0] == 200
    assert len(calls) == 1  # five at once waited for the first check, the rest hit the cache
    assert (await get(mon, "/metrics", ca, basic("nobody", PASSWORD)))[0] == 401
    assert len(calls) == 2  # an unknown user costs a bcrypt check too (no user enumeration by timing)


async def test_cache_entries_expire() -> None:
    now = [0.0]
    auth = BasicAuth({USER.encode(): HASH.encode()}, clock=lambda: now[0], ttl=60)
    header = GOOD
    assert await auth.allows(header) and await auth.allows(header)
    assert auth.bcrypt_checks == 1
    now[0] = 61.0
    assert await auth.allows(header)
    assert auth.bcrypt_checks == 2
    assert not await auth.allows(WRONG) and not await auth.allows("Basic !!!")
    assert not await auth.allows(basic(USER, "x" * 80))  # over bcrypt's 72 bytes


async def test_a_flood_of_wrong_passwords_keeps_the_good_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webauth, "_bcrypt_ok", lambda password, _hashed: password == PASSWORD.encode())
    auth = BasicAuth({USER.encode(): HASH.encode()})
    assert await auth.allows(GOOD)
    for n in range(3 * webauth.CACHE_ENTRIES):
        assert not await auth.allows(basic(USER, f"guess-{n}"))
    checks = auth.bcrypt_checks
    assert await auth.allows(GOOD)
    assert auth.bcrypt_checks == checks  # still cached


async def test_bcrypt_never_blocks_the_event_loop(ca: TestCA) -> None:
    slow = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=13)).decode()
    auth = BasicAuth({USER.encode(): slow.encode()})
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        for _ in range(10_000):
            await asyncio.sleep(0.005)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    assert await auth.allows(GOOD)
    took = time.monotonic() - started
    tick.cancel()
    assert took > 0.2, "bcrypt at cost 13 should take a while"
    assert max(gaps) < took / 2, f"the loop stalled {max(gaps):.3f}s during a {took:.3f}s check"


def serial_of(mon: Monitor, ca: TestCA) -> int:
    context = client_context(ca)
    with context.wrap_socket(__import__("socket").create_connection((HOST, mon.port), timeout=5),
                             server_hostname=HOST) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def replace(path: Path, data: bytes) -> None:
    """As the kubelet updates a Secret volume: a new file renamed over the old."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def test_certificate_rotation_without_restart(monitor: Start, ca: TestCA) -> None:
    mon = await secure_monitor(monitor, ca)
    first = await asyncio.to_thread(serial_of, mon, ca)
    async with aiohttp.ClientSession() as kept:  # a keep-alive connection, as Prometheus holds
        url = f"https://{HOST}:{mon.port}/metrics"
        async with kept.get(url, headers={"Authorization": GOOD}, ssl=client_context(ca)) as resp:
            assert resp.status == 200
        new_chain, new_key, new_cert = ca.issue("rotated")
        with capture_logs() as logs:
            # Half a rotation: the new certificate beside the old key does not load; the old pair serves on.
            replace(ca.directory / "server.crt", new_chain.read_bytes())
            assert await asyncio.to_thread(serial_of, mon, ca) == first
            replace(ca.directory / "server.key", new_key.read_bytes())
            assert await asyncio.to_thread(serial_of, mon, ca) == new_cert.serial_number != first
        assert [e["event"] for e in logs if e["event"].startswith("monitor.web.")] == [
            "monitor.web.tls_reload_failed", "monitor.web.tls_reloaded"]
        async with kept.get(url, headers={"Authorization": GOOD}, ssl=client_context(ca)) as resp:
            assert resp.status == 200
    assert mon.tls is not None and mon.tls.reloads == 1


async def test_mutual_tls_with_allowed_sans(monitor: Start, ca: TestCA) -> None:
    mon = await secure_monitor(monitor, ca, users=False, tls={
        "client_ca_file": ca.ca_file.name, "client_auth_type": "RequireAndVerifyClientCert",
        "client_allowed_sans": ["prometheus.monitoring.svc"]})
    allowed = ca.issue("client", "prometheus", [x509.DNSName("prometheus.monitoring.svc")])[:2]
    other = ca.issue("other", "intruder", [x509.DNSName("intruder.example")])[:2]
    stranger = TestCA(ca.directory / "..", "another CA").issue("stranger", "prometheus",
                                                               [x509.DNSName("prometheus.monitoring.svc")])
    assert (await get(mon, "/metrics", ca, context=client_context(ca, allowed)))[0] == 200
    assert (await get(mon, "/metrics", ca, context=client_context(ca, other)))[0] == 403
    for context in (client_context(ca), client_context(ca, stranger[:2])):
        with pytest.raises(aiohttp.ClientError):
            await get(mon, "/metrics", ca, context=context)
