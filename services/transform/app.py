"""services/transform: DUIS Service Requests into GBCS commands, device responses into DUIS.

Outbound: ``sr.accepted`` -> the GBCS command for the SRV and device type (the DCC's Access Control
Broker adds the General Ciphering MAC with its KA key) -> ``gbcs.command``.
RPC from the User Gateway: ``transform.pre_command`` (CV 4) and ``transform.local_command`` (CV 2,
3, 6, 7: the same command the WAN would carry, for the User to deliver locally).
Inbound: ``gbcs.response`` (a device response, or E20/E21 from the WAN) -> a DUIS Response
(``I0`` with ``GBCSPayload``, ResponseID = the RequestID with the EUIs swapped) signed with the DSP
XML-signing key -> ``duis.response`` for delivery.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import Counter, Histogram

from dccsim.bus import Envelope, Permanent
from dccsim.bus.topology import (
    DUIS_RESPONSE,
    GBCS_COMMAND,
    INVENTORY_RPC,
    TRANSFORM_REQUESTS,
    TRANSFORM_RESPONSES,
    TRANSFORM_RPC_REQUESTS,
)
from dccsim.config import TransformSettings
from dccsim.duis import xmldsig
from dccsim.duis.codes import MALFORMED_REQUEST, SERVICE_NOT_OFFERED, DuisError
from dccsim.duis.requestid import DCC_EUI, RequestId, format_eui, parse_eui
from dccsim.duis.xml import (
    build_device_alert,
    build_response,
    dsp_scheduled_message,
    parse_safely,
    to_bytes,
)
from dccsim.gbcs.commands import HAN_DEVICE_TYPES
from dccsim.gbcs.critical import SignedPreCommandError
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.participants import ParticipantRegister
from dccsim.pki.cos import TRANSITIONAL_COS_EUI
from dccsim.pki.keystore import KeyStore, KeyStoreError
from dccsim.pki.smki import KeyUsage
from dccsim.runtime import ServiceRuntime, run_service, run_until_complete
from services.transform.srvs import (
    TRANSFORMATIONS_BY_KEY,
    AcbCounter,
    PreCommandRegister,
    ServiceRequestBodyError,
    Transformation,
    build_command,
    build_cos_command,
    build_pre_command,
    command_from_signed_pre_command,
    user_extras,
)

log = logging.getLogger(__name__)


# The transformation table: (SRV, device type) -> GBCS use case (services/transform/srvs.py).
TRANSFORMS: dict[tuple[str, str], Transformation] = TRANSFORMATIONS_BY_KEY

# DUIS codes for a Signed Pre-Command the DCC will not send (DUIS names none of its own):
# a signature that does not verify does not show the request comes from the User (as E1 for
# XML signatures); one that is not the Pre-Command issued is a request wrong for its URL.
SIGNED_PRE_COMMAND_SIGNATURE_INVALID = "E1"
SIGNED_PRE_COMMAND_MISMATCH = "E13"
CRITICAL_WITHOUT_SIGNATURE = "E12"  # a critical SRV sent with CV 1/2/3
DEFAULT_GBCS_VERSION = "3.2"  # the PreCommand's GBCSVersion when the inventory names none
HAN_DEVICE_UNKNOWN = "E19"  # 8.11 Add / 8.7.x: the DeviceID / OtherDeviceID is not in the inventory
# What a request's messages carry through the pipeline for its Response (a run of a DSP schedule
# also carries its DSPScheduleID).
CONTEXT_KEYS = ("srv", "user_id", "user_eui", "received_at", "dsp_schedule_id")
LOCAL_COMMAND_NOT_ALLOWED = "E17"  # a command the DCC originates itself is not handed over


class Keys:
    """The DCC's own keys and the devices' certificates, from the shared key store."""

    def __init__(self, keystore: KeyStore) -> None:
        self.keystore = keystore
        acb = keystore.private_key(DCC_EUI, KeyUsage.KA)
        dsp = keystore.get(DCC_EUI, KeyUsage.XML_SIGN)
        if not isinstance(acb, ec.EllipticCurvePrivateKey) or not isinstance(
            dsp.private_key, ec.EllipticCurvePrivateKey
        ):
            raise RuntimeError(
                "the ACB KA key or DSP XML-signing key is missing; run `dccsim pki init`"
            )
        self.acb_ka_private: ec.EllipticCurvePrivateKey = acb
        # the ACB's DS key: it signs the joins it originates for a User (8.7.2 to a PPMID)
        try:
            acb_ds = keystore.private_key(DCC_EUI, KeyUsage.DS)
        except KeyStoreError:
            acb_ds = None
        self.acb_ds_private = acb_ds if isinstance(acb_ds, ec.EllipticCurvePrivateKey) else None
        self.dsp_key: ec.EllipticCurvePrivateKey = dsp.private_key
        self.dsp_certificate = dsp.certificate
        self._device_ka: dict[bytes, ec.EllipticCurvePublicKey] = {}
        self._user_ds: dict[bytes, ec.EllipticCurvePublicKey] = {}
        # the Transitional CoS Party's DS key (6.23), or None: `dccsim pki init` issues it
        try:
            cos = keystore.private_key(TRANSITIONAL_COS_EUI, KeyUsage.DS)
        except KeyStoreError:
            cos = None
        self.cos_ds_private = cos if isinstance(cos, ec.EllipticCurvePrivateKey) else None

    def device_ka_public(self, eui: bytes) -> ec.EllipticCurvePublicKey:
        key = self._device_ka.get(eui)
        if key is None:
            public = self.keystore.certificate(eui, KeyUsage.KA).public_key()
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise KeyStoreError(f"device {eui.hex()} KA certificate is not EC")
            key = self._device_ka[eui] = public
        return key

    def user_ds_public(self, eui: bytes) -> ec.EllipticCurvePublicKey:
        """The User's SMKI Digital Signing public key (it signs Pre-Commands)."""
        key = self._user_ds.get(eui)
        if key is None:
            public = self.keystore.certificate(eui, KeyUsage.DS).public_key()
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise KeyStoreError(f"User {eui.hex()} DS certificate is not EC")
            key = self._user_ds[eui] = public
        return key


class TransformMetrics:
    def __init__(self, rt: ServiceRuntime) -> None:
        r = rt.metrics.registry
        self.commands = Counter(
            "dccsim_transform_commands", "GBCS commands built", ["use_case"], registry=r
        )
        self.responses = Counter(
            "dccsim_transform_responses", "DUIS Responses built", ["response_code"], registry=r
        )
        self.alerts = Counter(
            "dccsim_transform_alerts",
            "Device alerts turned into DUIS Device Alerts, by outcome",
            ["outcome"],
            registry=r,
        )
        self.build_duration = Histogram(
            "dccsim_transform_build_duration_seconds",
            "Time to build and MAC a command",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=r,
        )


class Transformer:
    def __init__(self, rt: ServiceRuntime, keys: Keys) -> None:
        self.rt = rt
        self.keys = keys
        self.metrics = TransformMetrics(rt)
        self.issued = PreCommandRegister()
        self.acb_counter = AcbCounter()
        self.cos_counter = AcbCounter()  # the Transitional CoS Party's originator counters
        self.participants = ParticipantRegister(rt.settings.home)

    def pre_command(
        self,
        request_id: str,
        body: dict[str, Any],
        extra_parameters: dict[str, object] | None = None,
    ) -> bytes:
        """CV 4: the Pre-Command for a critical SR (``body`` as on ``sr.accepted``; what the
        command needs beyond it in ``extra_parameters``), remembered for checking the Signed
        Pre-Command that comes back. Raises :class:`GbcsError` when the SRV is not critical or
        not transformable, or its DUIS body lacks a value."""
        transformation = self._transformation(body)
        if transformation is None:
            raise GbcsError(f"no transformation for SRV {body.get('srv')}")
        pre = build_pre_command(
            transformation,
            originator_title=bytes(body["originator"]),
            device_title=bytes(body["target"]),
            counter=int(body["counter"]),
            body=_body_element(body),
            extra_parameters=extra_parameters,
        )
        self.issued.put(request_id, pre)
        self.metrics.commands.labels(f"{transformation.use_case}-pre-command").inc()
        return pre

    def _transformation(self, body: dict[str, Any]) -> Transformation | None:
        device = body.get("device") or {}
        return TRANSFORMS.get((str(body["srv"]), str(device.get("device_type", ""))))

    def _command(
        self,
        request_id: str,
        transformation: Transformation,
        body: dict[str, Any],
        element: Any = None,
        extra_parameters: dict[str, object] | None = None,
    ) -> bytes | str:
        """The GBCS command for this request, or the DUIS code to refuse it with; ``element``
        is its DUIS body element, parsed from ``body_xml``."""
        target = bytes(body["target"])
        device_ka = self.keys.device_ka_public(target)
        if transformation.cos_signed:
            # 6.23: the Transitional CoS Party originates (its own counter) and signs it
            if self.keys.cos_ds_private is None:
                log.error("no Transitional CoS Party key; run `dccsim pki init`")
                return SERVICE_NOT_OFFERED
            return build_cos_command(
                transformation,
                cos_title=TRANSITIONAL_COS_EUI,
                cos_counter=self.cos_counter.next(),
                cos_ds_private=self.keys.cos_ds_private,
                device_title=target,
                acb_ka_private=self.keys.acb_ka_private,
                device_ka_public=device_ka,
                body=element,
            )
        if not transformation.critical:
            originator, counter = bytes(body["originator"]), int(body["counter"])
            extras = b""
            if transformation.acb_originated:
                # the DCC's own command: the ACB originates it, naming the User in the extras
                extras = user_extras(originator, counter)
                extras += transformation.user_certificate_der(element)
                originator, counter = DCC_EUI, self.acb_counter.next()
            return build_command(
                transformation,
                originator_title=originator,
                device_title=target,
                counter=counter,
                acb_ka_private=self.keys.acb_ka_private,
                device_ka_public=device_ka,
                body=element,
                other_info_extras=extras,
                extra_parameters=extra_parameters,
                acb_ds_private=self.keys.acb_ds_private,
            )
        signed = body.get("signed_pre_command")
        if not isinstance(signed, bytes):
            return CRITICAL_WITHOUT_SIGNATURE
        issued = self.issued.get(request_id)
        if issued is None:
            log.info("Signed Pre-Command for no Pre-Command issued", extra={"srv": body["srv"]})
            return SIGNED_PRE_COMMAND_MISMATCH
        try:
            return command_from_signed_pre_command(
                signed,
                pre_command=issued,
                user_ds_public=self.keys.user_ds_public(bytes(body["originator"])),
                acb_ka_private=self.keys.acb_ka_private,
                device_ka_public=device_ka,
            )
        except SignedPreCommandError as exc:
            log.info("Signed Pre-Command refused", extra={"check": exc.check})
            if exc.check == "signature":
                return SIGNED_PRE_COMMAND_SIGNATURE_INVALID
            return SIGNED_PRE_COMMAND_MISMATCH

    async def on_pre_command(self, env: Envelope) -> dict[str, Any]:
        """RPC ``transform.pre_command`` (CV 4, from the User Gateway), body as ``sr.accepted``:
        -> ``{code: "I0", gbcs_payload, gbcs_version}``, or ``{code, reason}`` when the SRV has no
        Pre-Command here (E2, not offered) or its DUIS body lacks a value (E13)."""
        body = env.body
        transformation = self._transformation(body)
        if transformation is None or not transformation.critical:
            return {
                "code": SERVICE_NOT_OFFERED,
                "reason": f"no Pre-Command for SRV {body.get('srv')} on this device type",
            }
        try:
            extra: dict[str, object] | str = {}
            if transformation.join_use_cases is not None:
                extra = await self._join_other_device(
                    env.request_id, transformation, _body_element(body)
                )
            if isinstance(extra, str):
                return {"code": extra, "reason": "the other device is not in the inventory"}
            frame = self.pre_command(env.request_id, body, extra)
        except KeyStoreError as exc:
            return {"code": SERVICE_NOT_OFFERED, "reason": f"cannot build the command: {exc}"}
        except (GbcsError, DuisError) as exc:
            return {"code": MALFORMED_REQUEST, "reason": str(exc)}
        device = body.get("device") or {}
        return {
            "code": "I0",
            "gbcs_payload": frame,
            "gbcs_version": str(device.get("gbcs_version") or DEFAULT_GBCS_VERSION),
        }

    async def _frame(
        self, request_id: str, transformation: Transformation, body: dict[str, Any]
    ) -> tuple[str, bytes | str]:
        """(use case, the GBCS command or the DUIS code refusing it) for an accepted request.
        Raises KeyStoreError, ServiceRequestBodyError or GbcsError as :meth:`_command` does."""
        use_case = transformation.use_case
        element = _body_element(body)
        extra: dict[str, object] | str = {}
        unsigned = body.get("signed_pre_command") is None
        if unsigned and transformation.join_use_cases is not None:
            extra = await self._join_other_device(request_id, transformation, element)
        if isinstance(extra, str):
            return use_case, extra
        if unsigned:
            use_case = transformation.use_case_for(element, extra)
        if transformation.needs_han_device_type and use_case == "CCS01":
            extra = await self._han_device_type(request_id, transformation, element)
        if isinstance(extra, str):
            return use_case, extra
        return use_case, self._command(request_id, transformation, body, element, extra)

    async def on_local_command(self, env: Envelope) -> dict[str, Any]:
        """RPC ``transform.local_command`` (CV 2, 3, 6, 7), body as ``sr.accepted``:
        -> ``{code: "I0", gbcs_payload}``, the command byte for byte as the WAN would carry it
        (DUIS counter as the Originator Counter; for CV 6/7 the checked Signed Pre-Command,
        wrapped), or ``{code, reason}``: E17 for a command the DCC originates itself, E13 for
        a body that cannot be transformed, the Signed Pre-Command codes of the CV 5 path."""
        body = env.body
        transformation = self._transformation(body)
        if transformation is None:
            return {"code": SERVICE_NOT_OFFERED, "reason": f"no transformation for {body['srv']}"}
        if transformation.acb_originated or transformation.cos_signed:
            return {
                "code": LOCAL_COMMAND_NOT_ALLOWED,
                "reason": f"the DCC originates SRV {body['srv']}'s command over the SM WAN",
            }
        try:
            use_case, frame = await self._frame(env.request_id, transformation, body)
        except (ServiceRequestBodyError, DuisError) as exc:
            return {"code": MALFORMED_REQUEST, "reason": str(exc)}
        except (KeyStoreError, GbcsError) as exc:
            log.error("cannot build a local command", extra={"reason": str(exc)})
            return {"code": SERVICE_NOT_OFFERED, "reason": f"cannot build the command: {exc}"}
        if isinstance(frame, str):
            return {"code": frame, "reason": "the command was refused"}
        self.metrics.commands.labels(f"{use_case}-local").inc()
        return {"code": "I0", "gbcs_payload": frame, "use_case": use_case}

    async def on_request(self, env: Envelope) -> None:
        body = env.body
        device = body.get("device") or {}
        srv = str(body["srv"])
        device_type = str(device.get("device_type", ""))
        transformation = self._transformation(body)
        context = {k: body.get(k) for k in CONTEXT_KEYS}
        if transformation is None:
            # Accepted but not transformable: answer the User rather than drop it.
            log.error(
                "no transformation for SRV on this device type",
                extra={"srv": srv, "device_type": device_type},
            )
            await self._respond(env.request_id, context, code="E11", payload=None)
            return
        start = time.perf_counter()
        use_case = transformation.use_case
        try:
            use_case, frame = await self._frame(env.request_id, transformation, body)
        except KeyStoreError as exc:
            raise Permanent(f"no certificate for device or User: {exc}") from exc
        except ServiceRequestBodyError as exc:
            # The User's request is at fault, not the DCC: answer it as the CV 4 RPC does.
            log.info("DUIS body cannot be transformed", extra={"srv": srv, "reason": exc.reason})
            await self._respond(env.request_id, context, code=MALFORMED_REQUEST, payload=None)
            return
        except GbcsError as exc:
            raise Permanent(f"cannot build {use_case}: {exc.reason}") from exc
        if isinstance(frame, str):
            await self._respond(env.request_id, context, code=frame, payload=None)
            return
        self.metrics.build_duration.observe(time.perf_counter() - start)
        self.metrics.commands.labels(use_case).inc()
        await self.rt.bus.publish(
            GBCS_COMMAND,
            Envelope(
                "gbcs.command",
                env.request_id,
                {
                    **context,
                    "use_case": use_case,
                    "frame": frame,
                    "device_eui": device.get("eui"),
                    "hub_eui": device.get("hub_eui"),
                    "csp_region": device.get("csp_region"),
                },
            ),
        )

    async def _han_device_type(
        self, request_id: str, transformation: Transformation, element: Any
    ) -> dict[str, object] | str:
        """8.11 Add: the inventory device type of the HAN device the body names, as the
        ``device_type`` parameter; E19 when the inventory has no such device, and a body error
        (E13) for a device type the CHF device log has no value for."""
        device_id = transformation.parameters(element).get("device_id")
        assert isinstance(device_id, bytes)
        reply = await self.rt.bus.call(
            INVENTORY_RPC, "device.lookup", request_id, {"eui": format_eui(device_id)}
        )
        record = reply.get("device")
        if not record:
            return HAN_DEVICE_UNKNOWN
        device_type = str(record.get("device_type", ""))
        if device_type not in HAN_DEVICE_TYPES:
            raise ServiceRequestBodyError(f"a {device_type} cannot be added to a CHF device log")
        return {"device_type": device_type}

    async def _join_other_device(
        self, request_id: str, transformation: Transformation, element: Any
    ) -> dict[str, object] | str:
        """8.7.x: the inventory device type of the body's OtherDeviceID (``other_device_type``)
        and, for a Method C join, that device's KA certificate from the key store
        (``other_device_certificate``, DER); E19 when the inventory has no such device."""
        other = transformation.parameters(element).get("other_device_id")
        assert isinstance(other, bytes)
        reply = await self.rt.bus.call(
            INVENTORY_RPC, "device.lookup", request_id, {"eui": format_eui(other)}
        )
        record = reply.get("device")
        if not record:
            return HAN_DEVICE_UNKNOWN
        extra: dict[str, object] = {"other_device_type": str(record.get("device_type", ""))}
        if transformation.use_case_for(element, extra) == "CS03C":
            certificate = self.keys.keystore.certificate(other, KeyUsage.KA)
            extra["other_device_certificate"] = certificate.public_bytes(Encoding.DER)
        return extra

    async def on_response(self, env: Envelope) -> None:
        body = env.body
        if env.kind == "gbcs.alert":
            await self.on_alert(env)
            return
        context = {k: body.get(k) for k in CONTEXT_KEYS}
        error = body.get("error")
        if error:
            await self._respond(env.request_id, context, code=str(error), payload=None)
            return
        frame = body.get("frame")
        if not isinstance(frame, bytes):
            raise Permanent("gbcs.response carries neither a frame nor an error")
        await self._respond(env.request_id, context, code="I0", payload=frame)

    async def on_alert(self, env: Envelope) -> None:
        """A device alert -> a signed DUIS Device Alert for the User it concerns.

        The alert's GBCS recipient is that User, or the DCC (the ACB) for alerts a device sends
        to the DCC (e.g. supply interrupted); those go to the device's registered Supplier.
        """
        body = env.body
        frame = body.get("frame")
        if not isinstance(frame, bytes):
            raise Permanent("gbcs.alert carries no frame")
        try:
            message = decode_message(frame)
        except GbcsError as exc:
            raise Permanent(f"alert frame does not decode: {exc.reason}") from exc
        gs = message.general_signing if isinstance(message, GeneralCiphering) else message
        device = gs.originator_title
        recipient = gs.recipient_title
        if recipient == DCC_EUI:
            reply = await self.rt.bus.call(
                INVENTORY_RPC,
                "device.lookup",
                env.request_id or format_eui(device),
                {"eui": format_eui(device)},
            )
            regs = (reply.get("device") or {}).get("registrations") or {}
            user = regs.get("IS") or regs.get("GS") or regs.get("ED")
            if not user:
                log.warning(
                    "alert for a device with no registered User; not delivered",
                    extra={"device": format_eui(device)},
                )
                self.metrics.alerts.labels("no_recipient").inc()
                return
            recipient = parse_eui(str(user))
        participant = next(
            (p for p in self.participants.all().values() if p.eui == format_eui(recipient)), None
        )
        if participant is None:
            log.warning(
                "alert for a User that is not a registered participant",
                extra={"user_eui": format_eui(recipient)},
            )
            self.metrics.alerts.labels("no_recipient").inc()
            return
        code = body.get("alert_code")
        if not isinstance(code, int):
            raise Permanent("gbcs.alert carries no alert code")
        response_id = f"{format_eui(device)}:{participant.eui}:{gs.originator_counter}"
        root = build_device_alert(
            response_id=response_id,
            alert_code=code,
            gbcs_payload=frame,
            response_datetime=dt.datetime.now(dt.UTC),
        )
        xml = to_bytes(
            xmldsig.sign(root, private_key=self.keys.dsp_key, certificate=self.keys.dsp_certificate)
        )
        self.metrics.alerts.labels("delivered").inc()
        await self.rt.bus.publish(
            DUIS_RESPONSE,
            Envelope(
                "duis.response",
                response_id,
                {
                    "user_id": participant.user_id,
                    "delivery_key": f"alert:{response_id}:{code:04X}",
                    "xml": xml,
                },
            ),
        )

    async def _respond(
        self, request_id: str, context: dict[str, Any], *, code: str, payload: bytes | None
    ) -> None:
        rid = RequestId.parse(request_id)
        srv = str(context.get("srv") or "")
        root = build_response(
            request_id=rid,
            response_id=rid.response_id(),
            response_code=code,
            response_datetime=dt.datetime.now(dt.UTC),
            service_reference=srv.rsplit(".", 1)[0] if srv.count(".") == 2 else srv,
            service_reference_variant=srv,
            **_response_content(payload, context.get("dsp_schedule_id")),
        )
        xml = to_bytes(
            xmldsig.sign(root, private_key=self.keys.dsp_key, certificate=self.keys.dsp_certificate)
        )
        self.metrics.responses.labels(code).inc()
        await self.rt.bus.publish(
            DUIS_RESPONSE,
            Envelope(
                "duis.response",
                request_id,
                {
                    "user_id": context.get("user_id"),
                    # One async Response per request: the first outcome wins, redeliveries collapse.
                    "delivery_key": f"response:{rid.response_id()}",
                    "xml": xml,
                    "received_at": context.get("received_at"),
                },
            ),
        )


def _response_content(payload: bytes | None, schedule_id: Any) -> dict[str, Any]:
    """The ResponseMessage content: the device's GBCS response, inside a DSPScheduledMessage
    with its DSPScheduleID when the request was a run of a DSP schedule (5.1)."""
    if payload is not None and isinstance(schedule_id, int):
        return {"content": dsp_scheduled_message(payload, schedule_id)}
    return {"gbcs_payload": payload}


def _body_element(body: dict[str, Any]) -> Any:
    """The DUIS Service Request body element, when the gateway forwarded it (``body_xml``)."""
    xml = body.get("body_xml")
    return parse_safely(bytes(xml)) if xml else None


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, TransformSettings)
    keys = Keys(KeyStore(settings.keystore_dir))
    transformer = Transformer(rt, keys)
    rt.bus.consume(TRANSFORM_REQUESTS, transformer.on_request)
    rt.bus.consume(TRANSFORM_RESPONSES, transformer.on_response)
    # The same process answers CV 4 and later checks the CV 5: the issued Pre-Commands are its.
    rt.bus.serve_rpc(
        TRANSFORM_RPC_REQUESTS,
        {
            "transform.pre_command": transformer.on_pre_command,
            "transform.local_command": transformer.on_local_command,
        },
    )


def run(settings: TransformSettings | None = None) -> None:
    settings = settings or TransformSettings()
    run_until_complete(
        run_service("transform", settings, settings.transform_metrics_port, _setup), settings
    )
