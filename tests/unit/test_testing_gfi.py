"""GFI: checking the RTDS vectors, generating device messages, and the two round trip."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import ImportRegisters
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.seed import DEMO_SUPPLIER_EUI, seed_demo
from services.testing import gfi
from tests.unit.gbcs_site import private_in, public_in

SUPPLIER = bytes.fromhex("90B3D51F30010000")
ESME = bytes.fromhex("00DB1234567890A0")
ECS17B = "4.1.1_ECS17b/ECS17b_4.1.1_{}_GBCS.HEX"
WHEN = dt.datetime(2026, 1, 7, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def ref_keys(reference_dir: Path) -> Path:
    return reference_dir / "gbcs" / "keystore"


def _vector(reference_dir: Path, relative: str) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / relative).read_text())


@pytest.fixture
def supplier_keys(ref_keys: Path) -> gfi.CheckKeys:
    """What the Supplier holds to check an RTDS ESME's messages to it."""
    return gfi.CheckKeys(
        recipient_ka_private=private_in(ref_keys, "90b3d51f30010000-ka"),
        device_ka_public=public_in(ref_keys, "00db1234567890a0-ka"),
        device_ds_public=public_in(ref_keys, "00db1234567890a0-ds"),
    )


def _verdicts(report: gfi.CheckReport) -> dict[str, str]:
    return {f.field: f.verdict for f in report.findings}


def test_rtds_ecs17b_response_checks_conformant(
    reference_dir: Path, supplier_keys: gfi.CheckKeys
) -> None:
    report = gfi.check_message(
        _vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_RESPONSE")),
        keys=supplier_keys,
        command=_vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_COMMAND")),
        expected_use_case="ECS17b",
    )
    assert report.conformant, report.to_json()
    verdicts = _verdicts(report)
    for name in ("mac", "counter_matches_command", "titles_swapped", "use_case", "content"):
        assert verdicts[name] == "ok"
    values = {f.field: f.value for f in report.findings}
    assert values["active_import"] == "10"
    assert values["originator_counter"].startswith("1000")


def test_rtds_alerts_verify_by_the_devices_signature(
    reference_dir: Path, supplier_keys: gfi.CheckKeys
) -> None:
    alerts = sorted((reference_dir / "gbcs" / "rtds").glob("*/ECS*_8F66_*ALERT*_GBCS.HEX"))
    assert alerts, "no RTDS 8F66 alerts found"
    for path in alerts:
        report = gfi.check_message(parse_hex_or_base64(path.read_text()), keys=supplier_keys)
        assert report.conformant, (path.name, report.to_json())
        assert _verdicts(report)["signature"] == "ok"


def test_a_flipped_bit_fails_the_mac(reference_dir: Path, supplier_keys: gfi.CheckKeys) -> None:
    data = bytearray(_vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_RESPONSE")))
    data[40] ^= 0x01  # inside the General Signing header's payload region
    report = gfi.check_message(bytes(data), keys=supplier_keys)
    assert not report.conformant
    assert _verdicts(report)["mac"] == "fail"


def test_the_wrong_recipient_key_fails_the_mac(reference_dir: Path, ref_keys: Path) -> None:
    keys = gfi.CheckKeys(
        recipient_ka_private=private_in(ref_keys, "90b3d51f30020000-ka"),
        device_ka_public=public_in(ref_keys, "00db1234567890a0-ka"),
    )
    report = gfi.check_message(
        _vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_RESPONSE")), keys=keys
    )
    assert _verdicts(report)["mac"] == "fail"


def test_counter_and_use_case_conformance_failures_are_reported(
    reference_dir: Path, supplier_keys: gfi.CheckKeys
) -> None:
    report = gfi.check_message(
        _vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_RESPONSE")),
        keys=supplier_keys,
        command=_vector(reference_dir, ECS17B.format("TWIN_SUCCESS_COMMAND")),
        expected_use_case="ECS70",
        last_counter=5000,
    )
    verdicts = _verdicts(report)
    assert verdicts["mac"] == "ok"
    assert verdicts["counter_matches_command"] == "fail"
    assert verdicts["titles_swapped"] == "fail"  # the twin command came from the NO
    assert verdicts["use_case"] == "fail"
    assert verdicts["counter_increases"] == "fail"
    assert not report.conformant


def test_a_command_is_not_what_a_device_emits(
    reference_dir: Path, supplier_keys: gfi.CheckKeys
) -> None:
    report = gfi.check_message(
        _vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_COMMAND")), keys=supplier_keys
    )
    assert _verdicts(report)["cra_flag"] == "fail"


def test_without_keys_authenticity_is_skipped_not_passed(reference_dir: Path) -> None:
    report = gfi.check_message(
        _vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_RESPONSE")), keys=gfi.CheckKeys()
    )
    assert _verdicts(report)["mac"] == "skipped"
    assert not report.failures
    assert not report.conformant


def test_garbage_is_reported_not_raised() -> None:
    report = gfi.check_message(b"\xdd\x00\x01", keys=gfi.CheckKeys())
    assert _verdicts(report)["frame"] == "fail"


def test_generated_ecs17b_response_equals_the_rtds_vector(
    reference_dir: Path, ref_keys: Path
) -> None:
    """GFI generation is byte-exact: the RTDS command, its registers and date-time give back
    the RTDS response (static ECDH is symmetric, so the Supplier's KA key and the device's
    certificate stand in for the device's key pair, which the data does not hold)."""
    reference = _vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_RESPONSE"))
    frame = decode_message(reference)
    command = decode_message(_vector(reference_dir, ECS17B.format("SINGLE_SUCCESS_COMMAND")))
    assert isinstance(frame, GeneralCiphering) and isinstance(command, GeneralCiphering)
    assert frame.general_signing.date_time is not None
    keys = gfi.GenerateKeys(
        device_ka_private=private_in(ref_keys, "90b3d51f30010000-ka"),
        device_ds_private=None,
        recipient_ka_public=public_in(ref_keys, "00db1234567890a0-ka"),
    )
    when = dt.datetime(2015, 1, 1, 0, 0, tzinfo=dt.UTC)
    assert encode_date_time(when) == frame.general_signing.date_time
    built = gfi.generate_ecs17b_response(
        device=ESME,
        recipient=SUPPLIER,
        counter=0,
        when=when,
        keys=keys,
        registers=ImportRegisters(active_import=10, reactive_import=10),
        command=command,
    )
    assert built == reference


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    seed_demo(home, premises=1)
    return home


def _device(home: Path) -> bytes:
    from dccsim import estate

    esme = next(d for p in estate.load(home) for d in p.devices if d.device_type.value == "ESME")
    return gfi.parse_eui_text(esme.eui)


def test_generate_then_check_with_keystore_keys(seeded_home: Path) -> None:
    store = KeyStore(seeded_home / "pki" / "keystore")
    device = _device(seeded_home)
    body = {
        "use_case": "ECS17b",
        "device": gfi.eui_text(device),
        "recipient": DEMO_SUPPLIER_EUI,
        "counter": "0x3E8",
        "active_import": 4242,
        "reactive_import": 7,
        "date_time": "2026-01-07T10:00:00+00:00",
    }
    data = gfi.generate_from_json(store, body, now=WHEN)
    report = gfi.check_from_json(store, {"message": data.hex(), "use_case": "ECS17b"})
    assert report.conformant, report.to_json()
    values = {f.field: f.value for f in report.findings}
    assert values["active_import"] == "4242"
    assert values["originator_counter"].startswith("1000")
    assert values["date_time"].startswith("2026-01-07T10:00:00")


def test_generated_error_response_reports_the_device_result(seeded_home: Path) -> None:
    store = KeyStore(seeded_home / "pki" / "keystore")
    body = {
        "device": gfi.eui_text(_device(seeded_home)),
        "recipient": DEMO_SUPPLIER_EUI,
        "counter": 7,
        "result": 1,
    }
    report = gfi.check_from_json(
        store, {"message": gfi.generate_from_json(store, body, now=WHEN).hex()}
    )
    values = {f.field: f.value for f in report.findings}
    assert values["device_result"] == "1"
    assert report.conformant  # a well-formed, authenticated error answer


def test_generated_alert_is_signed_with_the_devices_ds_key(seeded_home: Path) -> None:
    store = KeyStore(seeded_home / "pki" / "keystore")
    device = _device(seeded_home)
    body = {
        "use_case": "alert",
        "device": gfi.eui_text(device),
        "recipient": DEMO_SUPPLIER_EUI,
        "counter": 20,
        "alert_code": "0x8F35",
    }
    data = gfi.generate_from_json(store, body, now=WHEN)
    report = gfi.check_from_json(store, {"message": data.hex(), "last_counter": 19})
    assert report.conformant, report.to_json()
    verdicts = _verdicts(report)
    assert verdicts["signature"] == "ok" and verdicts["counter_increases"] == "ok"
    assert any("0x8F35" in f.detail for f in report.findings)
    ds = store.certificate(device, KeyUsage.DS).public_key()
    assert isinstance(ds, ec.EllipticCurvePublicKey)


def test_generate_without_the_device_key_says_so(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keystore")
    with pytest.raises(gfi.GfiError, match="KA key"):
        gfi.generate_from_json(
            store, {"device": "00-DC-C5-00-00-00-01-02", "recipient": DEMO_SUPPLIER_EUI}, now=WHEN
        )


@pytest.mark.parametrize(
    "body",
    [
        {"device": "nonsense", "recipient": DEMO_SUPPLIER_EUI},
        {"device": "00-DC-C5-00-00-00-01-02", "recipient": DEMO_SUPPLIER_EUI, "counter": "x"},
        {"use_case": "ECS99", "device": "00-DC-C5-00-00-00-01-02", "recipient": DEMO_SUPPLIER_EUI},
    ],
)
def test_bad_generate_parameters_are_refused(tmp_path: Path, body: dict[str, object]) -> None:
    with pytest.raises(gfi.GfiError):
        gfi.generate_from_json(KeyStore(tmp_path / "keystore"), body, now=WHEN)
