"""The transformation table: DUIS templates (reference/duis/templates) in, the RTDS vectors'
GBCS out, byte for byte."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.duis.xml import parse_service_request
from dccsim.gbcs.commands import (
    CELL_USAGE_PREPAYMENT_TOP_UP,
    KEY_USAGE_DIGITAL_SIGNATURE,
    KEY_USAGE_KEY_AGREEMENT,
    REPLACEMENTS,
)
from dccsim.gbcs.critical import SignedPreCommandError
from dccsim.gbcs.crypto import verify_frame_signature, verify_mac
from dccsim.gbcs.der import decode_asn1, decode_with
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    GeneralCiphering,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.pki.files import parse_private_key
from services.transform.srvs import (
    COS_TRANSFORMATIONS,
    SR_NS,
    TRANSFORMATIONS,
    AcbCounter,
    PreCommandRegister,
    ServiceRequestBodyError,
    Transformation,
    build_command,
    build_cos_command,
    build_pre_command,
    command_from_signed_pre_command,
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

# (template, RTDS folder, vector prefix): the SUCCESS vectors, counter 1000 as in the templates
CRITICAL = [
    ("ECS42_7.1_SUCCESS_REQUEST_DUIS.XML", "7.1_ECS42", "ECS42_7.1_SUCCESS"),
    ("ECS43_7.2_SUCCESS_REQUEST_DUIS.XML", "7.2_ECS43", "ECS43_7.2_SUCCESS"),
    ("ECS44_7.3_SUCCESS_REQUEST_DUIS.XML", "7.3_ECS44", "ECS44_7.3_SUCCESS"),
    ("ECS70_6.11_SUCCESS_REQUEST_DUIS.XML", "6.11_ECS70", "ECS70_6.11_SUCCESS"),
    (
        "ECS70Commission_8.1.1_SUCCESS_REQUEST_DUIS.XML",
        "8.1.1_ECS70Commission",
        "ECS70Commission_8.1.1_SUCCESS",
    ),
]
# 1.6 and others whose command depends on the device as well as the body: (template, RTDS
# folder, vector prefix, parameters from the inventory/device model). The TWIN vectors are for
# a twin-element ESME.
TWIN: dict[str, object] = {"twin": True}
CRITICAL_WITH_DEVICE: list[tuple[str, str, str, dict[str, object]]] = [
    (f"{t}_REQUEST_DUIS.XML", folder, t, extra)
    for folder, t, extra in (
        ("1.6_ECS02", "ECS02_1.6_IMMEDIATE_SINGLE_SUCCESS", {}),
        ("1.6_ECS02", "ECS02_1.6_FUTURE_DATED_TWIN_SUCCESS", TWIN),
        ("1.6_ECS02", "ECS02_1.6_CANCELLATION_TWIN_SUCCESS", TWIN),
        ("1.6_ECS03", "ECS03_1.6_IMMEDIATE_SINGLE_SUCCESS", {}),
        ("1.6_ECS03", "ECS03_1.6_FUTURE_DATED_TWIN_SUCCESS", TWIN),
        ("1.6_ECS03", "ECS03_1.6_CANCELLATION_TWIN_SUCCESS", TWIN),
        ("1.1.1_ECS01a", "ECS01a_1.1.1_IMMEDIATE_TOU_SUCCESS", {}),
        ("1.1.1_ECS01a", "ECS01a_1.1.1_IMMEDIATE_BLOCK_SUCCESS", {}),
        ("1.1.1_ECS01a", "ECS01a_1.1.1_FUTURE_DATED_TOU_BLOCK_SUCCESS", {}),
        ("1.1.1_ECS01a", "ECS01a_1.1.1_CANCELLATION_TOU_BLOCK_SUCCESS", {}),
        ("11.3_CS06", "CS06_11.3_IMMEDIATE_SUCCESS", {}),
        ("11.3_CS06", "CS06_11.3_FUTURE_DATED_SUCCESS", {}),
        ("11.3_CS06", "CS06_11.3_CANCELLATION_SUCCESS", {}),
    )
]
ALL_CRITICAL: list[tuple[str, str, str, dict[str, object]]] = [
    (*row, {}) for row in CRITICAL
] + CRITICAL_WITH_DEVICE
NON_CRITICAL = [
    ("ECS45_7.4_SUCCESS_REQUEST_DUIS.XML", "7.4_ECS45", "ECS45_7.4_SUCCESS"),
    ("ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML", "4.1.1_ECS17b", "ECS17b_4.1.1_SINGLE_SUCCESS"),
    ("ECS52_11.2_SUCCESS_REQUEST_DUIS.XML", "11.2_ECS52", "ECS52_11.2_SUCCESS"),
    ("ECS10_3.1_SUCCESS_REQUEST_DUIS.XML", "3.1_ECS10", "ECS10_3.1_SUCCESS"),
    ("CS01a_2.2_SUCCESS_REQUEST_DUIS.XML", "2.2_CS01a", "CS01a_2.2_SUCCESS"),
    ("ECS35a_6.13_SUCCESS_REQUEST_DUIS.XML", "6.13_ECS35a", "ECS35a_6.13_SUCCESS"),
    ("ECS35b_6.13_SUCCESS_REQUEST_DUIS.XML", "6.13_ECS35b", "ECS35b_6.13_SUCCESS"),
    ("ECS35e_6.13_SUCCESS_REQUEST_DUIS.XML", "6.13_ECS35e", "ECS35e_6.13_SUCCESS"),
    (
        "ECS21a_4.6.1_SINGLE_SUCCESS_REQUEST_DUIS.XML",
        "4.6.1_ECS21a",
        "ECS21a_4.6.1_SINGLE_SUCCESS",
    ),
    ("ECS21a_4.6.1_TWIN_SUCCESS_REQUEST_DUIS.XML", "4.6.1_ECS21a", "ECS21a_4.6.1_TWIN_SUCCESS"),
    (
        "ECS22b_4.8.1_SINGLE_SUCCESS_REQUEST_DUIS.XML",
        "4.8.1_ECS22b",
        "ECS22b_4.8.1_SINGLE_SUCCESS",
    ),
    ("ECS22b_4.8.1_TWIN_SUCCESS_REQUEST_DUIS.XML", "4.8.1_ECS22b", "ECS22b_4.8.1_TWIN_SUCCESS"),
    ("ECS66_4.17_SUCCESS_REQUEST_DUIS.XML", "4.17_ECS66", "ECS66_4.17_SUCCESS"),
    ("ECS26j_6.2.9_SUCCESS_REQUEST_DUIS.XML", "6.2.9_ECS26j", "ECS26j_6.2.9_SUCCESS"),
    (
        "ECS39a_6.20.1_SINGLE_SUCCESS_REQUEST_DUIS.XML",
        "6.20.1_ECS39a",
        "ECS39a_6.20.1_SINGLE_SUCCESS",
    ),
    ("ECS39a_6.20.1_TWIN_SUCCESS_REQUEST_DUIS.XML", "6.20.1_ECS39a", "ECS39a_6.20.1_TWIN_SUCCESS"),
    ("ECS14_3.5_SUCCESS_REQUEST_DUIS.XML", "3.5_ECS14", "ECS14_3.5_SUCCESS"),
    ("ECS34_6.12_SUCCESS_REQUEST_DUIS.XML", "6.12_ECS34", "ECS34_6.12_SUCCESS"),
    ("ECS17c_4.16_SUCCESS_REQUEST_DUIS.XML", "4.16_ECS17c", "ECS17c_4.16_SUCCESS"),
]


def _vector(reference_dir: Path, folder: str, prefix: str, kind: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / folder / f"{prefix}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


@pytest.mark.parametrize(("template", "folder", "prefix", "extra"), ALL_CRITICAL)
def test_critical_template_becomes_the_rtds_pre_command(
    reference_dir: Path, template: str, folder: str, prefix: str, extra: dict[str, object]
) -> None:
    request = duis_template(reference_dir, template)
    transformation = checked_transformation(request, "ESME", critical=True)
    pre = request_pre_command(transformation, request, extra)
    assert pre == _vector(reference_dir, folder, prefix, "PRECOMMAND")


@pytest.mark.parametrize(("template", "folder", "prefix", "extra"), ALL_CRITICAL)
def test_signed_pre_command_becomes_the_rtds_command(
    reference_dir: Path, template: str, folder: str, prefix: str, extra: dict[str, object]
) -> None:
    request = duis_template(reference_dir, template)
    transformation = lookup(request.service_reference_variant, "ESME")
    assert transformation is not None
    rid = request.request_id
    register = PreCommandRegister()
    register.put(
        "rid",
        request_pre_command(transformation, request, extra),
    )
    issued = register.get("rid")
    assert issued is not None
    assert_rtds_command_wraps(
        reference_dir,
        _vector(reference_dir, folder, prefix, "COMMAND"),
        issued,
        originator=rid.originator,
        target=rid.target,
    )


@pytest.mark.parametrize(("template", "folder", "prefix"), NON_CRITICAL)
def test_non_critical_template_becomes_the_rtds_command(
    reference_dir: Path, template: str, folder: str, prefix: str
) -> None:
    request = duis_template(reference_dir, template)
    transformation = checked_transformation(request, "ESME", critical=False)
    built = build_rtds_command(reference_dir, transformation, request)
    assert built == _vector(reference_dir, folder, prefix, "COMMAND")


def test_signed_pre_command_for_another_request_is_refused(reference_dir: Path) -> None:
    """The ECS43 Signed Pre-Command is validly signed, but the DCC issued ECS42 for this id."""
    register = PreCommandRegister()
    register.put("rid", _vector(reference_dir, "7.1_ECS42", "ECS42_7.1_SUCCESS", "PRECOMMAND"))
    other = decode_message(_vector(reference_dir, "7.2_ECS43", "ECS43_7.2_SUCCESS", "COMMAND"))
    assert isinstance(other, GeneralCiphering)
    issued = register.get("rid")
    assert issued is not None
    with pytest.raises(SignedPreCommandError) as caught:
        command_from_signed_pre_command(
            other.general_signing.encode(),
            pre_command=issued,
            user_ds_public=keystore_public(reference_dir, "90b3d51f30010000-ds"),
            acb_ka_private=keystore_private(reference_dir),
            device_ka_public=keystore_public(reference_dir, "00db1234567890a0-ka"),
        )
    assert caught.value.check == "mismatch"


def test_clock_body_without_date_time_is_a_gbcs_error() -> None:
    transformation = lookup("6.11", "ESME")
    assert transformation is not None
    body = etree.fromstring(
        b'<sr:SynchroniseClock xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway">'
        b"<sr:TolerancePeriod>60</sr:TolerancePeriod></sr:SynchroniseClock>"
    )
    with pytest.raises(GbcsError, match="CurrentDateTime"):
        build_pre_command(
            transformation,
            originator_title=bytes(8),
            device_title=bytes(8),
            counter=1,
            body=body,
        )


def _read_log_body(log: str) -> etree._Element:
    return etree.fromstring(
        b'<sr:ReadEventOrSecurityLog xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway">'
        b"<sr:ReadLogPeriod><sr:StartDateTime>2014-12-31T00:00:00Z</sr:StartDateTime>"
        b"<sr:EndDateTime>2015-01-01T00:00:00Z</sr:EndDateTime></sr:ReadLogPeriod>"
        b"<sr:LogToRead>" + log.encode() + b"</sr:LogToRead></sr:ReadEventOrSecurityLog>"
    )


@pytest.mark.parametrize(
    ("log", "use_case"), [("Event", "ECS35a"), ("Security", "ECS35b"), ("PowerEvent", "ECS35e")]
)
def test_read_log_to_an_esme_picks_the_ecs35_use_case_of_its_log(log: str, use_case: str) -> None:
    transformation = lookup("6.13", "ESME")
    assert transformation is not None
    assert transformation.use_case_for(_read_log_body(log)) == use_case


@pytest.mark.parametrize("log", ["ALCSEvent", "GSMEEvent", "GSMESecurity"])
def test_read_log_of_a_log_an_esme_lacks_is_a_body_error(log: str) -> None:
    transformation = lookup("6.13", "ESME")
    assert transformation is not None
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ServiceRequestBodyError, match=log):
        build_command(
            transformation,
            originator_title=bytes(8),
            device_title=bytes(8),
            counter=1,
            acb_ka_private=key,
            device_ka_public=key.public_key(),
            body=_read_log_body(log),
        )


@pytest.mark.parametrize(
    ("srv", "body", "missing"),
    [
        ("3.1", b"<sr:DisplayMessage {ns}/>", "SupplierMessage"),
        ("2.2", b"<sr:TopUpDevice {ns}/>", "UTRN"),
        (
            "6.13",
            b"<sr:ReadEventOrSecurityLog {ns}><sr:LogToRead>Event</sr:LogToRead>"
            b"</sr:ReadEventOrSecurityLog>",
            "ReadLogPeriod/StartDateTime",
        ),
    ],
)
def test_body_without_a_needed_value_is_a_body_error(srv: str, body: bytes, missing: str) -> None:
    transformation = lookup(srv, "ESME")
    assert transformation is not None
    element = etree.fromstring(
        body.replace(b"{ns}", b'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"')
    )
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ServiceRequestBodyError, match=missing):
        build_command(
            transformation,
            originator_title=bytes(8),
            device_title=bytes(8),
            counter=1,
            acb_ka_private=key,
            device_ka_public=key.public_key(),
            body=element,
        )


def test_critical_srv_has_no_mac_only_command() -> None:
    transformation = lookup("7.1", "ESME")
    assert transformation is not None
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(GbcsError, match="critical"):
        build_command(
            transformation,
            originator_title=bytes(8),
            device_title=bytes(8),
            counter=1,
            acb_ka_private=key,
            device_ka_public=key.public_key(),
        )


def test_non_critical_srv_has_no_pre_command() -> None:
    transformation = lookup("7.4", "ESME")
    assert transformation is not None
    with pytest.raises(GbcsError, match="not critical"):
        build_pre_command(
            transformation, originator_title=bytes(8), device_title=bytes(8), counter=1
        )


def test_table_has_one_row_per_srv_and_device_type() -> None:
    keys = [(t.srv, t.device_type) for t in TRANSFORMATIONS]
    assert len(keys) == len(set(keys))


def test_pre_command_register_is_bounded() -> None:
    register = PreCommandRegister(maxsize=2)
    for i in range(3):
        register.put(str(i), bytes([i]))
    assert len(register) == 2
    assert register.get("0") is None and register.get("2") == b"\x02"


# 8.11 to a CHF: the ACB originates the command (its counter 0x516 in the vectors), the User's
# EUI and DUIS counter (1002) in the Other Information extras
HAN_DEVICE_LOG = [
    ("CCS01_8.11_SUCCESS_REQUEST_DUIS.XML", "8.11_CCS01", "CCS01_8.11_SUCCESS", "CCS01"),
    ("CCS02_8.11_SUCCESS_REQUEST_DUIS.XML", "8.11_CCS02", "CCS02_8.11_SUCCESS", "CCS02"),
]
ACB = bytes.fromhex("90B3D51F30000002")
RTDS_ACB_COUNTER = 0x516


@pytest.mark.parametrize(("template", "folder", "prefix", "use_case"), HAN_DEVICE_LOG)
def test_update_han_device_log_template_becomes_the_rtds_command(
    reference_dir: Path, template: str, folder: str, prefix: str, use_case: str
) -> None:
    request = duis_template(reference_dir, template)
    assert request.command_variant == 1
    transformation = lookup(request.service_reference_variant, "CHF")
    assert transformation is not None and not transformation.critical
    assert transformation.acb_originated
    assert request.body_name == transformation.body_element
    assert transformation.use_case_for(request.body) == use_case
    rid = request.request_id
    built = build_command(
        transformation,
        originator_title=ACB,
        device_title=rid.target,
        counter=RTDS_ACB_COUNTER,
        acb_ka_private=keystore_private(reference_dir),
        device_ka_public=keystore_public(reference_dir, f"{rid.target.hex()}-ka"),
        body=request.body,
        other_info_extras=user_extras(rid.originator, rid.counter),
        extra_parameters={"device_type": "ESME"},  # 00-DB-12-34-56-78-90-A0, the RTDS ESME
    )
    assert built == _vector(reference_dir, folder, prefix, "COMMAND")


def _han_body(inner: str) -> etree._Element:
    return etree.fromstring(
        '<sr:UpdateHANDeviceLog xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway">'
        f"<sr:DeviceID>00-DB-12-34-56-78-90-A0</sr:DeviceID>{inner}</sr:UpdateHANDeviceLog>"
    )


@pytest.mark.parametrize(
    ("inner", "missing"),
    [
        ("<sr:RequestType>Replace</sr:RequestType>", "Replace"),
        ("<sr:RequestType>Add</sr:RequestType>", "JoinTimePeriod"),
        (
            "<sr:RequestType>Add</sr:RequestType><sr:AddDeviceToCHFWhitelist>"
            "<sr:JoinTimePeriod>90</sr:JoinTimePeriod><sr:InstallCode>XYZ</sr:InstallCode>"
            "</sr:AddDeviceToCHFWhitelist>",
            "AddDeviceToCHFWhitelist",
        ),
    ],
)
def test_han_device_log_body_errors(inner: str, missing: str) -> None:
    transformation = lookup("8.11", "CHF")
    assert transformation is not None
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ServiceRequestBodyError, match=missing):
        build_command(
            transformation,
            originator_title=ACB,
            device_title=bytes(8),
            counter=1,
            acb_ka_private=key,
            device_ka_public=key.public_key(),
            body=_han_body(inner),
            extra_parameters={"device_type": "ESME"},
        )


def test_han_device_of_a_type_without_a_log_value_is_refused() -> None:
    transformation = lookup("8.11", "CHF")
    assert transformation is not None
    key = ec.generate_private_key(ec.SECP256R1())
    body = _han_body(
        "<sr:RequestType>Add</sr:RequestType><sr:AddDeviceToCHFWhitelist>"
        "<sr:JoinTimePeriod>90</sr:JoinTimePeriod>"
        "<sr:InstallCode>30313233343536373839414243444546</sr:InstallCode>"
        "</sr:AddDeviceToCHFWhitelist>"
    )
    with pytest.raises(GbcsError, match="IHD"):
        build_command(
            transformation,
            originator_title=ACB,
            device_title=bytes(8),
            counter=1,
            acb_ka_private=key,
            device_ka_public=key.public_key(),
            body=body,
            extra_parameters={"device_type": "IHD"},
        )


def test_acb_counter_only_goes_up() -> None:
    ticks = iter([100, 100, 50, 200])
    counter = AcbCounter(clock=lambda: next(ticks))
    assert [counter.next() for _ in range(4)] == [100, 101, 102, 200]


# 6.15.1: the templates' replacement certificates are newer than the ones the RTDS vectors
# carry; each template is sent with its vector's certificates put into the DUIS body
KRP = [
    ("6.15.1_CS02bSupplierBySupplier", f"CS02bSupplierBySupplier_6.15.1_{when}_SUCCESS")
    for when in ("IMMEDIATE", "FUTURE_DATED", "CANCELLATION")
] + [
    ("6.15.1_CS02bNOByNO", "CS02bNOByNO_6.15.1_SUCCESS"),
    *(
        (
            "6.15.1_CS02gLoadControllerBySupplier",
            f"CS02gLoadControllerBySupplier_6.15.1_{when}_SUCCESS",
        )
        for when in ("IMMEDIATE", "FUTURE_DATED", "CANCELLATION")
    ),
]
_CERTIFICATE_ELEMENTS = {
    (KEY_USAGE_DIGITAL_SIGNATURE, None): "DigitalSigningCertificate",
    (KEY_USAGE_KEY_AGREEMENT, None): "KeyAgreementCertificate",
    (KEY_USAGE_KEY_AGREEMENT, CELL_USAGE_PREPAYMENT_TOP_UP): "KeyAgreementTopUpCertificate",
}


def _with_vector_certificates(
    body: etree._Element,
    vector: bytes,
    holder_path: str = "ReplacementCertificates/SupplierOrNetworkOperatorCertificates",
) -> None:
    """Put the certificates of the (Pre-)Command vector into the DUIS body, in place."""
    message = decode_message(vector)
    frame = message.general_signing if isinstance(message, GeneralCiphering) else message
    fields = decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=1).fields
    assert isinstance(fields, dict)
    ns = f"{{{SR_NS}}}"
    holder = body.find("/".join(f"{ns}{part}" for part in holder_path.split("/")))
    assert holder is not None
    replacements = decode_with(REPLACEMENTS, fields["replacements"])
    assert isinstance(replacements, list)
    for replacement in replacements:
        cell = replacement["trust_anchor_cell"]
        name = _CERTIFICATE_ELEMENTS[(cell["key_usage"], cell.get("cell_usage"))]
        element = holder.find(f"{ns}{name}")
        assert element is not None
        element.text = base64.b64encode(replacement["certificate"]).decode()
    path = body.findall(f"{ns}CertificationPathCertificates/{ns}Certificate")
    assert len(path) == len(fields["certification_path_certificates"])
    for element, certificate in zip(path, fields["certification_path_certificates"], strict=True):
        element.text = base64.b64encode(certificate).decode()


@pytest.mark.parametrize(("folder", "prefix"), KRP)
def test_update_security_credentials_template_becomes_the_rtds_pre_command(
    reference_dir: Path, folder: str, prefix: str
) -> None:
    template = reference_dir / "duis" / "templates" / f"{prefix}_REQUEST_DUIS.XML"
    request = parse_service_request(template.read_bytes())
    transformation = lookup(request.service_reference_variant, "ESME")
    assert transformation is not None and transformation.critical
    assert transformation.use_case_for(request.body) == folder.split("_", 1)[1]
    expected = _vector(reference_dir, folder, prefix, "PRECOMMAND")
    _with_vector_certificates(request.body, expected)
    pre = request_pre_command(transformation, request)
    assert pre == expected


def test_update_security_credentials_without_a_certificate_is_refused(
    reference_dir: Path,
) -> None:
    template = "CS02bNOByNO_6.15.1_SUCCESS_REQUEST_DUIS.XML"
    request = duis_template(reference_dir, template)
    ns = f"{{{SR_NS}}}"
    holder = request.body.find(
        f"{ns}ReplacementCertificates/{ns}SupplierOrNetworkOperatorCertificates"
    )
    assert holder is not None
    for child in list(holder):
        holder.remove(child)
    transformation = lookup("6.15.1", "ESME")
    assert transformation is not None
    with pytest.raises(GbcsError, match="replacement certificate"):
        build_pre_command(
            transformation,
            originator_title=ACB,
            device_title=bytes(8),
            counter=1,
            body=request.body,
        )


COS = [f"CS02bSupplierByTransCoS_6.23_{when}_SUCCESS" for when in ("IMMEDIATE", "FUTURE_DATED")]
COS += ["CS02bSupplierByTransCoS_6.23_CANCELLATION_SUCCESS"]
TRANS_COS = bytes.fromhex("90B3D51F30000004")


@pytest.mark.parametrize("prefix", COS)
def test_update_security_credentials_cos_template_becomes_the_rtds_command(
    reference_dir: Path, prefix: str
) -> None:
    """6.23: the Transitional CoS Party originates (its own counter, 6001.. in the vectors)
    and signs; the ACB MACs. ECDSA is randomised: the signed bytes must be the vector's, the
    signature the CoS Party's and the MAC the ACB's for the device."""
    template = reference_dir / "duis" / "templates" / f"{prefix}_REQUEST_DUIS.XML"
    request = parse_service_request(template.read_bytes())
    assert request.command_variant == 1
    transformation = lookup("6.23", "ESME")  # the RTDS vectors' device is the ESME
    assert transformation is not None and transformation in COS_TRANSFORMATIONS
    assert not transformation.critical and request.body_name == transformation.body_element
    expected = decode_message(
        _vector(reference_dir, "6.23_CS02bSupplierByTransCoS", prefix, "COMMAND")
    )
    assert isinstance(expected, GeneralCiphering)
    _with_vector_certificates(request.body, expected.encode(), "SupplierReplacementCertificates")
    keystore = reference_dir / "gbcs" / "keystore"
    cos_ds = parse_private_key((keystore / "90b3d51f30000004-ds.key").read_bytes())
    assert isinstance(cos_ds, ec.EllipticCurvePrivateKey)
    device_ka = keystore_public(reference_dir, f"{request.request_id.target.hex()}-ka")
    built = decode_message(
        build_cos_command(
            transformation,
            cos_title=TRANS_COS,
            cos_counter=expected.general_signing.originator_counter,
            cos_ds_private=cos_ds,
            device_title=request.request_id.target,
            acb_ka_private=keystore_private(reference_dir),
            device_ka_public=device_ka,
            body=request.body,
        )
    )
    assert isinstance(built, GeneralCiphering)
    assert built.general_signing.signed_bytes() == expected.general_signing.signed_bytes()
    assert verify_frame_signature(
        built.general_signing, keystore_public(reference_dir, "90b3d51f30000004-ds")
    )
    assert verify_mac(built, private_key=keystore_private(reference_dir), peer_public_key=device_ka)


@pytest.mark.parametrize("transformation", COS_TRANSFORMATIONS)
def test_a_cos_signed_srv_has_no_user_command(transformation: Transformation) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(GbcsError, match="CoS"):
        build_command(
            transformation,
            originator_title=bytes(8),
            device_title=bytes(8),
            counter=1,
            acb_ka_private=key,
            device_ka_public=key.public_key(),
        )


# SRVs whose RTDS vectors have no DUIS template: (SRV, body, RTDS folder, vector prefix, its
# counter); the RTDS Supplier 90-B3-D5-1F-30-01-00-00 to the ESME 00-DB-12-34-56-78-90-A0
SUPPLIER = bytes.fromhex("90B3D51F30010000")
RTDS_ESME = bytes.fromhex("00DB1234567890A0")
UNTEMPLATED = [
    ("3.3", "<sr:ClearEventLog {ns}/>", "3.3_ECS15a", "ECS15a_3.3_SUCCESS", 1000),
    ("4.11.1", "<sr:ReadTariffPrimaryElement {ns}/>", "4.11.1_ECS24", "ECS24_4.11.1_SUCCESS", 1001),
    (
        "3.3",
        "<sr:ClearEventLog {ns}><sr:ESMEEventLogType>ESME</sr:ESMEEventLogType></sr:ClearEventLog>",
        "3.3_ECS15a",
        "ECS15a_3.3_SUCCESS",
        1000,
    ),
]


@pytest.mark.parametrize(("srv", "body", "folder", "prefix", "counter"), UNTEMPLATED)
def test_body_becomes_the_rtds_command(
    reference_dir: Path, srv: str, body: str, folder: str, prefix: str, counter: int
) -> None:
    transformation = lookup(srv, "ESME")
    assert transformation is not None
    element = etree.fromstring(body.replace("{ns}", f'xmlns:sr="{SR_NS}"'))
    built = build_command(
        transformation,
        originator_title=SUPPLIER,
        device_title=RTDS_ESME,
        counter=counter,
        acb_ka_private=keystore_private(reference_dir),
        device_ka_public=keystore_public(reference_dir, f"{RTDS_ESME.hex()}-ka"),
        body=element,
    )
    assert built == _vector(reference_dir, folder, prefix, "COMMAND")


@pytest.mark.parametrize(
    ("srv", "body", "complaint"),
    [
        (
            "3.3",
            "<sr:ClearEventLog {ns}><sr:ESMEEventLogType>ALCS</sr:ESMEEventLogType>"
            "</sr:ClearEventLog>",
            "ALCS",
        ),
        (
            "6.20.1",
            "<sr:SetDeviceConfigurationImportMPxN {ns}><sr:ImportMPRN>1234567</sr:ImportMPRN>"
            "</sr:SetDeviceConfigurationImportMPxN>",
            "MPRN",
        ),
        (
            "6.20.1",
            "<sr:SetDeviceConfigurationImportMPxN {ns}><sr:ImportMPANs>"
            "<sr:ImportMPAN>13123</sr:ImportMPAN></sr:ImportMPANs>"
            "</sr:SetDeviceConfigurationImportMPxN>",
            "13 digits",
        ),
        (
            "1.6",
            "<sr:UpdatePaymentMode {ns}/>",
            "neither Credit nor Prepayment",
        ),
        (
            "11.3",
            "<sr:ActivateFirmware {ns}><sr:FirmwareHash>XYZ</sr:FirmwareHash>"
            "</sr:ActivateFirmware>",
            "FirmwareHash",
        ),
    ],
)
def test_body_an_esme_cannot_take_is_a_body_error(srv: str, body: str, complaint: str) -> None:
    transformation = lookup(srv, "ESME")
    assert transformation is not None
    element = etree.fromstring(body.replace("{ns}", f'xmlns:sr="{SR_NS}"'))
    with pytest.raises(ServiceRequestBodyError, match=complaint):
        transformation.payload(
            originator_title=SUPPLIER, device_title=RTDS_ESME, counter=1, body=element
        )


# 8.7.1 / 8.7.2 Join: (RTDS prefix and folder, target device type, the other device's
# inventory type as the vector's GBCS device type names it, the use case picked). The
# templates' body names only the OtherDeviceID: the type is the inventory's.
JOINS = [
    ("CS03A1_8.7.1_SUCCESS", "8.7.1_CS03A1", "ESME", "HCALCS", "CS03A1"),
    ("CS03A2Critical_8.7.1_SUCCESS", "8.7.1_CS03A2Critical", "HCALCS", "ESME", "CS03A2"),
    ("CS03CCritical_8.7.1_SUCCESS", "8.7.1_CS03CCritical", "GSME", "PPMID", "CS03C"),
    ("CS03B_8.7.2_SUCCESS", "8.7.2_CS03B", "GSME", "GPF", "CS03B"),
]


def _join_extra(command: bytes, other_type: str) -> dict[str, object]:
    """The parameters the service adds: the inventory type and, for Method C, the KA
    certificate the key store holds for the other device (here the one the vector carries)."""
    extra: dict[str, object] = {"other_device_type": other_type}
    message = decode_message(command)
    frame = message.general_signing if isinstance(message, GeneralCiphering) else message
    fields = decode_asn1(
        frame.payload, message_code=frame.message_code, cra_flag=frame.cra_flag
    ).fields
    assert isinstance(fields, dict)
    if "other_device_certificate" in fields:
        extra["other_device_certificate"] = fields["other_device_certificate"]
    return extra


@pytest.mark.parametrize(("prefix", "folder", "device_type", "other_type", "use_case"), JOINS)
def test_join_template_becomes_the_rtds_command(
    reference_dir: Path,
    prefix: str,
    folder: str,
    device_type: str,
    other_type: str,
    use_case: str,
) -> None:
    """Critical: the Pre-Command byte for byte, and the vector's Signed Pre-Command wrapped
    into the vector's command; non-critical: the MAC'd command byte for byte."""
    template = reference_dir / "duis" / "templates" / f"{prefix}_REQUEST_DUIS.XML"
    request = parse_service_request(template.read_bytes())
    transformation = lookup(request.service_reference_variant, device_type)
    assert transformation is not None and request.body_name == transformation.body_element
    expected = _vector(reference_dir, folder, prefix, "COMMAND")
    extra = _join_extra(expected, other_type)
    assert transformation.use_case_for(request.body, extra) == use_case
    rid = request.request_id
    device_ka = keystore_public(reference_dir, f"{rid.target.hex()}-ka")
    if not transformation.critical:
        assert request.command_variant == 1
        built = build_command(
            transformation,
            originator_title=rid.originator,
            device_title=rid.target,
            counter=rid.counter,
            acb_ka_private=keystore_private(reference_dir),
            device_ka_public=device_ka,
            body=request.body,
            extra_parameters=extra,
        )
        assert built == expected
        return
    assert request.command_variant == 4
    pre = request_pre_command(transformation, request, extra)
    assert pre == _vector(reference_dir, folder, prefix, "PRECOMMAND")
    command = decode_message(expected)
    assert isinstance(command, GeneralCiphering)
    built = command_from_signed_pre_command(
        command.general_signing.encode(),
        pre_command=pre,
        user_ds_public=keystore_public(reference_dir, f"{rid.originator.hex()}-ds"),
        acb_ka_private=keystore_private(reference_dir),
        device_ka_public=device_ka,
    )
    assert built == expected


@pytest.mark.parametrize(
    ("srv", "device_type", "other_type"),
    [("8.7.1", "ESME", "IHD"), ("8.7.1", "ESME", "GSME"), ("8.7.2", "ESME", "PPMID")],
)
def test_join_of_a_device_type_the_method_does_not_join_is_a_body_error(
    srv: str, device_type: str, other_type: str
) -> None:
    transformation = lookup(srv, device_type)
    assert transformation is not None
    body = etree.fromstring(
        f'<sr:JoinService xmlns:sr="{SR_NS}">'
        "<sr:OtherDeviceID>00-DB-12-34-56-78-90-9A</sr:OtherDeviceID></sr:JoinService>"
    )
    with pytest.raises(ServiceRequestBodyError, match=f"cannot join a {other_type}"):
        transformation.use_case_for(body, {"other_device_type": other_type})


ACB_SIGNED_JOINS = [
    ("CS03A2NonCritical_8.7.2_SUCCESS", "8.7.2_CS03A2NonCritical", "ESME", "CS03A2"),
    ("CS03CNonCritical_8.7.2_SUCCESS", "8.7.2_CS03CNonCritical", "GSME", "CS03C"),
]


@pytest.mark.parametrize(("prefix", "folder", "other_type", "use_case"), ACB_SIGNED_JOINS)
def test_join_to_a_ppmid_is_the_rtds_command_the_acb_signs(
    reference_dir: Path, prefix: str, folder: str, other_type: str, use_case: str
) -> None:
    """8.7.2 to a PPMID: the ACB originates (its own counter, the User's EUI and counter in
    Other Information) and signs; ECDSA is randomised, so the signed bytes must be the
    vector's, the signature the ACB's and the MAC the ACB's for the PPMID."""
    template = reference_dir / "duis" / "templates" / f"{prefix}_REQUEST_DUIS.XML"
    request = parse_service_request(template.read_bytes())
    assert request.command_variant == 1
    transformation = lookup("8.7.2", "PPMID")
    assert transformation is not None and transformation.acb_originated
    assert not transformation.critical
    expected = decode_message(_vector(reference_dir, folder, prefix, "COMMAND"))
    assert isinstance(expected, GeneralCiphering)
    extra = _join_extra(expected.encode(), other_type)
    assert transformation.use_case_for(request.body, extra) == use_case
    rid = request.request_id
    device_ka = keystore_public(reference_dir, f"{rid.target.hex()}-ka")
    acb_ds = parse_private_key(
        (reference_dir / "gbcs" / "keystore" / "90b3d51f30000002-ds.key").read_bytes()
    )
    assert isinstance(acb_ds, ec.EllipticCurvePrivateKey)
    built = decode_message(
        build_command(
            transformation,
            originator_title=ACB,
            device_title=rid.target,
            counter=expected.general_signing.originator_counter,
            acb_ka_private=keystore_private(reference_dir),
            device_ka_public=device_ka,
            body=request.body,
            other_info_extras=user_extras(rid.originator, rid.counter),
            extra_parameters=extra,
            acb_ds_private=acb_ds,
        )
    )
    assert isinstance(built, GeneralCiphering)
    assert built.general_signing.signed_bytes() == expected.general_signing.signed_bytes()
    assert verify_frame_signature(
        built.general_signing, keystore_public(reference_dir, "90b3d51f30000002-ds")
    )
    assert verify_mac(built, private_key=keystore_private(reference_dir), peer_public_key=device_ka)
