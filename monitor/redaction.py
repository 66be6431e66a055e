"""The API keys this process has used, and their removal from anything it writes or serves."""

from __future__ import annotations

from typing import Any

REDACTED = "<redacted>"
_secrets: set[str] = set()


def register(secret: str | None) -> None:
    """Remember `secret`: from now on redact() removes it wherever it appears."""
    # Short strings would redact ordinary words; the gateway requires keys of 32+ characters.
    if secret and len(secret) >= 8:
        _secrets.add(secret)


def redact(text: str) -> str:
    """`text` without any registered secret."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub(value: Any) -> Any:
    """redact() through strings inside dicts, lists, tuples and exceptions."""
    if not _secrets:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, BaseException):
        return redact(repr(value))
    return value
