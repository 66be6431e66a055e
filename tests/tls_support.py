"""A test certificate authority made in the test (the `cryptography` package of the `test` extra)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509  # never skipped: a missing package fails loudly
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness.net import HOST


def certificate(subject: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: str | None,
                key: ec.EllipticCurvePrivateKey, *, ca: bool,
                sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    """A CA (ca=True) or a leaf for 127.0.0.1 and localhost (or `sans`), valid for an hour."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            sans or [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class TestCA:
    """A CA that issues server and client certificates as PEM files in a directory."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path, name: str = "gateway-monitor test CA") -> None:
        self.directory, self.name = directory, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = certificate(name, None, None, self.key, ca=True)
        self.ca_file = directory / f"{name.replace(' ', '-')}.pem"
        self.ca_file.write_bytes(pem(self.cert))

    def issue(self, stem: str, subject: str = HOST, sans: list[x509.GeneralName] | None = None
              ) -> tuple[Path, Path, x509.Certificate]:
        """(certificate chain file, key file, certificate) written as <stem>.crt / <stem>.key."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(subject, self.key, self.name, key, ca=False, sans=sans)
        chain, key_file = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        chain.write_bytes(pem(cert) + pem(self.cert))
        key_file.write_bytes(key_pem(key))
        return chain, key_file, cert
