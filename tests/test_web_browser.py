"""The status page over HTTPS with basic auth, rendered by headless Chromium.

Chromium trusts the test server's certificate through `--ignore-certificate-errors-spki-list`
with the SHA-256 of that certificate's public key: only this key is accepted, every other
check of the certificate stays on (no blanket --ignore-certificate-errors). The credentials
travel in the URL, which Chromium answers the 401 challenge with.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from harness.net import HOST
from support import wait_for
from test_status_page import CHROMIUM_FLAGS
from tls_support import TestCA

USER, PASSWORD = "oncall", "browser-password-" + "b" * 16
KEY = "browser-test-key-" + "k" * 30


async def dump_dom(chromium: str, url: str, spki: str, profile: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={spki}", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return out.decode()


@pytest.mark.timeout(150)
async def test_status_page_over_https_with_credentials_in_chromium(simulator, monitor,
                                                                  tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run `make tools` (installs Debian's chromium)"
    ca = TestCA(tmp_path)
    _chain, _key, cert = ca.issue("tls")
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"},
        "basic_auth_users": {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()},
    }), encoding="utf-8")
    sim = await simulator(api_key=KEY)
    mon = await monitor(sim.url, env={"GATEWAY_API_KEY": KEY}, web_config_file=str(web_config))
    await wait_for(lambda: sim.client_count == 1, what="connection")
    await sim.broadcast({"type": "error", "code": "LIQUIDATION", "message": "liquidated over https"})
    await wait_for(lambda: len(mon.handler.recent_critical) >= 1, what="critical event")
    spki = base64.b64encode(hashlib.sha256(cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()).decode()

    with_password = f"https://{USER}:{PASSWORD}@{HOST}:{mon.port}/"
    page = await dump_dom(chromium, with_password, spki, tmp_path / "p1")
    assert "gateway.error.liquidation" in page and "liquidated over https" in page
    assert PASSWORD not in page and KEY not in page

    # The pin is what makes Chromium accept the test certificate: another key's pin, no page.
    other = base64.b64encode(hashlib.sha256(b"another key").digest()).decode()
    untrusted = await dump_dom(chromium, with_password, other, tmp_path / "p0")
    assert "liquidat" not in untrusted
    # Without (right) credentials headless Chromium gets the 401 challenge and shows nothing of the page.
    for url in (f"https://{HOST}:{mon.port}/", f"https://{USER}:nope@{HOST}:{mon.port}/"):
        refused = await dump_dom(chromium, url, spki, tmp_path / "p2")
        assert "liquidat" not in refused and "Stale symbols" not in refused, url
