"""services/user_gateway: the DUIS web services over mutual TLS, and delivery of async Responses.

``POST /api/v1/serviceS|serviceD|serviceT`` with ``application/xml``. Each request passes the
check chain (checks.py); a device Service Request that passes is published to the bus (confirmed)
and answered ``I99``; any failure is answered with its DUIS code in a DUIS acknowledgement. A
request for local delivery is answered with the ``LocalCommand`` transform builds (CV 2, 6: I0;
CV 3, 7: I99, and published too); a DSP-held future-dated one is kept (future_dated.py) and
published at its ExecutionDateTime. The delivery side (delivery.py) sends the signed async
Responses to each User's Receive Response Service from a persistent outbox.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import ssl
import time
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from prometheus_client import Counter, Histogram

from dccsim.bus import Bus, Envelope
from dccsim.bus.topology import (
    DELIVERY_OUTBOUND,
    DUIS_RESPONSE,
    INVENTORY_CHANGED,
    INVENTORY_RPC,
    SR_ACCEPTED,
    TRANSFORM_RPC,
)
from dccsim.config import UserGatewaySettings
from dccsim.duis import xmldsig
from dccsim.duis.codes import DuisError
from dccsim.duis.requestid import DCC_EUI, RequestId
from dccsim.duis.xml import (
    PreCommand,
    build_acknowledgement,
    build_response,
    load_schema,
    local_command,
    to_bytes,
)
from dccsim.logging import request_context
from dccsim.participants import Participant, ParticipantRegister
from dccsim.pki.dccki import (
    CrlWatcher,
    client_ssl_context,
    participant_identity,
    server_ssl_context,
)
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.keystore import Entry, KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.runtime import ServiceRuntime, run_service, run_until_complete
from dccsim.storage import Database
from services.testing.rules import RulesFile
from services.transform.srvs import TRANSFORMATIONS_BY_KEY
from services.user_gateway.anomaly import AnomalyDetector
from services.user_gateway.checks import (
    AcceptedRequest,
    CheckChain,
    DeviceCache,
    Route,
    TestingRulesGate,
    WebService,
)
from services.user_gateway.counters import CounterStore
from services.user_gateway.delivery import Outbox
from services.user_gateway.future_dated import FutureDatedRequests
from services.user_gateway.non_device import NON_DEVICE_SERVICES, answer_for, fetch
from services.user_gateway.quarantine import Quarantine, start_admin_server

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20

PARTICIPANTS: web.AppKey[ParticipantRegister] = web.AppKey("participants", ParticipantRegister)
CHAIN: web.AppKey[CheckChain] = web.AppKey("chain", CheckChain)
BUS: web.AppKey[Bus] = web.AppKey("bus", Bus)
SIGNER: web.AppKey[ResponseSigner] = web.AppKey("signer")
METRICS: web.AppKey[GatewayMetrics] = web.AppKey("gateway_metrics")
SETTINGS: web.AppKey[UserGatewaySettings] = web.AppKey("settings", UserGatewaySettings)
ANOMALY: web.AppKey[AnomalyDetector] = web.AppKey("anomaly", AnomalyDetector)
QUARANTINE: web.AppKey[Quarantine | None] = web.AppKey("quarantine")
FUTURE_DATED: web.AppKey[FutureDatedRequests | None] = web.AppKey("future_dated")


class GatewayMetrics:
    def __init__(self, rt: ServiceRuntime) -> None:
        r = rt.metrics.registry
        self.requests = Counter(
            "dccsim_duis_requests",
            "DUIS requests answered, by outcome",
            ["web_service", "srv", "response_code"],
            registry=r,
        )
        self.ack_duration = Histogram(
            "dccsim_duis_acknowledgement_duration_seconds",
            "Time from request received to synchronous answer",
            ["web_service"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )


class ResponseSigner:
    """Signs what the DCC sends with the DSP XML-signing key (EUI 90-B3-D5-1F-30-00-00-02)."""

    def __init__(self, keystore: KeyStore) -> None:
        entry = keystore.get(DCC_EUI, KeyUsage.XML_SIGN)
        key = entry.private_key
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise RuntimeError("the DSP XML-signing key is missing from the key store")
        self.key: ec.EllipticCurvePrivateKey = key
        self.certificate: x509.Certificate = entry.certificate

    def sign(self, root: etree._Element) -> bytes:
        return to_bytes(xmldsig.sign(root, private_key=self.key, certificate=self.certificate))


def _peer_certificate_der(request: web.Request) -> bytes | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der or None


@functools.lru_cache(maxsize=1024)
def _tls_identity(der: bytes) -> tuple[str, bytes | None]:
    # A User System sends many requests with one certificate: parse it once.
    return participant_identity(x509.load_der_x509_certificate(der))


def _identify(request: web.Request) -> Participant:
    register = request.app[PARTICIPANTS]
    settings = request.app[SETTINGS]
    der = _peer_certificate_der(request)
    if der is None:
        if settings.insecure_http:
            user_id = request.headers.get("X-DCCSIM-User", "")
            participant = register.get(user_id)
            if participant is not None:
                return participant
        raise DuisError("E1", "no DCCKI client certificate presented")
    user_id, _eui = _tls_identity(der)
    participant = register.get(user_id)
    if participant is None:
        raise DuisError("E1", f"TLS identity {user_id!r} is not a registered User")
    return participant


def _srv_fields(body: bytes) -> tuple[str, str]:
    """Best-effort ServiceReference/Variant for an error answer (the schema needs both)."""
    try:
        text = body[:4096].decode("utf-8", "replace")
        ref = text.split("ServiceReference>", 1)[1].split("<", 1)[0]
        var = text.split("ServiceReferenceVariant>", 1)[1].split("<", 1)[0]
        if ref and var and len(ref) < 10 and len(var) < 10:
            return ref, var
    except IndexError:
        pass
    return "0", "0"


def _request_id_text(body: bytes) -> str | None:
    try:
        text = body[:4096].decode("utf-8", "replace")
        rid = text.split("RequestID>", 1)[1].split("<", 1)[0]
        return rid if 0 < len(rid) < 80 else None
    except IndexError:
        return None


def _valid_request_id(text: str | None) -> str | None:
    """The RequestID to echo in an answer: only one that parses (the schema checks its shape)."""
    if text is None:
        return None
    try:
        return str(RequestId.parse(text))
    except DuisError:
        return None


async def _answer(request: web.Request, web_service: WebService) -> web.Response:
    start = time.perf_counter()
    app = request.app
    metrics = app[METRICS]
    if request.content_type not in ("application/xml", "text/xml"):
        raise web.HTTPUnsupportedMediaType(text="DUIS requests are application/xml")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY_BYTES, actual_size=request.content_length
        )
    body = await request.read()
    received_at = time.time()
    rid_text = _request_id_text(body)
    srv_label = "unknown"
    with request_context(rid_text):
        answer: etree._Element | None = None
        try:
            participant = _identify(request)
            accepted = await app[CHAIN].check(
                body, web_service=web_service, participant=participant
            )
            srv_label = accepted.srv.variant
            ref, var = accepted.srv.reference, accepted.srv.variant
            rid_text = str(accepted.request.request_id)
            if accepted.execute_at is not None and accepted.route is Route.DEVICE:
                await _hold_future_dated(app, accepted)
                code = "I99"
            elif accepted.route is Route.DEVICE:
                await _send_or_quarantine(app, accepted, web_service)
                code = "I99"
            elif accepted.route is Route.LOCAL:
                answer = _response(accepted, content=local_command(await _local(app, accepted)))
                code = "I0"
            elif accepted.route is Route.LOCAL_AND_DEVICE:
                # The User gets the command now and it goes over the SM WAN as well (CV 3, 7).
                frame = await _local(app, accepted)
                await _send_or_quarantine(app, accepted, web_service)
                code = "I99"
                answer = _response(accepted, code=code, content=local_command(frame))
            elif accepted.route is Route.PRE_COMMAND:
                answer = await _pre_command(app, accepted)
                code = "I0"
            else:
                answer, code = await _non_device(app, accepted)
        except DuisError as exc:
            code = exc.code
            ref, var = _srv_fields(body)
            log.info("request refused", extra={"response_code": code, "reason": exc.reason})
        except Exception:
            log.exception("request failed inside dccsim")
            raise web.HTTPServiceUnavailable(
                text="dccsim could not accept the request; it was not taken, send it again"
            ) from None
        if answer is None:
            answer = build_acknowledgement(
                request_id=_valid_request_id(rid_text),
                response_code=code,
                response_datetime=dt.datetime.now(dt.UTC),
                service_reference=ref,
                service_reference_variant=var,
            )
        try:
            payload = app[SIGNER].sign(answer)
        except Exception:
            log.exception("could not sign acknowledgement; sending it unsigned")
            payload = to_bytes(answer)
        metrics.requests.labels(web_service.value, srv_label, code).inc()
        metrics.ack_duration.labels(web_service.value).observe(time.perf_counter() - start)
        valid_rid = _valid_request_id(rid_text)
        if valid_rid is not None:
            srv = srv_label if srv_label != "unknown" else None
            bus = app[BUS]
            bus.emit_timeline(valid_rid, "received", at=received_at, srv=srv)
            bus.emit_timeline(valid_rid, "acknowledged", code=code, srv=srv)
        return web.Response(body=payload, content_type="application/xml")


def _accepted_body(accepted: AcceptedRequest) -> dict[str, Any]:
    """What transform needs of an accepted device request (``sr.accepted`` and CV 4's RPC)."""
    req = accepted.request
    body: dict[str, Any] = {
        "srv": accepted.srv.variant,
        "cv": req.command_variant,
        "user_id": accepted.participant.user_id,
        "user_eui": accepted.participant.eui,
        "originator": req.request_id.originator,
        "target": req.request_id.target,
        "counter": req.request_id.counter,
        "device": accepted.device.to_wire() if accepted.device else None,
        "received_at": time.time(),
    }
    signed = req.signed_pre_command
    if signed is not None:
        body["signed_pre_command"] = signed
    else:
        body_xml = accepted.body_xml
        if body_xml is not None:
            body["body_xml"] = body_xml
    return body


async def _send_or_quarantine(
    app: web.Application, accepted: AcceptedRequest, web_service: WebService
) -> None:
    """Publish an accepted device request, or quarantine it when it is over its threshold.
    Anomaly detection last: in memory; only the excess touches a database."""
    quarantine = app[QUARANTINE]
    if quarantine is None or app[ANOMALY].admit(accepted.participant.user_id, accepted.srv.variant):
        await _publish(app[BUS], accepted)
    else:
        await quarantine.hold(
            request_id=str(accepted.request.request_id),
            srv=accepted.srv.variant,
            web_service=web_service.value,
            accepted_body=_accepted_body(accepted),
        )


async def _hold_future_dated(app: web.Application, accepted: AcceptedRequest) -> None:
    """A DSP-held future-dated request: kept (committed) until its ExecutionDateTime."""
    store = app[FUTURE_DATED]
    assert accepted.execute_at is not None
    if store is None:
        raise DuisError("E2", "future-dated requests are not held by this User Gateway")
    await store.hold(
        request_id=str(accepted.request.request_id),
        srv=accepted.srv.variant,
        execute_at=accepted.execute_at.timestamp(),
        accepted_body=_accepted_body(accepted),
    )


async def _local(app: web.Application, accepted: AcceptedRequest) -> bytes:
    """CV 2, 3, 6, 7: the command for local delivery, built by transform (the bytes the SM WAN
    would carry); DuisError with transform's code when it refuses."""
    reply = await app[BUS].call(
        TRANSFORM_RPC,
        "transform.local_command",
        str(accepted.request.request_id),
        _accepted_body(accepted),
        timeout=app[SETTINGS].transform_rpc_timeout_s,
    )
    code = str(reply.get("code") or "")
    payload = reply.get("gbcs_payload")
    if code != "I0" or not isinstance(payload, bytes):
        raise DuisError(code or "E13", str(reply.get("reason") or "no local command"))
    return payload


async def _publish(bus: Bus, accepted: AcceptedRequest) -> None:
    await bus.publish(
        SR_ACCEPTED,
        Envelope("sr.accepted", str(accepted.request.request_id), _accepted_body(accepted)),
    )


def _response(accepted: AcceptedRequest, code: str = "I0", **content: Any) -> etree._Element:
    return build_response(
        request_id=accepted.request.request_id,
        response_id=None,
        response_code=code,
        response_datetime=dt.datetime.now(dt.UTC),
        service_reference=accepted.srv.reference,
        service_reference_variant=accepted.srv.variant,
        **content,
    )


async def _pre_command(app: web.Application, accepted: AcceptedRequest) -> etree._Element:
    """CV 4: transform builds the Pre-Command (and remembers it for the CV 5); I0 carries it."""
    rid = str(accepted.request.request_id)
    reply = await app[BUS].call(
        TRANSFORM_RPC,
        "transform.pre_command",
        rid,
        _accepted_body(accepted),
        timeout=app[SETTINGS].transform_rpc_timeout_s,
    )
    code = str(reply.get("code") or "")
    payload = reply.get("gbcs_payload")
    if code != "I0" or not isinstance(payload, bytes):
        raise DuisError(code or "E13", str(reply.get("reason") or "no Pre-Command"))
    app[CHAIN].issued.add(rid, accepted.srv.variant)
    return _response(
        accepted, pre_command=PreCommand(str(reply.get("gbcs_version") or "3.2"), payload)
    )


async def _non_device(
    app: web.Application, accepted: AcceptedRequest
) -> tuple[etree._Element, str]:
    """CV 8: the inventory answers; I0 with the SRV's content (DSPScheduleID for 5.1,
    DSPInventory for 8.2, ...), or for an 8.2 of several pages I99 and each page as an async I0
    Response (see ``non_device.answer_for``)."""
    service = NON_DEVICE_SERVICES[accepted.srv.variant]
    participant = accepted.participant
    rid = str(accepted.request.request_id)
    rpc_body = {
        "user_eui": participant.eui,
        "user_roles": sorted(r.value for r in participant.roles),
        "request_id": rid,
        **service.request(accepted.request.body),
    }

    async def call(body: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = await app[BUS].call(INVENTORY_RPC, service.method, rid, body)
        return reply

    answer = answer_for(service, await fetch(service, call, rpc_body), accepted.request.body)
    for n, content in enumerate(answer.later):
        xml = app[SIGNER].sign(_response(accepted, content=content))
        await app[BUS].publish(
            DUIS_RESPONSE,
            Envelope(
                "duis.response",
                rid,
                {
                    "user_id": participant.user_id,
                    "delivery_key": f"response:{rid}:page:{n}",
                    "xml": xml,
                    "received_at": time.time(),
                },
            ),
        )
    return _response(accepted, code=answer.code, content=answer.content), answer.code


def build_app(
    settings: UserGatewaySettings,
    *,
    participants: ParticipantRegister,
    chain: CheckChain,
    bus: Bus,
    signer: ResponseSigner,
    metrics: GatewayMetrics,
    anomaly: AnomalyDetector | None = None,
    quarantine: Quarantine | None = None,
    future_dated: FutureDatedRequests | None = None,
) -> web.Application:
    """The DUIS web services. Anomaly detection runs when both ``anomaly`` (the thresholds)
    and ``quarantine`` (where the excess goes) are given; DSP-held future-dated requests are
    accepted when ``future_dated`` (where they wait) is given, E2 otherwise."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[ANOMALY] = anomaly if anomaly is not None else AnomalyDetector({}, 60.0)
    app[QUARANTINE] = quarantine if app[ANOMALY].enabled else None
    app[FUTURE_DATED] = future_dated
    app[SETTINGS] = settings
    app[PARTICIPANTS] = participants
    app[CHAIN] = chain
    app[BUS] = bus
    app[SIGNER] = signer
    app[METRICS] = metrics

    async def service_s(request: web.Request) -> web.Response:
        return await _answer(request, WebService.SEND_COMMAND)

    async def service_d(request: web.Request) -> web.Response:
        return await _answer(request, WebService.DCC_ONLY)

    async def service_t(request: web.Request) -> web.Response:
        return await _answer(request, WebService.TRANSFORM)

    app.router.add_post("/api/v1/serviceS", service_s)
    app.router.add_post("/api/v1/serviceD", service_d)
    app.router.add_post("/api/v1/serviceT", service_t)
    return app


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, UserGatewaySettings)
    keystore = KeyStore(settings.keystore_dir)
    signer = ResponseSigner(keystore)
    participants = ParticipantRegister(settings.home)
    base_url = settings.user_gateway_db_url
    counters_db = Database(base_url or settings.sqlite_url("request_counters"))
    outbox_db = Database(base_url or settings.sqlite_url("delivery_outbox"))
    rt.cleanups.append(counters_db.dispose)
    rt.cleanups.append(outbox_db.dispose)

    counters = CounterStore(counters_db)
    rt.cleanups.append(counters.close)
    await counters.create_schema()

    async def fetch_device(eui: str, request_id: str) -> dict[str, Any] | None:
        reply = await rt.bus.call(INVENTORY_RPC, "device.lookup", request_id, {"eui": eui})
        device = reply.get("device")
        return device if isinstance(device, dict) else None

    devices = DeviceCache(fetch_device)

    async def on_inventory_changed(env: Envelope) -> None:
        devices.invalidate(str(env.body.get("eui", "")))

    await rt.bus.subscribe_events(INVENTORY_CHANGED, on_inventory_changed)

    signer_certificates: dict[int, tuple[x509.Certificate, Entry]] = {}

    def find_certificate(serial: int) -> x509.Certificate | None:
        # Certificates never change under a serial; only found ones are kept (a new party's
        # certificate is found as soon as the key store holds it).
        # An expired certificate signs nothing (legacy imported sets never expire).
        cached = signer_certificates.get(serial)
        if cached is None:
            entry = keystore.by_serial(serial)
            if entry is None:
                return None
            cached = signer_certificates[serial] = (entry.certificate, entry)
        cert, entry = cached
        return None if entry.expired() else cert

    schema = load_schema(settings.duis_xsd) if settings.duis_xsd else None
    if schema is not None:
        log.info("requests are checked against the DUIS XSD", extra={"xsd": str(settings.duis_xsd)})
    if settings.signature_validation_off:
        log.warning(
            "XML signature validation is OFF for some Users",
            extra={"users": ",".join(settings.signature_validation_off)},
        )
    rules_file = RulesFile(settings.home)
    chain = CheckChain(
        find_certificate=find_certificate,
        advance_counter=counters.advance,
        devices=devices,
        transformable=frozenset(TRANSFORMATIONS_BY_KEY),
        non_device_srvs=frozenset(NON_DEVICE_SERVICES),
        rules=TestingRulesGate(rules_file.current),
        schema=schema,
        signature_off=frozenset(settings.signature_validation_off),
    )
    metrics = GatewayMetrics(rt)

    # Anomaly detection: thresholds in memory; the quarantined excess in its own database.
    anomaly = AnomalyDetector(settings.anomaly_thresholds, settings.anomaly_window_s)
    quarantine_db = Database(base_url or settings.sqlite_url("quarantine"))
    rt.cleanups.append(quarantine_db.dispose)
    quarantine = Quarantine(quarantine_db, rt.bus, signer.sign, rt.metrics)
    rt.cleanups.append(quarantine.close)
    await quarantine.create_schema()
    if anomaly.enabled:
        log.info(
            "anomaly detection on",
            extra={
                "window_s": settings.anomaly_window_s,
                "thresholds": ",".join(f"{k}={v}" for k, v in anomaly.thresholds.items()),
            },
        )
    if settings.user_gateway_admin_port:
        admin_cleanup = await start_admin_server(
            quarantine, settings.user_gateway_admin_host, settings.user_gateway_admin_port
        )
        if admin_cleanup is not None:
            rt.cleanups.append(admin_cleanup)

    # DSP-held future-dated requests: kept in their own database until due, then published.
    future_db = Database(base_url or settings.sqlite_url("future_dated"))
    rt.cleanups.append(future_db.dispose)
    future_dated = FutureDatedRequests(future_db, rt.bus, rt.metrics)
    await future_dated.create_schema()

    app = build_app(
        settings,
        participants=participants,
        chain=chain,
        bus=rt.bus,
        signer=signer,
        metrics=metrics,
        anomaly=anomaly,
        quarantine=quarantine,
        future_dated=future_dated,
    )

    pki = PkiLayout.of(settings.home)
    server_ctx: ssl.SSLContext | None = None
    client_ctx: ssl.SSLContext | None = None
    if settings.insecure_http:
        log.warning(
            "DEVELOPMENT SETTING: the User Gateway serves plain HTTP without mutual TLS; "
            "never expose it (unset DCCSIM_INSECURE_HTTP)"
        )
    else:
        server_ctx = server_ssl_context(
            pki.tls_server_cert,
            pki.tls_server_key,
            pki.tls_ca,
            require_client_cert=True,
        )
        # The watcher loads the DCCKI CRL now and on every publication: a revoked client
        # certificate is refused from the next handshake, without a restart.
        crl_watcher = CrlWatcher(server_ctx, pki.dccki_crl)
        crl_watcher.start()
        rt.cleanups.append(crl_watcher.stop)
    # The DCC's client identity towards Users' Receive Response Services.
    client_ctx = client_ssl_context(pki.wan_client_cert, pki.wan_client_key, pki.tls_ca)

    outbox = Outbox(
        outbox_db,
        settings,
        participants,
        client_ctx,
        rt.metrics,
        on_delivered=lambda rid: rt.bus.emit_timeline(rid, "response_delivered"),
    )
    await outbox.create_schema()
    rt.bus.consume(DELIVERY_OUTBOUND, outbox.enqueue)
    rt.spawn(outbox.run(), "delivery")
    rt.spawn(quarantine.resend_alerts(), "quarantine-alerts")
    rt.spawn(future_dated.run(), "future-dated")

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.user_gateway_host,
        settings.user_gateway_port,
        ssl_context=server_ctx,
        backlog=1024,
    )
    await site.start()
    rt.cleanups.append(runner.cleanup)
    log.info(
        "User Gateway listening",
        extra={
            "url": f"{'http' if server_ctx is None else 'https'}://{settings.user_gateway_host}:"
            f"{settings.user_gateway_port}/api/v1/serviceS"
        },
    )


def run(settings: UserGatewaySettings | None = None) -> None:
    settings = settings or UserGatewaySettings()
    run_until_complete(
        run_service("user_gateway", settings, settings.user_gateway_metrics_port, _setup), settings
    )
