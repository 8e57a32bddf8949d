"""GBCS device alerts: their codes as data, the frames that carry them, and what they say.

An alert is a General Signing APDU with CRA flag 3 from the device. Critical alerts are signed
with the device's DS key (General Signing alone, ``40`` + r‖s); the others are MAC'd (General
Ciphering, keyed by the device's KA key and the recipient's KA certificate). The payload is a
DLMS Data Notification (``0F``: alert code, date-time, the alert's fields), a GBZ alert (ZigBee
devices) or a DER SEQUENCE (CS02/CS06 outcomes, CCS08, GCS62), as the RTDS alert vectors show.

Future-dated commands report their outcome in 0x8F66 (executed) or 0x8F67 (failed) with the
message code and originator counter of the command that was scheduled:
:func:`describe_alert` names both, whatever the payload kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.crypto import seal, sign_frame
from dccsim.gbcs.der import decode_asn1
from dccsim.gbcs.dlms import Data, DataNotification
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import CRA_ALERT, GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.octets import OctetReader
from dccsim.gbcs.zigbee import decode_gbz

ALERT_FUTURE_DATED_EXECUTED = 0x8F66
ALERT_FUTURE_DATED_FAILED = 0x8F67
INVOKE_PRIORITY_BITS = 0x20000000
INVOKE_ID_MASK = 0x00FFFFFF

# Message codes of alert frames, as the RTDS alert vectors carry them
MESSAGE_CODE_CRITICAL_ALERT = 0x1000  # GCA: general critical alert (DLMS), signed
MESSAGE_CODE_NON_CRITICAL_ALERT = 0x1001  # GNCA: general non-critical alert (DLMS), MAC'd
MESSAGE_CODE_FUTURE_DATED_DLMS = 0x00CC
MESSAGE_CODE_FUTURE_DATED_GBZ = 0x00CD
MESSAGE_CODE_FUTURE_DATED_CS06 = 0x00CA
MESSAGE_CODE_FUTURE_DATED_CS02B = 0x00CB
MESSAGE_CODE_FUTURE_DATED_CS02G = 0x0124
ALERT_MESSAGE_CODES: dict[int, str] = {
    MESSAGE_CODE_CRITICAL_ALERT: "GCA general critical alert",
    MESSAGE_CODE_NON_CRITICAL_ALERT: "GNCA general non-critical alert",
    MESSAGE_CODE_FUTURE_DATED_DLMS: "future-dated outcome (DLMS COSEM)",
    MESSAGE_CODE_FUTURE_DATED_GBZ: "future-dated outcome (GBZ)",
    MESSAGE_CODE_FUTURE_DATED_CS06: "future-dated outcome (CS06 Activate Firmware)",
    MESSAGE_CODE_FUTURE_DATED_CS02B: "future-dated outcome (CS02b Update Security Credentials)",
    MESSAGE_CODE_FUTURE_DATED_CS02G: "future-dated outcome (CS02g Update Security Credentials)",
    0x0018: "CS14 Device Addition To / Removal From HAN Whitelist Alerts",
    0x0061: "ECS68 ESME Critical Sensitive Alert (Billing Data Log)",
    0x0067: "ECS80 Supply Outage Restore Alert from ESME",
    0x00B2: "GCS62 Backup GPF Device Log",
    0x00CF: "FDRA ZigBee alert",
    0x0110: "DBCH06 Limited Duty Cycle Action Taken Sub GHz Alert",
    0x0112: "DBCH08 Sub GHz Channel Scan Request Assessment Outcome Sub GHz Alert",
    0x0113: "DBCH09 Sub GHz Configuration Changed Sub GHz Alert",
    0x0114: "DBCH10 Message Discarded Due to Duty Cycle Management Sub GHz Alert",
    0x0128: "CCS08 Firmware Transfer Alert",
}


@dataclass(frozen=True)
class AlertCode:
    code: int
    title: str
    critical: bool = False


ALERT_CODES: dict[int, AlertCode] = {
    a.code: a
    for a in (
        AlertCode(0x8F0A, "Billing Data Log Updated", critical=True),
        AlertCode(0x8F12, "Device log changed (HAN whitelist addition or removal)"),
        AlertCode(0x8F1E, "Integrity check of content or format of command failed"),
        AlertCode(0x8F20, "Limited Duty Cycle Action Taken (Sub GHz)"),
        AlertCode(0x8F28, "Sub GHz Channel Scan Request Assessment Outcome"),
        AlertCode(0x8F2A, "Sub GHz Configuration Changed"),
        AlertCode(0x8F2C, "Message Discarded Due to Duty Cycle Management (Sub GHz)"),
        AlertCode(0x8F30, "Source Does not have Authority for Command"),
        AlertCode(0x8F35, "Supply Outage Restored", critical=True),
        AlertCode(0x8F36, "Supply Outage Restored - Outage >= 3 minutes", critical=True),
        AlertCode(0x8F3D, "Trusted Source Authentication Failure"),
        AlertCode(0x8F3E, "Unauthorised Physical Access - Tamper Detect"),
        AlertCode(0x8F53, "Failed Authentication or Authorisation not covered by other codes"),
        AlertCode(0x8F57, "Supply interrupted"),
        AlertCode(ALERT_FUTURE_DATED_EXECUTED, "Future dated command executed"),
        AlertCode(ALERT_FUTURE_DATED_FAILED, "Future dated command failed"),
        AlertCode(0x8F8A, "Firmware Transfer (CCS08)"),
        AlertCode(0x8071, "GPF Device Log Backup (GCS62)"),
    )
}


def alert_notification(counter: int, alert_code: int, date_time: bytes, *fields: Data) -> bytes:
    """A DLMS Data Notification alert payload: long-invoke-id (priority bits and the counter's
    low 24 bits), no header date-time, body structure (alert code, 12-byte ``date_time``,
    ``fields``...)."""
    if len(date_time) != 12:
        raise GbcsError("an alert date-time is a 12-byte DLMS date-time")
    return DataNotification(
        invoke_id_and_priority=INVOKE_PRIORITY_BITS | (counter & INVOKE_ID_MASK),
        date_time=b"",
        body=dlms.structure(dlms.long_unsigned(alert_code), dlms.octet_string(date_time), *fields),
    ).encode()


@dataclass(frozen=True)
class DlmsFutureDatedTarget:
    """What a DLMS future-dated alert names: the command and the COSEM member it scheduled."""

    message_code: int
    originator_counter: int
    class_id: int
    instance_id: bytes
    member_id: int

    def encode(self) -> bytes:
        return (
            self.message_code.to_bytes(2, "big")
            + self.originator_counter.to_bytes(8, "big")
            + self.class_id.to_bytes(2, "big")
            + self.instance_id
            + bytes([self.member_id])
        )

    @classmethod
    def decode(cls, data: bytes) -> DlmsFutureDatedTarget:
        reader = OctetReader(data)
        out = cls(
            reader.uint(2, "message code"),
            reader.uint(8, "originator counter"),
            reader.uint(2, "class id"),
            reader.take(6, "instance id"),
            reader.byte("member id"),
        )
        if not reader.at_end():
            raise GbcsError("trailing bytes in a future-dated alert target")
        return out


def future_dated_notification(
    counter: int, executed: bool, date_time: bytes, target: DlmsFutureDatedTarget
) -> bytes:
    """The DLMS 0x8F66 (``executed``) or 0x8F67 alert payload for ``target``."""
    code = ALERT_FUTURE_DATED_EXECUTED if executed else ALERT_FUTURE_DATED_FAILED
    return alert_notification(counter, code, date_time, dlms.octet_string(target.encode()))


def build_alert(
    *,
    device_title: bytes,
    recipient_title: bytes,
    counter: int,
    message_code: int,
    payload: bytes,
    device_ds_private: ec.EllipticCurvePrivateKey | None = None,
    mac_private: ec.EllipticCurvePrivateKey | None = None,
    mac_peer_public: ec.EllipticCurvePublicKey | None = None,
) -> bytes:
    """A whole alert frame (CRA 3, no header date-time) from ``device_title``.

    With ``device_ds_private``: General Signing signed by the device (critical alerts and
    future-dated outcomes). Otherwise MAC'd in General Ciphering with ``mac_private`` and
    ``mac_peer_public`` — the device's KA key and the recipient's KA public key (or, which
    gives the same MAC, the recipient's KA key and the device's).
    """
    frame = GeneralSigning(
        cra_flag=CRA_ALERT,
        originator_counter=counter,
        originator_title=device_title,
        recipient_title=recipient_title,
        date_time=None,
        message_code=message_code,
        other_info_extras=b"",
        payload=payload,
        signature=None,
        signature_field="absent",
    )
    if device_ds_private is not None:
        return sign_frame(frame, device_ds_private).encode()
    if mac_private is None or mac_peer_public is None:
        raise GbcsError("an alert is either signed (DS key) or MAC'd (KA key pair)")
    return seal(frame, private_key=mac_private, peer_public_key=mac_peer_public).encode()


def _code_json(code: int) -> dict[str, Any]:
    known = ALERT_CODES.get(code)
    return {
        "alert_code": f"{code:#06x}",
        "title": None if known is None else known.title,
        "critical": None if known is None else known.critical,
    }


def _outcome(code: int) -> str | None:
    if code == ALERT_FUTURE_DATED_EXECUTED:
        return "executed"
    if code == ALERT_FUTURE_DATED_FAILED:
        return "failed"
    return None


def _dlms_alert(payload: bytes) -> dict[str, Any]:
    notification = dlms.decode_apdu(payload)
    if not isinstance(notification, DataNotification):
        raise GbcsError("a DLMS alert is a Data Notification")
    items = notification.body.items
    if len(items) < 2:
        raise GbcsError("a DLMS alert carries at least its code and date-time")
    code = items[0].integer
    out = {**_code_json(code), "date_time": items[1].octets.hex(), "fields": len(items) - 2}
    if _outcome(code) is not None:
        if len(items) != 3:
            raise GbcsError("a future-dated alert carries one target")
        target = DlmsFutureDatedTarget.decode(items[2].octets)
        out["future_dated"] = {
            "outcome": _outcome(code),
            "message_code": f"{target.message_code:#06x}",
            "originator_counter": target.originator_counter,
            "class_id": target.class_id,
            "instance_id": target.instance_id.hex(),
            "member_id": target.member_id,
        }
    return out


def _gbz_alert(payload: bytes) -> dict[str, Any]:
    alert = decode_gbz(payload, alert=True).alert
    assert alert is not None
    out = {**_code_json(alert.alert_code), "timestamp": alert.timestamp}
    fd = alert.future_dated
    if fd is not None:
        out["future_dated"] = {
            "outcome": _outcome(alert.alert_code),
            "message_code": f"{fd.message_code:#06x}",
            "originator_counter": fd.originator_counter,
            "cluster": f"{fd.cluster:#06x}",
            "command": fd.command,
        }
    return out


# DER future-dated alerts name the command by their own message code: which use case ran, and its
# message code where the use case has one (CS02b's differs by which party replaced credentials)
_DER_FUTURE_DATED_COMMANDS: dict[int, tuple[str, int | None]] = {
    MESSAGE_CODE_FUTURE_DATED_CS06: ("CS06", 0x0012),
    MESSAGE_CODE_FUTURE_DATED_CS02B: ("CS02b", None),
    MESSAGE_CODE_FUTURE_DATED_CS02G: ("CS02g", 0x0126),
}


def _asn1_alert(frame: GeneralSigning) -> dict[str, Any]:
    decoded = decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=CRA_ALERT)
    fields = decoded.fields
    if not isinstance(fields, dict) or "alert_code" not in fields:
        raise GbcsError("DER alert without an alert code")
    code = int(fields["alert_code"])
    out = {**_code_json(code)}
    when = fields.get("execution_date_time", fields.get("date_time"))
    out["date_time"] = when
    if _outcome(code) is not None:
        counter = fields.get("originator_counter")
        report = fields.get("credentials_replacement_report")
        if counter is None and isinstance(report, dict):
            counter = report.get("originator_counter")
        scheduled = _DER_FUTURE_DATED_COMMANDS.get(frame.message_code)
        out["future_dated"] = {
            "outcome": _outcome(code),
            "use_case": None if scheduled is None else scheduled[0],
            "message_code": None
            if scheduled is None or scheduled[1] is None
            else f"{scheduled[1]:#06x}",
            "originator_counter": counter,
        }
    return out


def describe_alert(data: bytes) -> dict[str, Any]:
    """Name an alert message: ``{"message_code", "message", "alert_code", "title",
    "critical", "device", "recipient", "counter", ...}``, with ``future_dated`` (outcome
    ``executed``/``failed``, the scheduled command's message code and originator counter) for
    0x8F66/0x8F67. Raises :class:`GbcsError` when ``data`` is not an alert frame."""
    message = decode_message(data)
    frame = message.general_signing if isinstance(message, GeneralCiphering) else message
    if frame.cra_flag != CRA_ALERT:
        raise GbcsError(f"not an alert (CRA flag {frame.cra_flag})")
    payload = frame.payload
    if payload[:1] == b"\x0f":
        body = _dlms_alert(payload)
    elif payload[:2] == b"\x01\x09":
        body = _gbz_alert(payload)
    elif payload[:1] == b"\x30":
        body = _asn1_alert(frame)
    else:
        raise GbcsError("alert payload is neither DLMS, GBZ nor DER")
    return {
        "message_code": f"{frame.message_code:#06x}",
        "message": ALERT_MESSAGE_CODES.get(frame.message_code),
        "device": frame.originator_title.hex(),
        "recipient": frame.recipient_title.hex(),
        "counter": frame.originator_counter,
        "signed": frame.signature_field == "signed",
        "maced": isinstance(message, GeneralCiphering),
        **body,
    }
