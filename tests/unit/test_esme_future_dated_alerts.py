"""The ESME's future-dated outcome alerts (0x8F66/0x8F67): raised when a held 1.1.1, 1.6, 11.3
or 6.15.1 runs, signed for the command's originator, naming what the RTDS alert vectors name."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from dccsim.gbcs import der
from dccsim.gbcs.alerts import (
    MESSAGE_CODE_FUTURE_DATED_CS02B,
    MESSAGE_CODE_FUTURE_DATED_CS06,
    MESSAGE_CODE_FUTURE_DATED_DLMS,
    describe_alert,
)
from dccsim.gbcs.commands import ROLE_SUPPLIER, asn1_time
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.frames import GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.pki.smki import KeyUsage
from emulators.device import RaisedAlert
from emulators.esme import DEFAULT_TARIFF, FUTURE_DATED_TARGETS, TrustAnchor
from tests.unit.esme_site import START, SUPPLIER_EUI, Site, fresh_key
from tests.unit.test_esme_credentials import Pki, _der, _pki

AT = START + dt.timedelta(hours=1)
PREPAYMENT: dict[str, object] = {
    "disablement_threshold": 500,
    "suspend_debt_disabled": True,
    "suspend_debt_emergency": False,
}


@pytest.fixture
def pki() -> Pki:
    return _pki()


@pytest.fixture
def credentials_site(pki: Pki) -> Site:
    """A Site whose ESME holds the Supplier's DS and KA cells and the test Root."""
    site = Site()
    site.esme.trust_anchors = {
        a.cell: a
        for a in (
            TrustAnchor.from_certificate(ROLE_SUPPLIER, 0, pki.certificate(key, usage))
            for key, usage in ((site.supplier_ds, KeyUsage.DS), (site.supplier_ka, KeyUsage.KA))
        )
    }
    site.esme.root_public_key = pki.root.certificate.public_key()  # type: ignore[assignment]
    return site


def _frame(site: Site, alert: RaisedAlert) -> GeneralSigning:
    frame = decode_message(alert.frame)
    assert isinstance(frame, GeneralSigning)
    assert frame.originator_title == site.esme.eui and frame.recipient_title == SUPPLIER_EUI
    assert alert.recipient == SUPPLIER_EUI
    assert verify_frame_signature(frame, site.device_ds.public_key())
    return frame


def _reference_targets(reference_dir: Path, folder: str) -> list[tuple[int, bytes, int]]:
    """The (class, instance, member) the RTDS 8F66 alerts of ``folder`` name, by counter."""
    alerts = []
    for path in (reference_dir / "gbcs" / "rtds" / folder).glob("*8F66*ALERT*"):
        described = describe_alert(parse_hex_or_base64(path.read_text()))
        fd = described["future_dated"]
        alerts.append(
            (
                described["counter"],
                fd["class_id"],
                bytes.fromhex(fd["instance_id"]),
                fd["member_id"],
            )
        )
    return [(c, i, m) for _, c, i, m in sorted(alerts)]


@pytest.mark.parametrize(
    ("use_case", "folder"),
    [("ECS01a", "1.1.1_ECS01a"), ("ECS02", "1.6_ECS02"), ("ECS03", "1.6_ECS03")],
)
def test_outcome_alert_targets_are_the_rtds_vectors(
    reference_dir: Path, use_case: str, folder: str
) -> None:
    assert list(FUTURE_DATED_TARGETS[use_case]) == _reference_targets(reference_dir, folder)


def test_a_held_tariff_raises_one_alert_per_part_when_it_runs() -> None:
    site = Site()
    tariff = dataclasses.replace(DEFAULT_TARIFF, standing_charge=777)
    site.critical("ECS01a", {"tariff": tariff, "execution_date_time": AT}, signer=site.supplier_ds)
    counter = site.counter
    assert site.esme.next_due() == AT and site.esme.take_alerts() == []
    site.esme.run_due(AT - dt.timedelta(seconds=1))
    assert site.esme.take_alerts() == [] and site.esme.tariff == DEFAULT_TARIFF
    site.esme.run_due(AT)
    alerts = site.esme.take_alerts()
    assert site.esme.tariff.standing_charge == 777 and site.esme.next_due() is None
    assert [a.alert_code for a in alerts] == [0x8F66] * 6
    named = []
    for alert in alerts:
        frame = _frame(site, alert)
        assert frame.message_code == MESSAGE_CODE_FUTURE_DATED_DLMS
        fd = describe_alert(alert.frame)["future_dated"]
        assert fd["message_code"] == f"{USE_CASES_BY_NAME['ECS01a'].message_code:#06x}"
        assert fd["originator_counter"] == counter
        assert describe_alert(alert.frame)["date_time"] == encode_date_time(AT).hex()
        named.append((fd["class_id"], bytes.fromhex(fd["instance_id"]), fd["member_id"]))
    assert named == list(FUTURE_DATED_TARGETS["ECS01a"])
    counters = [_frame(site, a).originator_counter for a in alerts]
    assert counters == sorted(set(counters))


def test_a_held_payment_mode_runs_on_the_next_command_with_its_alerts() -> None:
    site = Site()
    site.critical("ECS03", {**PREPAYMENT, "execution_date_time": AT}, signer=site.supplier_ds)
    site.now = AT + dt.timedelta(minutes=1)
    site.read("ECS45")  # a command after the due time: the meter first runs what is due
    assert [a.alert_code for a in site.esme.take_alerts()] == [0x8F66, 0x8F66]


def test_a_cancelled_payment_mode_raises_nothing() -> None:
    site = Site()
    site.critical("ECS02", {"execution_date_time": AT}, signer=site.supplier_ds)
    cancel = dt.datetime(3000, 12, 31, tzinfo=dt.UTC)
    site.critical("ECS02", {"execution_date_time": cancel}, signer=site.supplier_ds)
    site.esme.run_due(AT + dt.timedelta(days=1))
    assert site.esme.take_alerts() == [] and site.esme.next_due() is None


def test_a_held_firmware_activation_reports_its_result() -> None:
    site = Site()
    image_hash = site.esme.receive_image(b"image 2", b"\x02\x00\x00\x00")
    site.critical(
        "CS06", {"firmware_hash": image_hash, "execution_date_time": AT}, signer=site.supplier_ds
    )
    counter = site.counter
    site.esme.run_due(AT)
    (alert,) = site.esme.take_alerts()
    frame = _frame(site, alert)
    assert frame.message_code == MESSAGE_CODE_FUTURE_DATED_CS06
    fields: Any = der.decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=3).fields
    assert fields["alert_code"] == 0x8F66
    assert fields["execution_date_time"] == asn1_time(AT)
    assert fields["originator_counter"] == counter
    outcome: Any = der.decode_with(
        der.ASN1_SCHEMAS[(USE_CASES_BY_NAME["CS06"].message_code, 2)], fields["outcome"]
    )
    assert outcome == {"result": 0, "firmware_version": b"\x02\x00\x00\x00"}


def test_a_held_activation_of_an_unknown_image_fails() -> None:
    site = Site()
    site.critical(
        "CS06", {"firmware_hash": bytes(32), "execution_date_time": AT}, signer=site.supplier_ds
    )
    site.esme.run_due(AT)
    (alert,) = site.esme.take_alerts()
    assert alert.alert_code == 0x8F67
    assert describe_alert(alert.frame)["future_dated"]["outcome"] == "failed"


def test_a_held_credentials_update_reports_its_replacements(
    credentials_site: Site, pki: Pki
) -> None:
    site = credentials_site
    new_ds, new_ka = fresh_key(), fresh_key()
    parameters: dict[str, object] = {
        "digital_signing_certificate": _der(pki.certificate(new_ds, KeyUsage.DS)),
        "key_agreement_certificate": _der(pki.certificate(new_ka, KeyUsage.KA)),
        "certification_path_certificates": [_der(pki.issuing.certificate)],
        "floor_seq_number": 0,
        "apply_time_based_cpv_checks": True,
        "execution_date_time": AT,
    }
    site.critical("CS02bSupplierBySupplier", parameters, signer=site.supplier_ds)
    counter = site.counter
    site.esme.run_due(AT)
    (alert,) = site.esme.take_alerts()
    frame = _frame(site, alert)
    assert frame.message_code == MESSAGE_CODE_FUTURE_DATED_CS02B
    assert alert.alert_code == 0x8F66
    described = describe_alert(alert.frame)
    assert described["future_dated"]["originator_counter"] == counter
    party = site.esme.remote_parties[SUPPLIER_EUI]
    assert party.ka_public_key.public_numbers() == new_ka.public_key().public_numbers()
