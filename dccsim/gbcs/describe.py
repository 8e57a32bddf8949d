"""A GBCS message as plain JSON-able fields, with the outcome of every MAC and signature check.

What ``dccsim gbcs decode`` prints. Pure: the keys come from an injected :class:`KeyLookup`
(the CLI builds one over key-store folders), nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.commands import CREDENTIALS_PARTS, REPLACEMENT_OUTCOME
from dccsim.gbcs.crypto import (
    ACB_EUI,
    content_context,
    decrypt_content,
    verify_frame_signature,
    verify_mac,
)
from dccsim.gbcs.der import asn1_to_json, decode_asn1, decode_with
from dccsim.gbcs.dlms import (
    AccessRequest,
    AccessResponse,
    BitString,
    CompactArray,
    Data,
    DataNotification,
    DlmsApdu,
    RequestSpec,
    decode_apdu,
)
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    CRA_ALERT,
    CRA_COMMAND,
    CRA_RESPONSE,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
)
from dccsim.gbcs.usecases import USE_CASES_BY_CODE
from dccsim.gbcs.zigbee import (
    decode_gbz,
    decode_zcl_payload,
    gbz_to_json,
    zcl_payload_to_json,
)

CheckStatus = Literal["verified", "failed", "unchecked", "absent"]
_CRA_NAMES = {CRA_COMMAND: "command", CRA_RESPONSE: "response", CRA_ALERT: "alert"}
_DLMS_TAGS = (0xD9, 0xDA, 0x0F)
# GBZ payloads open with the Smart Energy profile id 0x0109; the DER ones with a SEQUENCE, or
# one primitive (INTEGER, OCTET STRING, NULL) for the shortest commands and responses
_DER_TAGS = (0x30, 0x02, 0x04, 0x05)


class KeyLookup(Protocol):
    """Where :func:`describe` finds keys; each method answers None when it has no such key."""

    def ka_private(self, eui: bytes) -> ec.EllipticCurvePrivateKey | None: ...

    def ka_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None: ...

    def ds_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None: ...


class NoKeys:
    """A :class:`KeyLookup` without any key: every check is ``unchecked``."""

    def ka_private(self, eui: bytes) -> ec.EllipticCurvePrivateKey | None:
        return None

    def ka_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        return None

    def ds_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        return None


def eui_text(eui: bytes) -> str:
    """An EUI-64 as DUIS writes it: ``90-B3-D5-1F-30-01-00-00``."""
    return "-".join(f"{b:02X}" for b in eui)


def obis_text(instance_id: bytes) -> str:
    """A COSEM instance id as an OBIS code, ``a-b:c.d.e.f``."""
    a, b, c, d, e, f = instance_id
    return f"{a}-{b}:{c}.{d}.{e}.{f}"


def data_to_json(item: Data) -> Any:
    """A DLMS value as ``{"type": ..., "value": ...}``; octets as hex, members as lists."""
    value = item.value
    out: Any
    if isinstance(value, tuple):
        out = [data_to_json(member) for member in value]
    elif isinstance(value, bytes):
        out = value.hex()
    elif isinstance(value, BitString):
        out = {"bits": value.bits, "octets": value.octets.hex()}
    elif isinstance(value, CompactArray):
        out = {
            "type_description": value.type_description.hex(),
            "contents": value.contents.hex(),
        }
    else:
        out = value
    return {"type": item.type.name.lower().replace("_", "-"), "value": out}


def _spec_to_json(spec: RequestSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": spec.kind.name.lower().replace("_", "-"),
        "class_id": spec.class_id,
        "instance_id": obis_text(spec.instance_id),
        "member_id": spec.member_id,
    }
    if spec.selection is not None:
        out["selector"] = spec.selection.selector
        out["selection"] = data_to_json(spec.selection.parameters)
    return out


def dlms_to_json(apdu: DlmsApdu) -> dict[str, Any]:
    """A DLMS Access Request, Access Response or Data Notification as fields."""
    common = {
        "invoke_id_and_priority": f"{apdu.invoke_id_and_priority:#010x}",
        "date_time": apdu.date_time.hex(),
    }
    if isinstance(apdu, AccessRequest):
        return {
            "apdu": "access-request",
            **common,
            "specs": [_spec_to_json(spec) for spec in apdu.specs],
            "data": [data_to_json(item) for item in apdu.data],
        }
    if isinstance(apdu, AccessResponse):
        return {
            "apdu": "access-response",
            **common,
            "request_specs": (
                None
                if apdu.request_specs is None
                else [_spec_to_json(spec) for spec in apdu.request_specs]
            ),
            "data": [data_to_json(item) for item in apdu.data],
            "results": [{"kind": r.kind.name.lower(), "result": r.result} for r in apdu.results],
        }
    assert isinstance(apdu, DataNotification)
    return {"apdu": "data-notification", **common, "body": data_to_json(apdu.body)}


def _payload(frame: GeneralSigning) -> dict[str, Any]:
    payload = frame.payload
    try:
        if payload[:1] and payload[0] in _DLMS_TAGS:
            return {"kind": "dlms", **dlms_to_json(decode_apdu(payload))}
        if payload[:2] == b"\x01\x09":
            gbz = decode_gbz(payload, alert=frame.cra_flag == CRA_ALERT)
            return {"kind": "zigbee", **gbz_to_json(gbz)}
        if payload[:1] and payload[0] in _DER_TAGS:
            asn1 = decode_asn1(payload, message_code=frame.message_code, cra_flag=frame.cra_flag)
            described = asn1_to_json(asn1)
            if isinstance(asn1.fields, Mapping):
                described["parts"] = _credentials_parts(asn1.fields)
                if not described["parts"]:
                    del described["parts"]
            return {"kind": "asn1", **described}
    except GbcsError as exc:
        return {"kind": _kind(payload), "error": exc.reason, "hex": payload.hex()}
    return {"kind": _kind(payload), "hex": payload.hex()}


def _credentials_parts(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A CS02b/CS02g payload's DER-valued parts decoded (replacements, seq numbers, the
    replacement outcomes), by field name; parts that do not decode are left out."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, Mapping):
            out |= _credentials_parts(value)
        elif name == "replacement_results" and isinstance(value, list):
            try:
                out[name] = [_json_value(decode_with(REPLACEMENT_OUTCOME, v)) for v in value]
            except GbcsError:
                pass
        elif name in CREDENTIALS_PARTS and isinstance(value, bytes):
            try:
                out[name] = _json_value(decode_with(CREDENTIALS_PARTS[name], value))
            except GbcsError:
                pass
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _kind(payload: bytes) -> str:
    if not payload:
        return "empty"
    if payload[0] in _DLMS_TAGS:
        return "dlms"
    if payload[:2] == b"\x01\x09":
        return "zigbee"
    return "asn1" if payload[0] in _DER_TAGS else "unknown"


def _header(frame: GeneralSigning) -> dict[str, Any]:
    use_case = USE_CASES_BY_CODE.get(frame.message_code) if frame.cra_flag != CRA_ALERT else None
    extras = frame.other_info_extras
    out: dict[str, Any] = {
        "cra_flag": frame.cra_flag,
        "cra": _CRA_NAMES.get(frame.cra_flag, "unknown"),
        "originator_counter": frame.originator_counter,
        "originator_title": eui_text(frame.originator_title),
        "recipient_title": eui_text(frame.recipient_title),
        "date_time": None if frame.date_time is None else frame.date_time.hex(),
        "message_code": f"{frame.message_code:#06x}",
        "use_case": None
        if use_case is None
        else {
            "name": use_case.name,
            "title": use_case.title,
            "service_reference_variants": list(use_case.service_reference_variants),
            "critical": use_case.critical,
        },
        "other_info_extras": extras.hex(),
        "content_length": len(frame.payload),
        "signature_field": frame.signature_field,
    }
    if frame.cra_flag == CRA_ALERT:
        out["alert_code"] = f"{frame.message_code:#06x}"
    if len(extras) >= 16:
        out["user_eui"] = eui_text(extras[:8])
        out["user_counter"] = int.from_bytes(extras[8:16], "big")
    return out


def _mac_pairs(frame: GeneralSigning) -> list[tuple[bytes, bytes]]:
    """Who may have keyed the MAC. A command is MAC'd by the ACB for the device, whoever
    originated it; a device-to-device command (PCS01, PCS02) by its two ends; a response or an
    alert by its two ends."""
    ends = (frame.originator_title, frame.recipient_title)
    if frame.cra_flag == CRA_COMMAND and frame.originator_title != ACB_EUI:
        return [(ACB_EUI, frame.recipient_title), ends]
    if frame.cra_flag == CRA_COMMAND:
        return [(ACB_EUI, frame.recipient_title)]
    return [ends]


def _check_mac(message: GeneralCiphering, keys: KeyLookup) -> dict[str, Any]:
    """Static ECDH is symmetric, so either end's KA private key with the other end's
    certificate recomputes the MAC key. ``failed`` only when every candidate pair could be
    tried; a pair without keys leaves it ``unchecked``."""
    tried: list[str] = []
    untestable: list[str] = []
    for pair in _mac_pairs(message.general_signing):
        testable = False
        for own, peer in (pair, pair[::-1]):
            private, public = keys.ka_private(own), keys.ka_public(peer)
            if private is None or public is None:
                continue
            testable = True
            tried.append(f"{own.hex()}-ka.key + {peer.hex()}-ka.pem")
            if verify_mac(message, private_key=private, peer_public_key=public):
                return {"status": "verified", "keys": tried[-1]}
        if not testable:
            untestable.append(f"{pair[0].hex()} / {pair[1].hex()}")
    if untestable:
        return {
            "status": "unchecked",
            "reason": "no KA private key with the other end's certificate for "
            + ", ".join(untestable),
            "tried": tried,
        }
    return {"status": "failed", "keys": tried}


def _check_signature(frame: GeneralSigning, keys: KeyLookup) -> dict[str, Any]:
    if frame.signature is None:
        return {"status": "absent"}
    public = keys.ds_public(frame.originator_title)
    if public is None:
        return {
            "status": "unchecked",
            "reason": f"no DS certificate for {frame.originator_title.hex()}",
        }
    if verify_frame_signature(frame, public):
        return {"status": "verified", "keys": f"{frame.originator_title.hex()}-ds.pem"}
    return {"status": "failed", "keys": f"{frame.originator_title.hex()}-ds.pem"}


def _gbz_content(frame: GeneralSigning, payload: dict[str, Any], keys: KeyLookup) -> CheckStatus:
    """Decrypt each encrypted component of a GBZ response or alert (GCS13a, GCS17, GCS61...)
    for the remote party its content is for, and describe the ZCL payload inside under the
    component's ``content``. Returns the weakest outcome: ``failed`` if any block does not
    authenticate, ``unchecked`` without the keys, ``absent`` when nothing is encrypted."""
    if payload.get("kind") != "zigbee" or "components" not in payload:
        return "absent"
    if frame.cra_flag == CRA_COMMAND:
        return "absent"
    components = decode_gbz(frame.payload, alert=frame.cra_flag == CRA_ALERT).components
    encrypted = [(i, c) for i, c in enumerate(components) if c.encrypted_content is not None]
    if not encrypted:
        return "absent"
    context = content_context(frame)
    private = keys.ka_private(context.recipient_title)
    public = keys.ka_public(context.device_title)
    key_names = f"{context.recipient_title.hex()}-ka.key + {context.device_title.hex()}-ka.pem"
    statuses: set[CheckStatus] = set()
    for index, component in encrypted:
        item = payload["components"][index]
        assert component.encrypted_content is not None
        if private is None or public is None:
            item["content"] = {"status": "unchecked", "reason": f"no keys {key_names}"}
            statuses.add("unchecked")
            continue
        try:
            plaintext = decrypt_content(
                component.encrypted_content,
                device_title=context.device_title,
                counter=context.counter,
                recipient_title=context.recipient_title,
                private_key=private,
                peer_public_key=public,
            )
        except GbcsError as exc:
            item["content"] = {"status": "failed", "keys": key_names, "reason": exc.reason}
            statuses.add("failed")
            continue
        zcl = decode_zcl_payload(component.cluster, component.header, plaintext)
        item["content"] = {"status": "verified", "keys": key_names, **zcl_payload_to_json(zcl)}
        statuses.add("verified")
    for status in ("failed", "unchecked"):
        if status in statuses:
            return status
    return "verified"


def describe(data: bytes, keys: KeyLookup | None = None) -> dict[str, Any]:
    """Decode ``data`` (a whole GBCS message) and check its MAC and signature with ``keys``.

    Returns ``{"apdu", "length", "header", "payload", "mac", "signature", "ok"}``, and
    ``content`` when a GBZ payload carries encrypted components (each decrypted and described
    where ``keys`` allow); ``ok`` is False when a check that could be made failed
    (``unchecked`` is not a failure). Raises
    :class:`GbcsError` when the frame does not decode.
    """
    keys = keys if keys is not None else NoKeys()
    message = decode_message(data)
    frame = message.general_signing if isinstance(message, GeneralCiphering) else message
    mac = (
        _check_mac(message, keys) if isinstance(message, GeneralCiphering) else {"status": "absent"}
    )
    signature = _check_signature(frame, keys)
    payload = _payload(frame)
    content = _gbz_content(frame, payload, keys)
    described = {
        "apdu": "general-ciphering" if isinstance(message, GeneralCiphering) else "general-signing",
        "length": len(data),
        "header": _header(frame),
        "payload": payload,
        "mac": mac,
        "signature": signature,
        "ok": mac["status"] != "failed" and signature["status"] != "failed" and content != "failed",
    }
    if content != "absent":
        described["content"] = {"status": content}
    return described
