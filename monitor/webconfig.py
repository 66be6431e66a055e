"""The exporter-toolkit web configuration file: the `--web.config.file` of node_exporter & co.

Same keys, defaults and checks as github.com/prometheus/exporter-toolkit (web/tls_config.go,
web/handler.go), so a file written for node_exporter works here unchanged. Every key is
either honoured or refused with an error naming it; unknown keys are errors, and relative
paths resolve against the file's directory. Problems are collected, not raised one by one.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import redaction
from .webtls import CIPHERS, CLIENT_AUTH, CURVES, TLS13_CIPHERS, TLS_VERSIONS, TLSSettings, build_context

# Only these headers may be set, some only to these values (exporter-toolkit's list).
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
REFUSED = {
    "rate_limit": "rate_limit is not supported by gateway-monitor; remove it "
                  "(limit access with the NetworkPolicy or a proxy instead)",
}
REFUSED_TLS = {
    "RequireAnyClientCert": "client_auth_type RequireAnyClientCert (accept any certificate without "
                            "verifying it) is not supported: Python's ssl verifies every client "
                            "certificate; use RequireAndVerifyClientCert with client_ca_file",
}
REFUSED_TLS["RequireClientCert"] = REFUSED_TLS["RequireAnyClientCert"]
_TLS_KEYS = ("cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca", "client_auth_type",
             "min_version", "max_version", "cipher_suites", "curve_preferences",
             "prefer_server_cipher_suites", "client_allowed_sans")
BAD_HASH = ("the password hash is not a valid bcrypt hash ($2a$/$2b$/$2y$, cost 04-31, then 53 "
            "characters of salt and hash); make one with `htpasswd -nBC 10 USER`")
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class WebConfig:
    """The parsed file. Password hashes are kept out of repr(): they never reach a log or output."""

    path: str
    tls: TLSSettings | None = None
    http2: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        names = sorted(u.decode(errors="replace") for u in self.users)
        return (f"WebConfig(path={self.path!r}, tls={self.tls!r}, headers={sorted(self.headers)!r}, "
                f"basic_auth_users={names!r})")


class _Problems:
    """Problems of one file, each prefixed with the file and the key it concerns."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path, self.list = path, problems

    def add(self, key: str, text: str) -> None:
        self.list.append(f"MONITOR_WEB_CONFIG_FILE {self.path}: {key}: {text}")


def load(path: str, problems: list[str]) -> WebConfig | None:
    """Read and check the file; append every problem to `problems` (None when unreadable)."""
    report = _Problems(path, problems)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        problems.append(f"MONITOR_WEB_CONFIG_FILE {path} cannot be read: {err.strerror}")
        return None
    except yaml.YAMLError as err:
        problems.append(f"MONITOR_WEB_CONFIG_FILE {path} is not valid YAML: {err}")
        return None
    data = _mapping(data, "web config", report)
    for key in sorted(set(data) - {"tls_server_config", "http_server_config", "basic_auth_users"}):
        report.add(key, REFUSED.get(key, "unknown key; known: tls_server_config, http_server_config, "
                                        "basic_auth_users"))
    http = _mapping(data.get("http_server_config"), "http_server_config", report)
    _unknown(http, ("http2", "headers"), "http_server_config", report)
    http2 = _typed(http, "http2", bool, True, "http_server_config", report)
    before = len(problems)
    tls_section = _mapping(data.get("tls_server_config"), "tls_server_config", report)
    tls = _tls(tls_section, Path(path).parent, report)
    if tls is not None and len(problems) == before:
        _check_loads(tls, report)
    return WebConfig(
        path=path,
        tls=tls,
        http2=http2,
        headers=_headers(_mapping(http.get("headers"), "http_server_config.headers", report), report),
        users=_users(_mapping(data.get("basic_auth_users"), "basic_auth_users", report), report),
    )


def _check_loads(tls: TLSSettings, report: _Problems) -> None:
    """The files can be read, and the certificate and key load and match."""
    for key, file in (("cert_file", tls.cert_file), ("key_file", tls.key_file),
                      ("client_ca_file", tls.client_ca_file)):
        if file is None:
            continue
        try:
            file.read_bytes()
        except OSError as err:
            report.add(f"tls_server_config.{key}", f"cannot read {file}: {err.strerror}")
            return
    try:
        build_context(tls)
    except (OSError, ssl.SSLError) as err:
        report.add("tls_server_config", str(err))


def _mapping(value: Any, key: str, report: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return value
    report.add(key, f"must be a mapping with text keys, got {type(value).__name__}")
    return {}


def _unknown(section: Mapping[str, Any], known: tuple[str, ...], where: str, report: _Problems) -> None:
    for key in sorted(set(section) - set(known)):
        report.add(f"{where}.{key}", f"unknown key; known: {', '.join(known)}")


def _typed(section: Mapping[str, Any], key: str, kind: type, default: Any, where: str,
           report: _Problems) -> Any:
    value = section.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind):
        report.add(f"{where}.{key}", f"must be {kind.__name__}, got {value!r}")
        return default
    return value


def _strings(section: Mapping[str, Any], key: str, report: _Problems) -> tuple[str, ...] | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        report.add(f"tls_server_config.{key}", f"must be a list of strings, got {value!r}")
        return None
    return tuple(value)


def _choice(section: Mapping[str, Any], key: str, choices: Mapping[str, Any], default: str,
            report: _Problems) -> str:
    value = _typed(section, key, str, default, "tls_server_config", report) or default
    if value not in choices:
        report.add(f"tls_server_config.{key}", f"must be one of {', '.join(choices)}, got {value!r}")
        return default
    return str(value)


def _tls(section: Mapping[str, Any], directory: Path, report: _Problems) -> TLSSettings | None:
    _unknown(section, _TLS_KEYS, "tls_server_config", report)
    text = {k: _typed(section, k, str, "", "tls_server_config", report) for k in
            ("cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca", "client_auth_type")}
    if not any(text.values()):
        return None  # exporter-toolkit: no TLS setting at all means plain HTTP
    for file_key, inline in (("cert_file", "cert"), ("key_file", "key"), ("client_ca_file", "client_ca")):
        if text[file_key] and text[inline]:
            report.add(f"tls_server_config.{file_key}", f"set {file_key} or {inline}, not both")
    for file_key, inline in (("cert_file", "cert"), ("key_file", "key")):
        if not text[file_key] and not text[inline]:
            report.add("tls_server_config", f"missing one of {inline} or {file_key}")
    auth = text["client_auth_type"] or "NoClientCert"
    if auth in REFUSED_TLS:
        report.add("tls_server_config.client_auth_type", REFUSED_TLS[auth])
        auth = "NoClientCert"
    elif auth not in CLIENT_AUTH:
        report.add("tls_server_config.client_auth_type",
                   f"must be one of {', '.join(CLIENT_AUTH)}, got {auth!r}")
        auth = "NoClientCert"
    has_ca = bool(text["client_ca_file"] or text["client_ca"])
    if has_ca and CLIENT_AUTH[auth] == ssl.CERT_NONE:
        report.add("tls_server_config", "client CA's have been configured without a Client Auth Policy "
                                        "(set client_auth_type)")
    sans = _strings(section, "client_allowed_sans", report)
    if sans is not None and auth != "RequireAndVerifyClientCert":
        report.add("tls_server_config.client_allowed_sans",
                   "requires client_auth_type RequireAndVerifyClientCert")
    settings = TLSSettings(
        cert_file=_join(directory, text["cert_file"]), key_file=_join(directory, text["key_file"]),
        client_auth_type=auth, client_ca_file=_join(directory, text["client_ca_file"]),
        min_version=_choice(section, "min_version", TLS_VERSIONS, "TLS12", report),
        max_version=_choice(section, "max_version", TLS_VERSIONS, "TLS13", report),
        cipher_suites=_ciphers(section, report), curve=_curve(section, report),
        prefer_server_cipher_suites=_typed(section, "prefer_server_cipher_suites", bool, True,
                                           "tls_server_config", report),
        client_allowed_sans=sans, cert=text["cert"] or None, key=text["key"] or None,
        client_ca=text["client_ca"] or None,
    )
    if TLS_VERSIONS[settings.min_version] > TLS_VERSIONS[settings.max_version]:
        report.add("tls_server_config.min_version", "must not be above max_version")
    if text["key"]:
        redaction.register(text["key"])
    return settings


def _join(directory: Path, value: str) -> Path | None:
    return (directory / value) if value else None  # an absolute value replaces the directory


def _ciphers(section: Mapping[str, Any], report: _Problems) -> tuple[str, ...]:
    names = _strings(section, "cipher_suites", report) or ()
    for name in names:
        if name not in CIPHERS and name not in TLS13_CIPHERS:
            report.add("tls_server_config.cipher_suites", f"unknown cipher: {name}")
    return tuple(n for n in names if n in CIPHERS or n in TLS13_CIPHERS)


def _curve(section: Mapping[str, Any], report: _Problems) -> str | None:
    names = _strings(section, "curve_preferences", report) or ()
    for name in names:
        if name not in CURVES:
            report.add("tls_server_config.curve_preferences", f"unknown curve: {name}")
    if len(names) > 1:
        report.add("tls_server_config.curve_preferences",
                   "list one curve: Python's ssl can restrict the handshake to one curve, not "
                   "order several")
    return names[0] if len(names) == 1 and names[0] in CURVES else None


def _headers(section: Mapping[str, Any], report: _Problems) -> dict[str, str]:
    headers = {}
    for name, value in section.items():
        where = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            report.add(where, f"HTTP header {name!r} can not be configured; allowed: {', '.join(HEADERS)}")
        elif not isinstance(value, str):
            report.add(where, f"must be a string, got {value!r}")
        elif HEADERS[name] and value not in HEADERS[name]:
            report.add(where, f"invalid value, expected one of {', '.join(HEADERS[name])}, got {value!r}")
        else:
            headers[name] = value
    return headers


def _users(section: Mapping[str, Any], report: _Problems) -> dict[bytes, bytes]:
    users = {}
    for name, hashed in section.items():
        # The hash itself is never quoted in a message.
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            report.add(f"basic_auth_users.{name}", BAD_HASH)
            continue
        redaction.register(hashed)
        users[name.encode()] = hashed.encode()
    return users
