"""The Self-Service Interface (SSI): a server-rendered portal for a test participant.

Pages (under ``/ssi/``): overview, devices and their statuses, test phases and notices, the
informal testing rules, certificates to download, and the GFI generate and check forms with a
readable report. No JavaScript. A participant logs in with a one-time link from
``dccsim ssi link`` (``/ssi/login?token=...``), or, on a connection made with a DCCKI client
certificate that names a registered participant, by that certificate (``/ssi/login``). Sessions
are cookies (HttpOnly, SameSite=Strict); every form carries the session's CSRF token.
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
from services.testing.logins import SESSION_TTL, Session
from services.testing.phases import Phase, participant_kind

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


def _when(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def add_routes(app: web.Application) -> None:
    """Add the portal's pages and its session middleware to ``app``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    app[JINJA] = env
    app.middlewares.append(require_session)
    app.router.add_get("/ssi/login", login)
    app.router.add_post("/ssi/logout", logout)
    app.router.add_get("/ssi/", overview)
    app.router.add_get("/ssi/devices", devices)
    app.router.add_get("/ssi/phases", phases)
    app.router.add_get("/ssi/rules", rules_page)
    app.router.add_get("/ssi/certificates", certificates)
    app.router.add_get("/ssi/certificates/{name}", download)
    app.router.add_get("/ssi/gfi", gfi_page)
    app.router.add_post("/ssi/gfi/generate", gfi_generate)
    app.router.add_post("/ssi/gfi/check", gfi_check)
