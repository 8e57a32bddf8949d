"""The GSME's daily read log (4.6.1, GCS16a): the RTDS command's 31 Get Snapshots answered as
the RTDS response is laid out (the snapshots in the window encrypted for the User, the rest
not found), each snapshot the register at that midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.cli import FolderKeys
from dccsim.gbcs.crypto import content_context, decrypt_content, verify_mac
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from dccsim.gbcs.zigbee import GbzComponent, decode_gbz
from emulators.device import RemoteParty
from emulators.gsme import GasLoadProfile, Gsme

GSME_EUI = bytes.fromhex("00DB1234567890A1")
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
NOW = datetime(2015, 1, 1, 9, 17, tzinfo=UTC)  # the RTDS GCS16a window opens 2014-12-30 00:00:04
VECTOR = "4.6.1_GCS16a/GCS16a_4.6.1_SUCCESS"
GBCS_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {k: ec.generate_private_key(ec.SECP256R1()) for k in ("acb", "device", "supplier")}


def _gsme(keys: dict[str, ec.EllipticCurvePrivateKey], installed: datetime) -> Gsme:
    return Gsme(
        eui=GSME_EUI,
        ka_private_key=keys["device"],
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys["acb"].public_key(),
        remote_parties={SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, keys["supplier"].public_key())},
        clock=lambda: NOW,
        load_profile=GasLoadProfile(start_litres=2_000_000, mean_litres_per_hour=140.0),
        epoch=installed,
    )


def _rtds(reference_dir: Path, kind: str) -> GeneralCiphering:
    text = (reference_dir / "gbcs" / "rtds" / f"{VECTOR}_{kind}_GBCS.HEX").read_text()
    message = decode_message(parse_hex_or_base64(text))
    assert isinstance(message, GeneralCiphering)
    return message


def _read(
    gsme: Gsme, keys: dict[str, ec.EllipticCurvePrivateKey], payload: bytes
) -> GeneralCiphering:
    command = build_command(
        USE_CASES_BY_NAME["GCS16a"],
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=1004,
        payload=payload,
        acb_ka_private=keys["acb"],
        device_ka_public=keys["device"].public_key(),
    )
    reply = decode_message(gsme.handle(command))
    assert isinstance(reply, GeneralCiphering)
    assert verify_mac(
        reply, private_key=keys["supplier"], peer_public_key=keys["device"].public_key()
    )
    return reply


def _shape(components: tuple[GbzComponent, ...]) -> list[tuple[int, int, int, int, bool]]:
    return [
        (c.control, c.cluster, c.header.frame_control, c.header.command, c.encrypted)
        for c in components
    ]


def _plaintext(
    frame: GeneralCiphering,
    component: GbzComponent,
    private_key: ec.EllipticCurvePrivateKey,
    peer: ec.EllipticCurvePublicKey,
) -> bytes:
    assert component.encrypted_content is not None
    context = content_context(frame.general_signing)
    return decrypt_content(
        component.encrypted_content,
        device_title=context.device_title,
        counter=context.counter,
        recipient_title=context.recipient_title,
        private_key=private_key,
        peer_public_key=peer,
    )


def test_the_daily_read_log_has_the_rtds_layout_and_the_midnight_registers(
    reference_dir: Path, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    gsme = _gsme(keys, NOW - timedelta(days=60))
    command = _rtds(reference_dir, "COMMAND").general_signing.payload
    reply = _read(gsme, keys, command)
    assert reply.general_signing.date_time is None
    mine = decode_gbz(reply.general_signing.payload).components
    rtds_frame = _rtds(reference_dir, "RESPONSE")
    theirs = decode_gbz(rtds_frame.general_signing.payload).components
    assert _shape(mine) == _shape(theirs)  # two snapshots in the window, 29 not found
    rtds_keys = FolderKeys(reference_dir / "gbcs" / "keystore")
    supplier = rtds_keys.ka_private(SUPPLIER_EUI)
    device = rtds_keys.ka_public(GSME_EUI)
    assert supplier is not None and device is not None
    for offset, midnight in enumerate(
        (datetime(2014, 12, 31, tzinfo=UTC), datetime(2015, 1, 1, tzinfo=UTC))
    ):
        plaintext = _plaintext(reply, mine[offset], keys["supplier"], keys["device"].public_key())
        assert len(plaintext) == len(_plaintext(rtds_frame, theirs[offset], supplier, device))
        litres = gsme.registers.litres(midnight).to_bytes(6, "little")
        assert plaintext[:4] == offset.to_bytes(4, "little")
        assert plaintext[4:8] == int((midnight - GBCS_EPOCH).total_seconds()).to_bytes(4, "little")
        assert plaintext[8:11] == bytes((2, 0, 1))  # found, command index, total commands
        assert plaintext[16:22] == litres and plaintext[23:29] == litres


def test_no_snapshot_before_the_meter_was_installed(
    reference_dir: Path, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    gsme = _gsme(keys, NOW - timedelta(hours=2))  # installed after the last midnight
    reply = _read(gsme, keys, _rtds(reference_dir, "COMMAND").general_signing.payload)
    components = decode_gbz(reply.general_signing.payload).components
    assert len(components) == 31
    assert {(c.header.command, c.payload.values["status"]) for c in components} == {(0x0B, 0x8B)}
