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
    RawClient,
    RealGateway,
    gateway_binary,
    mock_env,
)

# The paging tests reuse the alerting tests' process helpers (tests/alerts is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alerts"))

GATEWAY_BIN = gateway_binary()
HERE = Path(__file__).resolve().parent


def missing_gateway() -> str | None:
    """Why the suite cannot run (no gateway binary), or None."""
    if GATEWAY_BIN is not None and GATEWAY_BIN.exists():
        return None
    where = f"no gateway binary at {GATEWAY_BIN}" if GATEWAY_BIN else "no gateway binary"
    return (f"real-gateway conformance suite skipped: {where}; set TEKTII_GATEWAY_BIN to a Tektii "
            "gateway build (default ../shared/real-gateway/tektii-gateway)")


class NoGateway(pytest.File):
    """Stands for the whole directory when there is no gateway: one skipped collector, one line."""

    def collect(self) -> list[pytest.Item]:
        pytest.skip(missing_gateway() or "")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Without a gateway, collect no test module here (NoGateway reports the skip once)."""
    if missing_gateway() and collection_path.parent == HERE and collection_path.name.startswith("test_"):
        return True
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Without a gateway, this conftest.py becomes the one skipped collector of the directory."""
    if missing_gateway() and file_path == HERE / "conftest.py":
        return NoGateway.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session", autouse=True)
def real_gateway_present() -> None:
    """For a test module named on the command line (never ignored): skip its tests without a
    gateway, before any module fixture starts one."""
    reason = missing_gateway()
    if reason:
        pytest.skip(reason)


@pytest.fixture
async def mock_gateway(tmp_path: Path) -> AsyncIterator[RealGateway]:
    """A started mock-mode gateway, stopped (SIGTERM) at teardown."""
    assert GATEWAY_BIN is not None
    gw = RealGateway(GATEWAY_BIN, tmp_path / "gateway", mock_env())
    try:
        await gw.start()
        yield gw
    finally:
        await gw.stop()


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

