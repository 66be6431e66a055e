"""The API keys this process has used, and their removal from anything it writes or serves."""

from __future__ import annotations

import json

REDACTED = "<redacted>"
_secrets: set[str] = set()
_secret_bytes: set[bytes] = set()


def register(secret: str | None) -> None:
    """Remember `secret`: from now on redact() removes it wherever it appears."""
    # Short strings would redact ordinary words; the gateway requires keys of 32+ characters.
    if secret and len(secret) >= 8:
        # Also as it reads inside a JSON string, where `"`, `\` and control characters are escaped.
        forms = {secret, json.dumps(secret, ensure_ascii=False)[1:-1]}
        _secrets.update(forms)
        _secret_bytes.update(form.encode() for form in forms)


def redact(text: str) -> str:
    """`text` without any registered secret."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_bytes(data: bytes) -> bytes:
    """redact() for UTF-8 text such as a rendered log line."""
    for secret in _secret_bytes:
        if secret in data:
            data = data.replace(secret, REDACTED.encode())
    return data
