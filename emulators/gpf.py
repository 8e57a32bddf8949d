"""An emulated Gas Proxy Function (GPF): the always-powered half of the Communications Hub that
holds the GSME mirror and answers gas reads from it, and its GPF Device Log.

GBCS facts this model follows (PROTOCOL.md, the RTDS vectors in reference/gbcs/rtds):

- The GSME is battery-powered and sleeps; the GPF, powered by the hub, holds a copy of the
  GSME's data (the *GSME mirror*) that the GSME refreshes when it wakes. GBCS has the mirror
  updated at least every half hour; this model refreshes it on every half-hour boundary, so a
  read from the GPF reports the GSME's register as it stood at the last half hour.
- The RTDS vectors address GCS13a / GCS13c (consumption and TOU registers) and GCS60a (meter
  balance) to the GPF as well as to the GSME (the responses have the same structure,
  originated and MAC'd by the GPF), and GCS61 (daily consumption log) and GCS59 (restore the
  GPF Device Log) to the GPF alone.
- GCS59 comes from the ACB itself and replaces the GPF Device Log (the HAN devices allowed to
  read the mirror), answered with one result per device; the log is what the GPF keeps across
  a power cycle (``nonvolatile_state``), with its anti-replay counters. The mirror is derived
  from the GSME's load profile and the clock, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Unpack

from dccsim.gbcs.der import ASN1_SCHEMAS, decode_with, encode_with
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import CRA_COMMAND, CRA_RESPONSE, GeneralCiphering
from dccsim.gbcs.usecases import (
    ACTION_HARDWARE_FAULT,
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
    PayloadKind,
    UseCase,
    build_maced_response,
)
from dccsim.gbcs.zigbee import ZclValue
from emulators.device import DeviceKeys, RemoteParty, on
from emulators.gsme import (
    DAILY_CONSUMPTION,
    GBCS_EPOCH,
    HALF_HOUR,
    GasLoadProfile,
    GasRegisterReads,
    GasRegisters,
)

# What GCS59 needs that the shared use-case table lacks (message code as the RTDS vector).
GCS59 = UseCase(
    "GCS59", "Restore GPF Device Log", 0x008C, CRA_COMMAND, PayloadKind.ASN1, ("8.12.2",)
)
MIRROR_UPDATE_INTERVAL = HALF_HOUR
# Our choice, not a GBCS figure (as the CHF's): entries past it are answered hardware-fault.
GPF_DEVICE_LOG_CAPACITY = 16


class Gpf(GasRegisterReads):
    """A GPF answering gas reads from its GSME mirror (``mirror``: the GSME's register as a
    function of time) and keeping its device log (EUI-64 -> GBCS device type)."""

    def __init__(
        self,
        *,
        mirror: GasRegisters | None = None,
        attributes: Mapping[tuple[int, int], tuple[int, ZclValue]] | None = None,
        device_log_capacity: int = GPF_DEVICE_LOG_CAPACITY,
        **device: Unpack[DeviceKeys],
    ) -> None:
        """``mirror`` is the register of the GSME this GPF proxies (default: a GSME with the
        default profile installed now)."""
        super().__init__(attributes=attributes, **device)
        self.mirror = mirror if mirror is not None else GasRegisters(GasLoadProfile(), self.clock())
        self.device_log_capacity = device_log_capacity
        self.device_log: dict[bytes, int] = {}

    def gas_registers(self) -> GasRegisters:
        return self.mirror

    def register_time(self, now: datetime) -> datetime:
        """When the GSME last refreshed the mirror: the half-hour boundary at or before now."""
        step = int(MIRROR_UPDATE_INTERVAL.total_seconds())
        seconds = int((now - GBCS_EPOCH).total_seconds()) // step * step
        return GBCS_EPOCH + timedelta(seconds=seconds)

    # -- non-volatile state ---------------------------------------------------------------------

    def nonvolatile_state(self) -> dict[str, Any]:
        """The GPF Device Log as [EUI-64, device type] pairs."""
        return {"log": [[eui, kind] for eui, kind in self.device_log.items()]}

    def restore_nonvolatile_state(self, state: Mapping[str, Any]) -> None:
        self.device_log = {bytes(eui): int(kind) for eui, kind in state.get("log", [])}

    # -- handlers -------------------------------------------------------------------------------

    @on(USE_CASES_BY_NAME["GCS61"])
    def read_daily_consumption_log(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS61 (4.17): each whole day's consumption from the earliest sample time."""
        return self._sampled_data(DAILY_CONSUMPTION, command, remote_party, now)

    @on(GCS59)
    def restore_device_log(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """GCS59 (8.12.2): replace the device log with the command's devices; one result each
        (success, or hardware-fault past the log's capacity or for a malformed EUI-64)."""
        parsed = decode_with(
            ASN1_SCHEMAS[(GCS59.message_code, CRA_COMMAND)], command.general_signing.payload
        )
        if not isinstance(parsed, Mapping) or not isinstance(parsed.get("devices"), list):
            raise GbcsError("GCS59 command does not carry a device list")
        restored: dict[bytes, int] = {}
        results = []
        for device in parsed["devices"]:
            eui, kind = bytes(device["device_id"]), int(device["device_type"])
            fits = eui in restored or len(restored) < self.device_log_capacity
            if len(eui) == 8 and fits:
                restored[eui] = kind
                result = ACTION_SUCCESS
            else:
                result = ACTION_HARDWARE_FAULT
            results.append({"device": dict(device), "result": result})
        self.device_log = restored
        payload = encode_with(
            ASN1_SCHEMAS[(GCS59.message_code, CRA_RESPONSE)], {"results": results}
        )
        return build_maced_response(
            command=command,
            payload=payload,
            date_time=None,  # the RTDS GCS59 response carries no header date-time
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )
