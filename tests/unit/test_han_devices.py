"""PPMID, HCALCS and IHD models: the few WAN use cases GBCS gives the Type 1 devices answered
as the RTDS vectors are, their joins signed both ways, and an IHD refusing every command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.critical import wrap_command
from dccsim.gbcs.crypto import sign_frame, verify_frame_signature, verify_mac
from dccsim.gbcs.frames import (
    CRA_COMMAND,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.gbcs.usecases import UseCase, build_command
from emulators.device import (
    ALERT_INTEGRITY_CHECK_FAILED,
    ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE,
    DeviceRefusal,
    RemoteParty,
)
from emulators.han import CS03A2, CS04AC, CS07, CS08, Type1Device
from emulators.hcalcs import Hcalcs
from emulators.ihd import Ihd
from emulators.ppmid import Ppmid

DEVICE_EUI = bytes.fromhex("00DB1234567890A4")
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
ACB_EUI = bytes.fromhex("90B3D51F30000002")


class Keys:
    def __init__(self) -> None:
        self.acb_ka = ec.generate_private_key(ec.SECP256R1())
        self.acb_ds = ec.generate_private_key(ec.SECP256R1())
        self.supplier_ka = ec.generate_private_key(ec.SECP256R1())
        self.supplier_ds = ec.generate_private_key(ec.SECP256R1())
        self.device_ka = ec.generate_private_key(ec.SECP256R1())
        self.device_ds = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def keys() -> Keys:
    return Keys()


def _device(kind: type[Type1Device], keys: Keys) -> Type1Device:
    return kind(
        eui=DEVICE_EUI,
        ka_private_key=keys.device_ka,
        ds_private_key=keys.device_ds,
        acb_ka_public=keys.acb_ka.public_key(),
        remote_parties={
            ACB_EUI: RemoteParty(ACB_EUI, keys.acb_ka.public_key(), keys.acb_ds.public_key()),
            SUPPLIER_EUI: RemoteParty(
                SUPPLIER_EUI, keys.supplier_ka.public_key(), keys.supplier_ds.public_key()
            ),
        },
        clock=lambda: datetime(2015, 1, 1, tzinfo=UTC),
    )


def _rtds(reference_dir: Path, name: str) -> GeneralSigning:
    message = decode_message(
        parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / name).read_text())
    )
    return message.general_signing if isinstance(message, GeneralCiphering) else message


def _maced(
    device: Type1Device, keys: Keys, use_case: UseCase, vector: GeneralSigning
) -> GeneralSigning:
    """``vector``'s command (payload, originator, counter, extras) sent MAC'd by the ACB."""
    command = build_command(
        use_case,
        originator_title=vector.originator_title,
        device_title=DEVICE_EUI,
        counter=vector.originator_counter,
        payload=vector.payload,
        acb_ka_private=keys.acb_ka,
        device_ka_public=keys.device_ka.public_key(),
        other_info_extras=vector.other_info_extras,
    )
    message = decode_message(device.handle(command))
    assert isinstance(message, GeneralCiphering)
    private = keys.acb_ka if vector.originator_title == ACB_EUI else keys.supplier_ka
    assert verify_mac(message, private_key=private, peer_public_key=keys.device_ka.public_key())
    return message.general_signing


def _signed(
    device: Type1Device,
    keys: Keys,
    use_case: UseCase,
    *,
    originator: bytes,
    counter: int,
    payload: bytes,
    extras: bytes = b"",
    signer: ec.EllipticCurvePrivateKey | None = None,
) -> GeneralSigning:
    """A join/unjoin command signed by ``signer`` (default: the originator's DS key), wrapped
    and MAC'd by the ACB; the reply must be signed by the device."""
    frame = GeneralSigning(
        cra_flag=CRA_COMMAND,
        originator_counter=counter,
        originator_title=originator,
        recipient_title=DEVICE_EUI,
        date_time=None,
        message_code=use_case.message_code,
        other_info_extras=extras,
        payload=payload,
        signature=None,
        signature_field="absent",
    )
    if signer is None:
        signer = keys.acb_ds if originator == ACB_EUI else keys.supplier_ds
    command = wrap_command(
        sign_frame(frame, signer),
        acb_ka_private=keys.acb_ka,
        device_ka_public=keys.device_ka.public_key(),
    )
    reply = decode_message(device.handle(command))
    assert isinstance(reply, GeneralSigning)
    assert verify_frame_signature(reply, keys.device_ds.public_key())
    return reply


@pytest.mark.parametrize("kind", [Ppmid, Hcalcs])
def test_firmware_version_read_answers_as_the_rtds(
    reference_dir: Path, keys: Keys, kind: type[Type1Device]
) -> None:
    reply = _maced(
        _device(kind, keys),
        keys,
        CS08,
        _rtds(reference_dir, "11.2_CS08/CS08_11.2_SUCCESS_COMMAND_GBCS.HEX"),
    )
    expected = _rtds(reference_dir, "11.2_CS08/CS08_11.2_SUCCESS_RESPONSE_GBCS.HEX")
    assert reply.payload == expected.payload
    assert reply.other_info_extras == expected.other_info_extras


def test_join_then_join_details_then_unjoin(reference_dir: Path, keys: Keys) -> None:
    ppmid = _device(Ppmid, keys)
    join = _rtds(
        reference_dir, "8.7.2_CS03A2NonCritical/CS03A2NonCritical_8.7.2_SUCCESS_COMMAND_GBCS.HEX"
    )
    reply = _signed(
        ppmid,
        keys,
        CS03A2,
        originator=ACB_EUI,
        counter=1300,
        payload=join.payload,
        extras=join.other_info_extras,
    )
    expected = _rtds(
        reference_dir, "8.7.2_CS03A2NonCritical/CS03A2NonCritical_8.7.2_SUCCESS_RESPONSE_GBCS.HEX"
    )
    assert reply.payload == expected.payload
    assert reply.other_info_extras == expected.other_info_extras
    meter = bytes.fromhex("00DB123456789093")
    assert ppmid.joined == {meter: 1}

    details = _maced(
        ppmid, keys, CS07, _rtds(reference_dir, "8.9_CS07/CS07_8.9_SUCCESS_COMMAND_GBCS.HEX")
    )
    assert details.payload == bytes.fromhex("3014020100300f300d0408") + meter + bytes.fromhex(
        "020101"
    )

    unjoin = bytes.fromhex("0408") + meter
    assert _signed(
        ppmid, keys, CS04AC, originator=ACB_EUI, counter=1302, payload=unjoin
    ).payload == bytes.fromhex("020100")
    assert ppmid.joined == {}
    # unjoining a device not joined fails
    assert _signed(
        ppmid, keys, CS04AC, originator=ACB_EUI, counter=1303, payload=unjoin
    ).payload == bytes.fromhex("020101")


def test_unjoin_answers_as_the_rtds(reference_dir: Path, keys: Keys) -> None:
    ppmid = _device(Ppmid, keys)
    ppmid.joined[bytes.fromhex("0102030405060708")] = 1
    vector = "8.8.2_CS04ACNonCritical/CS04ACNonCritical_8.8.2_SUCCESS"
    command = _rtds(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    reply = _signed(
        ppmid,
        keys,
        CS04AC,
        originator=ACB_EUI,
        counter=1300,
        payload=command.payload,
        extras=command.other_info_extras,
    )
    assert reply.payload == _rtds(reference_dir, f"{vector}_RESPONSE_GBCS.HEX").payload
    assert ppmid.joined == {}


def test_hcalcs_takes_the_suppliers_critical_join(reference_dir: Path, keys: Keys) -> None:
    hcalcs = _device(Hcalcs, keys)
    vector = "8.7.1_CS03A2Critical/CS03A2Critical_8.7.1_SUCCESS"
    command = _rtds(reference_dir, f"{vector}_PRECOMMAND_GBCS.HEX")
    reply = _signed(
        hcalcs, keys, CS03A2, originator=SUPPLIER_EUI, counter=1000, payload=command.payload
    )
    assert reply.payload == _rtds(reference_dir, f"{vector}_RESPONSE_GBCS.HEX").payload
    assert hcalcs.joined == {bytes.fromhex("00DB123456789093"): 1}


def test_a_join_not_signed_by_its_originator_is_refused(reference_dir: Path, keys: Keys) -> None:
    ppmid = _device(Ppmid, keys)
    join = _rtds(
        reference_dir, "8.7.2_CS03A2NonCritical/CS03A2NonCritical_8.7.2_SUCCESS_COMMAND_GBCS.HEX"
    )
    with pytest.raises(DeviceRefusal) as unsigned:
        _maced(ppmid, keys, CS03A2, join)
    assert unsigned.value.alert_code == ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE
    with pytest.raises(DeviceRefusal):
        _signed(
            ppmid,
            keys,
            CS03A2,
            originator=ACB_EUI,
            counter=1301,
            payload=join.payload,
            signer=keys.supplier_ds,
        )
    assert ppmid.joined == {} and ppmid.refusals == 2


def test_the_join_table_survives_a_power_cycle(keys: Keys) -> None:
    hcalcs = _device(Hcalcs, keys)
    hcalcs.joined = {b"\x01" * 8: 0, b"\x02" * 8: 1}
    state = msgpack.unpackb(msgpack.packb(hcalcs.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = _device(Hcalcs, keys)
    fresh.restore_nonvolatile_state(state)
    assert fresh.joined == hcalcs.joined


def test_an_ihd_refuses_every_wan_command(reference_dir: Path) -> None:
    ihd = Ihd(eui=bytes.fromhex("00DB1234567890A6"))
    command = parse_hex_or_base64(
        (
            reference_dir / "gbcs" / "rtds" / "11.2_CS08" / "CS08_11.2_SUCCESS_COMMAND_GBCS.HEX"
        ).read_text()
    )
    with pytest.raises(DeviceRefusal) as refused:
        ihd.handle(command)
    assert refused.value.alert_code == ALERT_INTEGRITY_CHECK_FAILED
    assert "Type 2" in refused.value.reason
