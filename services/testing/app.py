"""services/testing: test coordination, as a JSON control API on localhost and the SSI portal.

JSON API (``/api/v1``):

- ``GET participants``, ``GET estate``: the participant register and the test estate.
- ``GET phases``, ``GET phases/{phase}``, ``GET phases/{phase}/history``;
  ``POST phases/{phase}/notification`` ``{commencement, note?}`` (DCC's first notice),
  ``POST phases/{phase}/directions`` ``{reason, requested_date?}`` (the Secretary of State),
  ``POST phases/{phase}/renotification`` ``{direction_id, commencement, note?}`` (DCC);
  ``GET notices?phase=&participant=``.
- ``GET rules``; ``GET rules/decision?participant=&srv=&used_count=``.
- ``POST gfi/generate`` ``{use_case: ECS17b|alert, device, recipient, counter, ...}``;
  ``POST gfi/check`` ``{message, command?, use_case?, last_counter?}``.
- DCCKI PMA, acting as the ``X-Dccsim-Actor`` header names (``dccki_pma``, ``dcc``,
  ``secretary_of_state``, ``ssc``, ``smki_pma``): ``GET|POST pma/entries``,
  ``GET pma/entries/{id}``, ``POST pma/entries/{id}/decision``,
  ``POST pma/entries/{id}/access-requests``, ``GET pma/access-requests``,
  ``POST pma/access-requests/{id}/grant``.
- ``POST ssi/links`` ``{user_id}``: a one-time SSI login link.

The SSI portal is under ``/ssi/`` (see :mod:`services.testing.portal`). Phase notices are also
published on the bus as ``testing.notice`` events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from dccsim import estate, participants
from dccsim.bus import Bus
from dccsim.bus.envelope import Envelope
from dccsim.config import TestingSettings
from dccsim.pki.keystore import KeyStore
from dccsim.runtime import ServiceRuntime, run_service
from dccsim.storage import create_engine
from services.testing import gfi, rules, store
from services.testing.logins import Logins
from services.testing.phases import Notice, Phase, PhaseError, PhaseRegister, participant_kind
from services.testing.pma import Actor, Decision, EntryKind, PmaError, PmaRegister

log = logging.getLogger(__name__)

NOTICE_EVENT = "testing.notice"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class TestingState:
    """Everything the handlers share, built once per app."""

    __test__ = False  # not a pytest class

    settings: TestingSettings
    engine: AsyncEngine
    phases: PhaseRegister
    pma: PmaRegister
    logins: Logins
    rules: rules.RulesFile
    clock: Callable[[], dt.datetime] = _now
    _keystore: KeyStore | None = field(default=None, repr=False)

    def keystore(self) -> KeyStore:
        if self._keystore is None:
            self._keystore = KeyStore(self.settings.keystore_dir)
        return self._keystore

    def login_url(self, token: str) -> str:
        return (
            f"http://{self.settings.testing_host}:{self.settings.testing_port}"
            f"/ssi/login?token={token}"
        )


STATE: web.AppKey[TestingState] = web.AppKey("testing_state", TestingState)


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
}


def _bad(reason: str, status: int = 400) -> web.HTTPException:
    """A JSON ``{"error": reason}`` answer with ``status``, to raise."""
    return _ERRORS.get(status, web.HTTPBadRequest)(
        text=json.dumps({"error": reason}), content_type="application/json"
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    return body


def _date(value: Any, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise _bad(f"{what} must be a date YYYY-MM-DD") from exc


def _phase(request: web.Request) -> Phase:
    text = request.match_info["phase"]
    for phase in Phase:
        if phase.value.lower() == text.lower():
            return phase
    raise _bad(f"no phase {text!r}; phases are {', '.join(p.value for p in Phase)}", 404)


# -- participants and estate ------------------------------------------------------------


async def list_participants(request: web.Request) -> web.Response:
    home = request.app[STATE].settings.home
    return web.json_response(
        [
            {
                "user_id": p.user_id,
                "eui": p.eui,
                "roles": sorted(r.value for r in p.roles),
                "response_url": p.response_url,
            }
            for p in participants.load(home).values()
        ]
    )


async def estate_summary(request: web.Request) -> web.Response:
    premises = estate.load(request.app[STATE].settings.home)
    by_type = Counter(d.device_type.value for p in premises for d in p.devices)
    by_region = Counter(p.region for p in premises)
    return web.json_response(
        {
            "premises": len(premises),
            "devices": sum(by_type.values()),
            "by_type": dict(by_type),
            "by_region": dict(by_region),
        }
    )


# -- phases and notices -----------------------------------------------------------------


async def list_phases(request: web.Request) -> web.Response:
    statuses = await request.app[STATE].phases.statuses()
    return web.json_response([s.to_json() for s in statuses])


async def get_phase(request: web.Request) -> web.Response:
    return web.json_response((await request.app[STATE].phases.status(_phase(request))).to_json())


async def phase_history(request: web.Request) -> web.Response:
    events = await request.app[STATE].phases.history(_phase(request))
    return web.json_response([e.to_json() for e in events])


async def _phase_call(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except PhaseError as exc:
        raise _bad(exc.reason, exc.status) from exc


async def notify_phase(request: web.Request) -> web.Response:
    body = await _json_body(request)
    notice = await _phase_call(
        request.app[STATE].phases.notify(
            _phase(request),
            _date(body.get("commencement"), "commencement"),
            str(body.get("note", "")),
        )
    )
    return web.json_response(notice.to_json(), status=201)


async def direct_phase(request: web.Request) -> web.Response:
    body = await _json_body(request)
    requested = body.get("requested_date")
    direction = await _phase_call(
        request.app[STATE].phases.direct(
            _phase(request),
            reason=str(body.get("reason", "")),
            requested_date=_date(requested, "requested_date") if requested else None,
        )
    )
    return web.json_response(direction.to_json(), status=201)


async def renotify_phase(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        direction_id = int(body.get("direction_id", ""))
    except (TypeError, ValueError) as exc:
        raise _bad("direction_id must be an integer") from exc
    notice = await _phase_call(
        request.app[STATE].phases.renotify(
            _phase(request),
            direction_id=direction_id,
            commencement=_date(body.get("commencement"), "commencement"),
            note=str(body.get("note", "")),
        )
    )
    return web.json_response(notice.to_json(), status=201)


async def list_notices(request: web.Request) -> web.Response:
    state = request.app[STATE]
    phase_text = request.query.get("phase")
    phase = None
    if phase_text:
        phase = next((p for p in Phase if p.value.lower() == phase_text.lower()), None)
        if phase is None:
            raise _bad(f"no phase {phase_text!r}")
    user_id = request.query.get("participant")
    kind = await participant_kind(state.engine, user_id) if user_id else None
    found = await state.phases.notices(phase=phase, kind=kind)
    return web.json_response([n.to_json() for n in found])


# -- informal testing rules -------------------------------------------------------------


async def get_rules(request: web.Request) -> web.Response:
    rules_file = request.app[STATE].rules
    current = rules_file.current()
    return web.json_response(
        {**current.to_json(), "file": str(rules_file.path), "problem": rules_file.problem}
    )


async def rules_decision(request: web.Request) -> web.Response:
    state = request.app[STATE]
    srv = request.query.get("srv", "")
    try:
        used = int(request.query.get("used_count", "0"))
    except ValueError as exc:
        raise _bad("used_count must be an integer") from exc
    participant = request.query.get("participant") or None
    if participant is not None and participant not in participants.load(state.settings.home):
        participant = None
    verdict = rules.decide(state.rules.current(), participant, srv, state.clock(), used)
    if verdict is None:
        return web.json_response({"accept": True})
    code, reason = verdict
    return web.json_response({"accept": False, "response_code": code, "reason": reason})


# -- GFI --------------------------------------------------------------------------------


async def gfi_generate(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.rules.current().gfi_offered:
        raise _bad("GFI is not offered at present", 409)
    body = await _json_body(request)
    try:
        data = gfi.generate_from_json(state.keystore(), body, now=state.clock())
    except gfi.GfiError as exc:
        raise _bad(str(exc)) from exc
    return web.json_response({"message": gfi.message_text(data)})


async def gfi_check(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.rules.current().gfi_offered:
        raise _bad("GFI is not offered at present", 409)
    body = await _json_body(request)
    try:
        report = gfi.check_from_json(state.keystore(), body)
    except gfi.GfiError as exc:
        raise _bad(str(exc)) from exc
    return web.json_response(report.to_json())


# -- DCCKI PMA --------------------------------------------------------------------------


def _actor(request: web.Request) -> Actor:
    text = request.headers.get("X-Dccsim-Actor", "")
    try:
        return Actor(text)
    except ValueError as exc:
        raise _bad(
            f"X-Dccsim-Actor must be one of {', '.join(a.value for a in Actor)}", 403
        ) from exc


def _id(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError as exc:
        raise _bad(f"{name} must be an integer", 404) from exc


async def _pma_call(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except PmaError as exc:
        raise _bad(exc.reason, exc.status) from exc


async def pma_entries(request: web.Request) -> web.Response:
    found = await _pma_call(request.app[STATE].pma.entries(_actor(request)))
    return web.json_response([e.to_json() for e in found])


async def pma_record(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        kind = EntryKind(str(body.get("kind", "")))
    except ValueError as exc:
        raise _bad(f"kind must be one of {', '.join(k.value for k in EntryKind)}") from exc
    entry = await _pma_call(
        request.app[STATE].pma.record(
            _actor(request),
            kind=kind,
            title=str(body.get("title", "")),
            body=str(body.get("body", "")),
        )
    )
    return web.json_response(entry.to_json(), status=201)


async def pma_entry(request: web.Request) -> web.Response:
    entry = await _pma_call(request.app[STATE].pma.entry(_actor(request), _id(request, "id")))
    return web.json_response(entry.to_json())


async def pma_decide(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        decision = Decision(str(body.get("decision", "")))
    except ValueError as exc:
        raise _bad(f"decision must be one of {', '.join(d.value for d in Decision)}") from exc
    entry = await _pma_call(
        request.app[STATE].pma.decide(
            _actor(request),
            _id(request, "id"),
            decision=decision,
            reason=str(body.get("reason", "")),
            transition=bool(body.get("transition", False)),
        )
    )
    return web.json_response(entry.to_json())


async def pma_request_access(request: web.Request) -> web.Response:
    body = await _json_body(request)
    made = await _pma_call(
        request.app[STATE].pma.request_access(
            _actor(request), _id(request, "id"), reason=str(body.get("reason", ""))
        )
    )
    return web.json_response(made.to_json(), status=201)


async def pma_access_requests(request: web.Request) -> web.Response:
    found = await _pma_call(request.app[STATE].pma.access_requests(_actor(request)))
    return web.json_response([r.to_json() for r in found])


async def pma_grant(request: web.Request) -> web.Response:
    granted = await _pma_call(request.app[STATE].pma.grant(_actor(request), _id(request, "id")))
    return web.json_response(granted.to_json())


# -- SSI login links --------------------------------------------------------------------


async def create_login_link(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    user_id = str(body.get("user_id", ""))
    if user_id not in participants.load(state.settings.home):
        raise _bad(f"no participant {user_id!r}", 404)
    token = await state.logins.create_link(user_id)
    return web.json_response({"url": state.login_url(token)}, status=201)


# -- the app ----------------------------------------------------------------------------


def notice_publisher(bus: Bus) -> Callable[[Notice], Awaitable[None]]:
    """A notice listener that publishes each notice as a ``testing.notice`` event. A notice
    is already stored when this runs, so a failed publish is logged, not raised."""

    async def publish(notice: Notice) -> None:
        try:
            await bus.publish_event(
                NOTICE_EVENT, Envelope(kind=NOTICE_EVENT, request_id="", body=notice.to_json())
            )
        except Exception:
            log.exception("could not publish notice %s on the bus", notice.id)

    return publish


def build_app(
    settings: TestingSettings,
    *,
    bus: Bus | None = None,
    clock: Callable[[], dt.datetime] = _now,
    engine: AsyncEngine | None = None,
) -> web.Application:
    """The testing service's app: JSON API and SSI portal. The database (``engine``, default
    ``settings.sqlite_url("testing")``) is opened on startup and its schema created."""
    from services.testing import portal

    app = web.Application()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = engine or create_engine(settings.sqlite_url("testing"))
        await store.create_schema(db)
        listeners = [notice_publisher(bus)] if bus is not None else []
        app[STATE] = TestingState(
            settings=settings,
            engine=db,
            phases=PhaseRegister(db, clock=clock, listeners=listeners),
            pma=PmaRegister(db, clock=clock),
            logins=Logins(db, clock=clock),
            rules=rules.RulesFile(settings.home),
            clock=clock,
        )
        yield
        if engine is None:
            await db.dispose()

    app.cleanup_ctx.append(lifecycle)
    api = "/api/v1"
    app.router.add_get(f"{api}/participants", list_participants)
    app.router.add_get(f"{api}/estate", estate_summary)
    app.router.add_get(f"{api}/phases", list_phases)
    app.router.add_get(f"{api}/phases/{{phase}}", get_phase)
    app.router.add_get(f"{api}/phases/{{phase}}/history", phase_history)
    app.router.add_post(f"{api}/phases/{{phase}}/notification", notify_phase)
    app.router.add_post(f"{api}/phases/{{phase}}/directions", direct_phase)
    app.router.add_post(f"{api}/phases/{{phase}}/renotification", renotify_phase)
    app.router.add_get(f"{api}/notices", list_notices)
    app.router.add_get(f"{api}/rules", get_rules)
    app.router.add_get(f"{api}/rules/decision", rules_decision)
    app.router.add_post(f"{api}/gfi/generate", gfi_generate)
    app.router.add_post(f"{api}/gfi/check", gfi_check)
    app.router.add_get(f"{api}/pma/entries", pma_entries)
    app.router.add_post(f"{api}/pma/entries", pma_record)
    app.router.add_get(f"{api}/pma/entries/{{id}}", pma_entry)
    app.router.add_post(f"{api}/pma/entries/{{id}}/decision", pma_decide)
    app.router.add_post(f"{api}/pma/entries/{{id}}/access-requests", pma_request_access)
    app.router.add_get(f"{api}/pma/access-requests", pma_access_requests)
    app.router.add_post(f"{api}/pma/access-requests/{{id}}/grant", pma_grant)
    app.router.add_post(f"{api}/ssi/links", create_login_link)
    portal.add_routes(app)
    return app


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, TestingSettings)
    rules.write_default(settings.home)
    runner = web.AppRunner(build_app(settings, bus=rt.bus), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.testing_host, settings.testing_port).start()
    rt.cleanups.append(runner.cleanup)


def run(settings: TestingSettings | None = None) -> None:
    settings = settings or TestingSettings()
    asyncio.run(run_service("testing", settings, settings.testing_metrics_port, _setup))
