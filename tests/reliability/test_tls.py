"""wss:// to a gateway whose certificate is signed by a private CA, trusted through SSL_CERT_FILE.

aiohttp verifies with Python's default SSL context, which OpenSSL builds from its default
verify paths; SSL_CERT_FILE (or SSL_CERT_DIR) set in the monitor's environment replaces them.
The certificates are made here, with the `cryptography` package (the `test` extra).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web
from harness.net import HOST
from tls_support import TestCA

KEY = "tls-test-key-" + "t" * 30


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA bundle, server certificate chain, server key) for 127.0.0.1."""
    ca = TestCA(tmp_path_factory.mktemp("tls"))
    chain, key, _cert = ca.issue("server")
    return ca.ca_file, chain, key


@dataclass
class TlsGateway:
    """A minimal gateway over TLS: the event stream and the probed endpoints."""

    url: str = ""
    authorizations: list[str | None] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    async def ws(self, request: web.Request) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"code": "UNAUTHORIZED", "message": "API key missing or invalid"},
                                     status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type":"error","code":"POSITION_UNPROTECTED","message":"over TLS"}')
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
        return ws

    async def endpoint(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return web.json_response({"status": "connected", "version": "tls", "git_sha": "0", "providers": []})


@pytest.fixture
async def tls_gateway(test_ca: tuple[Path, Path, Path]) -> AsyncIterator[TlsGateway]:
    _ca, chain, key = test_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key)
    gateway = TlsGateway()
    app = web.Application()
    app.router.add_get("/v1/ws", gateway.ws)
    for path in ("/livez", "/readyz", "/health"):
        app.router.add_get(path, gateway.endpoint)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=context)
    await site.start()
    gateway.url = f"https://{HOST}:{runner.addresses[0][1]}"
    yield gateway
    await runner.cleanup()


async def test_wss_with_a_private_ca_trusted_through_ssl_cert_file(tls_gateway, test_ca, monitor_process,
                                                                   figures) -> None:
    ca, _chain, _key = test_ca
    mon = await monitor_process(tls_gateway.url, {"GATEWAY_API_KEY": KEY, "SSL_CERT_FILE": str(ca)})
    await mon.until("gateway_monitor_ws_connected", 1)
    await mon.until("gateway_monitor_error_events_total", 1, code="POSITION_UNPROTECTED")
    for endpoint in ("readyz", "livez", "health"):
        await mon.until("gateway_monitor_probe_success", 1, endpoint=endpoint)
    events = mon.events()
    figures.fault("wss:// to a gateway with a private CA (SSL_CERT_FILE)", survived=True, reason="-",
                  recovery=None, bound=None, detail="connected, probes OK over https, no insecure warning")
    assert tls_gateway.authorizations[-1] == f"Bearer {KEY}"
    assert "monitor.config.insecure_transport" not in events


async def test_an_untrusted_certificate_fails_as_tls_and_sends_no_key(tls_gateway, monitor_process,
                                                                    figures) -> None:
    mon = await monitor_process(tls_gateway.url, {"GATEWAY_API_KEY": KEY})  # the system CAs only
    await mon.until("gateway_monitor_ws_connect_failures_total", lambda v: v >= 2, reason="tls")
    await mon.until("gateway_monitor_probe_success", 0, endpoint="health")
    failed = [line for line in mon.log_lines() if line["event"] == "monitor.ws.connect_failed"]
    figures.fault("wss:// to a gateway whose CA is not trusted", survived=True, reason="tls", recovery=None,
                  bound=None, detail="no request reached the gateway; log: certificate verify failed")
    assert await mon.value("gateway_monitor_ws_connected") == 0
    assert tls_gateway.authorizations == [] and tls_gateway.requests == []  # the key never left
    assert failed and all(line["reason"] == "tls" for line in failed)
    assert "CERTIFICATE_VERIFY_FAILED" in failed[0]["detail"]
