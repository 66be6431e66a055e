"""Conformance suite: the monitor against the real Trading Gateway (v0.2.0) and its fake Saxo broker.

Skipped, with one line in the `-ra` summary, when no gateway binary is found: point
TEKTII_GATEWAY_BIN at a gateway build (default ../shared/real-gateway/tektii-gateway).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from gateway_support import (
    FakeSaxo,
    RawClient,
    RealGateway,
    TcpProxy,
    gateway_binary,
    mock_env,
    require_fake_saxo,
)

# test_paging.py reuses the alerting tests' process helpers (tests/alerts is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alerts"))

GATEWAY_BIN = gateway_binary()
if GATEWAY_BIN is None or not GATEWAY_BIN.exists():
    pytest.skip(
        "real-gateway conformance suite skipped: no gateway binary; set TEKTII_GATEWAY_BIN to a "
        "Tektii gateway build (default ../shared/real-gateway/tektii-gateway)",
        allow_module_level=True,
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RealGateway]]]:
    """Factory of started real gateways (env -> gateway), all stopped at teardown."""
    started: list[RealGateway] = []
    assert GATEWAY_BIN is not None

    async def make(env: dict[str, str] | None = None) -> RealGateway:
        gw = RealGateway(GATEWAY_BIN, tmp_path / f"gateway-{len(started)}", env or mock_env())
        started.append(gw)
        await gw.start()
        return gw

    yield make
    for gw in started:
        await gw.stop()


@pytest.fixture
async def mock_gateway(gateway: Callable[..., Awaitable[RealGateway]]) -> RealGateway:
    """A started mock-mode gateway."""
    return await gateway(mock_env())


@pytest.fixture
async def fake_saxo(tmp_path: Path) -> AsyncIterator[FakeSaxo]:
    """A started fake Saxo broker."""
    fake = FakeSaxo(require_fake_saxo(), tmp_path / "fake-saxo")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def raw_client() -> AsyncIterator[Callable[[str], Awaitable[RawClient]]]:
    """Factory of connected raw recording clients, all closed at teardown."""
    clients: list[RawClient] = []

    async def make(url: str) -> RawClient:
        client = RawClient(url)
        await client.connect()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[Callable[[int], Awaitable[TcpProxy]]]:
    """Factory of started TCP proxies to a 127.0.0.1 port, all stopped at teardown."""
    proxies: list[TcpProxy] = []

    async def make(port: int) -> TcpProxy:
        proxy = TcpProxy(port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.stop()
