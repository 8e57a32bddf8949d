"""What the HAN-joining GBCS devices share: their join table and the use cases on it.

A GBCS device that holds SMKI credentials (a meter, a PPMID, an HCALCS) keeps a list of the
other HAN devices it is joined with; the DCC changes and reads it with:

- CS03B (8.7.2) Method B join, of a device without SMKI credentials (an IHD) or the GPF to a
  meter: MAC'd, answered MAC'd with an INTEGER result (:class:`MeterJoins`, ESME and GSME);
- CS03A1 (8.7.1) Method A join, the meter initiating with a Type 1 device (PPMID, HCALCS),
  signed by the Supplier and answered signed (:class:`MethodAMeterJoins`, the ESME);
- CS03A2 / CS03C (8.7.1, 8.7.2) Method A / C join of a Type 1 device (PPMID, HCALCS): the other
  device's EUI-64, its GBCS device type and (Method A) its certificate; CS04AC (8.8.2) unjoin.
  These reach the device signed by their originator (the ACB, or a Supplier for the critical
  variants) even where GBCS calls them non-critical, and the device answers them signed with
  its DS key, as the RTDS CS03A2 / CS04AC vectors show;
- CS07 (8.9) read device join details: the joined devices with their types, MAC'd.

The join table is what the device keeps across a power cycle (``nonvolatile_state``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

from dccsim.gbcs import der
from dccsim.gbcs.commands import JOIN_DEVICE_TYPES
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import CRA_COMMAND, CRA_RESPONSE, GeneralCiphering
from dccsim.gbcs.usecases import (
    USE_CASES_BY_NAME,
    PayloadKind,
    UseCase,
    build_maced_response,
    build_signed_response,
)
from emulators.device import (
    ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE,
    DeviceKeys,
    GbcsDevice,
    RemoteParty,
    on,
)

# What the shared use-case table lacks (message codes as the RTDS vectors carry them).
CS04AC = UseCase(
    "CS04AC", "Method A or C Unjoin", 0x000F, CRA_COMMAND, PayloadKind.ASN1, ("8.8.2",)
)
CS07 = UseCase("CS07", "Read Device Join Details", 0x0013, CRA_COMMAND, PayloadKind.ASN1, ("8.9",))
CS03A1 = USE_CASES_BY_NAME["CS03A1"]
CS03A2 = USE_CASES_BY_NAME["CS03A2"]
CS03B = USE_CASES_BY_NAME["CS03B"]
CS03C = USE_CASES_BY_NAME["CS03C"]
CS08 = USE_CASES_BY_NAME["CS08"]

JOIN_SUCCESS = 0
# Our choice where GBCS's failure codes are not in the reference data: 1 for a device the
# table does not hold (unjoin) or cannot hold (join past the capacity).
JOIN_FAILURE = 1
# GBCS join response codes a meter answers with (the RTDS CS03A1 / CS03B error vectors)
JOIN_INVALID_METHOD_AND_ROLE = 2  # e.g. a PPMID asked to join by Method B
JOIN_INCOMPATIBLE_WITH_EXISTING_ENTRY = 3  # the device is joined already, as another type
JOIN_INVALID_OR_MISSING_CERTIFICATE = 11  # Method C without the other device's KA certificate
JOIN_CAPACITY = 16  # our choice, not a GBCS figure: room for every device of a premises
_JOIN_SCHEMA = der.ASN1_SCHEMAS[(CS03A2.message_code, CRA_COMMAND)]
_UNJOIN_SCHEMA = der.ASN1_SCHEMAS[(CS04AC.message_code, CRA_COMMAND)]
_JOIN_DETAILS_ENTRY = der.sequence("device", der.octets("device_id"), der.integer("device_type"))


class JoiningDevice(GbcsDevice):
    """A device with a join table (EUI-64 -> GBCS device type, in join order)."""

    def __init__(self, *, join_capacity: int = JOIN_CAPACITY, **device: Unpack[DeviceKeys]) -> None:
        super().__init__(**device)
        self.join_capacity = join_capacity
        self.joined: dict[bytes, int] = {}

    def nonvolatile_state(self) -> dict[str, Any]:
        """The join table as [EUI-64, device type] pairs."""
        return {"joined": [[eui, kind] for eui, kind in self.joined.items()]}

    def restore_nonvolatile_state(self, state: Mapping[str, Any]) -> None:
        self.joined = {bytes(eui): int(kind) for eui, kind in state.get("joined", [])}

    def _join_result(self, payload: bytes) -> int:
        """Add a join command's other device to the table; the result to answer with."""
        parsed = der.decode_with(_JOIN_SCHEMA, payload)
        if not isinstance(parsed, Mapping):
            raise GbcsError("join command is not a join_device sequence")
        other = bytes(parsed["other_device_entity_identifier"])
        kind = int(parsed["other_device_type"])
        if len(other) == 8 and (other in self.joined or len(self.joined) < self.join_capacity):
            self.joined[other] = kind
            return JOIN_SUCCESS
        return JOIN_FAILURE

    def _signed_result(self, command: GeneralCiphering, result: int) -> bytes:
        """A join or unjoin's INTEGER result, signed with the DS key (not MAC'd), as the RTDS
        CS03A2 / CS04AC responses."""
        return build_signed_response(
            command=command,
            payload=der.encode_with(der.integer("result"), result),
            date_time=None,
            device_ds_private=self.ds_private_key,
        )

    def _check_signed(self, command: GeneralCiphering, remote_party: RemoteParty) -> None:
        """Join and unjoin must carry their originator's signature."""
        if remote_party.ds_public_key is None or not verify_frame_signature(
            command.general_signing, remote_party.ds_public_key
        ):
            raise self._refuse(
                ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE,
                "join command not signed by its originator",
            )

    @on(CS07)
    def read_join_details(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """CS07 (8.9): result 0 and the joined devices (EUI-64, device type), MAC'd."""
        devices = [
            der.encode_with(_JOIN_DETAILS_ENTRY, {"device_id": eui, "device_type": kind})
            for eui, kind in self.joined.items()
        ]
        payload = der.encode_with(
            der.ASN1_SCHEMAS[(CS07.message_code, CRA_RESPONSE)],
            {"result": JOIN_SUCCESS, "devices": devices},
        )
        return build_maced_response(
            command=command,
            payload=payload,
            date_time=None,  # the RTDS CS07 response carries no header date-time
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )


DEFAULT_FIRMWARE_VERSION = bytes.fromhex("0123ABCD")  # as the RTDS CS08 response carries
_CS08_RESPONSE = der.ASN1_SCHEMAS[(CS08.message_code, CRA_RESPONSE)]


class Type1Device(JoiningDevice):
    """A GBCS Type 1 HAN device (PPMID, HCALCS): it holds SMKI credentials, so the DCC can
    reach it through the Communications Hub for the few use cases GBCS gives it — its joins
    (above) and CS08 firmware version — but it meters nothing."""

    firmware_version: bytes = DEFAULT_FIRMWARE_VERSION

    @on(CS03A2, CS03C)
    def join(self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any) -> bytes:
        """CS03A2 / CS03C: add the other device to the join table (re-joining updates its
        type); INTEGER result, signed."""
        self._check_signed(command, remote_party)
        result = self._join_result(command.general_signing.payload)
        return self._signed_result(command, result)

    @on(CS04AC)
    def unjoin(self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any) -> bytes:
        """CS04AC: remove the other device from the join table; INTEGER result, signed."""
        self._check_signed(command, remote_party)
        other = der.decode_with(_UNJOIN_SCHEMA, command.general_signing.payload)
        if not isinstance(other, bytes):
            raise GbcsError("unjoin command does not carry an EUI-64")
        result = JOIN_SUCCESS if self.joined.pop(other, None) is not None else JOIN_FAILURE
        return self._signed_result(command, result)

    @on(CS08)
    def read_firmware_version(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """CS08 (11.2): the firmware version and result 0, MAC'd (sent by the ACB)."""
        payload = der.encode_with(
            _CS08_RESPONSE, {"firmware_version": self.firmware_version, "result": 0}
        )
        return build_maced_response(
            command=command,
            payload=payload,
            date_time=None,  # the RTDS CS08 response carries no header date-time
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )


# which GBCS device types a meter joins by each method: Method A and C a Type 1 device
# (PPMID, HCALCS) with SMKI credentials, Method B a Type 2 device (IHD, CAD) or a GPF
_TYPE1 = frozenset({JOIN_DEVICE_TYPES["PPMID"], JOIN_DEVICE_TYPES["HCALCS"]})
METER_JOIN_METHODS: dict[int, frozenset[int]] = {
    CS03A1.message_code: _TYPE1,
    CS03C.message_code: _TYPE1,
    CS03B.message_code: frozenset({JOIN_DEVICE_TYPES["IHD"], JOIN_DEVICE_TYPES["GPF"]}),
}


class MeterJoins(JoiningDevice):
    """The joins every meter takes, ESME or GSME (GBCS's "CS" use cases, one implementation):

    - CS03C (8.7.1) Method C, the Type 1 device's KA certificate in the command, answered
      signed with the meter's DS key (the RTDS CS03CCritical vector, to a GSME);
    - CS03B (8.7.2) Method B, a Type 2 device (IHD, CAD) or the GPF; answered MAC'd.

    The result is 0 and the device is in the join table, 2 for a device type the method does
    not join, 3 for a device joined already as another type, 11 for Method C without a
    certificate, or 1 when the table is full. The joined devices are what CS07 reads.
    """

    def _meter_join_result(self, command: GeneralCiphering) -> int:
        header = command.general_signing
        parsed = der.decode_with(_JOIN_SCHEMA, header.payload)
        if not isinstance(parsed, Mapping):
            raise GbcsError("join command is not a join_device sequence")
        other = bytes(parsed["other_device_entity_identifier"])
        kind = int(parsed["other_device_type"])
        if kind not in METER_JOIN_METHODS[header.message_code]:
            return JOIN_INVALID_METHOD_AND_ROLE
        if self.joined.get(other, kind) != kind:
            return JOIN_INCOMPATIBLE_WITH_EXISTING_ENTRY
        if header.message_code == CS03C.message_code and not parsed.get("other_device_certificate"):
            return JOIN_INVALID_OR_MISSING_CERTIFICATE
        return self._join_result(header.payload)

    def _signed_join(self, command: GeneralCiphering, remote_party: RemoteParty) -> bytes:
        """A Type 1 device join: its originator's signature checked; INTEGER result, signed
        with the DS key."""
        self._check_signed(command, remote_party)
        result = self._meter_join_result(command)
        return self._signed_result(command, result)

    @on(CS03C)
    def join_method_c(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """CS03C: join a Type 1 device by its certificate; INTEGER result, signed."""
        return self._signed_join(command, remote_party)

    @on(CS03B)
    def join_type2(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """CS03B: join a Type 2 device; INTEGER result, MAC'd (not signed, as the RTDS)."""
        result = self._meter_join_result(command)
        return build_maced_response(
            command=command,
            payload=der.encode_with(der.integer("result"), result),
            date_time=None,
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )


class MethodAMeterJoins(MeterJoins):
    """A meter that also initiates Method A with a Type 1 device: the mains-powered ESME
    (the battery-powered GSME takes Method C instead, as ``CRITICAL_JOINS`` routes 8.7.1)."""

    @on(CS03A1)
    def join_method_a(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """CS03A1 (critical: the base checked the Supplier's signature too): join a Type 1
        device; INTEGER result, signed with the DS key."""
        return self._signed_join(command, remote_party)
