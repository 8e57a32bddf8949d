"""An emulated gas smart meter (GSME): a ZCL attribute map and its GBZ use-case handlers.

The meter's readable state is data: ``attributes`` maps (cluster, attribute id) to a ZCL type
and value, and every GBZ Read Attributes command (GCS38 firmware version, GCS33 valve status and
the like) is answered from it, attribute by attribute, ``unsupported attribute`` for the rest.
Responses are GBZ payloads in General Ciphering, MAC'd by the device for the remote party.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_maced_response
from dccsim.gbcs.zigbee import (
    CONTROL_LAST,
    ENUM8,
    MESSAGING,
    METERING,
    OCTET_STRING,
    U16,
    GbzComponent,
    GbzPayload,
    ZclHeader,
    ZclPayload,
    ZclValue,
    decode_gbz,
)
from emulators.device import GbcsDevice, RemoteParty, on

ZCL_SUCCESS = 0x00
ZCL_UNSUPPORTED_ATTRIBUTE = 0x86
READ_ATTRIBUTES, READ_ATTRIBUTES_RESPONSE, DEFAULT_RESPONSE = 0x00, 0x01, 0x0B
FRAME_SERVER_TO_CLIENT = 0x08

# what a freshly installed RTDS-like GSME reports (values as the RTDS responses carry them)
DEFAULT_ATTRIBUTES: dict[tuple[int, int], tuple[int, ZclValue]] = {
    (METERING, 0x0206): (OCTET_STRING, bytes.fromhex("0123ABCD")),  # firmware version (GCS38)
    (METERING, 0x0205): (U16, 100),  # read by GCS33 with the valve status
    (METERING, 0x0014): (ENUM8, 2),  # supply status: 2 on (valve open)
}


def _response_frame_control(command: ZclHeader) -> int:
    """A response goes the other way: profile-wide, direction bit flipped."""
    return (command.frame_control & FRAME_SERVER_TO_CLIENT) ^ FRAME_SERVER_TO_CLIENT


class Gsme(GbcsDevice):
    """A GSME answering GBZ reads from its attribute map; keeps the last supplier message."""

    def __init__(
        self,
        *,
        eui: bytes,
        ka_private_key: ec.EllipticCurvePrivateKey,
        ds_private_key: ec.EllipticCurvePrivateKey,
        acb_ka_public: ec.EllipticCurvePublicKey,
        remote_parties: Mapping[bytes, RemoteParty],
        clock: Callable[[], datetime],
        attributes: Mapping[tuple[int, int], tuple[int, ZclValue]] | None = None,
    ) -> None:
        super().__init__(
            eui=eui,
            ka_private_key=ka_private_key,
            ds_private_key=ds_private_key,
            acb_ka_public=acb_ka_public,
            remote_parties=remote_parties,
            clock=clock,
        )
        self.attributes = dict(DEFAULT_ATTRIBUTES if attributes is None else attributes)
        self.supplier_message: str | None = None

    def _respond(
        self, command: GeneralCiphering, remote_party: RemoteParty, gbz: GbzPayload
    ) -> bytes:
        return build_maced_response(
            command=command,
            payload=gbz.encode(),
            date_time=None,  # the RTDS GBZ responses carry no header date-time
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

    @staticmethod
    def _components(command: GeneralCiphering) -> tuple[GbzComponent, ...]:
        payload = command.general_signing.payload
        if payload[:2] != b"\x01\x09":
            raise GbcsError("GSME command payload is not GBZ")
        return decode_gbz(payload).components

    def _read_attributes(self, command: GeneralCiphering, remote_party: RemoteParty) -> bytes:
        answers: list[GbzComponent] = []
        components = self._components(command)
        for index, component in enumerate(components):
            header = component.header
            if header.cluster_specific or header.command != READ_ATTRIBUTES:
                raise GbcsError("expected a GBZ Read Attributes command")
            records: list[dict[str, ZclValue]] = []
            for requested in component.payload.records:
                attribute = int(requested["attribute_id"])
                known = self.attributes.get((component.cluster, attribute))
                if known is None:
                    records.append({"attribute_id": attribute, "status": ZCL_UNSUPPORTED_ATTRIBUTE})
                else:
                    zcl_type, value = known
                    records.append(
                        {"attribute_id": attribute, "status": 0, "type": zcl_type, "value": value}
                    )
            answers.append(
                GbzComponent(
                    CONTROL_LAST if index == len(components) - 1 else 0,
                    component.cluster,
                    ZclHeader(
                        _response_frame_control(header), header.sequence, READ_ATTRIBUTES_RESPONSE
                    ),
                    ZclPayload("read-attributes-response", records=tuple(records)),
                )
            )
        return self._respond(command, remote_party, GbzPayload(len(answers), tuple(answers)))

    @on(USE_CASES_BY_NAME["GCS38"])
    def read_firmware_version(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """GCS38 (11.2): Read Attributes on the metering cluster's firmware version."""
        return self._read_attributes(command, remote_party)

    @on(USE_CASES_BY_NAME["GCS33"])
    def read_valve_status(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """GCS33 (7.4): Read Attributes on the supply (valve) status."""
        return self._read_attributes(command, remote_party)

    @on(USE_CASES_BY_NAME["GCS07"])
    def display_message(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """GCS07 (3.1): keep the Display Message text, answer with a ZCL Default Response."""
        (component,) = self._components(command)
        if component.cluster != MESSAGING or component.payload.layout != "display-message":
            raise GbcsError("GCS07 command is not a ZCL Display Message")
        message = component.payload.values["message"]
        self.supplier_message = message if isinstance(message, str) else None
        header = component.header
        answer = GbzComponent(
            CONTROL_LAST,
            MESSAGING,
            ZclHeader(_response_frame_control(header), header.sequence, DEFAULT_RESPONSE),
            ZclPayload("default-response", {"command_id": header.command, "status": ZCL_SUCCESS}),
        )
        return self._respond(command, remote_party, GbzPayload(1, (answer,)))
