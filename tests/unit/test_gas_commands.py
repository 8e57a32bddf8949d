"""Gas Service Requests to GBZ commands: DUIS templates (reference/duis/templates) in, the RTDS
vectors' GBCS out, byte for byte, through the transformation table's GSME and GPF rows."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from dccsim.duis.xml import parse_service_request
from dccsim.gbcs.commands import (
    ASN1_LAYOUTS,
    GBZ_LAYOUTS,
    CommandContext,
    GasTariff,
    TariffDate,
    command_payload,
)
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import PayloadKind
from dccsim.gbcs.zigbee import decode_gbz
from services.transform.srvs import (
    SR_NS,
    TRANSFORMATIONS,
    build_command,
    lookup,
    user_extras,
)
from tests.unit.gbcs_site import (
    assert_rtds_command_wraps,
    build_rtds_command,
    checked_transformation,
    duis_template,
    keystore_private,
    keystore_public,
    request_pre_command,
)

# (template, device type the template targets, RTDS folder, vector prefix)
GAS_READS = [
    ("GCS13a_4.1.1_SUCCESS_RELIABLE_GSME", "GPF", "4.1.1_GCS13a", None),
    ("GCS13a_4.1.1_SUCCESS_RELIABLE_GPF", "GPF", "4.1.1_GCS13a", None),
    ("GCS13a_4.1.1_SUCCESS_UNRELIABLE", "GSME", "4.1.1_GCS13a", None),
    ("GCS13c_4.1.2_SUCCESS_RELIABLE_GSME", "GPF", "4.1.2_GCS13c", None),
    ("GCS13c_4.1.2_SUCCESS_RELIABLE_GPF", "GPF", "4.1.2_GCS13c", None),
    ("GCS60a_4.18_SUCCESS_RELIABLE_GSME", "GPF", "4.18_GCS60a", None),
    ("GCS60a_4.18_SUCCESS_UNRELIABLE_GSME", "GSME", "4.18_GCS60a", None),
    ("GCS17_4.8.1_SUCCESS", "GSME", "4.8.1_GCS17", None),
    ("GCS38_11.2_SUCCESS", "GSME", "11.2_GCS38", None),
    ("GCS33_7.4_SUCCESS", "GSME", "7.4_GCS33", None),
    ("GCS21j_6.2.9_SUCCESS", "GSME", "6.2.9_GCS21j", None),
    ("GCS07_3.1_SUCCESS", "GSME", "3.1_GCS07", None),
    ("CS10a_6.13_SUCCESS", "GSME", "6.13_CS10a", None),
    ("GCS16a_4.6.1_SUCCESS", "GSME", "4.6.1_GCS16a", None),
    ("CS10b_6.13_SUCCESS", "GSME", "6.13_CS10b", None),
]
RTDS_SUPPLIER = "90b3d51f30010000"
GBCS_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# Critical gas SRVs: (template, device type, RTDS folder). Each CV 4 template becomes the RTDS
# Pre-Command, and the RTDS command is that Pre-Command signed by the Supplier, ACB-wrapped.
GAS_CRITICAL = [
    ("GCS32_7.2_SUCCESS", "GSME", "7.2_GCS32"),
    ("GCS39_7.3_SUCCESS", "GSME", "7.3_GCS39"),
    ("GCS28_6.11_SUCCESS", "GSME", "6.11_GCS28"),
    ("GCS28Commission_8.1.1_SUCCESS", "GSME", "8.1.1_GCS28Commission"),
    ("GCS02_1.6_IMMEDIATE_SUCCESS", "GSME", "1.6_GCS02"),
    ("GCS02_1.6_FUTURE_DATED_SUCCESS", "GSME", "1.6_GCS02"),
    ("GCS02_1.6_CANCELLATION_SUCCESS", "GSME", "1.6_GCS02"),
    ("GCS03_1.6_IMMEDIATE_SUCCESS", "GSME", "1.6_GCS03"),
    ("GCS03_1.6_FUTURE_DATED_SUCCESS", "GSME", "1.6_GCS03"),
    ("GCS03_1.6_CANCELLATION_SUCCESS", "GSME", "1.6_GCS03"),
]
# every RTDS gas command was issued at 2015-01-01T00:00:00Z: its ZCL Issuer Event ID
RTDS_ISSUED_AT = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)


def _vector(reference_dir: Path, folder: str, prefix: str, kind: str = "COMMAND") -> bytes:
    path = reference_dir / "gbcs" / "rtds" / folder / f"{prefix}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


def _certificate(reference_dir: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        (reference_dir / "gbcs" / "keystore" / f"{name}.pem").read_bytes()
    )


@pytest.mark.parametrize(("template", "device_type", "folder", "_unused"), GAS_READS)
def test_gas_template_becomes_the_rtds_command(
    reference_dir: Path, template: str, device_type: str, folder: str, _unused: None
) -> None:
    request = duis_template(reference_dir, f"{template}_REQUEST_DUIS.XML")
    transformation = checked_transformation(request, device_type, critical=False)
    # what commands that change state use
    built = build_rtds_command(
        reference_dir, transformation, request, {"issued_at": RTDS_ISSUED_AT}
    )
    assert built == _vector(reference_dir, folder, template)


@pytest.mark.parametrize(("template", "device_type", "folder"), GAS_CRITICAL)
def test_critical_gas_template_becomes_the_rtds_pre_command_and_command(
    reference_dir: Path, template: str, device_type: str, folder: str
) -> None:
    request = duis_template(reference_dir, f"{template}_REQUEST_DUIS.XML")
    transformation = checked_transformation(request, device_type, critical=True)
    rid = request.request_id
    pre_command = request_pre_command(transformation, request, {"issued_at": RTDS_ISSUED_AT})
    assert pre_command == _vector(reference_dir, folder, template, "PRECOMMAND")
    assert_rtds_command_wraps(
        reference_dir,
        _vector(reference_dir, folder, template),
        pre_command,
        originator=rid.originator,
        target=rid.target,
    )


def test_issuer_event_id_is_the_time_of_transformation() -> None:
    transformation = lookup("7.2", "GSME")
    assert transformation is not None
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    payload = transformation.payload(originator_title=bytes(8), device_title=bytes(8), counter=1)
    (component,) = decode_gbz(payload).components
    issued = GBCS_EPOCH + dt.timedelta(seconds=int(component.payload.values["issuer_event_id"]))
    assert before <= issued <= dt.datetime.now(dt.UTC)


def _daily_log_body(start: str, end: str, certificate: bytes | None) -> etree._Element:
    credentials = (
        b""
        if certificate is None
        else b"<sr:KAPublicSecurityCredentials>"
        + base64.b64encode(certificate)
        + b"</sr:KAPublicSecurityCredentials>"
    )
    return etree.fromstring(
        f'<sr:RetrieveDailyConsumptionLog xmlns:sr="{SR_NS}"><sr:ReadLogPeriod>'
        f"<sr:StartDateTime>{start}</sr:StartDateTime><sr:EndDateTime>{end}</sr:EndDateTime>"
        "</sr:ReadLogPeriod>".encode()
        + credentials
        + b"</sr:RetrieveDailyConsumptionLog>"
    )


def test_daily_consumption_log_to_a_gpf_is_the_rtds_acb_command(reference_dir: Path) -> None:
    """GCS61 goes from the ACB (its own counter) for the User: User EUI, DUIS counter and the
    User's KA certificate (KAPublicSecurityCredentials) in Other Information. The RTDS SUCCESS
    command asks 731 days from 2014-12-22 with the reference Supplier's certificate (the
    template's period and certificate are another test's), so the body here carries those."""
    transformation = lookup("4.17", "GPF")
    assert transformation is not None and transformation.acb_originated
    certificate = _certificate(reference_dir, f"{RTDS_SUPPLIER}-ka").public_bytes(Encoding.DER)
    body = _daily_log_body("2014-12-22T00:00:00Z", "2016-12-21T00:00:00Z", certificate)
    vector = decode_message(_vector(reference_dir, "4.17_GCS61", "GCS61_4.17_SUCCESS"))
    assert isinstance(vector, GeneralCiphering)
    gpf = vector.general_signing.recipient_title
    extras = user_extras(bytes.fromhex(RTDS_SUPPLIER), 1003)
    extras += transformation.user_certificate_der(body)
    built = build_command(
        transformation,
        originator_title=bytes.fromhex("90b3d51f30000002"),
        device_title=gpf,
        counter=1301,
        acb_ka_private=keystore_private(reference_dir),
        device_ka_public=keystore_public(reference_dir, f"{gpf.hex()}-ka"),
        body=body,
        other_info_extras=extras,
    )
    assert built == vector.encode()


def test_daily_consumption_log_template_asks_each_day_of_its_period(reference_dir: Path) -> None:
    """The GCS61 template's 10 days, both ends included: 11 daily samples from the start."""
    template = reference_dir / "duis" / "templates" / "GCS61_4.17_SUCCESS_REQUEST_DUIS.XML"
    request = parse_service_request(template.read_bytes())
    transformation = lookup("4.17", "GPF")
    assert transformation is not None
    rid = request.request_id
    payload = transformation.payload(
        originator_title=rid.originator, device_title=rid.target, counter=1, body=request.body
    )
    (component,) = decode_gbz(payload).components
    values = component.payload.values
    assert component.payload.layout == "get-sampled-data"
    assert values["sample_id"] == 1 and values["number_of_samples"] == 11
    start = dt.datetime(2014, 12, 10, tzinfo=dt.UTC) - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert values["earliest_sample_time"] == int(start.total_seconds())
    # the certificate the template carries is what the ACB passes on
    der = transformation.user_certificate_der(request.body)
    assert x509.load_der_x509_certificate(der).public_bytes(Encoding.DER) == der


def test_daily_consumption_log_without_a_certificate_names_only_the_user() -> None:
    transformation = lookup("4.17", "GPF")
    assert transformation is not None
    body = _daily_log_body("2014-12-10T00:00:00Z", "2014-12-20T00:00:00Z", None)
    assert transformation.user_certificate_der(body) == b""


@pytest.mark.parametrize(
    ("start", "end", "complaint"),
    [
        ("2015-01-02T00:00:00Z", "2015-01-01T00:00:00Z", "ends before it starts"),
        ("2000-01-01T00:00:00Z", "2010-01-01T00:00:00Z", "does not fit"),
    ],
)
def test_profile_period_the_command_cannot_carry_is_refused(
    start: str, end: str, complaint: str
) -> None:
    context = CommandContext(
        1,
        bytes(8),
        bytes(8),
        {
            "start_date_time": dt.datetime.fromisoformat(start),
            "end_date_time": dt.datetime.fromisoformat(end),
        },
    )
    with pytest.raises(GbcsError, match=complaint):
        command_payload("GCS17", context)


def test_every_gbz_layout_is_a_zigbee_use_case_and_decodes_to_its_layouts() -> None:
    context = CommandContext(
        1,
        bytes(8),
        bytes(8),
        {
            "start_date_time": dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
            "end_date_time": dt.datetime(2015, 1, 2, tzinfo=dt.UTC),
            "issued_at": RTDS_ISSUED_AT,
            "disablement_threshold": 0,
            "supplier_message": "Reset",
            "utrn": "73950067887105178605",
            "gas_tariff": GasTariff(
                days=((1, 1),),
                weeks=((1, (1,) * 7),),
                seasons=((TariffDate(None, 1, 1), 1),),
                special_days=(),
                standing_charge=100,
                tou_prices=(9600,),
            ),
        },
    )
    for name, layout in GBZ_LAYOUTS.items():
        assert layout.use_case.payload_kind is PayloadKind.ZIGBEE, name
        gbz = decode_gbz(command_payload(name, context))
        specs = layout.specs(context)
        assert gbz.component_count == len(specs)
        assert [c.header.sequence for c in gbz.components] == list(range(len(specs)))
        assert all(c.payload.layout is not None and not c.payload.rest for c in gbz.components)


def test_every_gas_row_has_a_command_layout() -> None:
    gas = [t for t in TRANSFORMATIONS if t.device_type in ("GSME", "GPF")]
    # GBZ, or a DER join (8.7.x CS03B/CS03C) to the GSME
    assert {t.use_case for t in gas} <= set(GBZ_LAYOUTS) | set(ASN1_LAYOUTS)
    assert {t.srv for t in gas} >= {
        "4.1.1",
        "4.1.2",
        "4.8.1",
        "4.17",
        "4.18",
        "11.2",
        "7.4",
        "6.2.9",
        "1.6",
        "3.1",
        "4.6.1",
        "6.11",
        "6.13",
        "7.2",
        "7.3",
        "8.1.1",
    }
