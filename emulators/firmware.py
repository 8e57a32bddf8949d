"""A meter's firmware images and CS06 Activate Firmware, device-independent.

GBCS's CS06 (11.3) is one use case for the ESME and the GSME (and the other SMKI devices): the
DCC distributes an image over the air (11.1; here :meth:`FirmwareImages.receive_image`), and a
signed CS06 names it by its SHA-256 to run it now, at an execution date-time (then a 0x8F66 /
0x8F67 outcome alert with the result and the version running) or, with 9999-12-31, to cancel
a pending activation. :class:`FirmwareImages` is that one implementation; a model mixes it in,
says where its running version lives (``firmware_version``: an attribute, or a property over
its register map) and calls ``firmware_state`` / ``restore_firmware_state`` and
``firmware_due`` / ``run_due_firmware`` from its non-volatile state and held work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dccsim.gbcs import der
from dccsim.gbcs.alerts import (
    ALERT_FUTURE_DATED_EXECUTED,
    ALERT_FUTURE_DATED_FAILED,
    MESSAGE_CODE_FUTURE_DATED_CS06,
)
from dccsim.gbcs.commands import ASN1_CANCELLATION_TIME, ASN1_LAYOUTS, asn1_time, parse_asn1_time
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_signed_response
from emulators.device import GbcsDevice, on

CS06 = USE_CASES_BY_NAME["CS06"]
# CS06 results: the image was activated, or not (no image with that hash was received)
ACTIVATION_SUCCESS, ACTIVATION_FAILURE = 0, 1
FUTURE_DATED_ACKNOWLEDGEMENT = b"\x05\x00"  # the DER NULL a future-dated CS06 is answered with
ACTIVATION = "activation"  # the held command's entry in ``future_dated``


class FirmwareImages(GbcsDevice):
    """Received firmware images (SHA-256 -> the version each holds), a pending activation and
    CS06 (see the module docstring). ``firmware_version`` is the version running."""

    firmware_version: bytes

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.received_images: dict[bytes, bytes] = {}
        # a future-dated CS06's (image hash, execution date-time on the device's clock)
        self.pending_activation: tuple[bytes, datetime] | None = None

    def receive_image(self, image: bytes, version: bytes) -> bytes:
        """An image distributed to the device (over the air, 11.1), kept until activated;
        returns its SHA-256, the hash CS06 names it by."""
        image_hash = hashlib.sha256(image).digest()
        self.received_images[image_hash] = version
        return image_hash

    def activate_firmware(self, image_hash: bytes) -> bool:
        """Run the received image with SHA-256 ``image_hash``; False if there is none."""
        version = self.received_images.get(image_hash)
        if version is None:
            return False
        self.firmware_version = version
        return True

    # -- non-volatile state ---------------------------------------------------------------------

    def firmware_state(self) -> dict[str, Any]:
        """The running version, the received images and a pending activation."""
        activation = None
        if self.pending_activation is not None:
            image_hash, when = self.pending_activation
            activation = {"hash": image_hash, "at": when.isoformat()}
        return {
            "firmware_version": self.firmware_version,
            "received_images": dict(self.received_images),
            "pending_activation": activation,
        }

    def restore_firmware_state(self, state: Mapping[str, Any]) -> None:
        """Undo ``firmware_state``; an absent key keeps what the model was built with."""
        if "firmware_version" in state:
            self.firmware_version = bytes(state["firmware_version"])
        if "received_images" in state:
            self.received_images = {bytes(h): bytes(v) for h, v in state["received_images"].items()}
        if "pending_activation" in state:
            activation = state["pending_activation"]
            self.pending_activation = (
                None
                if activation is None
                else (bytes(activation["hash"]), datetime.fromisoformat(activation["at"]))
            )

    # -- held work ------------------------------------------------------------------------------

    def firmware_due(self) -> datetime | None:
        """When (on the device's clock) the pending activation falls due."""
        return None if self.pending_activation is None else self.pending_activation[1]

    def run_due_firmware(self, now: datetime) -> None:
        """Activate the pending image once the device clock reaches its time; its alert."""
        if self.pending_activation is None:
            return
        image_hash, when = self.pending_activation
        if self.device_time(now) >= when:
            self.pending_activation = None
            self._firmware_outcome(self.activate_firmware(image_hash), when, now)

    def _firmware_outcome(self, activated: bool, when: datetime, now: datetime) -> None:
        """The CS06 outcome alert: the result and the version now running."""
        held = self.future_dated.pop(ACTIVATION, None)
        if held is None:
            return
        recipient, command_counter, _ = held
        code = ALERT_FUTURE_DATED_EXECUTED if activated else ALERT_FUTURE_DATED_FAILED
        outcome = der.encode_with(
            der.ASN1_SCHEMAS[(CS06.message_code, 2)],
            {
                "result": ACTIVATION_SUCCESS if activated else ACTIVATION_FAILURE,
                "firmware_version": self.firmware_version,
            },
        )
        counter = self.next_alert_counter(now)
        payload = der.encode_with(
            der.ASN1_SCHEMAS[(MESSAGE_CODE_FUTURE_DATED_CS06, 3)],
            {
                "alert_code": code,
                "execution_date_time": asn1_time(when),
                "originator_counter": command_counter,
                "outcome": outcome,
            },
        )
        self._raise_alert(
            code, recipient, counter, MESSAGE_CODE_FUTURE_DATED_CS06, payload, now=now
        )

    # -- the use case ---------------------------------------------------------------------------

    @on(CS06)
    def activate_firmware_command(
        self, *, command: GeneralCiphering, now: datetime, **_: Any
    ) -> bytes:
        """CS06 (11.3): activate the received image with the command's hash now (answer: the
        result and the running version), at its execution date-time, or (9999-12-31) cancel a
        pending activation (answer: a DER NULL). The counter inside the payload must be the
        command's."""
        header = command.general_signing
        fields = der.decode_with(ASN1_LAYOUTS["CS06"].schema, header.payload)
        assert isinstance(fields, Mapping)
        if fields["originator_counter"] != header.originator_counter:
            raise GbcsError("CS06 payload counter is not the command's")
        image_hash = fields["manufacturer_image_hash"]
        when = fields.get("execution_date_time")
        date_time = encode_date_time(self.device_time(now))
        if when is None:
            result = (
                ACTIVATION_SUCCESS if self.activate_firmware(image_hash) else ACTIVATION_FAILURE
            )
            payload = der.encode_with(
                der.ASN1_SCHEMAS[(header.message_code, 2)],
                {"result": result, "firmware_version": self.firmware_version},
            )
        else:
            if when == ASN1_CANCELLATION_TIME:
                self.pending_activation = None
                self.future_dated.pop(ACTIVATION, None)
            else:
                self.pending_activation = (image_hash, parse_asn1_time(str(when)))
                self.future_dated[ACTIVATION] = (
                    header.originator_title,
                    header.originator_counter,
                    "CS06",
                )
            payload = FUTURE_DATED_ACKNOWLEDGEMENT
        return build_signed_response(
            command=command,
            payload=payload,
            date_time=date_time,
            device_ds_private=self.ds_private_key,
        )
