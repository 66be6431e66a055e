"""The gateway's unauthenticated HTTP surface (/livez /readyz /health /metrics) and its auth."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from monitor.simulator import frames
from monitor.simulator.gateway_exposition import GatewayMetrics

DEFAULT_BROKER = "alpaca-paper"
GIT_SHA = "0000000000000000000000000000000000000000"
UNAUTHORIZED_BODY: dict[str, object] = {
    "code": "UNAUTHORIZED",
    "message": "API key missing or invalid",
}
SHUTTING_DOWN_BODY: dict[str, object] = {
    "code": "SHUTTING_DOWN",
    "message": "Gateway is shutting down",
}
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Provider:
    """One upstream broker as /health reports it."""

    connected: bool = True
    stale_instruments: list[str] = field(default_factory=list)
    stale_since: str | None = None

    def set_stale(self, instruments: list[str]) -> None:
        """Replace the stale list; stale_since marks when it last became non-empty."""
        if instruments and not self.stale_instruments:
            self.stale_since = frames.iso()
        elif not instruments:
            self.stale_since = None
        self.stale_instruments = list(instruments)

    @property
    def healthy(self) -> bool:
        """Connected and with no stale instrument."""
        return self.connected and not self.stale_instruments


@dataclass
class EndpointOverride:
    """Fault injected into one HTTP path."""

    status: int | None = None
    body: bytes | None = None
    delay: float | None = None


class SimulatedGateway(Protocol):
    """What these routes read of the simulated gateway (server.Simulator), at every request."""

    @property
    def version(self) -> str: ...
    @property
    def shutting_down(self) -> bool: ...
    @property
    def providers(self) -> Mapping[str, Provider]: ...
    @property
    def overrides(self) -> Mapping[str, EndpointOverride]: ...
    @property
    def metrics(self) -> GatewayMetrics: ...


def json_response(body: object, *, status: int = 200) -> web.Response:
    """Serialise `body` with orjson into an application/json response."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authorised(request: web.Request, api_key: str | None) -> bool:
    """Check the key as the gateway does: Authorization (Bearer) wins over X-API-Key."""
    if not api_key:
        return True
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and _same(token.strip(), api_key)
    header_key = request.headers.get("X-API-Key")
    return header_key is not None and _same(header_key, api_key)


def health_body(sim: SimulatedGateway) -> dict[str, object]:
    """The /health document for the simulator's current provider state."""
    providers: list[dict[str, object]] = []
    for platform, provider in sim.providers.items():
        entry: dict[str, object] = {"platform": platform, "connected": provider.connected}
        if provider.stale_instruments:
            entry["stale_instruments"] = list(provider.stale_instruments)
        providers.append(entry)
    healthy = all(p.healthy for p in sim.providers.values())
    return {
        "status": "connected" if healthy else "degraded",
        "version": sim.version,
        "git_sha": GIT_SHA,
        "providers": providers,
    }


def probe_routes(sim: SimulatedGateway) -> list[web.RouteDef]:
    """Routes for /livez, /readyz, /health and /metrics (never behind the key)."""

    async def livez(_request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        if sim.shutting_down:
            return json_response({"ready": False, "message": "shutting down"}, status=503)
        platforms = list(sim.providers)
        return json_response(
            {"ready": True, "providers": platforms, "provider_count": len(platforms)}
        )

    async def health(_request: web.Request) -> web.Response:
        return json_response(health_body(sim))

    async def metrics(_request: web.Request) -> web.Response:
        body = sim.metrics.render().encode()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    return [
        web.get("/livez", livez),
        web.get("/readyz", readyz),
        web.get("/health", health),
        web.get("/metrics", metrics),
    ]


def override_middleware(sim: SimulatedGateway) -> Middleware:
    """Middleware applying set_endpoint_override() faults to any path."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        override = sim.overrides.get(request.path)
        if override is None:
            return await handler(request)
        if override.delay:
            await asyncio.sleep(override.delay)
        if override.body is not None:
            content_type = METRICS_CONTENT_TYPE if request.path == "/metrics" else "application/json"
            return web.Response(
                body=override.body,
                status=override.status or 200,
                headers={"Content-Type": content_type},
            )
        response = await handler(request)
        if override.status is not None:
            response.set_status(override.status)
        return response

    return middleware
