"""The web configuration file: exporter-toolkit keys read, unsupported ones refused, all problems at once."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml
from tls_support import TestCA

from monitor.config import ConfigError, basic_auth_over_http, load
from monitor.webconfig import WebConfig
from monitor.webtls import CIPHERS, build_context

PASSWORD = b"scrape-password-" + b"p" * 20
HASH = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def web_file(directory: Path, content: dict | str) -> Path:
    path = directory / "web-config.yml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return path


def load_web(path: Path) -> WebConfig:
    web = load({"web_config_file": str(path)}, environ={}).web_config
    assert web is not None
    return web


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load({}, environ={"MONITOR_WEB_CONFIG_FILE": str(path)})
    return info.value.problems


# A file as the node_exporter documentation writes it, relative paths and all.
NODE_EXPORTER_FILE = f"""\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  min_version: TLS12
  client_auth_type: NoClientCert
  prefer_server_cipher_suites: true
  cipher_suites:
    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    - TLS_AES_128_GCM_SHA256
  curve_preferences: [CurveP256]
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: {HASH}
"""


def test_a_node_exporter_file_loads_unchanged_with_paths_relative_to_it(ca: TestCA, tmp_path: Path) -> None:
    ca.issue("server")
    (tmp_path / "server.crt").write_bytes((ca.directory / "server.crt").read_bytes())
    (tmp_path / "server.key").write_bytes((ca.directory / "server.key").read_bytes())
    web = load_web(web_file(tmp_path, NODE_EXPORTER_FILE))
    assert web.tls is not None
    assert web.tls.cert_file == tmp_path / "server.crt" and web.tls.key_file == tmp_path / "server.key"
    assert web.tls.cipher_suites[:2] == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                         "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
    assert web.tls.curve == "CurveP256"
    assert web.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                           "Strict-Transport-Security": "max-age=31536000"}
    assert web.users == {b"prometheus": HASH.encode()}
    context = build_context(web.tls)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"} == {
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"}


def test_the_go_cipher_names_map_to_openssls_names() -> None:
    """Checked against OpenSSL's own table of standard (IANA) names."""
    table = subprocess.run(["openssl", "ciphers", "-stdname", "ALL:@SECLEVEL=0"], capture_output=True,
                           text=True, check=True, timeout=10).stdout
    standard = {parts[0]: parts[2] for line in table.splitlines() if len(parts := line.split()) > 2}
    for go_name, openssl_name in CIPHERS.items():
        assert standard[go_name] == openssl_name, go_name


def test_no_tls_key_at_all_means_plain_http(tmp_path: Path) -> None:
    web = load_web(web_file(tmp_path, {"tls_server_config": {"min_version": "TLS13"},
                                       "basic_auth_users": {"u": HASH}}))
    assert web.tls is None and web.users


def test_an_empty_file_is_valid(tmp_path: Path) -> None:
    web = load_web(web_file(tmp_path, ""))
    assert web.tls is None and not web.users and not web.headers


def test_inline_cert_and_key_load(ca: TestCA, tmp_path: Path) -> None:
    chain, key, _cert = ca.issue("inline")
    web = load_web(web_file(tmp_path, {"tls_server_config": {
        "cert": chain.read_text(), "key": key.read_text()}}))
    assert web.tls is not None and web.tls.cert_file is None
    build_context(web.tls)
    assert "PRIVATE KEY" not in repr(web)


def test_mutual_tls_settings(ca: TestCA, tmp_path: Path) -> None:
    chain, key, _cert = ca.issue("mtls")
    web = load_web(web_file(tmp_path, {"tls_server_config": {
        "cert_file": str(chain), "key_file": str(key), "client_ca_file": str(ca.ca_file),
        "client_auth_type": "RequireAndVerifyClientCert", "client_allowed_sans": ["prometheus"]}}))
    assert web.tls is not None
    assert build_context(web.tls).verify_mode == ssl.CERT_REQUIRED
    assert web.tls.client_allowed_sans == ("prometheus",)


def test_every_problem_is_reported_at_once_naming_its_key(ca: TestCA, tmp_path: Path) -> None:
    chain, _key, _cert = ca.issue("bad")
    path = web_file(tmp_path, {
        "tls_server_config": {"cert_file": str(chain), "client_auth_type": "RequireAnyClientCert",
                              "min_version": "TLS14", "cipher_suites": ["TLS_FOO"],
                              "curve_preferences": ["X25519", "CurveP256"], "unknown_tls": 1},
        "http_server_config": {"headers": {"Server": "x", "X-Frame-Options": "allow"}, "http3": True},
        "basic_auth_users": {"alice": "plaintext-password", "bob": "$2y$03$" + "a" * 53},
        "rate_limit": {"burst": 1, "interval": "1s"},
        "web_listen": "x",
    })
    text = "\n".join(problems_of(path))
    for expected in ("rate_limit: rate_limit is not supported", "web_listen: unknown key",
                     "tls_server_config.unknown_tls: unknown key", "missing one of key or key_file",
                     "RequireAnyClientCert (accept any certificate", "min_version: must be one of",
                     "unknown cipher: TLS_FOO", "list one curve", "http_server_config.http3: unknown key",
                     "HTTP header 'Server' can not be configured",
                     "X-Frame-Options: invalid value, expected one of deny, sameorigin",
                     "basic_auth_users.alice: the password hash is not a valid bcrypt hash",
                     "basic_auth_users.bob: the password hash"):
        assert expected in text, expected
    assert "plaintext-password" not in text and "a" * 53 not in text
    assert all(p.startswith(f"MONITOR_WEB_CONFIG_FILE {path}: ") for p in problems_of(path))


@pytest.mark.parametrize(("tls", "expected"), [
    ({"cert_file": "missing.crt", "key_file": "missing.key"}, "cert_file: cannot read"),
    ({"client_auth_type": "NoClientCert", "client_ca_file": "ca.pem"}, "missing one of cert or cert_file"),
    ({"cert_file": "a", "cert": "b", "key_file": "c"}, "set cert_file or cert, not both"),
    ({"cert_file": "a", "key_file": "b", "client_allowed_sans": ["x"]},
     "requires client_auth_type RequireAndVerifyClientCert"),
    ({"cert_file": "a", "key_file": "b", "client_ca_file": "c"}, "without a Client Auth Policy"),
    ({"cert_file": "a", "key_file": "b", "min_version": "TLS13", "max_version": "TLS12"},
     "must not be above max_version"),
])
def test_tls_mistakes(tmp_path: Path, tls: dict, expected: str) -> None:
    assert expected in "\n".join(problems_of(web_file(tmp_path, {"tls_server_config": tls})))


def test_a_key_that_does_not_match_the_certificate(ca: TestCA, tmp_path: Path) -> None:
    chain, _key, _cert = ca.issue("one")
    _chain, other_key, _cert = ca.issue("two")
    path = web_file(tmp_path, {"tls_server_config": {"cert_file": str(chain), "key_file": str(other_key)}})
    assert "do not load as a matching pair" in "\n".join(problems_of(path))


def test_an_unreadable_or_broken_file(tmp_path: Path) -> None:
    assert "cannot be read" in problems_of(tmp_path / "nope.yml")[0]
    assert "is not valid YAML" in problems_of(web_file(tmp_path, "a: [b"))[0]
    assert "must be a mapping" in problems_of(web_file(tmp_path, "- a\n"))[0]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", **(env or {})}, check=False)


def test_check_config_validates_the_file_and_shows_no_hash(ca: TestCA, tmp_path: Path) -> None:
    chain, key, _cert = ca.issue("check")
    path = web_file(tmp_path, {"tls_server_config": {"cert_file": str(chain), "key_file": str(key)},
                               "basic_auth_users": {"prometheus": HASH}})
    ok = run_cli("--check-config", "--web.config.file", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "basic_auth_users=['prometheus']" in ok.stdout and str(chain) in ok.stdout
    assert HASH not in ok.stdout + ok.stderr
    broken = web_file(tmp_path, {"tls_server_config": {"cert_file": str(chain), "key_file": str(chain)}})
    bad = run_cli("--check-config", "--web-config-file", str(broken))
    assert bad.returncode == 1 and "tls_server_config" in bad.stderr


def test_an_invalid_file_at_start_up_exits_2(tmp_path: Path) -> None:
    path = web_file(tmp_path, {"basic_auth_users": {"prometheus": "secret"}})
    bad = run_cli("--listen", "127.0.0.1:0", env={"MONITOR_WEB_CONFIG_FILE": str(path)})
    assert bad.returncode == 2
    assert "basic_auth_users.prometheus" in bad.stderr and "monitor.started" not in bad.stderr


@pytest.mark.parametrize(("listen", "tls", "warn"), [
    ("0.0.0.0:9478", False, True), (":9478", False, True), ("10.0.0.5:9478", False, True),
    ("127.0.0.1:9478", False, False), ("[::1]:9478", False, False), ("0.0.0.0:9478", True, False),
])
def test_basic_auth_over_plain_http_beyond_loopback_is_flagged(ca: TestCA, tmp_path: Path, listen: str,
                                                              tls: bool, warn: bool) -> None:
    chain, key, _cert = ca.issue("warn")
    content: dict = {"basic_auth_users": {"prometheus": HASH}}
    if tls:
        content["tls_server_config"] = {"cert_file": str(chain), "key_file": str(key)}
    config = load({"listen": listen, "web_config_file": str(web_file(tmp_path, content))}, environ={})
    assert basic_auth_over_http(config) is warn
