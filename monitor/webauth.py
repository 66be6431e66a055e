"""Basic auth, extra headers and client SAN checks for the monitor's endpoints (web config file).

As exporter-toolkit's web/handler.go: every response gets the configured headers; with
`basic_auth_users`, a request without valid credentials gets 401 and `WWW-Authenticate`;
an unknown user costs a bcrypt check too, so timing does not tell which users exist; each
outcome is cached for a short time, keyed by a digest of user, hash and password, so a
scrape every few seconds does not pay ~50-250 ms of bcrypt each time. bcrypt runs in a
thread, one check at a time, so the event loop (and the WebSocket) never waits on it.

Deliberate difference: `/-/healthy` and `/-/ready` stay open. The kubelet's probes carry no
credentials, and those two answer nothing but "Healthy." / "Ready.".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import time
from collections.abc import Callable, Mapping

import bcrypt
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from .webconfig import WebConfig
from .webtls import allowed_peer

OPEN_PATHS = frozenset({"/-/healthy", "/-/ready"})
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 100
CHALLENGE = 'Basic realm="gateway-monitor", charset="UTF-8"'


def parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) as raw bytes from an `Authorization: Basic` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def _bcrypt_ok(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)  # constant-time comparison inside
    except ValueError:  # e.g. a password over bcrypt's 72 bytes: refused, as Go's bcrypt does
        return False


class BasicAuth:
    """Checks credentials against bcrypt hashes, with a short, bounded cache of outcomes."""

    def __init__(self, users: Mapping[bytes, bytes], clock: Callable[[], float] = time.monotonic,
                 ttl: float = CACHE_SECONDS) -> None:
        self._users = dict(users)
        self._clock, self._ttl = clock, ttl
        # Spent on unknown users: a hash of a random password at the highest configured cost.
        cost = max(int(h.split(b"$")[2]) for h in self._users.values())
        self._dummy = bcrypt.hashpw(base64.b64encode(os.urandom(18)), bcrypt.gensalt(rounds=cost))
        self._cache: dict[bytes, tuple[bool, float]] = {}
        self._lock = asyncio.Lock()
        self.bcrypt_checks = 0

    async def allows(self, header: str | None) -> bool:
        """True when `header` carries a configured user and that user's password."""
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        known = hashed is not None
        hashed = hashed or self._dummy
        key = hashlib.sha256(b"".join(len(p).to_bytes(4, "big") + p
                                      for p in (user, hashed, password))).digest()
        ok = self._cached(key)
        if ok is None:
            async with self._lock:  # one bcrypt at a time; a queued twin then finds the cache filled
                ok = self._cached(key)
                if ok is None:
                    self.bcrypt_checks += 1
                    ok = await asyncio.to_thread(_bcrypt_ok, password, hashed)
                    self._store(key, ok)
        return ok and known

    def _cached(self, key: bytes) -> bool | None:
        entry = self._cache.get(key)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def _store(self, key: bytes, ok: bool) -> None:
        now = self._clock()
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            # Still full: drop failures first (oldest first), so a flood of wrong passwords
            # cannot push out the scraper's entry; then the oldest success.
            while len(self._cache) >= CACHE_ENTRIES:
                victim = next((k for k, (ok, _) in self._cache.items() if not ok), next(iter(self._cache)))
                del self._cache[victim]
        self._cache[key] = (ok, now + self._ttl)


def middlewares(config: WebConfig | None) -> list[Middleware]:
    """The aiohttp middlewares that apply `config` (none without a web config file)."""
    sans = config.tls.client_allowed_sans if config and config.tls else None
    if config is None or not (config.headers or config.users or sans):
        return []
    auth = BasicAuth(config.users) if config.users else None
    headers = dict(config.headers)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await _guarded(request, handler, auth, sans)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return [guard]


async def _guarded(request: web.Request, handler: Handler, auth: BasicAuth | None,
                   sans: tuple[str, ...] | None) -> web.StreamResponse:
    if sans is not None:
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        if not allowed_peer(peer, sans):
            return web.Response(status=403, text="Forbidden: client certificate SAN not allowed\n")
    if auth is None or request.path in OPEN_PATHS:
        return await handler(request)
    if await auth.allows(request.headers.get(hdrs.AUTHORIZATION)):
        return await handler(request)
    return web.Response(status=401, text="Unauthorized\n", headers={hdrs.WWW_AUTHENTICATE: CHALLENGE})
