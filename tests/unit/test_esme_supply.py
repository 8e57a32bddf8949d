"""The ESME's load switch and clock: critical commands from Signed Pre-Commands, end to end
with fresh keys, and the response layouts against the RTDS vectors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.critical import build_pre_command, wrap_command
from dccsim.gbcs.crypto import ecdsa_sign_raw, verify_frame_signature, verify_mac
from dccsim.gbcs.dlms import AccessResponse, decode_apdu
from dccsim.gbcs.frames import (
    CRA_RESPONSE,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.gbcs.usecases import (
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
    build_access_response,
    build_command,
    build_signed_access_response,
)
from dccsim.pki.files import parse_private_key
from emulators.device import (
    ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE,
    DeviceRefusal,
    RemoteParty,
)
from emulators.esme import Esme, SupplyState

ESME_EUI = bytes.fromhex("00DB1234567890A0")
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
START = datetime(2024, 1, 1, tzinfo=UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Site:
    esme: Esme
    acb_ka: ec.EllipticCurvePrivateKey
    device_ka: ec.EllipticCurvePrivateKey
    device_ds: ec.EllipticCurvePrivateKey
    supplier_ka: ec.EllipticCurvePrivateKey
    supplier_ds: ec.EllipticCurvePrivateKey
    counter: int = 1000

    def critical(
        self,
        use_case: str,
        parameters: dict[str, object] | None = None,
        *,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        self.counter += 1
        pre = build_pre_command(
            USE_CASES_BY_NAME[use_case],
            originator_title=SUPPLIER_EUI,
            device_title=ESME_EUI,
            counter=self.counter,
            payload=command_payload(
                use_case, CommandContext(self.counter, SUPPLIER_EUI, ESME_EUI, parameters or {})
            ),
        )
        signature = ecdsa_sign_raw(signer or self.supplier_ds, pre[1:])
        signed = decode_message(pre + b"\x40" + signature)
        assert isinstance(signed, GeneralSigning)
        return wrap_command(
            signed, acb_ka_private=self.acb_ka, device_ka_public=self.device_ka.public_key()
        )

    def read_supply(self) -> int:
        self.counter += 1
        command = build_command(
            USE_CASES_BY_NAME["ECS45"],
            originator_title=SUPPLIER_EUI,
            device_title=ESME_EUI,
            counter=self.counter,
            payload=command_payload("ECS45", CommandContext(self.counter, SUPPLIER_EUI, ESME_EUI)),
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
        return apdu.data[0].integer

    def signed_response(self, data: bytes) -> AccessResponse:
        frame = decode_message(data)
        assert isinstance(frame, GeneralSigning)
        assert frame.cra_flag == CRA_RESPONSE and frame.date_time is None
        assert verify_frame_signature(frame, self.device_ds.public_key())
        apdu = decode_apdu(frame.payload)
        assert isinstance(apdu, AccessResponse)
        return apdu


@pytest.fixture
def site() -> Site:
    acb, device_ka, device_ds, supplier_ka, supplier_ds = (_key() for _ in range(5))
    esme = Esme(
        eui=ESME_EUI,
        ka_private_key=device_ka,
        ds_private_key=device_ds,
        acb_ka_public=acb.public_key(),
        remote_parties={
            SUPPLIER_EUI: RemoteParty(
                SUPPLIER_EUI, supplier_ka.public_key(), supplier_ds.public_key()
            )
        },
        clock=lambda: START,
    )
    return Site(esme, acb, device_ka, device_ds, supplier_ka, supplier_ds)


def test_disable_then_enable_supply(site: Site) -> None:
    assert site.read_supply() == SupplyState.CONNECTED
    response = site.signed_response(site.esme.handle(site.critical("ECS43")))
    assert [r.result for r in response.results] == [ACTION_SUCCESS]
    assert site.read_supply() == SupplyState.DISCONNECTED
    site.signed_response(site.esme.handle(site.critical("ECS42")))
    assert site.read_supply() == SupplyState.CONNECTED


def test_arm_then_consumer_closes(site: Site) -> None:
    site.esme.handle(site.critical("ECS43"))
    site.signed_response(site.esme.handle(site.critical("ECS44")))
    assert site.read_supply() == SupplyState.ARMED
    site.esme.consumer_closes_switch()
    assert site.read_supply() == SupplyState.CONNECTED


def test_critical_command_signed_by_someone_else_is_refused(site: Site) -> None:
    with pytest.raises(DeviceRefusal) as caught:
        site.esme.handle(site.critical("ECS43", signer=_key()))
    assert caught.value.alert_code == ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE
    assert site.read_supply() == SupplyState.CONNECTED


def test_critical_command_without_signature_is_refused(site: Site) -> None:
    site.counter += 1
    command = build_command(  # MAC'd, but not signed by the User
        USE_CASES_BY_NAME["ECS43"],
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=site.counter,
        payload=command_payload("ECS43", CommandContext(site.counter, SUPPLIER_EUI, ESME_EUI)),
        acb_ka_private=site.acb_ka,
        device_ka_public=site.device_ka.public_key(),
    )
    with pytest.raises(DeviceRefusal):
        site.esme.handle(command)
    assert site.read_supply() == SupplyState.CONNECTED


def test_refused_critical_command_does_not_consume_its_counter(site: Site) -> None:
    with pytest.raises(DeviceRefusal):
        site.esme.handle(site.critical("ECS43", signer=_key()))
    site.counter -= 1  # the same counter, now properly signed
    site.signed_response(site.esme.handle(site.critical("ECS43")))


def test_scripted_fault_on_critical_command_is_a_signed_failure(site: Site) -> None:
    site.esme.script_fault(USE_CASES_BY_NAME["ECS43"], 1)
    response = site.signed_response(site.esme.handle(site.critical("ECS43")))
    assert [r.result for r in response.results] == [1]
    assert site.read_supply() == SupplyState.CONNECTED


def test_set_clock_within_tolerance_adjusts_device_time(site: Site) -> None:
    target = START + timedelta(seconds=-30)
    response = site.signed_response(
        site.esme.handle(
            site.critical("ECS70", {"current_date_time": target, "tolerance_period": 60})
        )
    )
    assert [r.result for r in response.results] == [ACTION_SUCCESS] * 5
    assert response.data[3].octets == dlms.encode_date_time(target)
    assert site.esme.device_time(START) == target


def test_set_clock_outside_tolerance_leaves_clock(site: Site) -> None:
    target = START + timedelta(hours=2)
    response = site.signed_response(
        site.esme.handle(
            site.critical("ECS70", {"current_date_time": target, "tolerance_period": 60})
        )
    )
    assert response.results[2].result != ACTION_SUCCESS
    assert site.esme.device_time(START) == START


# -- response layouts against the RTDS vectors -------------------------------------------------


def _vector(reference_dir: Path, folder: str, name: str) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / folder / name).read_text())


def test_supply_status_response_reproduces_the_rtds_vector(reference_dir: Path) -> None:
    """Static ECDH is symmetric: the supplier's KA key and the ESME's certificate stand in
    for the ESME's unpublished KA key pair."""
    keystore = reference_dir / "gbcs" / "keystore"
    supplier = parse_private_key((keystore / "90b3d51f30010000-ka.key").read_bytes())
    assert isinstance(supplier, ec.EllipticCurvePrivateKey)
    device = x509.load_pem_x509_certificate(
        (keystore / "00db1234567890a0-ka.pem").read_bytes()
    ).public_key()
    assert isinstance(device, ec.EllipticCurvePublicKey)
    command = decode_message(
        _vector(reference_dir, "7.4_ECS45", "ECS45_7.4_SUCCESS_COMMAND_GBCS.HEX")
    )
    assert isinstance(command, GeneralCiphering)
    built = build_access_response(
        command=command,
        data=(dlms.enum(SupplyState.CONNECTED),),
        results=(ACTION_SUCCESS,),
        date_time=None,
        device_ka_private=supplier,
        recipient_ka_public=device,
    )
    assert built == _vector(reference_dir, "7.4_ECS45", "ECS45_7.4_SUCCESS_RESPONSE_GBCS.HEX")


@pytest.mark.parametrize(
    ("folder", "prefix"),
    [("7.1_ECS42", "ECS42_7.1"), ("7.2_ECS43", "ECS43_7.2"), ("7.3_ECS44", "ECS44_7.3")],
)
def test_signed_supply_response_matches_the_rtds_vector_but_for_the_signature(
    reference_dir: Path, folder: str, prefix: str
) -> None:
    command = decode_message(_vector(reference_dir, folder, f"{prefix}_SUCCESS_COMMAND_GBCS.HEX"))
    assert isinstance(command, GeneralCiphering)
    reference = decode_message(
        _vector(reference_dir, folder, f"{prefix}_SUCCESS_RESPONSE_GBCS.HEX")
    )
    assert isinstance(reference, GeneralSigning)
    built = decode_message(
        build_signed_access_response(
            command=command,
            data=(dlms.null(),),
            results=(ACTION_SUCCESS,),
            device_ds_private=_key(),  # the ESME's DS key is not published; ECDSA is randomised
        )
    )
    assert isinstance(built, GeneralSigning)
    assert built.signed_bytes() == reference.signed_bytes()
    assert built.signature_field == reference.signature_field == "signed"
