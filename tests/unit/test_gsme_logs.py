"""The GSME's event and security logs (6.13: CS10a, CS10b): held entries answered as the RTDS
responses, byte for byte; the security log records commands refused for authentication."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from dccsim.gbcs.zigbee import decode_gbz
from emulators.device import ALERT_FAILED_AUTHENTICATION_OTHER, DeviceRefusal, RemoteParty
from emulators.gsme import GENERAL_EVENT_LOG, SECURITY_LOG, GbzLogEntry, Gsme

GSME_EUI = bytes.fromhex("00DB1234567890A1")
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
NOW = datetime(2015, 1, 1, 9, tzinfo=UTC)


@pytest.fixture
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {k: ec.generate_private_key(ec.SECP256R1()) for k in ("acb", "device", "supplier")}


@pytest.fixture
def gsme(keys: dict[str, ec.EllipticCurvePrivateKey]) -> Gsme:
    return Gsme(
        eui=GSME_EUI,
        ka_private_key=keys["device"],
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys["acb"].public_key(),
        remote_parties={SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, keys["supplier"].public_key())},
        clock=lambda: NOW,
    )


def _payload(reference_dir: Path, name: str) -> bytes:
    text = (reference_dir / "gbcs" / "rtds" / name).read_text()
    message = decode_message(parse_hex_or_base64(text))
    frame = message.general_signing if isinstance(message, GeneralCiphering) else message
    return frame.payload


def _send(
    gsme: Gsme,
    keys: dict[str, ec.EllipticCurvePrivateKey],
    use_case: str,
    payload: bytes,
    counter: int,
) -> bytes:
    command = build_command(
        USE_CASES_BY_NAME[use_case],
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter,
        payload=payload,
        acb_ka_private=keys["acb"],
        device_ka_public=keys["device"].public_key(),
    )
    reply = decode_message(gsme.handle(command))
    assert isinstance(reply, GeneralCiphering) and reply.general_signing.date_time is None
    return reply.general_signing.payload


def _seed_from_rtds(gsme: Gsme, reference_dir: Path, vector: str, log_id: int) -> None:
    """The GSME holding the entries the RTDS response reports (the estate's way of filling
    a log), plus one before the period asked, which must not be answered."""
    (component,) = decode_gbz(_payload(reference_dir, vector)).components
    gsme.logs[log_id] = [GbzLogEntry(473299200 - 60, 0x8F1E)] + [
        GbzLogEntry(int(r["event_time"]), int(r["event_id"]), bytes(r["event_data"]))  # type: ignore[arg-type]
        for r in component.payload.records
    ]


@pytest.mark.parametrize(
    ("use_case", "folder", "log_id"),
    [("CS10a", "6.13_CS10a", GENERAL_EVENT_LOG), ("CS10b", "6.13_CS10b", SECURITY_LOG)],
)
def test_a_log_read_answers_the_held_entries_as_the_rtds(
    reference_dir: Path,
    gsme: Gsme,
    keys: dict[str, ec.EllipticCurvePrivateKey],
    use_case: str,
    folder: str,
    log_id: int,
) -> None:
    vector = f"{folder}/{use_case}_6.13_SUCCESS"
    _seed_from_rtds(gsme, reference_dir, f"{vector}_RESPONSE_GBCS.HEX", log_id)
    command = _payload(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    assert _send(gsme, keys, use_case, command, 1002) == _payload(
        reference_dir, f"{vector}_RESPONSE_GBCS.HEX"
    )


def test_a_period_without_entries_is_not_found_as_the_rtds(
    reference_dir: Path, gsme: Gsme, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    vector = "6.13_CS10a/CS10a_6.13"
    _seed_from_rtds(gsme, reference_dir, f"{vector}_SUCCESS_RESPONSE_GBCS.HEX", GENERAL_EVENT_LOG)
    command = _payload(reference_dir, f"{vector}_NOT_FOUND_COMMAND_GBCS.HEX")
    assert _send(gsme, keys, "CS10a", command, 1003) == _payload(
        reference_dir, f"{vector}_NOT_FOUND_RESPONSE_GBCS.HEX"
    )


def test_a_refused_replay_is_in_the_security_log_and_survives_a_power_cycle(
    reference_dir: Path, gsme: Gsme, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    read = _payload(reference_dir, "6.13_CS10b/CS10b_6.13_SUCCESS_COMMAND_GBCS.HEX")
    _send(gsme, keys, "CS10b", read, 1002)  # empty log: not found
    with pytest.raises(DeviceRefusal):
        _send(gsme, keys, "CS10b", read, 1002)  # the same counter again
    assert gsme.logs[SECURITY_LOG] == [
        GbzLogEntry(
            int((NOW - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds()),
            ALERT_FAILED_AUTHENTICATION_OTHER,
        )
    ]
    state = msgpack.unpackb(msgpack.packb(gsme.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = Gsme(
        eui=GSME_EUI,
        ka_private_key=keys["device"],
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys["acb"].public_key(),
        remote_parties={},
        clock=lambda: NOW,
    )
    fresh.restore_nonvolatile_state(state)
    assert fresh.logs == gsme.logs
