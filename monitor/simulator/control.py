"""The /_sim/* control API, for driving a simulator that runs in another process."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from monitor.simulator.http_api import json_response
from monitor.simulator.scenarios import RESTARTS, SCENARIOS, run_scenario
from monitor.simulator.server import Simulator


def _flag(request: web.Request, name: str, default: str = "1") -> bool:
    return request.query.get(name, default).lower() in ("1", "true", "yes", "on")


def _number(request: web.Request, name: str, default: float) -> float:
    try:
        return float(request.query.get(name, default))
    except ValueError as err:
        raise web.HTTPBadRequest(text=f"{name} must be a number") from err


async def _json_object(request: web.Request) -> dict[str, object]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as err:
        raise web.HTTPBadRequest(text="body must be JSON") from err
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def control_routes(sim: Simulator) -> list[web.RouteDef]:
    """Routes under /_sim that drive `sim` (no API key: test harness only)."""

    async def scenario(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in SCENARIOS:
            return json_response({"error": f"unknown scenario {name}"}, status=404)
        pause = _number(request, "pause", sim.scenario_pause)
        if name in RESTARTS:  # takes the listener down, and this request's connection with it
            sim.background(run_scenario(sim, name, pause))
            return json_response({"started": name}, status=202)
        await run_scenario(sim, name, pause)
        return json_response({"ran": name})

    async def frame(request: web.Request) -> web.Response:
        queued = await sim.broadcast(await request.read(), binary=_flag(request, "binary", "0"))
        return json_response({"queued": queued})

    async def metric(request: web.Request) -> web.Response:
        body = await _json_object(request)
        labels, value = body.get("labels"), body.get("value", 1)
        if not isinstance(labels, dict | None) or not isinstance(value, int | float):
            raise web.HTTPBadRequest(text="labels must be an object, value a number")
        try:
            sim.inc_metric(str(body.get("name")), labels, float(value))
        except ValueError as err:
            raise web.HTTPBadRequest(text=str(err)) from err
        return json_response({"ok": True})

    async def received(_request: web.Request) -> web.Response:
        return json_response(sim.received)

    async def state(_request: web.Request) -> web.Response:
        return json_response(
            {
                "clients": sim.client_count,
                "upgrade_attempts": sim.upgrade_attempts,
                "unauthorized_attempts": sim.unauthorized_attempts,
            }
        )

    async def shutdown(request: web.Request) -> web.Response:
        down = _number(request, "down_seconds", 2.0)
        close_frame = _flag(request, "close_frame")
        sim.background(sim.graceful_shutdown(down, close_frame=close_frame))
        return json_response({"down_seconds": down, "close_frame": close_frame}, status=202)

    async def outage(request: web.Request) -> web.Response:
        down = _number(request, "down_seconds", 2.0)
        sim.background(_outage(sim, down))
        return json_response({"down_seconds": down}, status=202)

    async def black_hole(request: web.Request) -> web.Response:
        on = _flag(request, "on")
        sim.black_hole(on)
        return json_response({"black_hole": on})

    async def api_key(request: web.Request) -> web.Response:
        sim.api_key = (await request.text()).strip() or None
        return json_response({"auth": sim.api_key is not None})

    async def broker(request: web.Request) -> web.Response:
        body = await _json_object(request)
        connected, stale = body.get("connected"), body.get("stale_instruments")
        if not isinstance(connected, bool | None) or not isinstance(stale, list | None):
            raise web.HTTPBadRequest(text="connected must be a bool, stale_instruments a list")
        stale_list = [str(s) for s in stale] if stale is not None else None
        sim.set_broker(str(body.get("platform")), connected=connected, stale_instruments=stale_list)
        return json_response({"ok": True})

    async def endpoint(request: web.Request) -> web.Response:
        body = await _json_object(request)
        status, text, delay = body.get("status"), body.get("body"), body.get("delay")
        if not isinstance(status, int | None) or not isinstance(text, str | None):
            raise web.HTTPBadRequest(text="status must be an int, body a string")
        if not isinstance(delay, int | float | None):
            raise web.HTTPBadRequest(text="delay must be a number")
        encoded = text.encode() if text is not None else None
        sim.set_endpoint_override(str(body.get("path")), status=status, body=encoded, delay=delay)
        return json_response({"ok": True})

    async def clear_endpoints(_request: web.Request) -> web.Response:
        sim.clear_endpoint_overrides()
        return json_response({"ok": True})

    async def market(request: web.Request) -> web.Response:
        body = await _json_object(request)
        muted, late, closed = body.get("muted"), body.get("late_seconds"), body.get("closed")
        if not isinstance(muted, list | None) or not isinstance(late, int | float | None):
            raise web.HTTPBadRequest(text="muted must be a list of symbols, late_seconds a number")
        if not isinstance(closed, bool | None):
            raise web.HTTPBadRequest(text="closed must be a bool")
        if muted is not None:
            sim.market.muted = {str(symbol) for symbol in muted}
        if late is not None:
            sim.market.late_seconds = float(late)
        if closed is not None:
            sim.market.closed = closed
        return json_response({"muted": sorted(sim.market.muted), "late_seconds": sim.market.late_seconds,
                              "closed": sim.market.closed})

    async def close_clients(request: web.Request) -> web.Response:
        code = int(_number(request, "code", 1001))
        sim.background(sim.close_clients(code))
        return json_response({"code": code}, status=202)

    return [
        web.post("/_sim/scenario/{name}", scenario),
        web.post("/_sim/frame", frame),
        web.post("/_sim/metric", metric),
        web.get("/_sim/received", received),
        web.get("/_sim/state", state),
        web.post("/_sim/shutdown", shutdown),
        web.post("/_sim/outage", outage),
        web.post("/_sim/black_hole", black_hole),
        web.post("/_sim/api_key", api_key),
        web.post("/_sim/broker", broker),
        web.post("/_sim/endpoint", endpoint),
        web.delete("/_sim/endpoint", clear_endpoints),
        web.post("/_sim/close_clients", close_clients),
        web.post("/_sim/market", market),
    ]


async def _outage(sim: Simulator, down_seconds: float) -> None:
    await sim.go_down()
    await asyncio.sleep(down_seconds)
    await sim.come_up()
