"""The Self-Service Interface (SSI): a server-rendered portal for a test participant.

Pages (under ``/ssi/``): overview, devices and their statuses, each device's estate controls
(``/ssi/devices/{eui}``: offline, delay, forced E20/E21 or DLMS failure, alerts, hub offline,
premises outage and reset, through :mod:`services.testing.estate_control`), the participant's
Service Requests and each one's timeline (``/ssi/requests``, ``/ssi/requests/{request_id}``),
test phases and notices, the informal testing rules, certificates to download, and the GFI
generate and check forms with a readable report. No JavaScript. A participant logs in with a
one-time link from ``dccsim ssi link`` (``/ssi/login?token=...``), or, on a connection made
with a DCCKI client certificate that names a registered participant, by that certificate
(``/ssi/login``). Sessions are cookies
(HttpOnly, SameSite=Strict); every form carries the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from dccsim import estate, participants
from dccsim.pki.dccki import participant_identity
from dccsim.testuser import bundle_dir
from services.testing import gfi
from services.testing.estate_control import EstateControlError
from services.testing.logins import SESSION_TTL, Session
from services.testing.phases import Phase, participant_kind
from services.testing.timeline import STAGES, originator

COOKIE = "dccsim_ssi"
TEMPLATES = Path(__file__).with_name("templates")
SESSION: web.RequestKey[Session] = web.RequestKey("ssi_session", Session)
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("ssi_jinja", jinja2.Environment)

# The files of a participant's bundle that the portal offers (certificates only, no keys).
DOWNLOADS: dict[str, str] = {
    "ds.pem": "SMKI Digital Signing certificate",
    "ka.pem": "SMKI Key Agreement certificate",
    "xml-sign.pem": "SMKI XML-signing certificate",
    "tls-client.pem": "DCCKI TLS client certificate",
    "receiver.pem": "DCCKI server certificate for your Receive Response Service",
    "dccki-ca.pem": "DCCKI CA",
    "smki-ca.pem": "SMKI CAs (root, organisation, device)",
    "dcc-xml-sign.pem": "DCC (DSP) XML-signing certificate",
    "dcc-acb-ds.pem": "DCC ACB Digital Signing certificate",
    "dcc-acb-ka.pem": "DCC ACB Key Agreement certificate",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _state(request: web.Request) -> Any:
    from services.testing.app import STATE

    return request.app[STATE]


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = request.get(SESSION)
    page = (
        request.app[JINJA]
        .get_template(template)
        .render(
            session=session,
            participant=(
                participants.load(_state(request).settings.home).get(session.user_id)
                if session
                else None
            ),
            path=request.path,
            **context,
        )
    )
    return web.Response(text=page, content_type="text/html", status=status)


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages under /ssi/ need a live session, except the login page; forms need its CSRF token."""
    if not request.path.startswith("/ssi") or request.path.startswith("/ssi/login"):
        return await handler(request)
    cookie = request.cookies.get(COOKIE)
    session = await _state(request).logins.session(cookie) if cookie else None
    if session is None:
        raise web.HTTPSeeOther("/ssi/login")
    request[SESSION] = session
    if request.method == "POST":
        form = await request.post()
        if form.get("csrf") != session.csrf_token:
            return _render(request, "error.html", 403, message="The form has expired; try again.")
    return await handler(request)


def _peer_user(request: web.Request) -> str | None:
    """The User ID of the DCCKI client certificate this connection was made with, if any."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        user_id, _ = participant_identity(der)
    except ValueError:
        return None
    return user_id


def _see_other(location: str) -> web.Response:
    """A 303 to ``location`` that can carry cookies (an HTTPException returned cannot)."""
    return web.Response(status=303, headers={"Location": location})


async def _start_session(request: web.Request, user_id: str) -> web.StreamResponse:
    cookie = await _state(request).logins.open_session(user_id)
    response = _see_other("/ssi/")
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="Strict",
        path="/ssi",
        secure=request.secure,
    )
    return response


async def login(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    registered = participants.load(state.settings.home)
    token = request.query.get("token")
    if token:
        user_id = await state.logins.redeem(token)
        if user_id is None or user_id not in registered:
            return _render(
                request,
                "login.html",
                401,
                message="This login link is unknown, used or expired. Ask for a new one.",
            )
        return await _start_session(request, user_id)
    peer = _peer_user(request)
    if peer is not None and peer in registered:
        return await _start_session(request, peer)
    return _render(request, "login.html", 401, message=None)


async def logout(request: web.Request) -> web.StreamResponse:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await _state(request).logins.close_session(cookie)
    response = _see_other("/ssi/login")
    response.del_cookie(COOKIE, path="/ssi")
    return response


def _my_premises(request: web.Request) -> list[estate.Premises]:
    session = request[SESSION]
    me = participants.load(_state(request).settings.home).get(session.user_id)
    if me is None:
        return []
    return [
        p for p in estate.load(_state(request).settings.home) if me.eui in p.registrations.values()
    ]


async def overview(request: web.Request) -> web.Response:
    state = _state(request)
    kind = await participant_kind(state.engine, request[SESSION].user_id)
    notices = await state.phases.notices(kind=kind)
    premises = _my_premises(request)
    return _render(
        request,
        "overview.html",
        kind=kind.value,
        notices=notices[:5],
        premises_count=len(premises),
        device_count=sum(len(p.devices) for p in premises),
        rules=state.rules.current(),
    )


async def devices(request: web.Request) -> web.Response:
    return _render(request, "devices.html", premises=_my_premises(request))


async def phases(request: web.Request) -> web.Response:
    state = _state(request)
    kind = await participant_kind(state.engine, request[SESSION].user_id)
    histories = {phase: await state.phases.history(phase) for phase in Phase}
    return _render(
        request,
        "phases.html",
        statuses=await state.phases.statuses(),
        histories=histories,
        notices=await state.phases.notices(kind=kind),
    )


async def rules_page(request: web.Request) -> web.Response:
    rules_file = _state(request).rules
    return _render(
        request, "rules.html", rules=rules_file.current().to_json(), problem=rules_file.problem
    )


def _bundle(request: web.Request) -> Path | None:
    me = participants.load(_state(request).settings.home).get(request[SESSION].user_id)
    return bundle_dir(_state(request).settings.home, me.eui) if me else None


async def certificates(request: web.Request) -> web.Response:
    bundle = _bundle(request)
    files = [
        (name, title)
        for name, title in DOWNLOADS.items()
        if bundle is not None and (bundle / name).is_file()
    ]
    return _render(request, "certificates.html", files=files)


async def download(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    bundle = _bundle(request)
    if name not in DOWNLOADS or bundle is None or not (bundle / name).is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=(bundle / name).read_bytes(),
        content_type="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _gfi_defaults(request: web.Request) -> dict[str, Any]:
    me = participants.load(_state(request).settings.home).get(request[SESSION].user_id)
    meters = [
        d.eui for p in _my_premises(request) for d in p.devices if d.device_type.value == "ESME"
    ]
    return {
        "recipient": me.eui if me else "",
        "devices": meters,
        "now": _state(request).clock().replace(microsecond=0).isoformat(),
    }


async def gfi_page(request: web.Request) -> web.Response:
    return _render(request, "gfi.html", defaults=_gfi_defaults(request), form={}, error=None)


async def gfi_generate(request: web.Request) -> web.Response:
    state = _state(request)
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf"}
    try:
        data = gfi.generate_from_json(state.keystore(), form, now=state.clock())
    except gfi.GfiError as exc:
        return _render(
            request, "gfi.html", 400, defaults=_gfi_defaults(request), form=form, error=str(exc)
        )
    report = gfi.check_from_json(state.keystore(), {"message": data.hex()})
    return _render(
        request, "gfi_result.html", message=gfi.message_text(data), report=report, generated=True
    )


async def gfi_check(request: web.Request) -> web.Response:
    state = _state(request)
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf"}
    try:
        report = gfi.check_from_json(state.keystore(), form)
    except gfi.GfiError as exc:
        return _render(
            request, "gfi.html", 400, defaults=_gfi_defaults(request), form=form, error=str(exc)
        )
    return _render(request, "gfi_result.html", message=None, report=report, generated=False)


# -- estate controls -------------------------------------------------------------------


async def device_page(
    request: web.Request, *, status: int = 200, result: str | None = None, error: str | None = None
) -> web.Response:
    control = _state(request).estate_control
    user_id = request[SESSION].user_id
    try:
        owned = await control.device(user_id, request.match_info["eui"])
    except EstateControlError as exc:
        return _render(request, "error.html", exc.status, message=exc.reason)
    conditions: dict[str, Any] | None = None
    unavailable: str | None = None
    try:
        conditions = await control.describe(user_id, owned.eui)
    except EstateControlError as exc:
        unavailable = exc.reason
    return _render(
        request,
        "device.html",
        status,
        device=owned,
        conditions=conditions,
        unavailable=unavailable,
        result=result,
        error=error,
    )


def _form_conditions(form: dict[str, str]) -> dict[str, Any]:
    """The conditions form as a control request body: every field is always sent, so
    submitting the form sets exactly what it shows."""
    error_kind = form.get("error", "none")
    error: dict[str, Any] | None = None
    if error_kind in ("E20", "E21"):
        error = {"code": error_kind}
    elif error_kind == "dlms":
        error = {"dlms_result": form.get("dlms_result", "")}
    return {
        "offline": form.get("offline") or None,
        "delay_s": form.get("delay_s") or "0",
        "error": error,
        "times": form.get("times") or "1",
    }


async def device_action(request: web.Request) -> web.Response:
    """One of the device page's forms: ``action`` says which."""
    control = _state(request).estate_control
    user_id = request[SESSION].user_id
    eui = request.match_info["eui"]
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf"}
    action = form.get("action", "")
    try:
        if action == "conditions":
            await control.set_conditions(user_id, eui, _form_conditions(form))
            result = "Device conditions set."
        elif action == "alert":
            answer = await control.raise_alert(user_id, eui, form.get("alert_code", ""))
            result = f"Alert {answer.get('alert_code', '')} raised."
        elif action in ("hub_offline", "hub_online"):
            owned = await control.device(user_id, eui)
            premises = owned.premises
            await control.set_hub_offline(user_id, premises.hub_eui, action == "hub_offline")
            result = f"Hub {premises.hub_eui} {'offline' if action == 'hub_offline' else 'online'}."
        elif action == "outage_start":
            await control.start_outage(user_id, eui, form.get("duration_s"))
            result = "Power outage started."
        elif action == "outage_end":
            await control.end_outage(user_id, eui)
            result = "Power restored."
        elif action == "reset":
            answer = await control.reset_premises(user_id, eui)
            count = answer.get("devices")
            result = f"Premises {answer.get('premises_id', '')} reset: {count} devices."
        else:
            return await device_page(request, status=400, error=f"unknown action {action!r}")
    except EstateControlError as exc:
        return await device_page(request, status=exc.status, error=exc.reason)
    return await device_page(request, result=result)


# -- Service Request timelines ---------------------------------------------------------


async def requests_page(request: web.Request) -> web.Response:
    state = _state(request)
    me = participants.load(state.settings.home).get(request[SESSION].user_id)
    found = await state.timelines.recent(me.eui) if me else []
    return _render(request, "requests.html", timelines=found)


async def request_page(request: web.Request) -> web.Response:
    state = _state(request)
    me = participants.load(state.settings.home).get(request[SESSION].user_id)
    request_id = request.match_info["request_id"]
    found = await state.timelines.timeline(request_id)
    if found is None or me is None or originator(found.request_id) != me.eui:
        return _render(request, "error.html", 404, message=f"No request {request_id} of yours.")
    return _render(request, "request.html", timeline=found, stages=STAGES)


def _when(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _at(value: dt.datetime) -> str:
    """A timeline instant, to the millisecond."""
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d} UTC"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def add_routes(app: web.Application) -> None:
    """Add the portal's pages and its session middleware to ``app``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["at"] = _at
    env.filters["ms"] = _ms
    app[JINJA] = env
    app.middlewares.append(require_session)
    app.router.add_get("/ssi/login", login)
    app.router.add_post("/ssi/logout", logout)
    app.router.add_get("/ssi/", overview)
    app.router.add_get("/ssi/devices", devices)
    app.router.add_get("/ssi/devices/{eui}", device_page)
    app.router.add_post("/ssi/devices/{eui}", device_action)
    app.router.add_get("/ssi/requests", requests_page)
    app.router.add_get("/ssi/requests/{request_id}", request_page)
    app.router.add_get("/ssi/phases", phases)
    app.router.add_get("/ssi/rules", rules_page)
    app.router.add_get("/ssi/certificates", certificates)
    app.router.add_get("/ssi/certificates/{name}", download)
    app.router.add_get("/ssi/gfi", gfi_page)
    app.router.add_post("/ssi/gfi/generate", gfi_generate)
    app.router.add_post("/ssi/gfi/check", gfi_check)
