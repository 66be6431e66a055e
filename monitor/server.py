"""The monitor's own HTTP endpoints: /, /metrics, /-/healthy, /-/ready."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from .metrics import Metrics
from .status import Snapshot, render

READY = web.AppKey("ready", dict)
SNAPSHOT: web.AppKey[Callable[[], Snapshot]] = web.AppKey("snapshot")
METRICS = web.AppKey("metrics", Metrics)


def build_app(metrics: Metrics, snapshot: Callable[[], Snapshot],
              middlewares: Iterable[Middleware] = ()) -> web.Application:
    """An application serving only the documented endpoints (guarded by the web config's middlewares)."""
    app = web.Application(middlewares=list(middlewares))
    app[READY] = {"ready": False}
    app[SNAPSHOT] = snapshot
    app[METRICS] = metrics
    app.router.add_get("/", _status)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    return app


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].expose(
        ",".join(request.headers.getall(hdrs.ACCEPT, [])), request.query.getall("name[]", [])
    )
    response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
    response.enable_compression()  # gzip when the scraper asks for it, as Prometheus does
    return response


async def _healthy(_request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def _ready(request: web.Request) -> web.Response:
    # Ready means the monitor itself is up and configured. The gateway's state is
    # deliberately absent: a sidecar's readiness gates the whole pod.
    if request.app[READY]["ready"]:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


async def _status(request: web.Request) -> web.Response:
    return web.Response(text=render(request.app[SNAPSHOT]()), content_type="text/html")
