"""GBCS alerts a device raises unsolicited: their codes as data, and the frames that carry them.

Layouts follow the RTDS alert vectors (reference/gbcs/rtds): a DLMS Data Notification (``0F``,
long-invoke-id-and-priority, no date-time) whose body is a structure of the alert code
(long-unsigned), the alert's date-time (12-byte octet string) and the alert's own fields.
ECS80 (Supply Outage Restored, ``NA_ECS80``) is a critical alert: General Signing signed with the
device's DS key, to the Import Supplier. Other device alerts (``NA_DBCH08``) are MAC'd with the
device's KA key for the ACB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.alerts import MESSAGE_CODE_NON_CRITICAL_ALERT
from dccsim.gbcs.crypto import seal, sign_frame
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.frames import CRA_ALERT, GeneralSigning
from dccsim.gbcs.usecases import INVOKE_ID_MASK, INVOKE_PRIORITY_BITS

ECS80_MESSAGE_CODE = 0x0067  # as in NA_ECS80/ECS80_NA_8F36_ALERT_GBCS.HEX
# Message code for a device alert outside any use case: GNCA, as NA_GNCA-DLMS carries it
DEVICE_ALERT_MESSAGE_CODE = MESSAGE_CODE_NON_CRITICAL_ALERT
OUTAGE_LONG_S = 180.0  # GBCS: a restoration after 3 minutes or more is 0x8F36


@dataclass(frozen=True)
class AlertKind:
    code: int
    title: str
    critical: bool = False


ALERTS: dict[int, AlertKind] = {
    a.code: a
    for a in (
        AlertKind(0x8F35, "Supply Outage Restored", critical=True),
        AlertKind(0x8F36, "Supply Outage Restored - Outage >= 3 minutes", critical=True),
        AlertKind(0x8F57, "Supply interrupted"),
        AlertKind(0x8F3E, "Unauthorised Physical Access - Tamper Detect"),
        AlertKind(0x8F12, "Device log changed"),
        AlertKind(0x8F66, "Future dated command executed"),
        AlertKind(0x8F67, "Future dated command failed"),
        AlertKind(0x8F1E, "Integrity check of content or format of command failed"),
        AlertKind(0x8F30, "Source Does not have Authority for Command"),
        AlertKind(0x8F3D, "Trusted Source Authentication Failure"),
        AlertKind(0x8F53, "Failed Authentication or Authorisation not covered by other codes"),
    )
}


def restoration_alert_code(outage_seconds: float) -> int:
    """0x8F36 for an outage of 3 minutes or more, else 0x8F35."""
    return 0x8F36 if outage_seconds >= OUTAGE_LONG_S else 0x8F35


def _notification(counter: int, alert_code: int, at: datetime, *fields: dlms.Data) -> bytes:
    invoke = INVOKE_PRIORITY_BITS | (counter & INVOKE_ID_MASK)
    body = dlms.structure(
        dlms.long_unsigned(alert_code), dlms.octet_string(encode_date_time(at)), *fields
    )
    out = bytearray(b"\x0f")
    out += invoke.to_bytes(4, "big")
    out += b"\x00"  # no date-time in the notification header
    out += body.encode()
    return bytes(out)


def build_outage_restored_alert(
    *,
    device_eui: bytes,
    supplier_eui: bytes,
    counter: int,
    started: datetime,
    restored: datetime,
    at: datetime,
    device_ds_private: ec.EllipticCurvePrivateKey,
) -> bytes:
    """ECS80: the ESME's signed Supply Outage Restored alert (0x8F35 or 0x8F36 by duration),
    carrying when the outage started and ended."""
    code = restoration_alert_code((restored - started).total_seconds())
    payload = _notification(
        counter,
        code,
        at,
        dlms.octet_string(encode_date_time(started)),
        dlms.octet_string(encode_date_time(restored)),
    )
    frame = GeneralSigning(
        cra_flag=CRA_ALERT,
        originator_counter=counter,
        originator_title=device_eui,
        recipient_title=supplier_eui,
        date_time=None,
        message_code=ECS80_MESSAGE_CODE,
        other_info_extras=b"",
        payload=payload,
        signature=None,
        signature_field="absent",
    )
    return sign_frame(frame, device_ds_private).encode()


def build_device_alert(
    *,
    device_eui: bytes,
    recipient_eui: bytes,
    counter: int,
    alert_code: int,
    at: datetime,
    device_ka_private: ec.EllipticCurvePrivateKey,
    recipient_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """A non-critical device alert, MAC'd for ``recipient_eui`` (the ACB, for the DCC)."""
    frame = GeneralSigning(
        cra_flag=CRA_ALERT,
        originator_counter=counter,
        originator_title=device_eui,
        recipient_title=recipient_eui,
        date_time=None,
        message_code=DEVICE_ALERT_MESSAGE_CODE,
        other_info_extras=b"",
        payload=_notification(counter, alert_code, at),
        signature=None,
        signature_field="absent",
    )
    return seal(frame, private_key=device_ka_private, peer_public_key=recipient_ka_public).encode()
