"""The gateway's control API: the network model and device faults, changed at run time.

aiohttp on its own port, bound to localhost (``gateway_control_host``/``gateway_control_port``);
JSON in and out. Used by tests, load scripts and (later) services/testing's estate control.

``GET  /network``                           regions, offline hubs, counts
``PUT  /network/regions/{region}``          ``{"profile": "fast"|"realistic", "loss": 0.1,
                                              "outage": true}`` (any subset)
``PUT  /network/hubs/{eui}``                ``{"offline": true}``
``POST /network/reset``                     every fault and outage cleared
``GET  /devices/{eui}``                     the device, its conditions, whether a model is built,
                                            when its held future-dated work falls due
``PUT  /devices/{eui}``                     ``{"offline": null|"unreachable"|"silent",
                                              "delay_s": 2.5, "error": null|{"code": "E21"}|
                                              {"dlms_result": 1}, "times": 1}`` (any subset;
                                              ``times`` 0 means every command until cleared)
``POST /devices/{eui}/alerts``              ``{"alert_code": "0x8F3E"}``: the device raises it
``POST /premises/{key}/outage``             ``{"duration_s": 30}`` (omit: until DELETE)
``DELETE /premises/{key}/outage``           power back: restoration alerts follow
``POST /premises/{key}/reset``              the premises' devices as new
``POST /estate/reload``                     host the premises estate.json gained since it was
                                            read (services/testing calls it after onboarding;
                                            the gateway also notices a new file by itself)

``{key}`` is a premises id (``P0000001``) or the EUI-64 of any of its devices.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from dccsim.duis.requestid import parse_eui
from dccsim.estate import format_eui
from gateway.hosting import DeviceRecord
from gateway.network import DeviceConditions, ForcedError, OfflineMode, describe_device
from gateway.server import EstateFileError

log = logging.getLogger(__name__)
GATEWAY: web.AppKey[Any] = web.AppKey("gateway", object)


def _server(request: web.Request) -> Any:
    return request.app[GATEWAY]


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body is a JSON object")
    return body


def _eui(text: str) -> bytes:
    try:
        return parse_eui(text)
    except Exception as exc:
        raise web.HTTPBadRequest(text=f"not an EUI-64: {text}") from exc


def _record(request: web.Request) -> DeviceRecord:
    server = _server(request)
    found = server.index.find(_eui(request.match_info["eui"]))
    if found is None:
        raise web.HTTPNotFound(text="device not hosted by this gateway")
    record: DeviceRecord = server.index.record(found)
    return record


def _premises(request: web.Request) -> int:
    number: int | None = _server(request).index.premises_number(request.match_info["key"])
    if number is None:
        raise web.HTTPNotFound(text="premises not hosted by this gateway")
    return number


def _device_view(server: Any, record: DeviceRecord) -> dict[str, Any]:
    return {
        "eui": format_eui(record.eui),
        "device_type": record.device_type.value,
        "premises_id": record.premises_id,
        "region": record.region,
        "hub_eui": format_eui(record.hub_eui),
        "model_built": server.models.peek(record.index) is not None,
        # when the device's held future-dated work next falls due (gateway clock), or None
        "held_work_due": None if (due := server.due.get(record.index)) is None else due.isoformat(),
        "hub_offline": record.hub_eui in server.network.offline_hubs,
        "in_outage": record.premises in server.network.premises_outages,
        **describe_device(server.network.devices.get(record.eui)),
    }


async def get_network(request: web.Request) -> web.Response:
    server = _server(request)
    return web.json_response(
        {
            **server.network.describe(),
            "premises": server.index.premises_count,
            "devices": len(server.index),
            "models": len(server.models),
            "devices_holding_work": len(server.due),
            "wan_links": len(server.links),
        }
    )


async def put_region(request: web.Request) -> web.Response:
    server = _server(request)
    name = request.match_info["region"]
    if name not in server.network.regions:
        raise web.HTTPNotFound(text=f"no region {name} on this gateway")
    try:
        server.network.region(name).update(await _json(request))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    return web.json_response(server.network.describe()["regions"][name])


async def put_hub(request: web.Request) -> web.Response:
    server = _server(request)
    hub = _eui(request.match_info["eui"])
    if bool((await _json(request)).get("offline", True)):
        server.network.offline_hubs.add(hub)
    else:
        server.network.offline_hubs.discard(hub)
    return web.json_response(
        {"hub_eui": format_eui(hub), "offline": hub in server.network.offline_hubs}
    )


async def reset_network(request: web.Request) -> web.Response:
    server = _server(request)
    for premises in list(server.outages):
        server.reset_premises(premises)
    server.network.reset()
    return web.json_response(server.network.describe())


async def get_device(request: web.Request) -> web.Response:
    return web.json_response(_device_view(_server(request), _record(request)))


async def put_device(request: web.Request) -> web.Response:
    server = _server(request)
    record = _record(request)
    body = await _json(request)
    current = server.network.devices.get(record.eui) or DeviceConditions()
    try:
        if "offline" in body:
            current.offline = (
                None
                if body["offline"] in (None, False)
                else OfflineMode("unreachable" if body["offline"] is True else body["offline"])
            )
        if "delay_s" in body:
            delay = float(body["delay_s"])
            if delay < 0:
                raise ValueError("delay_s is not negative")
            current.delay_s = delay
        if "error" in body:
            error = body["error"]
            current.error = (
                None
                if error is None
                else ForcedError(
                    code=error.get("code"),
                    dlms_result=error.get("dlms_result"),
                    times=int(body.get("times", 1)),
                )
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    server.network.devices[record.eui] = current
    server.network.tidy(record.eui)
    return web.json_response(_device_view(server, record))


async def post_alert(request: web.Request) -> web.Response:
    server = _server(request)
    record = _record(request)
    raw = (await _json(request)).get("alert_code")
    try:
        code = int(raw, 0) if isinstance(raw, str) else int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text="alert_code is an integer or a hex string") from exc
    if not 0 <= code <= 0xFFFF:
        raise web.HTTPBadRequest(text="alert_code is 2 bytes")
    alert = server.device_alert(record, code)
    await server.send_alert(alert)
    return web.json_response(
        {
            "device": alert["device"],
            "alert_code": f"{code:#06x}",
            "framed": alert["frame"] is not None,
        },
        status=202,
    )


async def post_outage(request: web.Request) -> web.Response:
    server = _server(request)
    premises = _premises(request)
    duration = (await _json(request)).get("duration_s")
    try:
        duration_s = None if duration is None else float(duration)
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text="duration_s is a number of seconds") from exc
    await server.start_outage(premises, duration_s)
    return web.json_response(
        {"premises_id": server.index.premises_id(premises), "outage": True}, status=202
    )


async def delete_outage(request: web.Request) -> web.Response:
    server = _server(request)
    premises = _premises(request)
    ended = await server.end_outage(premises)
    return web.json_response(
        {"premises_id": server.index.premises_id(premises), "outage": False, "ended": ended}
    )


async def post_reset(request: web.Request) -> web.Response:
    server = _server(request)
    premises = _premises(request)
    count = server.reset_premises(premises)
    return web.json_response({"premises_id": server.index.premises_id(premises), "devices": count})


async def post_estate_reload(request: web.Request) -> web.Response:
    server = _server(request)
    try:
        refresh = await server.refresh_estate(force=True)
    except EstateFileError as exc:  # what is hosted stays
        raise web.HTTPConflict(text=str(exc)) from exc
    return web.json_response(
        {
            "premises_added": refresh.premises_added,
            "devices_added": refresh.devices_added,
            "premises": server.index.premises_count,
            "devices": len(server.index),
        }
    )


def build_control_app(server: Any) -> web.Application:
    """The control API over ``server`` (a ``gateway.server.GatewayServer``)."""
    app = web.Application()
    app[GATEWAY] = server
    app.router.add_get("/network", get_network)
    app.router.add_put("/network/regions/{region}", put_region)
    app.router.add_put("/network/hubs/{eui}", put_hub)
    app.router.add_post("/network/reset", reset_network)
    app.router.add_get("/devices/{eui}", get_device)
    app.router.add_put("/devices/{eui}", put_device)
    app.router.add_post("/devices/{eui}/alerts", post_alert)
    app.router.add_post("/premises/{key}/outage", post_outage)
    app.router.add_delete("/premises/{key}/outage", delete_outage)
    app.router.add_post("/premises/{key}/reset", post_reset)
    app.router.add_post("/estate/reload", post_estate_reload)
    return app


async def start_control_server(
    server: Any, host: str, port: int, *, fallback: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve the control API; port 0 (or, with ``fallback``, a port in use) takes a free port.
    Returns the runner and the port bound."""
    runner = web.AppRunner(build_control_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        if not fallback:
            await runner.cleanup()
            raise
        log.warning("control port %s in use; taking a free port", port)
        site = web.TCPSite(runner, host, 0)
        await site.start()
    server_obj: Any = site._server
    sockets = server_obj.sockets if server_obj is not None else []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, bound
