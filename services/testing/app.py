"""services/testing: test coordination, as a JSON control API on localhost and the SSI portal.

JSON API (``/api/v1``):

- ``GET participants``, ``GET estate``: the participants (kind, status, premises) and the test
  estate. Onboarding (:mod:`services.testing.onboarding`): ``POST participants``
  ``{user_id, eui, roles, kind, response_url? | response_urls?}`` (status applied),
  ``GET participants/{id}``,
  ``POST participants/{id}/onboarding`` ``{premises?}`` (bundle, register, premises; active),
  ``PUT participants/{id}/status`` ``{status: active|suspended, reason?}``,
  ``PUT participants/{id}/response-url`` ``{url} | {urls: [...]}`` (several URLs: tried in
  order), ``GET participants/{id}/history``.
- Estate control of a participant's own devices, acting as the participant the
  ``X-Dccsim-Participant`` header names (:mod:`services.testing.estate_control`):
  ``GET estate/devices``, ``GET|PUT estate/devices/{eui}``, ``POST estate/devices/{eui}/alerts``
  ``{alert_code}``, ``PUT estate/hubs/{eui}`` ``{offline}``, ``POST|DELETE
  estate/premises/{key}/outage`` ``{duration_s?}``, ``POST estate/premises/{key}/reset``; and,
  as ``X-Dccsim-Actor: dcc`` only, ``GET estate/network``, ``PUT estate/network/regions/{r}``,
  ``POST estate/network/reset``.
- Service Request timelines (:mod:`services.testing.timeline`, from ``request.timeline`` bus
  events): ``GET requests?participant=&limit=``, ``GET requests/{request_id}``.
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
from dccsim.bus.topology import INVENTORY_RPC
from dccsim.config import TestingSettings
from dccsim.pki.dccki import server_ssl_context
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.keystore import KeyStore
from dccsim.runtime import ServiceRuntime, run_service, run_until_complete
from dccsim.storage import create_engine
from services.testing import gfi, rules, store
from services.testing.estate_control import (
    DeviceLookup,
    EstateControl,
    EstateControlError,
    GatewayControl,
)
from services.testing.logins import Logins
from services.testing.onboarding import Onboarding, OnboardingError
from services.testing.phases import Notice, Phase, PhaseError, PhaseRegister, participant_kind
from services.testing.pma import Actor, Decision, EntryKind, PmaError, PmaRegister
from services.testing.timeline import TIMELINE_PATTERN, TimelineStore

log = logging.getLogger(__name__)

NOTICE_EVENT = "testing.notice"
ESTATE_CHANGED = estate.CHANGED_EVENT  # premises added to estate.json: the inventory imports


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
    timelines: TimelineStore
    estate_control: EstateControl
    onboarding: Onboarding
    bus: Bus | None = None
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
    502: web.HTTPBadGateway,
    503: web.HTTPServiceUnavailable,
}


# What the registers refuse carries the reason and the HTTP status to answer with.
DOMAIN_ERRORS = (EstateControlError, OnboardingError, PhaseError, PmaError)


@web.middleware
async def domain_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A refusal from a register (onboarding, phases, PMA, estate control) becomes the JSON
    ``{"error": reason}`` answer with the status it names, for every route."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except DOMAIN_ERRORS as exc:
        raise _bad(exc.reason, exc.status) from exc


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
    records = await request.app[STATE].onboarding.all()
    return web.json_response([r.to_json() for r in records])


async def apply_participant(request: web.Request) -> web.Response:
    body = await _json_body(request)
    record = await request.app[STATE].onboarding.apply(
        user_id=str(body.get("user_id", "")),
        eui=str(body.get("eui", "")),
        roles=body.get("roles", []),
        kind=str(body.get("kind", "")),
        response_url=body.get("response_urls", body.get("response_url")),
    )
    return web.json_response(record.to_json(), status=201)


async def get_participant(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    record = await request.app[STATE].onboarding.get(user_id)
    if record is None:
        raise _bad(f"no participant {user_id!r}", 404)
    return web.json_response(record.to_json())


async def onboard_participant(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request) if request.can_read_body else {}
    try:
        premises = int(body.get("premises", 0))
    except (TypeError, ValueError) as exc:
        raise _bad("premises must be a whole number") from exc
    before = {p.premises_id for p in estate.load(state.settings.home)}
    record, bundle = await state.onboarding.onboard(
        request.match_info["user_id"], premises=premises
    )
    added = sorted(set(record.premises) - before)
    if added and state.bus is not None:
        try:
            await state.bus.publish_event(
                ESTATE_CHANGED,
                Envelope(kind=ESTATE_CHANGED, request_id="", body={"premises": added}),
            )
        except Exception:
            log.exception("could not publish %s", ESTATE_CHANGED)
    if added:
        # The gateway reads no bus (a CSP's network); told now, it hosts them before we answer.
        # If it is not running it notices the new estate.json when it is.
        try:
            await state.estate_control.gateway.call("POST", "/estate/reload")
        except EstateControlError as exc:
            log.warning("the SM WAN gateway was not told of the new premises: %s", exc.reason)
    return web.json_response(
        {**record.to_json(), "bundle": str(bundle), "premises_added": added}, status=201
    )


async def participant_status(request: web.Request) -> web.Response:
    body = await _json_body(request)
    record = await request.app[STATE].onboarding.set_status(
        request.match_info["user_id"],
        str(body.get("status", "")),
        str(body.get("reason", "")),
    )
    return web.json_response(record.to_json())


async def participant_response_url(request: web.Request) -> web.Response:
    body = await _json_body(request)
    urls = body.get("urls", body.get("url"))  # one URL, or a list in delivery order
    record = await request.app[STATE].onboarding.set_response_url(
        request.match_info["user_id"], urls
    )
    return web.json_response(record.to_json())


async def participant_history(request: web.Request) -> web.Response:
    state = request.app[STATE]
    user_id = request.match_info["user_id"]
    if await state.onboarding.get(user_id) is None:
        raise _bad(f"no participant {user_id!r}", 404)
    return web.json_response(await state.onboarding.status_history(user_id))


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


async def notify_phase(request: web.Request) -> web.Response:
    body = await _json_body(request)
    notice = await request.app[STATE].phases.notify(
        _phase(request),
        _date(body.get("commencement"), "commencement"),
        str(body.get("note", "")),
    )
    return web.json_response(notice.to_json(), status=201)


async def direct_phase(request: web.Request) -> web.Response:
    body = await _json_body(request)
    requested = body.get("requested_date")
    direction = await request.app[STATE].phases.direct(
        _phase(request),
        reason=str(body.get("reason", "")),
        requested_date=_date(requested, "requested_date") if requested else None,
    )
    return web.json_response(direction.to_json(), status=201)


async def renotify_phase(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        direction_id = int(body.get("direction_id", ""))
    except (TypeError, ValueError) as exc:
        raise _bad("direction_id must be an integer") from exc
    notice = await request.app[STATE].phases.renotify(
        _phase(request),
        direction_id=direction_id,
        commencement=_date(body.get("commencement"), "commencement"),
        note=str(body.get("note", "")),
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


async def pma_entries(request: web.Request) -> web.Response:
    found = await request.app[STATE].pma.entries(_actor(request))
    return web.json_response([e.to_json() for e in found])


async def pma_record(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        kind = EntryKind(str(body.get("kind", "")))
    except ValueError as exc:
        raise _bad(f"kind must be one of {', '.join(k.value for k in EntryKind)}") from exc
    entry = await request.app[STATE].pma.record(
        _actor(request),
        kind=kind,
        title=str(body.get("title", "")),
        body=str(body.get("body", "")),
    )
    return web.json_response(entry.to_json(), status=201)


async def pma_entry(request: web.Request) -> web.Response:
    entry = await request.app[STATE].pma.entry(_actor(request), _id(request, "id"))
    return web.json_response(entry.to_json())


async def pma_decide(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        decision = Decision(str(body.get("decision", "")))
    except ValueError as exc:
        raise _bad(f"decision must be one of {', '.join(d.value for d in Decision)}") from exc
    entry = await request.app[STATE].pma.decide(
        _actor(request),
        _id(request, "id"),
        decision=decision,
        reason=str(body.get("reason", "")),
        transition=bool(body.get("transition", False)),
    )
    return web.json_response(entry.to_json())


async def pma_request_access(request: web.Request) -> web.Response:
    body = await _json_body(request)
    made = await request.app[STATE].pma.request_access(
        _actor(request), _id(request, "id"), reason=str(body.get("reason", ""))
    )
    return web.json_response(made.to_json(), status=201)


async def pma_access_requests(request: web.Request) -> web.Response:
    found = await request.app[STATE].pma.access_requests(_actor(request))
    return web.json_response([r.to_json() for r in found])


async def pma_grant(request: web.Request) -> web.Response:
    granted = await request.app[STATE].pma.grant(_actor(request), _id(request, "id"))
    return web.json_response(granted.to_json())


# -- estate control ---------------------------------------------------------------------


def _acting_participant(request: web.Request) -> str:
    user_id = request.headers.get("X-Dccsim-Participant", "")
    if not user_id:
        raise _bad("name the participant you act as in X-Dccsim-Participant", 403)
    return user_id


def _require_dcc(request: web.Request) -> None:
    if request.headers.get("X-Dccsim-Actor") != Actor.DCC.value:
        raise _bad("network-wide controls are DCC's: X-Dccsim-Actor: dcc", 403)


async def my_devices(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    try:
        premises = control.owned_premises(_acting_participant(request))
    except EstateControlError as exc:
        raise _bad(exc.reason, exc.status) from exc
    return web.json_response(
        [
            {
                "premises_id": p.premises_id,
                "region": p.region,
                "hub_eui": p.hub_eui,
                "registrations": p.registrations,
                "devices": [{"eui": d.eui, "device_type": d.device_type.value} for d in p.devices],
            }
            for p in premises
        ]
    )


async def get_device(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    answer = await control.describe(_acting_participant(request), request.match_info["eui"])
    return web.json_response(answer)


async def put_device(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    user_id = _acting_participant(request)
    body = await _json_body(request)
    answer = await control.set_conditions(user_id, request.match_info["eui"], body)
    return web.json_response(answer)


async def post_device_alert(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    user_id = _acting_participant(request)
    body = await _json_body(request)
    answer = await control.raise_alert(user_id, request.match_info["eui"], body.get("alert_code"))
    return web.json_response(answer, status=202)


async def put_hub(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    user_id = _acting_participant(request)
    body = await _json_body(request)
    offline = body.get("offline", True)
    if not isinstance(offline, bool):
        raise _bad("offline must be true or false")
    eui = request.match_info["eui"]
    answer = await control.set_hub_offline(user_id, eui, offline)
    return web.json_response(answer)


async def post_outage(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    user_id = _acting_participant(request)
    body = await _json_body(request) if request.can_read_body else {}
    answer = await control.start_outage(user_id, request.match_info["key"], body.get("duration_s"))
    return web.json_response(answer, status=202)


async def delete_outage(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    answer = await control.end_outage(_acting_participant(request), request.match_info["key"])
    return web.json_response(answer)


async def post_premises_reset(request: web.Request) -> web.Response:
    control = request.app[STATE].estate_control
    answer = await control.reset_premises(_acting_participant(request), request.match_info["key"])
    return web.json_response(answer)


async def get_network(request: web.Request) -> web.Response:
    _require_dcc(request)
    return web.json_response(await request.app[STATE].estate_control.network())


async def put_region(request: web.Request) -> web.Response:
    _require_dcc(request)
    body = await _json_body(request)
    control = request.app[STATE].estate_control
    answer = await control.set_region(request.match_info["region"], body)
    return web.json_response(answer)


async def post_network_reset(request: web.Request) -> web.Response:
    _require_dcc(request)
    return web.json_response(await request.app[STATE].estate_control.reset_network())


# -- Service Request timelines ----------------------------------------------------------


async def list_requests(request: web.Request) -> web.Response:
    state = request.app[STATE]
    user_id = request.query.get("participant", "")
    me = participants.load(state.settings.home).get(user_id)
    if me is None:
        raise _bad(f"no participant {user_id!r}", 404)
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError as exc:
        raise _bad("limit must be a whole number") from exc
    found = await state.timelines.recent(me.eui, limit=limit)
    return web.json_response([t.to_json() for t in found])


async def get_request_timeline(request: web.Request) -> web.Response:
    request_id = request.match_info["request_id"]
    found = await request.app[STATE].timelines.timeline(request_id)
    if found is None:
        raise _bad(f"no timeline for request {request_id!r}", 404)
    return web.json_response(found.to_json())


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


def inventory_lookup(bus: Bus) -> DeviceLookup:
    """``device.lookup`` over the bus: the inventory's record of a device, or None."""

    async def lookup(eui: str) -> dict[str, Any] | None:
        reply = await bus.call(INVENTORY_RPC, "device.lookup", "", {"eui": eui}, timeout=5.0)
        device = reply.get("device")
        return device if isinstance(device, dict) else None

    return lookup


def build_app(
    settings: TestingSettings,
    *,
    bus: Bus | None = None,
    clock: Callable[[], dt.datetime] = _now,
    engine: AsyncEngine | None = None,
    gateway_url: str | None = None,
    device_lookup: DeviceLookup | None = None,
) -> web.Application:
    """The testing service's app: JSON API and SSI portal. The database (``engine``, default
    ``settings.sqlite_url("testing")``) is opened on startup and its schema created. With a
    ``bus``, notices are published, ``request.timeline`` events consumed and device ownership
    checked with the inventory (``device.lookup``; ``device_lookup`` overrides it). The
    gateway's control API is found in ``$DCCSIM_HOME/gateway-control.json`` unless
    ``gateway_url`` names it."""
    from services.testing import portal

    app = web.Application(middlewares=[domain_errors])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = engine or create_engine(settings.sqlite_url("testing"))
        await store.create_schema(db)
        listeners = [notice_publisher(bus)] if bus is not None else []
        gateway = GatewayControl(settings.home, url=gateway_url)
        timelines = TimelineStore(db)
        lookup = device_lookup or (inventory_lookup(bus) if bus is not None else None)
        app[STATE] = TestingState(
            settings=settings,
            engine=db,
            phases=PhaseRegister(db, clock=clock, listeners=listeners),
            pma=PmaRegister(db, clock=clock),
            logins=Logins(db, clock=clock),
            rules=rules.RulesFile(settings.home),
            timelines=timelines,
            estate_control=EstateControl(settings.home, gateway, lookup=lookup),
            onboarding=Onboarding(db, settings.home, clock=clock),
            bus=bus,
            clock=clock,
        )
        if bus is not None:
            await bus.subscribe_events(TIMELINE_PATTERN, timelines.handle)
        yield
        await gateway.close()
        if engine is None:
            await db.dispose()

    app.cleanup_ctx.append(lifecycle)
    api = "/api/v1"
    app.router.add_get(f"{api}/participants", list_participants)
    app.router.add_post(f"{api}/participants", apply_participant)
    app.router.add_get(f"{api}/participants/{{user_id}}", get_participant)
    app.router.add_post(f"{api}/participants/{{user_id}}/onboarding", onboard_participant)
    app.router.add_put(f"{api}/participants/{{user_id}}/status", participant_status)
    app.router.add_put(f"{api}/participants/{{user_id}}/response-url", participant_response_url)
    app.router.add_get(f"{api}/participants/{{user_id}}/history", participant_history)
    app.router.add_get(f"{api}/estate/devices", my_devices)
    app.router.add_get(f"{api}/estate/devices/{{eui}}", get_device)
    app.router.add_put(f"{api}/estate/devices/{{eui}}", put_device)
    app.router.add_post(f"{api}/estate/devices/{{eui}}/alerts", post_device_alert)
    app.router.add_put(f"{api}/estate/hubs/{{eui}}", put_hub)
    app.router.add_post(f"{api}/estate/premises/{{key}}/outage", post_outage)
    app.router.add_delete(f"{api}/estate/premises/{{key}}/outage", delete_outage)
    app.router.add_post(f"{api}/estate/premises/{{key}}/reset", post_premises_reset)
    app.router.add_get(f"{api}/estate/network", get_network)
    app.router.add_put(f"{api}/estate/network/regions/{{region}}", put_region)
    app.router.add_post(f"{api}/estate/network/reset", post_network_reset)
    app.router.add_get(f"{api}/requests", list_requests)
    app.router.add_get(f"{api}/requests/{{request_id}}", get_request_timeline)
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
    if settings.testing_tls_port:
        pki = PkiLayout.of(settings.home)
        ctx = server_ssl_context(
            pki.tls_server_cert,
            pki.tls_server_key,
            pki.tls_ca,
            require_client_cert=False,
            optional_client_cert=True,
            crl_path=pki.dccki_crl if pki.dccki_crl.is_file() else None,
        )
        await web.TCPSite(
            runner, settings.testing_host, settings.testing_tls_port, ssl_context=ctx
        ).start()
    rt.cleanups.append(runner.cleanup)


def run(settings: TestingSettings | None = None) -> None:
    settings = settings or TestingSettings()
    run_until_complete(
        run_service("testing", settings, settings.testing_metrics_port, _setup), settings
    )
