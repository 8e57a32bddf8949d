"""GFI (GBCS Interface Testing for Industry): generate the GBCS messages that emerge from a
Communications Hub, and check the ones a device maker submits.

Generation plays the device: an ECS17b response (the import registers, encrypted and MAC'd, or a
device error result) or a DLMS alert (a signed Data Notification, as the RTDS 8F66 alerts are),
with the device's and the recipient's keys taken from a :class:`~dccsim.pki.keystore.KeyStore`.

Checking decodes a message to its last byte and reports field by field: header, use case, MAC
(with the recipient's KA private key and the device's KA certificate), signature (the device's DS
certificate), counter conformance (against the command it answers, or the last counter seen) and,
for ECS17b, the decrypted registers. The functions here are pure apart from the key store look-up
in :func:`keys_for_check` and :func:`keys_for_generate`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.crypto import sign_frame, verify_frame_signature, verify_mac
from dccsim.gbcs.dlms import AccessResponse, DataNotification, encode_date_time
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    CRA_ALERT,
    CRA_COMMAND,
    CRA_RESPONSE,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
)
from dccsim.gbcs.usecases import (
    ECS17B,
    USE_CASES_BY_CODE,
    USE_CASES_BY_NAME,
    DeviceResultError,
    ImportRegisters,
    PayloadKind,
    build_access_error_response,
    build_ecs17b_response,
    ecs17b_request,
    invoke_id_for,
    read_ecs17b_response,
)
from dccsim.pki.keystore import KeyStore, KeyStoreError
from dccsim.pki.smki import KeyUsage

# The message code of a DLMS device alert in the RTDS vectors (the 8F66 future-dated outcome
# alerts from an ESME carry 0x00CC), and the alert code GFI generates by default.
DLMS_ALERT_MESSAGE_CODE = 0x00CC
DEFAULT_ALERT_CODE = 0x8F66

GENERATORS = ("ECS17b", "alert")

Verdict = Literal["ok", "fail", "info", "skipped"]

_PAYLOAD_KIND_BY_FIRST_BYTE = {
    0xD9: PayloadKind.DLMS,
    0xDA: PayloadKind.DLMS,
    0x0F: PayloadKind.DLMS,
    0x30: PayloadKind.ASN1,
    0x01: PayloadKind.ZIGBEE,
    0x02: PayloadKind.ZIGBEE,
    0x04: PayloadKind.ZIGBEE,
    0x05: PayloadKind.ZIGBEE,
    0x09: PayloadKind.ZIGBEE,
}


class GfiError(ValueError):
    """A generate or check request GFI cannot carry out (bad parameters, keys not held)."""


def parse_eui_text(text: str) -> bytes:
    """An EUI-64 from ``90-B3-D5-1F-30-01-00-00``, ``90B3D51F30010000`` or ``90:B3:...``."""
    cleaned = text.replace("-", "").replace(":", "").strip()
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise GfiError(f"{text!r} is not an EUI-64") from exc
    if len(raw) != 8:
        raise GfiError(f"{text!r} is not an EUI-64 (8 octets)")
    return raw


def eui_text(raw: bytes) -> str:
    return "-".join(f"{b:02X}" for b in raw)


# -- generation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateKeys:
    """The keys generation needs: the device's KA (MAC, encryption) and DS (alert signature)
    private keys and the recipient remote party's KA public key."""

    device_ka_private: ec.EllipticCurvePrivateKey | None
    device_ds_private: ec.EllipticCurvePrivateKey | None
    recipient_ka_public: ec.EllipticCurvePublicKey | None


def _notional_command(
    *, device: bytes, recipient: bytes, counter: int, other_info_extras: bytes
) -> GeneralCiphering:
    """The ECS17b command a response answers. Only its header and payload are read by the
    response builders, so its MAC is left as zeros (the command is not sent anywhere)."""
    frame = GeneralSigning(
        cra_flag=CRA_COMMAND,
        originator_counter=counter,
        originator_title=recipient,
        recipient_title=device,
        date_time=None,
        message_code=ECS17B.message_code,
        other_info_extras=other_info_extras,
        payload=ecs17b_request(counter, recipient, device).encode(),
        signature=None,
        signature_field="unsigned",
    )
    return GeneralCiphering(general_signing=frame, mac=bytes(12))


def generate_ecs17b_response(
    *,
    device: bytes,
    recipient: bytes,
    counter: int,
    when: dt.datetime,
    keys: GenerateKeys,
    registers: ImportRegisters | None = None,
    result: int = 0,
    command: GeneralCiphering | None = None,
) -> bytes:
    """The ESME's ECS17b response for ``counter``, or for ``command`` when given (its counter,
    titles and extras win). ``result`` 0 returns ``registers``; any other value is the DLMS
    action result of an error response (1 hardware fault, 250 other reason ...)."""
    if keys.device_ka_private is None or keys.recipient_ka_public is None:
        raise GfiError("an ECS17b response needs the device's KA key and the recipient's KA key")
    if command is None:
        command = _notional_command(
            device=device, recipient=recipient, counter=counter, other_info_extras=b""
        )
    date_time = encode_date_time(when)
    if result != 0:
        return build_access_error_response(
            command=command,
            result=result,
            date_time=date_time,
            device_ka_private=keys.device_ka_private,
            recipient_ka_public=keys.recipient_ka_public,
        )
    return build_ecs17b_response(
        command=command,
        registers=registers or ImportRegisters(active_import=0, reactive_import=0),
        date_time=date_time,
        device_ka_private=keys.device_ka_private,
        recipient_ka_public=keys.recipient_ka_public,
    )


def generate_alert(
    *,
    device: bytes,
    recipient: bytes,
    counter: int,
    when: dt.datetime,
    keys: GenerateKeys,
    alert_code: int = DEFAULT_ALERT_CODE,
    alert_data: bytes = b"",
    message_code: int = DLMS_ALERT_MESSAGE_CODE,
) -> bytes:
    """A DLMS device alert: General Signing (CRA 3) around a Data Notification whose body is
    ``structure(alert code, date-time, alert data)``, as in the RTDS alerts, signed with the
    device's DS key."""
    if keys.device_ds_private is None:
        raise GfiError("an alert needs the device's DS private key")
    if not 0 <= alert_code <= 0xFFFF:
        raise GfiError("alert_code is 2 bytes")
    notification = DataNotification(
        invoke_id_and_priority=invoke_id_for(counter),
        date_time=b"",
        body=dlms.structure(
            dlms.long_unsigned(alert_code),
            dlms.octet_string(encode_date_time(when)),
            dlms.octet_string(alert_data),
        ),
    )
    frame = GeneralSigning(
        cra_flag=CRA_ALERT,
        originator_counter=counter,
        originator_title=device,
        recipient_title=recipient,
        date_time=None,
        message_code=message_code,
        other_info_extras=b"",
        payload=notification.encode(),
        signature=None,
        signature_field="absent",
    )
    return sign_frame(frame, keys.device_ds_private).encode()


def _ec_private(value: object) -> ec.EllipticCurvePrivateKey | None:
    return value if isinstance(value, ec.EllipticCurvePrivateKey) else None


def _ec_public(value: object) -> ec.EllipticCurvePublicKey | None:
    return value if isinstance(value, ec.EllipticCurvePublicKey) else None


def _store_private(
    store: KeyStore, eui: bytes, usage: KeyUsage
) -> ec.EllipticCurvePrivateKey | None:
    try:
        return _ec_private(store.private_key(eui, usage))
    except KeyStoreError:
        return None


def _store_public(store: KeyStore, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePublicKey | None:
    try:
        return _ec_public(store.certificate(eui, usage).public_key())
    except KeyStoreError:
        return None


def keys_for_generate(store: KeyStore, *, device: bytes, recipient: bytes) -> GenerateKeys:
    """The device's private keys and the recipient's KA certificate key, from ``store``."""
    return GenerateKeys(
        device_ka_private=_store_private(store, device, KeyUsage.KA),
        device_ds_private=_store_private(store, device, KeyUsage.DS),
        recipient_ka_public=_store_public(store, recipient, KeyUsage.KA),
    )


@dataclass(frozen=True)
class GenerateRequest:
    """What the API, CLI and portal ask GFI to generate."""

    kind: str  # one of GENERATORS
    device: bytes
    recipient: bytes
    counter: int
    when: dt.datetime
    active_import: int = 0
    reactive_import: int = 0
    secondary_active_import: int | None = None
    result: int = 0
    alert_code: int = DEFAULT_ALERT_CODE
    alert_data: bytes = b""

    @classmethod
    def from_json(cls, body: dict[str, Any], *, now: dt.datetime) -> GenerateRequest:
        """From a JSON (or form) map; :class:`GfiError` on bad values."""
        kind = str(body.get("use_case") or body.get("kind") or "ECS17b")
        if kind not in GENERATORS:
            raise GfiError(f"use_case must be one of {', '.join(GENERATORS)}")
        try:
            when_text = body.get("date_time")
            when = dt.datetime.fromisoformat(str(when_text)) if when_text else now
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            secondary = body.get("secondary_active_import")
            return cls(
                kind=kind,
                device=parse_eui_text(str(body.get("device", ""))),
                recipient=parse_eui_text(str(body.get("recipient", ""))),
                counter=_int(body.get("counter", 1)),
                when=when,
                active_import=_int(body.get("active_import", 0)),
                reactive_import=_int(body.get("reactive_import", 0)),
                secondary_active_import=(_int(secondary) if secondary not in (None, "") else None),
                result=_int(body.get("result", 0)),
                alert_code=_int(body.get("alert_code", DEFAULT_ALERT_CODE)),
                alert_data=bytes.fromhex(str(body.get("alert_data", "") or "")),
            )
        except ValueError as exc:
            raise GfiError(str(exc)) from exc

    def generate(self, keys: GenerateKeys) -> bytes:
        if not 0 <= self.counter < 1 << 64:
            raise GfiError("counter must be an unsigned 64-bit integer")
        if self.kind == "alert":
            return generate_alert(
                device=self.device,
                recipient=self.recipient,
                counter=self.counter,
                when=self.when,
                keys=keys,
                alert_code=self.alert_code,
                alert_data=self.alert_data,
            )
        return generate_ecs17b_response(
            device=self.device,
            recipient=self.recipient,
            counter=self.counter,
            when=self.when,
            keys=keys,
            registers=ImportRegisters(
                active_import=self.active_import,
                reactive_import=self.reactive_import,
                secondary_active_import=self.secondary_active_import,
            ),
            result=self.result,
        )


def _int(value: Any) -> int:
    """An int from JSON or a form field ("1000", "0x3E8")."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text, 16) if text.lower().startswith("0x") else int(text)


# -- checking -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One line of a check report: a field, its value and the verdict on it."""

    field: str
    value: str
    verdict: Verdict
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "field": self.field,
            "value": self.value,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass
class CheckReport:
    """The field-by-field result of checking one message. ``conformant`` when nothing failed
    and the message's authenticity (MAC or signature) was verified."""

    findings: list[Finding] = field(default_factory=list)
    authenticated: bool = False

    def add(self, name: str, value: str, verdict: Verdict, detail: str = "") -> None:
        self.findings.append(Finding(name, value, verdict, detail))

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "fail"]

    @property
    def conformant(self) -> bool:
        return self.authenticated and not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "conformant": self.conformant,
            "authenticated": self.authenticated,
            "failures": len(self.failures),
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True)
class CheckKeys:
    """The keys a check can use: the recipient's KA private key and the device's KA and DS
    public keys; any may be None, and the checks that need it are then skipped."""

    recipient_ka_private: ec.EllipticCurvePrivateKey | None = None
    device_ka_public: ec.EllipticCurvePublicKey | None = None
    device_ds_public: ec.EllipticCurvePublicKey | None = None


def keys_for_check(store: KeyStore, *, device: bytes, recipient: bytes) -> CheckKeys:
    """The recipient's KA private key and the device's certificates' keys, from ``store``."""
    return CheckKeys(
        recipient_ka_private=_store_private(store, recipient, KeyUsage.KA),
        device_ka_public=_store_public(store, device, KeyUsage.KA),
        device_ds_public=_store_public(store, device, KeyUsage.DS),
    )


def header_of(data: bytes) -> GeneralSigning:
    """The General Signing header of a message (:class:`GbcsError` if it does not decode)."""
    message = decode_message(data)
    return message.general_signing if isinstance(message, GeneralCiphering) else message


def _date_time_text(raw: bytes) -> str:
    year = int.from_bytes(raw[0:2], "big")
    return (
        f"{year:04d}-{raw[2]:02d}-{raw[3]:02d}T{raw[5]:02d}:{raw[6]:02d}:{raw[7]:02d} "
        f"({raw.hex().upper()})"
    )


def check_message(
    data: bytes,
    *,
    keys: CheckKeys,
    command: bytes | None = None,
    expected_use_case: str | None = None,
    last_counter: int | None = None,
) -> CheckReport:
    """Check a device-originated GBCS message field by field.

    ``command``: the command the message answers (its counter, titles and message code must
    match). ``expected_use_case``: a use case name such as ``ECS17b``. ``last_counter``: the
    highest originator counter seen before from this device, which an alert's must exceed.
    """
    report = CheckReport()
    report.add("length", str(len(data)), "info", "octets")
    try:
        message = decode_message(data)
    except GbcsError as exc:
        report.add("frame", data[:1].hex().upper(), "fail", f"does not decode: {exc.reason}")
        return report
    header = message.general_signing if isinstance(message, GeneralCiphering) else message
    wrapped = isinstance(message, GeneralCiphering)
    report.add(
        "frame",
        "General Ciphering (DD)" if wrapped else "General Signing (DF)",
        "ok",
        "decodes to the last byte",
    )
    cra = {CRA_COMMAND: "command", CRA_RESPONSE: "response", CRA_ALERT: "alert"}
    report.add(
        "cra_flag",
        f"{header.cra_flag} ({cra.get(header.cra_flag, 'unknown')})",
        "ok" if header.cra_flag in (CRA_RESPONSE, CRA_ALERT) else "fail",
        "a device emits responses (2) and alerts (3)",
    )
    report.add(
        "originator_counter",
        f"{header.originator_counter} ({header.originator_counter:#x})",
        "info",
    )
    report.add("originator_title", eui_text(header.originator_title), "info", "the device")
    report.add("recipient_title", eui_text(header.recipient_title), "info", "the remote party")
    if header.date_time is None:
        report.add("date_time", "absent", "info")
    else:
        report.add("date_time", _date_time_text(header.date_time), "info")
    use_case = USE_CASES_BY_CODE.get(header.message_code)
    code_text = f"{header.message_code:#06x}"
    if use_case is not None:
        report.add("message_code", f"{code_text} {use_case.name}", "ok", use_case.title)
    else:
        report.add("message_code", code_text, "info", "not a use case dccsim models in detail")
    if expected_use_case is not None:
        wanted = USE_CASES_BY_NAME.get(expected_use_case)
        if wanted is None:
            report.add("use_case", expected_use_case, "fail", "unknown use case name")
        else:
            report.add(
                "use_case",
                expected_use_case,
                "ok" if wanted.message_code == header.message_code else "fail",
                f"expects message code {wanted.message_code:#06x}",
            )
    report.add(
        "other_info_extras",
        header.other_info_extras.hex().upper() or "none",
        "info",
        f"{len(header.other_info_extras)} octets",
    )
    _check_payload(report, header, use_case)
    _check_authenticity(report, message, header, keys, wrapped)
    _check_counter(report, header, command, last_counter)
    if use_case is ECS17B and wrapped and header.cra_flag == CRA_RESPONSE:
        _check_ecs17b_content(report, data, keys)
    return report


def _check_payload(report: CheckReport, header: GeneralSigning, use_case: Any) -> None:
    payload = header.payload
    first = payload[0] if payload else None
    kind = _PAYLOAD_KIND_BY_FIRST_BYTE.get(first) if first is not None else None
    report.add(
        "payload",
        f"{len(payload)} octets, first {first:02X}" if first is not None else "empty",
        "info" if kind else "fail",
        kind.value if kind else "unknown payload encoding",
    )
    if use_case is not None and kind is not None and kind is not use_case.payload_kind:
        report.add(
            "payload_kind",
            kind.value,
            "fail",
            f"{use_case.name} carries {use_case.payload_kind.value}",
        )
    if kind is PayloadKind.DLMS:
        try:
            apdu = dlms.decode_apdu(payload)
        except GbcsError as exc:
            report.add("dlms", "undecodable", "fail", exc.reason)
            return
        if isinstance(apdu, AccessResponse):
            results = ", ".join(str(r.result) for r in apdu.results)
            report.add(
                "dlms",
                "Access Response",
                "ok" if header.cra_flag == CRA_RESPONSE else "fail",
                f"results [{results}]",
            )
        elif isinstance(apdu, DataNotification):
            body = apdu.body.items if apdu.body.type is dlms.DataType.STRUCTURE else ()
            alert = (
                f"0x{body[0].integer:04X}"
                if body and body[0].type is dlms.DataType.LONG_UNSIGNED
                else "?"
            )
            report.add(
                "dlms",
                "Data Notification",
                "ok" if header.cra_flag == CRA_ALERT else "fail",
                f"alert code {alert}",
            )
        else:
            report.add("dlms", "Access Request", "fail", "a device does not send requests")


def _check_authenticity(
    report: CheckReport,
    message: GeneralCiphering | GeneralSigning,
    header: GeneralSigning,
    keys: CheckKeys,
    wrapped: bool,
) -> None:
    if isinstance(message, GeneralCiphering):
        if keys.recipient_ka_private is None or keys.device_ka_public is None:
            report.add(
                "mac",
                message.mac.hex().upper(),
                "skipped",
                "needs the recipient's KA private key and the device's KA certificate",
            )
        elif verify_mac(
            message, private_key=keys.recipient_ka_private, peer_public_key=keys.device_ka_public
        ):
            report.authenticated = True
            report.add("mac", message.mac.hex().upper(), "ok", "verifies")
        else:
            report.add("mac", message.mac.hex().upper(), "fail", "does not verify")
    if header.signature_field == "signed":
        assert header.signature is not None
        sig = header.signature.hex().upper()
        if keys.device_ds_public is None:
            report.add("signature", sig, "skipped", "needs the device's DS certificate")
        elif verify_frame_signature(header, keys.device_ds_public):
            report.authenticated = True
            report.add("signature", sig, "ok", "verifies with the device's DS certificate")
        else:
            report.add("signature", sig, "fail", "does not verify")
    elif header.signature_field == "unsigned":
        report.add("signature", "00 (none)", "ok" if wrapped else "fail", "unsigned inside DD")
    else:
        report.add("signature", "absent", "fail", "only a Pre-Command has no signature field")


def _check_counter(
    report: CheckReport,
    header: GeneralSigning,
    command: bytes | None,
    last_counter: int | None,
) -> None:
    if command is not None:
        try:
            cmd = header_of(command)
        except GbcsError as exc:
            report.add("command", "undecodable", "fail", exc.reason)
            return
        report.add(
            "counter_matches_command",
            str(header.originator_counter),
            "ok" if header.originator_counter == cmd.originator_counter else "fail",
            f"command counter {cmd.originator_counter}",
        )
        swapped = (
            header.originator_title == cmd.recipient_title
            and header.recipient_title == cmd.originator_title
        )
        report.add(
            "titles_swapped",
            f"{eui_text(header.originator_title)} -> {eui_text(header.recipient_title)}",
            "ok" if swapped else "fail",
            "a response goes from the command's recipient to its originator",
        )
        report.add(
            "message_code_matches_command",
            f"{header.message_code:#06x}",
            "ok" if header.message_code == cmd.message_code else "fail",
            f"command {cmd.message_code:#06x}",
        )
    if last_counter is not None:
        report.add(
            "counter_increases",
            str(header.originator_counter),
            "ok" if header.originator_counter > last_counter else "fail",
            f"must exceed the last counter seen, {last_counter}",
        )


def _check_ecs17b_content(report: CheckReport, data: bytes, keys: CheckKeys) -> None:
    if keys.recipient_ka_private is None or keys.device_ka_public is None:
        report.add("content", "encrypted", "skipped", "needs the KA keys to decrypt")
        return
    try:
        registers = read_ecs17b_response(
            data,
            recipient_ka_private=keys.recipient_ka_private,
            device_ka_public=keys.device_ka_public,
        )
    except DeviceResultError as exc:
        report.add("device_result", str(exc.result), "info", "the device reported a failure")
        return
    except GbcsError as exc:
        report.add("content", "undecryptable", "fail", exc.reason)
        return
    report.add("content", "decrypts", "ok", "encrypted content authenticates")
    report.add(
        "active_import", str(registers.active_import), "info", f"unit {registers.active_unit}"
    )
    report.add(
        "reactive_import", str(registers.reactive_import), "info", f"unit {registers.reactive_unit}"
    )
    if registers.secondary_active_import is not None:
        report.add("secondary_active_import", str(registers.secondary_active_import), "info")


# -- the one entry point the API, the CLI and the portal share ---------------------------------


def message_text(data: bytes) -> dict[str, str]:
    """A message as the API returns it: hex (upper case) and base64."""
    import base64

    return {"hex": data.hex().upper(), "base64": base64.b64encode(data).decode()}


def generate_from_json(store: KeyStore, body: dict[str, Any], *, now: dt.datetime) -> bytes:
    """Generate what ``body`` asks for (see :meth:`GenerateRequest.from_json`) with the keys
    ``store`` holds for its device and recipient; :class:`GfiError` when it cannot."""
    request = GenerateRequest.from_json(body, now=now)
    keys = keys_for_generate(store, device=request.device, recipient=request.recipient)
    try:
        return request.generate(keys)
    except GbcsError as exc:
        raise GfiError(exc.reason) from exc


def check_from_json(store: KeyStore, body: dict[str, Any]) -> CheckReport:
    """Check ``body["message"]`` (hex or base64) with the keys ``store`` holds for the device
    and recipient its header names. Optional: ``command`` (hex/base64), ``use_case``,
    ``last_counter``."""
    from dccsim.gbcs.frames import parse_hex_or_base64

    try:
        data = parse_hex_or_base64(str(body.get("message", "")))
        command_text = body.get("command")
        command = parse_hex_or_base64(str(command_text)) if command_text else None
    except GbcsError as exc:
        raise GfiError(exc.reason) from exc
    last = body.get("last_counter")
    use_case = body.get("use_case") or None
    try:
        header: GeneralSigning | None = header_of(data)
    except GbcsError:
        header = None
    keys = (
        keys_for_check(store, device=header.originator_title, recipient=header.recipient_title)
        if header is not None
        else CheckKeys()
    )
    try:
        last_counter = _int(last) if last not in (None, "") else None
    except ValueError as exc:
        raise GfiError(f"last_counter: {exc}") from exc
    return check_message(
        data,
        keys=keys,
        command=command,
        expected_use_case=str(use_case) if use_case else None,
        last_counter=last_counter,
    )
