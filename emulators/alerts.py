"""GBCS alerts a device raises unsolicited: the frames that carry them, built by
``dccsim.gbcs.alerts`` (which also holds the alert codes as data, ``ALERT_CODES``).

Layouts follow the RTDS alert vectors (reference/gbcs/rtds): a DLMS Data Notification (``0F``,
long-invoke-id-and-priority, no date-time) whose body is a structure of the alert code
(long-unsigned), the alert's date-time (12-byte octet string) and the alert's own fields.
ECS80 (Supply Outage Restored, ``NA_ECS80``) is a critical alert: General Signing signed with the
device's DS key, to the Import Supplier. Other device alerts (``NA_DBCH08``) are MAC'd with the
device's KA key for the ACB.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.alerts import MESSAGE_CODE_NON_CRITICAL_ALERT, alert_notification, build_alert
from dccsim.gbcs.dlms import encode_date_time

ECS80_MESSAGE_CODE = 0x0067  # as in NA_ECS80/ECS80_NA_8F36_ALERT_GBCS.HEX
# Message code for a device alert outside any use case: GNCA, as NA_GNCA-DLMS carries it
DEVICE_ALERT_MESSAGE_CODE = MESSAGE_CODE_NON_CRITICAL_ALERT
OUTAGE_LONG_S = 180.0  # GBCS: a restoration after 3 minutes or more is 0x8F36


def restoration_alert_code(outage_seconds: float) -> int:
    """0x8F36 for an outage of 3 minutes or more, else 0x8F35."""
    return 0x8F36 if outage_seconds >= OUTAGE_LONG_S else 0x8F35


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
    payload = alert_notification(
        counter,
        code,
        encode_date_time(at),
        dlms.octet_string(encode_date_time(started)),
        dlms.octet_string(encode_date_time(restored)),
    )
    return build_alert(
        device_title=device_eui,
        recipient_title=supplier_eui,
        counter=counter,
        message_code=ECS80_MESSAGE_CODE,
        payload=payload,
        device_ds_private=device_ds_private,
    )


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
    return build_alert(
        device_title=device_eui,
        recipient_title=recipient_eui,
        counter=counter,
        message_code=DEVICE_ALERT_MESSAGE_CODE,
        payload=alert_notification(counter, alert_code, encode_date_time(at)),
        mac_private=device_ka_private,
        mac_peer_public=recipient_ka_public,
    )
