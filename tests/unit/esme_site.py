"""A test site for the ESME model: fresh keys for the ESME, the ACB and a Supplier, an
adjustable clock, and helpers that send it signed critical commands and MAC'd reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.critical import build_pre_command, wrap_command
from dccsim.gbcs.crypto import ecdsa_sign_raw, verify_frame_signature, verify_mac
from dccsim.gbcs.dlms import AccessResponse, Data, decode_apdu
from dccsim.gbcs.frames import CRA_RESPONSE, GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import ACTION_SUCCESS, USE_CASES_BY_NAME, build_command
from emulators.device import RemoteParty
from emulators.esme import Esme, LoadProfile
from tests.unit.gbcs_site import SUPPLIER_EUI as SUPPLIER_EUI
from tests.unit.gbcs_site import fresh_key as fresh_key

ESME_EUI = bytes.fromhex("00DB1234567890A0")
START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Site:
    acb_ka: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    device_ka: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    device_ds: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    supplier_ka: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    supplier_ds: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    now: datetime = START
    counter: int = 1000
    twin: bool = False
    esme: Esme = field(init=False)

    def __post_init__(self) -> None:
        self.esme = Esme(
            eui=ESME_EUI,
            ka_private_key=self.device_ka,
            ds_private_key=self.device_ds,
            acb_ka_public=self.acb_ka.public_key(),
            remote_parties={
                SUPPLIER_EUI: RemoteParty(
                    SUPPLIER_EUI, self.supplier_ka.public_key(), self.supplier_ds.public_key()
                )
            },
            clock=lambda: self.now,
            load_profile=LoadProfile(twin_element=self.twin),
        )

    def with_same_keys(self, counter: int | None = None) -> Self:
        """A new site (a fresh ESME, at START) with this one's keys and, unless given, its
        counter: the same meter after a power cycle, once its state is restored."""
        return type(self)(
            acb_ka=self.acb_ka,
            device_ka=self.device_ka,
            device_ds=self.device_ds,
            supplier_ka=self.supplier_ka,
            supplier_ds=self.supplier_ds,
            counter=self.counter if counter is None else counter,
        )

    def critical_command(
        self,
        use_case: str,
        parameters: dict[str, object] | None = None,
        *,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """The critical ``use_case``'s Pre-Command signed by ``signer`` (the Supplier's DS key
        by default), wrapped by the ACB."""
        context = CommandContext(self.counter + 1, SUPPLIER_EUI, ESME_EUI, parameters or {})
        return self.signed_command(use_case, command_payload(use_case, context), signer=signer)

    def signed_command(
        self, use_case: str, payload: bytes, *, signer: ec.EllipticCurvePrivateKey | None = None
    ) -> bytes:
        """``payload`` as the critical ``use_case``'s Pre-Command (the next counter), signed by
        ``signer`` (the Supplier's DS key by default), wrapped by the ACB."""
        self.counter += 1
        pre = build_pre_command(
            USE_CASES_BY_NAME[use_case],
            originator_title=SUPPLIER_EUI,
            device_title=ESME_EUI,
            counter=self.counter,
            payload=payload,
        )
        signed = decode_message(pre + b"\x40" + ecdsa_sign_raw(signer or self.supplier_ds, pre[1:]))
        assert isinstance(signed, GeneralSigning)
        return wrap_command(
            signed, acb_ka_private=self.acb_ka, device_ka_public=self.device_ka.public_key()
        )

    def critical(
        self, use_case: str, parameters: dict[str, object], *, signer: ec.EllipticCurvePrivateKey
    ) -> GeneralSigning:
        """Send the critical ``use_case`` signed by ``signer``; the ESME's response, its
        signature and date-time checked."""
        command = self.critical_command(use_case, parameters, signer=signer)
        frame = decode_message(self.esme.handle(command))
        assert isinstance(frame, GeneralSigning)
        assert frame.cra_flag == CRA_RESPONSE
        assert frame.date_time in (None, dlms.encode_date_time(self.now))  # ECS42-44: none
        assert verify_frame_signature(frame, self.device_ds.public_key())
        return frame

    def critical_access_response(
        self, use_case: str, parameters: dict[str, object], *, signer: ec.EllipticCurvePrivateKey
    ) -> AccessResponse:
        apdu = decode_apdu(self.critical(use_case, parameters, signer=signer).payload)
        assert isinstance(apdu, AccessResponse)
        return apdu

    def read_response(self, use_case: str) -> AccessResponse:
        """The non-critical DLMS read ``use_case``, MAC'd by the ACB: the ESME's Access
        Response, its MAC checked with the Supplier's KA key."""
        self.counter += 1
        command = build_command(
            USE_CASES_BY_NAME[use_case],
            originator_title=SUPPLIER_EUI,
            device_title=ESME_EUI,
            counter=self.counter,
            payload=command_payload(use_case, CommandContext(self.counter, SUPPLIER_EUI, ESME_EUI)),
            acb_ka_private=self.acb_ka,
            device_ka_public=self.device_ka.public_key(),
        )
        response = decode_message(self.esme.handle(command))
        assert isinstance(response, GeneralCiphering)
        assert verify_mac(
            response, private_key=self.supplier_ka, peer_public_key=self.device_ka.public_key()
        )
        apdu = decode_apdu(response.general_signing.payload)
        assert isinstance(apdu, AccessResponse)
        return apdu

    def read(self, use_case: str) -> Data:
        """The non-critical DLMS read ``use_case``: its one data item (MAC checked)."""
        apdu = self.read_response(use_case)
        assert apdu.results[0].result == ACTION_SUCCESS
        return apdu.data[0]
