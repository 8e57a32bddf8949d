"""The GSME's trust anchor cells: 6.15.1 Update Security Credentials (KRP) and 6.23 (CoS), use
case CS02b, the same implementation as the ESME's (``emulators.credentials``). The transform's
commands to a GSME against the RTDS vectors (which address the ESME: the CS02b payload is the
meter's, whichever meter), the GSME's answers against the RTDS responses, and what changes: after
the update the GSME trusts the new Supplier key and refuses the old one."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.duis.xml import parse_service_request
from dccsim.estate import device_eui, format_eui
from dccsim.gbcs import der
from dccsim.gbcs.alerts import MESSAGE_CODE_FUTURE_DATED_CS02B, describe_alert
from dccsim.gbcs.commands import (
    KEY_USAGE_DIGITAL_SIGNATURE,
    KEY_USAGE_KEY_AGREEMENT,
    REPLACEMENT_OUTCOME,
    ROLE_SUPPLIER,
    CommandContext,
    command_payload,
)
from dccsim.gbcs.critical import build_pre_command as build_use_case_pre_command
from dccsim.gbcs.crypto import ecdsa_sign_raw, verify_frame_signature
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.pki.cos import TRANSITIONAL_COS_EUI
from dccsim.pki.devpki import init_pki, issue_devices, issue_party
from dccsim.pki.files import parse_private_key
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage, Role
from dccsim.seed import supplier_eui
from emulators.credentials import COMMAND_ACCEPTED, STATUS_SUCCESS, TrustAnchor
from emulators.device import DeviceRefusal, RemoteParty
from emulators.gsme import GENERAL_EVENT_LOG, SUPPLY_OFF, Gsme
from gateway.hosting import DeviceModels, EstateIndex
from services.inventory.seed import estate_premises
from services.transform.srvs import (
    SR_NS,
    ServiceRequestBodyError,
    build_cos_command,
    build_pre_command,
    command_from_signed_pre_command,
    lookup,
)
from tests.unit.esme_site import Site
from tests.unit.gsme_site import (
    GSME_EUI,
    START,
    SUPPLIER_EUI,
    GasSite,
    der_of,
    fresh_key,
)
from tests.unit.test_transform_srvs import _with_vector_certificates

KRP = "6.15.1_CS02bSupplierBySupplier"
CS02G = "CS02gLoadControllerBySupplier"
COS = "6.23_CS02bSupplierByTransCoS"
RTDS_ESME = bytes.fromhex("00DB1234567890A0")  # the device the RTDS CS02b vectors address
NEW_SUPPLIER = bytes.fromhex("90B3D51F30010008")
CERTIFICATES = ("DigitalSigningCertificate", "KeyAgreementCertificate")
TOP_UP = "KeyAgreementTopUpCertificate"


def _vector(reference_dir: Path, folder: str, prefix: str, kind: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / folder / f"{prefix}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


def _template_body(reference_dir: Path, prefix: str) -> etree._Element:
    path = reference_dir / "duis" / "templates" / f"{prefix}_REQUEST_DUIS.XML"
    body = parse_service_request(path.read_bytes()).body
    assert body is not None
    return body


def _put(body: etree._Element, path: str, der_bytes: bytes) -> None:
    element = body.find("/".join(f"{{{SR_NS}}}{part}" for part in path.split("/")))
    assert element is not None, path
    element.text = base64.b64encode(der_bytes).decode()


def _new_keys_body(
    site: GasSite, body: etree._Element, holder: str, eui: bytes = SUPPLIER_EUI
) -> tuple[Any, Any, Any]:
    """``body`` replacing the Supplier's certificates with new keys of ``eui`` under the
    site's test SMKI (and its issuing CA as the certification path); the new keys."""
    keys = (fresh_key(), fresh_key(), fresh_key())
    for key, name, usage in zip(
        keys, (*CERTIFICATES, TOP_UP), (KeyUsage.DS, KeyUsage.KA, KeyUsage.KA), strict=True
    ):
        _put(body, f"{holder}/{name}", der_of(site.pki.certificate(key, usage, eui)))
    _put(body, "CertificationPathCertificates/Certificate", der_of(site.pki.issuing.certificate))
    return keys


def _report_statuses(reply: GeneralSigning) -> list[int]:
    fields = der.decode_asn1(reply.payload, message_code=reply.message_code, cra_flag=2).fields
    assert isinstance(fields, Mapping)
    results = fields["credentials_replacement_report"]["replacement_results"]
    outcomes = [der.decode_with(REPLACEMENT_OUTCOME, r) for r in results]
    return [o["status"] for o in outcomes if isinstance(o, Mapping)]


def _close_valve(site: GasSite, signer: Any, originator: bytes = SUPPLIER_EUI) -> GeneralSigning:
    """7.2 (GCS32, critical) from ``originator`` signed by ``signer``."""
    return site.critical("7.2", extra={"issued_at": site.now}, signer=signer, originator=originator)


# -- the transform ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS",
        "CS02bSupplierBySupplier_6.15.1_FUTURE_DATED_SUCCESS",
        "CS02bSupplierBySupplier_6.15.1_CANCELLATION_SUCCESS",
    ],
)
def test_krp_template_to_a_gsme_is_the_rtds_pre_command_but_for_the_recipient(
    reference_dir: Path, prefix: str
) -> None:
    path = reference_dir / "duis" / "templates" / f"{prefix}_REQUEST_DUIS.XML"
    request = parse_service_request(path.read_bytes())
    transformation = lookup("6.15.1", "GSME")
    assert transformation is not None and transformation.critical
    assert transformation.use_case_for(request.body) == "CS02bSupplierBySupplier"
    expected = _vector(reference_dir, KRP, prefix, "PRECOMMAND")
    _with_vector_certificates(request.body, expected)  # the templates' are not the vector's
    pre = GasSite().pre_command("6.15.1", request.body, counter=request.request_id.counter)
    reference = decode_message(expected)
    assert isinstance(reference, GeneralSigning) and reference.recipient_title == RTDS_ESME
    assert pre == dataclasses.replace(reference, recipient_title=GSME_EUI).encode()


def test_a_gsme_holds_no_load_controller_credentials(reference_dir: Path) -> None:
    body = _template_body(reference_dir, "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS")
    role = body.find(f"{{{SR_NS}}}RemotePartyRole")
    assert role is not None
    role.text = "LoadController"
    transformation = lookup("6.15.1", "GSME")
    assert transformation is not None
    with pytest.raises(ServiceRequestBodyError, match="LoadController"):
        transformation.use_case_for(body)
    esme = lookup("6.15.1", "ESME")
    assert esme is not None and esme.use_case_for(body) == "CS02gLoadControllerBySupplier"


# -- 6.15.1 on the GSME -------------------------------------------------------------------------


def test_replacing_the_suppliers_keys_makes_the_gsme_trust_the_new_ones(
    reference_dir: Path,
) -> None:
    site = GasSite()
    body = _template_body(reference_dir, "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS")
    new_ds, new_ka, _ = _new_keys_body(
        site, body, "ReplacementCertificates/SupplierOrNetworkOperatorCertificates"
    )
    reply = site.critical("6.15.1", body)
    assert _report_statuses(reply) == [STATUS_SUCCESS] * 3
    party = site.gsme.remote_parties[SUPPLIER_EUI]
    assert party.ds_public_key is not None
    assert party.ds_public_key.public_numbers() == new_ds.public_key().public_numbers()
    # a critical command signed with the old Supplier key is refused, the new one accepted
    with pytest.raises(DeviceRefusal):
        _close_valve(site, site.supplier_ds)
    assert site.gsme.supply_status != SUPPLY_OFF
    _close_valve(site, new_ds)
    assert site.gsme.supply_status == SUPPLY_OFF
    # and the GSME MACs its answers for the new KA key
    site.supplier_ka = new_ka
    site.read("7.4")


def test_an_update_signed_with_another_key_is_refused_and_changes_nothing(
    reference_dir: Path,
) -> None:
    site = GasSite()
    cells = dict(site.gsme.trust_anchors)
    body = _template_body(reference_dir, "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS")
    _new_keys_body(site, body, "ReplacementCertificates/SupplierOrNetworkOperatorCertificates")
    with pytest.raises(DeviceRefusal):
        site.critical("6.15.1", body, signer=fresh_key())
    assert site.gsme.trust_anchors == cells


RTDS_EXISTING = {  # the cells the RTDS meter held before the update (the response's ids)
    (KEY_USAGE_DIGITAL_SIGNATURE, 0): bytes.fromhex("44899792d196f4b8"),
    (KEY_USAGE_KEY_AGREEMENT, 0): bytes.fromhex("405b8c62687d8f70"),
    (KEY_USAGE_KEY_AGREEMENT, 1): bytes.fromhex("41fb49221588c570"),
}


def test_update_response_matches_the_rtds_vector_but_for_the_meter(reference_dir: Path) -> None:
    """The RTDS Root key is not published: the path's CA certificate is re-signed by the test
    Root (the replacement certificates, which the CA signed, stay as they are)."""
    prefix = "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS"
    command = decode_message(_vector(reference_dir, KRP, prefix, "COMMAND"))
    assert isinstance(command, GeneralCiphering)
    header = command.general_signing
    schema = der.ASN1_SCHEMAS[(header.message_code, 1)]
    fields = der.decode_with(schema, header.payload)
    assert isinstance(fields, dict)
    site = GasSite()
    ca = x509.load_der_x509_certificate(fields["certification_path_certificates"][0])
    resigned = x509.CertificateBuilder(
        issuer_name=ca.issuer,
        subject_name=ca.subject,
        public_key=ca.public_key(),
        serial_number=ca.serial_number,
        not_valid_before=ca.not_valid_before_utc,
        not_valid_after=ca.not_valid_after_utc,
        extensions=list(ca.extensions),
    ).sign(site.pki.root.private_key, ca.signature_hash_algorithm)  # type: ignore[arg-type]
    fields["certification_path_certificates"] = [der_of(resigned)]
    to_gsme = dataclasses.replace(
        header, recipient_title=GSME_EUI, payload=der.encode_with(schema, fields)
    )
    site.gsme.trust_anchors = {
        (ROLE_SUPPLIER, usage, cell): TrustAnchor(
            ROLE_SUPPLIER, usage, SUPPLIER_EUI, ski, fresh_key().public_key(), cell
        )
        for (usage, cell), ski in RTDS_EXISTING.items()
    }
    built = decode_message(
        site.gsme.update_security_credentials(
            command=dataclasses.replace(command, general_signing=to_gsme), now=site.now
        )
    )
    reference = decode_message(_vector(reference_dir, KRP, prefix, "RESPONSE"))
    assert isinstance(built, GeneralSigning) and isinstance(reference, GeneralSigning)
    assert built.originator_title == GSME_EUI
    assert (
        built.signed_bytes()
        == dataclasses.replace(reference, originator_title=GSME_EUI).signed_bytes()
    )


def test_a_future_dated_update_is_held_then_replaces_with_its_8f66_alert(
    reference_dir: Path,
) -> None:
    site = GasSite()
    prefix = "CS02bSupplierBySupplier_6.15.1_FUTURE_DATED_SUCCESS"
    body = _template_body(reference_dir, prefix)
    _new_ds, new_ka, _ = _new_keys_body(
        site, body, "ReplacementCertificates/SupplierOrNetworkOperatorCertificates"
    )
    reply = site.critical("6.15.1", body)
    reference = decode_message(_vector(reference_dir, KRP, prefix, "RESPONSE"))
    assert isinstance(reference, GeneralSigning)
    assert reply.payload == reference.payload == COMMAND_ACCEPTED
    counter = site.counter
    at = dt.datetime(2030, 1, 15, tzinfo=dt.UTC)  # the template's ExecutionDateTime
    assert site.gsme.next_due() == at
    site.gsme.run_due(at - dt.timedelta(seconds=1))
    assert site.gsme.take_alerts() == []
    assert site.gsme.remote_parties[SUPPLIER_EUI].ds_public_key is not None
    site.now = at
    site.gsme.run_due(at)
    (alert,) = site.gsme.take_alerts()
    assert alert.alert_code == 0x8F66 and alert.recipient == SUPPLIER_EUI
    frame = decode_message(alert.frame)
    assert isinstance(frame, GeneralSigning) and frame.originator_title == GSME_EUI
    assert frame.message_code == MESSAGE_CODE_FUTURE_DATED_CS02B
    assert verify_frame_signature(frame, site.device_ds.public_key())
    described = describe_alert(alert.frame)
    rtds = describe_alert(
        _vector(
            reference_dir, KRP, "CS02bSupplierBySupplier_6.15.1_8F66_FUTURE_DATED_SUCCESS", "ALERT"
        )
    )
    assert described.keys() == rtds.keys()
    assert described["future_dated"].keys() == rtds["future_dated"].keys()
    assert described["future_dated"]["outcome"] == rtds["future_dated"]["outcome"] == "executed"
    assert described["future_dated"]["originator_counter"] == counter
    assert site.gsme.next_due() is None
    assert site.gsme.logs[GENERAL_EVENT_LOG][-1].event_id == 0x8F66
    party = site.gsme.remote_parties[SUPPLIER_EUI]
    assert party.ka_public_key.public_numbers() == new_ka.public_key().public_numbers()


def test_a_cancelled_update_is_answered_as_the_rtds_and_never_runs(reference_dir: Path) -> None:
    site = GasSite()
    body = _template_body(reference_dir, "CS02bSupplierBySupplier_6.15.1_FUTURE_DATED_SUCCESS")
    _new_keys_body(site, body, "ReplacementCertificates/SupplierOrNetworkOperatorCertificates")
    site.critical("6.15.1", body)
    prefix = "CS02bSupplierBySupplier_6.15.1_CANCELLATION_SUCCESS"
    cancel = _template_body(reference_dir, prefix)
    _new_keys_body(site, cancel, "ReplacementCertificates/SupplierOrNetworkOperatorCertificates")
    reply = site.critical("6.15.1", cancel)
    reference = decode_message(_vector(reference_dir, KRP, prefix, "RESPONSE"))
    assert isinstance(reference, GeneralSigning)
    assert reply.payload == reference.payload
    assert site.gsme.pending_credentials is None and site.gsme.next_due() is None
    cells = dict(site.gsme.trust_anchors)
    site.gsme.run_due(dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    assert site.gsme.take_alerts() == [] and site.gsme.trust_anchors == cells


def _power_cycled(site: GasSite) -> Any:
    """A GSME built as installed (the old cells), with ``site.gsme``'s state restored from
    its msgpack form (as the gateway keeps it)."""
    state = msgpack.unpackb(
        msgpack.packb(site.gsme.nonvolatile_state(), use_bin_type=True), raw=False
    )
    fresh = site.build()
    fresh.restore_nonvolatile_state(state)
    return fresh


def test_replaced_cells_survive_a_power_cycle_and_still_trust_the_new_supplier(
    reference_dir: Path,
) -> None:
    site = GasSite()
    body = _template_body(reference_dir, "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS")
    new_ds, _, _ = _new_keys_body(
        site, body, "ReplacementCertificates/SupplierOrNetworkOperatorCertificates"
    )
    site.critical("6.15.1", body)
    site.gsme = _power_cycled(site)
    assert site.gsme.trust_anchors == _power_cycled(site).trust_anchors
    with pytest.raises(DeviceRefusal):
        _close_valve(site, site.supplier_ds)
    _close_valve(site, new_ds)


def test_a_held_update_survives_a_power_cycle_and_runs_on_time(reference_dir: Path) -> None:
    site = GasSite()
    body = _template_body(reference_dir, "CS02bSupplierBySupplier_6.15.1_FUTURE_DATED_SUCCESS")
    _new_keys_body(site, body, "ReplacementCertificates/SupplierOrNetworkOperatorCertificates")
    site.critical("6.15.1", body)
    fresh = _power_cycled(site)
    at = dt.datetime(2030, 1, 15, tzinfo=dt.UTC)
    assert fresh.next_due() == at
    fresh.run_due(at)
    assert [a.alert_code for a in fresh.take_alerts()] == [0x8F66]


# -- 6.23 on the GSME ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "CS02bSupplierByTransCoS_6.23_IMMEDIATE_SUCCESS",
        "CS02bSupplierByTransCoS_6.23_FUTURE_DATED_SUCCESS",
        "CS02bSupplierByTransCoS_6.23_CANCELLATION_SUCCESS",
    ],
)
def test_cos_template_to_a_gsme_is_the_rtds_command_but_for_the_recipient(
    reference_dir: Path, prefix: str
) -> None:
    """6.23: the Transitional CoS Party signs (its key is in the RTDS key store); ECDSA is
    randomised, so the signed bytes are compared, the recipient the GSME."""
    body = _template_body(reference_dir, prefix)
    expected = decode_message(_vector(reference_dir, COS, prefix, "COMMAND"))
    assert isinstance(expected, GeneralCiphering)
    _with_vector_certificates(body, expected.encode(), "SupplierReplacementCertificates")
    keystore = reference_dir / "gbcs" / "keystore"
    cos_ds = parse_private_key((keystore / "90b3d51f30000004-ds.key").read_bytes())
    assert isinstance(cos_ds, ec.EllipticCurvePrivateKey)
    transformation = lookup("6.23", "GSME")
    assert transformation is not None and transformation.cos_signed
    site = GasSite()
    built = decode_message(
        build_cos_command(
            transformation,
            cos_title=TRANSITIONAL_COS_EUI,
            cos_counter=expected.general_signing.originator_counter,
            cos_ds_private=cos_ds,
            device_title=GSME_EUI,
            acb_ka_private=site.acb_ka,
            device_ka_public=site.device_ka.public_key(),
            body=body,
        )
    )
    assert isinstance(built, GeneralCiphering)
    to_gsme = dataclasses.replace(expected.general_signing, recipient_title=GSME_EUI)
    assert built.general_signing.signed_bytes() == to_gsme.signed_bytes()
    assert verify_frame_signature(built.general_signing, cos_ds.public_key())


def test_a_cos_update_makes_the_gsme_trust_the_new_supplier_only(reference_dir: Path) -> None:
    site = GasSite()
    cos_ds = fresh_key()
    cos_cell = TrustAnchor.from_certificate(
        int(Role.TRANSITIONAL_COS),
        0,
        site.pki.certificate(cos_ds, KeyUsage.DS, TRANSITIONAL_COS_EUI, Role.TRANSITIONAL_COS),
    )
    site.gsme = site.build(cos_cell)
    # the CoS Party holds no KA key: the GSME answers it signed, never MAC'd
    site.gsme.remote_parties[TRANSITIONAL_COS_EUI] = RemoteParty(
        TRANSITIONAL_COS_EUI, cos_ds.public_key(), cos_ds.public_key()
    )
    prefix = "CS02bSupplierByTransCoS_6.23_IMMEDIATE_SUCCESS"
    body = _template_body(reference_dir, prefix)
    new_ds, _, _ = _new_keys_body(site, body, "SupplierReplacementCertificates", NEW_SUPPLIER)
    transformation = lookup("6.23", "GSME")
    assert transformation is not None and transformation.cos_signed
    command = build_cos_command(
        transformation,
        cos_title=TRANSITIONAL_COS_EUI,
        cos_counter=6001,
        cos_ds_private=cos_ds,
        device_title=GSME_EUI,
        acb_ka_private=site.acb_ka,
        device_ka_public=site.device_ka.public_key(),
        body=body,
    )
    reply = decode_message(site.gsme.handle(command))
    assert isinstance(reply, GeneralSigning) and reply.recipient_title == TRANSITIONAL_COS_EUI
    assert verify_frame_signature(reply, site.device_ds.public_key())
    assert _report_statuses(reply) == [STATUS_SUCCESS] * 3
    assert SUPPLIER_EUI not in site.gsme.remote_parties
    assert NEW_SUPPLIER in site.gsme.remote_parties
    with pytest.raises(DeviceRefusal):  # the old Supplier is no longer trusted
        _close_valve(site, site.supplier_ds)
    _close_valve(site, new_ds, NEW_SUPPLIER)
    assert site.gsme.supply_status == SUPPLY_OFF


# -- hosted by the gateway ----------------------------------------------------------------------

HOSTED_GSME = parse_eui(device_eui(1, 3))  # estate_premises(1): CHF 0, GPF 1, ESME 2, GSME 3
HOSTED_CHF = parse_eui(device_eui(1, 0))
GAS_SUPPLIER = parse_eui(supplier_eui(0))


@pytest.fixture(scope="module")
def hosted_keystore(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    home = tmp_path_factory.mktemp("gsme-home")
    init_pki(home)
    issue_party(home, eui=GAS_SUPPLIER, role=Role.SUPPLIER, user_id="gs", out_dir=home / "gs")
    issue_devices(home, [HOSTED_GSME, HOSTED_CHF])
    return KeyStore(home / "pki" / "keystore")


def _hosted_command(keystore: KeyStore, srv: str, body: etree._Element, counter: int) -> bytes:
    """``srv`` from the Gas Supplier to the hosted GSME: signed, MAC'd by the ACB."""
    transformation = lookup(srv, "GSME")
    assert transformation is not None
    pre = build_pre_command(
        transformation,
        originator_title=GAS_SUPPLIER,
        device_title=HOSTED_GSME,
        counter=counter,
        body=body,
    )
    signer = keystore.private_key(GAS_SUPPLIER, KeyUsage.DS)
    acb = keystore.private_key(DCC_EUI, KeyUsage.KA)
    device_ka = keystore.certificate(HOSTED_GSME, KeyUsage.KA).public_key()
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    assert isinstance(acb, ec.EllipticCurvePrivateKey)
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    return command_from_signed_pre_command(
        pre + b"\x40" + ecdsa_sign_raw(signer, pre[1:]),
        pre_command=pre,
        user_ds_public=signer.public_key(),
        acb_ka_private=acb,
        device_ka_public=device_ka,
    )


def test_a_hosted_gsme_holds_its_gas_suppliers_cells_and_keeps_held_work_across_eviction(
    reference_dir: Path, hosted_keystore: KeyStore
) -> None:
    index = EstateIndex.from_premises([estate_premises(1)])
    assert estate_premises(1).registrations["GS"] == format_eui(GAS_SUPPLIER)
    models = DeviceModels(index, hosted_keystore, lambda: START, capacity=1)
    record = index.record(index.find(HOSTED_GSME) or 0)
    gsme = models.get(record)
    assert isinstance(gsme, Gsme)
    cells = {a.cell: a for a in gsme.trust_anchors.values()}
    ds = cells[(ROLE_SUPPLIER, KEY_USAGE_DIGITAL_SIGNATURE, 0)]
    ka = cells[(ROLE_SUPPLIER, KEY_USAGE_KEY_AGREEMENT, 0)]
    assert ds.subject_id == ka.subject_id == GAS_SUPPLIER
    # a future-dated 6.15.1 held (its certificates are checked when it runs) ...
    body = _template_body(reference_dir, "CS02bSupplierBySupplier_6.15.1_FUTURE_DATED_SUCCESS")
    for name, usage in zip(
        (*CERTIFICATES, TOP_UP), (KeyUsage.DS, KeyUsage.KA, KeyUsage.KA), strict=True
    ):
        certificate = der_of(hosted_keystore.certificate(GAS_SUPPLIER, usage))
        _put(
            body,
            f"ReplacementCertificates/SupplierOrNetworkOperatorCertificates/{name}",
            certificate,
        )
    reply = decode_message(gsme.handle(_hosted_command(hosted_keystore, "6.15.1", body, 1001)))
    assert isinstance(reply, GeneralSigning) and reply.payload == COMMAND_ACCEPTED
    models.commit(record, gsme)
    # ... and a received image survive the model's eviction
    image_hash = gsme.receive_image(b"gas image", b"\x02\x00\x00\x01")
    models.get(index.record(index.find(HOSTED_CHF) or 0))  # evicts the GSME
    assert models.peek(record.index) is None
    rebuilt = models.get(record)
    assert isinstance(rebuilt, Gsme) and rebuilt is not gsme
    assert rebuilt.received_images == {image_hash: b"\x02\x00\x00\x01"}
    at = dt.datetime(2030, 1, 15, tzinfo=dt.UTC)  # the template's ExecutionDateTime
    assert rebuilt.next_due() == at
    rebuilt.run_due(at)
    (alert,) = rebuilt.take_alerts()
    assert alert.recipient == GAS_SUPPLIER
    assert describe_alert(alert.frame)["future_dated"]["originator_counter"] == 1001


# -- CS02g (the Load Controller's cells) is the ESME's only -------------------------------------


def _cs02g_parameters(site: GasSite) -> dict[str, object]:
    return {
        "digital_signing_certificate": der_of(site.pki.certificate(fresh_key(), KeyUsage.DS)),
        "key_agreement_certificate": der_of(site.pki.certificate(fresh_key(), KeyUsage.KA)),
        "certification_path_certificates": [der_of(site.pki.issuing.certificate)],
        "floor_seq_number": 0,
        "apply_time_based_cpv_checks": True,
    }


def test_the_esme_still_answers_cs02g_and_the_gsme_refuses_it() -> None:
    site = GasSite()
    esme_site = Site()
    esme_site.esme.hold_trust_anchors(
        tuple(
            TrustAnchor.from_certificate(ROLE_SUPPLIER, 0, site.pki.certificate(key, usage))
            for key, usage in (
                (esme_site.supplier_ds, KeyUsage.DS),
                (esme_site.supplier_ka, KeyUsage.KA),
            )
        ),
        site.pki.root_key(),
    )
    answer = esme_site.critical(
        CS02G, _cs02g_parameters(site), signer=esme_site.supplier_ds
    )  # no Load Controller cells to replace, but an answer with the report
    fields = der.decode_asn1(answer.payload, message_code=answer.message_code, cra_flag=2).fields
    assert isinstance(fields, Mapping) and "credentials_replacement_report" in fields
    counter = 2000
    pre = build_use_case_pre_command(
        USE_CASES_BY_NAME[CS02G],
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter,
        payload=command_payload(
            CS02G, CommandContext(counter, SUPPLIER_EUI, GSME_EUI, _cs02g_parameters(site))
        ),
    )
    cells = dict(site.gsme.trust_anchors)
    with pytest.raises(DeviceRefusal):
        site.send_signed(pre, site.supplier_ds)
    assert site.gsme.trust_anchors == cells
