"""An emulated Communications Hub Function (CHF): its device log (the HAN devices allowed to
join) and the GBCS use cases that change it.

The device log is the DLMS ZigBee network control object (class 104, 0-0:30.3.0.255):

- CCS01 (8.11 Add Device to CHF device log) calls ``register_device`` (method 1) with the new
  device's entry, then sets ``join_timeout`` (attribute 3) and ``enable_disable_joining``
  (attribute 2) so the device can join the HAN;
- CCS02 (8.11 Remove Device from CHF device log) calls ``unregister_device`` (method 2) with
  the device's EUI-64.

Both are answered as the RTDS vectors are: a DLMS Access Response with one null data item and
one result per request specification, no header date-time, MAC'd by the CHF for the ACB.
The log, the joining window and the anti-replay counters are what the CHF keeps across a power
cycle; ``nonvolatile_state`` / ``restore_nonvolatile_state`` carry the first two.

A change of the log (a device added or removed) raises CS14, Device Log Changed (0x8F12): a
DLMS Data Notification MAC'd for the ACB (message code 0x0018, laid out as the RTDS
NA_CS14 vector is) carrying the log as it now is, (EUI-64, install code) per device, and the
HAN's extended PAN ID, which the emulated CHF takes from its own EUI-64 (what a ZigBee
coordinator forming a network with no extended PAN ID configured uses).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

from dccsim.duis.requestid import DCC_EUI
from dccsim.gbcs import dlms
from dccsim.gbcs.alerts import alert_notification, build_alert
from dccsim.gbcs.dlms import (
    AccessKind,
    AccessRequest,
    DataType,
    RequestSpec,
    encode_date_time,
)
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.usecases import (
    ACTION_HARDWARE_FAULT,
    ACTION_OTHER_REASON,
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
    build_access_response,
)
from emulators.device import DeviceKeys, GbcsDevice, RaisedAlert, RemoteParty, on

ZIGBEE_NETWORK_CONTROL_CLASS = 104
ZIGBEE_NETWORK_CONTROL = bytes.fromhex("00001E0300FF")  # 0-0:30.3.0.255
REGISTER_DEVICE, UNREGISTER_DEVICE = 1, 2  # methods
ENABLE_DISABLE_JOINING, JOIN_TIMEOUT = 2, 3  # attributes
# Our choice, not a GBCS figure: room for every device of a premises several times over; a
# CCS01 beyond it is answered other-reason, as a real CHF with a full log refuses the entry.
DEVICE_LOG_CAPACITY = 16
INSTALL_CODE_LENGTH = 16

CCS01 = USE_CASES_BY_NAME["CCS01"]
CCS02 = USE_CASES_BY_NAME["CCS02"]
CS14_MESSAGE_CODE = 0x0018  # Device Addition To / Removal From HAN Whitelist Alerts
ALERT_DEVICE_LOG_CHANGED = 0x8F12


def device_log_alert_payload(
    counter: int, date_time: bytes, extended_pan_id: bytes, entries: Iterable[tuple[bytes, bytes]]
) -> bytes:
    """The CS14 (0x8F12) payload: the alert's date-time, then the log as at ``date_time``
    (12-byte DLMS date-time): the extended PAN ID and each device's (EUI-64, install code)."""
    log = dlms.structure(
        dlms.octet_string(date_time),
        dlms.octet_string(extended_pan_id),
        dlms.array(
            *(dlms.structure(dlms.octet_string(e), dlms.octet_string(c)) for e, c in entries)
        ),
    )
    return alert_notification(counter, ALERT_DEVICE_LOG_CHANGED, date_time, log)


@dataclass(frozen=True)
class DeviceLogEntry:
    """One HAN device the CHF lets join: its EUI-64, its device type as CCS01 gives it (an
    enum) and its ZigBee install code."""

    eui: bytes
    device_type: int
    install_code: bytes


def _is_network_control(spec: RequestSpec, kind: AccessKind, member: int) -> bool:
    return (
        spec.kind is kind
        and spec.class_id == ZIGBEE_NETWORK_CONTROL_CLASS
        and spec.instance_id == ZIGBEE_NETWORK_CONTROL
        and spec.member_id == member
    )


class Chf(GbcsDevice):
    """A CHF answering CCS01/CCS02 from its device log (EUI-64 -> entry, in join order)."""

    def __init__(
        self, *, device_log_capacity: int = DEVICE_LOG_CAPACITY, **device: Unpack[DeviceKeys]
    ) -> None:
        super().__init__(**device)
        self.device_log_capacity = device_log_capacity
        self.device_log: dict[bytes, DeviceLogEntry] = {}
        self.joining_enabled = False
        self.join_timeout_s = 0
        self.extended_pan_id = self.eui  # see the module docstring

    # -- non-volatile state (what the gateway keeps across eviction and restart) ------------

    def nonvolatile_state(self) -> dict[str, Any]:
        """The device log and joining window as plain msgpack-able values."""
        return {
            "log": [[e.eui, e.device_type, e.install_code] for e in self.device_log.values()],
            "joining": self.joining_enabled,
            "join_timeout_s": self.join_timeout_s,
        }

    def restore_nonvolatile_state(self, state: Mapping[str, Any]) -> None:
        """Undo ``nonvolatile_state``."""
        self.device_log = {
            bytes(eui): DeviceLogEntry(bytes(eui), int(kind), bytes(code))
            for eui, kind, code in state.get("log", [])
        }
        self.joining_enabled = bool(state.get("joining", False))
        self.join_timeout_s = int(state.get("join_timeout_s", 0))

    # -- handlers ---------------------------------------------------------------------------

    def _respond(
        self, command: GeneralCiphering, remote_party: RemoteParty, results: list[int]
    ) -> bytes:
        return build_access_response(
            command=command,
            data=tuple(dlms.null() for _ in results),
            results=tuple(results),
            date_time=None,  # the RTDS CCS01/CCS02 responses carry no header date-time
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

    def _register(self, entry: dlms.Data) -> int:
        if entry.type is not DataType.STRUCTURE:
            raise GbcsError("CCS01 register_device entry is not a structure")
        items = entry.items
        if (
            len(items) != 4
            or items[0].type is not DataType.OCTET_STRING
            or items[2].type is not DataType.OCTET_STRING
        ):
            raise GbcsError("CCS01 register_device entry is not (EUI, type, install code, ...)")
        eui, install_code = items[0].octets, items[2].octets
        if len(eui) != 8 or len(install_code) != INSTALL_CODE_LENGTH:
            return ACTION_OTHER_REASON
        if eui not in self.device_log and len(self.device_log) >= self.device_log_capacity:
            return ACTION_OTHER_REASON  # the log is full
        # re-adding a device replaces its entry (a new install code after a re-pair)
        self.device_log[eui] = DeviceLogEntry(eui, items[1].integer, install_code)
        return ACTION_SUCCESS

    @on(CCS01)
    def add_device(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """CCS01 (8.11): register the device, then open the joining window; one result each.
        A log that changed raises CS14."""
        if request is None or not request.specs or len(request.data) != len(request.specs):
            raise GbcsError("CCS01 command is not a DLMS Access Request")
        if not _is_network_control(request.specs[0], AccessKind.ACTION, REGISTER_DEVICE):
            raise GbcsError("CCS01 does not start with register_device")
        before = dict(self.device_log)
        added = self._register(request.data[0])
        results = [added]
        for spec, value in zip(request.specs[1:], request.data[1:], strict=True):
            results.append(self._set(spec, value, allowed=added == ACTION_SUCCESS))
        if self.device_log != before:
            self._log_changed(now)
        return self._respond(command, remote_party, results)

    def _log_changed(self, now: datetime) -> None:
        """Raise CS14 (0x8F12) with the log as it now is, MAC'd for the ACB."""
        counter = self.next_alert_counter(now)
        payload = device_log_alert_payload(
            counter,
            encode_date_time(now),
            self.extended_pan_id,
            ((e.eui, e.install_code) for e in self.device_log.values()),
        )
        frame = build_alert(
            device_title=self.eui,
            recipient_title=DCC_EUI,
            counter=counter,
            message_code=CS14_MESSAGE_CODE,
            payload=payload,
            mac_private=self.ka_private_key,
            mac_peer_public=self.acb_ka_public,
        )
        self.raised_alerts.append(RaisedAlert(ALERT_DEVICE_LOG_CHANGED, frame, DCC_EUI))

    def _set(self, spec: RequestSpec, value: dlms.Data, *, allowed: bool) -> int:
        """One attribute set of CCS01; the joining window opens only for a registered device."""
        if not allowed:
            return ACTION_OTHER_REASON
        if (
            _is_network_control(spec, AccessKind.SET, JOIN_TIMEOUT)
            and value.type is DataType.LONG_UNSIGNED
        ):
            self.join_timeout_s = value.integer
            return ACTION_SUCCESS
        if (
            _is_network_control(spec, AccessKind.SET, ENABLE_DISABLE_JOINING)
            and value.type is DataType.BOOLEAN
        ):
            self.joining_enabled = bool(value.value)
            return ACTION_SUCCESS
        return ACTION_OTHER_REASON  # not an attribute CCS01 sets, or the wrong type

    @on(CCS02)
    def remove_device(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """CCS02 (8.11): unregister the device (raising CS14); a device not in the log is
        answered with result 1, as the RTDS error response carries."""
        if (
            request is None
            or len(request.specs) != 1
            or len(request.data) != 1
            or not _is_network_control(request.specs[0], AccessKind.ACTION, UNREGISTER_DEVICE)
            or request.data[0].type is not DataType.OCTET_STRING
        ):
            raise GbcsError("CCS02 command is not unregister_device(EUI-64)")
        removed = self.device_log.pop(request.data[0].octets, None)
        if removed is not None:
            self._log_changed(now)
        return self._respond(
            command, remote_party, [ACTION_SUCCESS if removed else ACTION_HARDWARE_FAULT]
        )
