"""The server side of TLS for the monitor's own endpoints: settings, SSLContext, live reload.

The settings come from the exporter-toolkit web configuration file (monitor/webconfig.py).
Certificates are re-read without a restart, as exporter-toolkit does: at every new TLS
handshake the files are stat()ed (a few microseconds; Prometheus keeps its connections
alive, so handshakes are rare) and, when one changed, a new context is built and used for
that handshake and the following ones. A pair that does not load (a rotation half done,
a key that does not match yet) keeps the previous context and is logged once.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("monitor.web")

# client_auth_type -> what the handshake does. RequestClientCert asks Go to request a
# certificate and never verify or use it; its effect on who gets in is NoClientCert's,
# which is what Python's ssl can do (it cannot accept a certificate it did not verify).
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's names (crypto/tls CipherSuites(), the list exporter-toolkit accepts) -> OpenSSL's.
# They select TLS 1.0-1.2 suites; TLS 1.3 suites are not configurable, in Go as in OpenSSL
# through Python, so the three TLS 1.3 names are accepted and change nothing, as in Go.
CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_CIPHERS = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                           "TLS_CHACHA20_POLY1305_SHA256"})
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}


@dataclass(frozen=True)
class TLSSettings:
    """tls_server_config, checked and with paths resolved against the web config's directory."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve: str | None = None
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] | None = None
    # Inline PEM (`cert`, `key`, `client_ca`): never shown, the key is a secret.
    cert: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    client_ca: str | None = field(default=None, repr=False)

    @property
    def files(self) -> tuple[Path, ...]:
        """The files a rotation replaces."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)


def build_context(settings: TLSSettings) -> ssl.SSLContext:
    """A server context from `settings`; raises OSError or ssl.SSLError naming what failed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[settings.min_version]
    context.maximum_version = TLS_VERSIONS[settings.max_version]
    if settings.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = [CIPHERS[name] for name in settings.cipher_suites if name in CIPHERS]
    if tls12:
        context.set_ciphers(":".join(tls12))
    if settings.curve:
        context.set_ecdh_curve(CURVES[settings.curve])
    _load_chain(context, settings)
    context.verify_mode = CLIENT_AUTH[settings.client_auth_type]
    if context.verify_mode != ssl.CERT_NONE:
        if settings.client_ca_file:
            context.load_verify_locations(cafile=settings.client_ca_file)
        elif settings.client_ca:
            context.load_verify_locations(cadata=settings.client_ca)
        else:  # as Go with no ClientCAs: the system's roots
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])  # aiohttp speaks HTTP/1.1 only
    return context


def _load_chain(context: ssl.SSLContext, settings: TLSSettings) -> None:
    try:
        if settings.cert is None and settings.key is None:
            context.load_cert_chain(_path(settings.cert_file), _path(settings.key_file))
            return
        # Python's ssl loads a chain from files only: inline PEM goes through a private
        # temporary directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="gateway-monitor-tls-") as tmp:
            cert = settings.cert_file or _write(Path(tmp) / "cert.pem", settings.cert)
            key = settings.key_file or _write(Path(tmp) / "key.pem", settings.key)
            context.load_cert_chain(cert, key)
    except ssl.SSLError as err:
        raise ssl.SSLError(f"certificate and key do not load as a matching pair: {err.reason or err}"
                           ) from None


def _path(path: Path | None) -> Path:
    assert path is not None, "checked by webconfig"
    return path


def _write(path: Path, text: str | None) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text or "")
    return path


def allowed_peer(peercert: dict[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """True when the client certificate carries one of the `allowed` SANs (client_allowed_sans)."""
    if not peercert:
        return False
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "IP Address":  # Python writes IPv6 in its own long form; compare as Go prints
            value = str(ipaddress.ip_address(value.strip()))
        if value in allowed:
            return True
    return False


class ReloadingTLS:
    """The server's SSLContext; certificate, key and client CA are re-read when their files change."""

    def __init__(self, settings: TLSSettings) -> None:
        self.settings = settings
        self.reloads = 0
        self._stamp = self._stamps()
        self._current = build_context(settings)
        self.context = build_context(settings)  # handed to the server; hands each handshake on
        self.context.sni_callback = self._on_client_hello

    def _stamps(self) -> tuple[tuple[int, ...] | None, ...]:
        stamps: list[tuple[int, ...] | None] = []
        for path in self.settings.files:
            try:
                st = os.stat(path)  # follows the ..data symlinks of a Kubernetes Secret volume
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        return tuple(stamps)

    def _on_client_hello(self, ssl_object: ssl.SSLObject, _name: str | None,
                         _context: ssl.SSLContext) -> None:
        # Called by OpenSSL for every ClientHello, with or without SNI.
        self.check()
        ssl_object.context = self._current

    def check(self) -> None:
        """Build a new context if a file changed since the last look."""
        stamp = self._stamps()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            context = build_context(self.settings)
        except (OSError, ssl.SSLError) as err:
            log.warning("monitor.web.tls_reload_failed", problem=str(err),
                        files=[str(p) for p in self.settings.files],
                        hint="still serving the previous certificate; retried when a file changes")
            return
        self._current = context
        self.reloads += 1
        log.info("monitor.web.tls_reloaded", files=[str(p) for p in self.settings.files])
