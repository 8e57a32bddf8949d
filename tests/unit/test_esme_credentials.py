"""The ESME's trust anchor cells: 6.15.1 Update Security Credentials (CS02b Supplier by
Supplier) with a test SMKI (root, issuing CA, Supplier certificates), and the response
against the RTDS vector."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import der
from dccsim.gbcs.commands import (
    KEY_USAGE_DIGITAL_SIGNATURE,
    KEY_USAGE_KEY_AGREEMENT,
    REPLACEMENT_OUTCOME,
    ROLE_SUPPLIER,
)
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.pki.smki import CertificateAuthority, KeyUsage, Role, issue_organisation_certificate
from emulators.device import DeviceRefusal
from emulators.esme import (
    STATUS_BAD_CERTIFICATE,
    STATUS_NO_TRUST_ANCHOR,
    STATUS_SUCCESS,
    TrustAnchor,
)
from tests.unit.esme_site import START, SUPPLIER_EUI, Site, fresh_key

NOT_AFTER = START + dt.timedelta(days=3650)
CS02B = "CS02bSupplierBySupplier"


@dataclasses.dataclass
class Pki:
    root: CertificateAuthority
    issuing: CertificateAuthority

    def certificate(
        self, key: ec.EllipticCurvePrivateKey, usage: KeyUsage, eui: bytes = SUPPLIER_EUI
    ) -> x509.Certificate:
        return issue_organisation_certificate(
            self.issuing,
            eui=eui,
            role=Role.SUPPLIER,
            usage=usage,
            public_key=key.public_key(),
            not_before=START - dt.timedelta(days=1),
            not_after=NOT_AFTER,
        )


def _pki() -> Pki:
    root = CertificateAuthority.create_root(not_before=START - dt.timedelta(days=2))
    return Pki(
        root, CertificateAuthority.create_issuing(root, not_before=START - dt.timedelta(days=2))
    )


def _der(certificate: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.DER)


@pytest.fixture
def pki() -> Pki:
    return _pki()


@pytest.fixture
def site(pki: Pki) -> Site:
    """An ESME whose Supplier cells hold the Site's Supplier keys, with the test Root."""
    site = Site()
    cells = (
        (site.supplier_ds, KeyUsage.DS, 0),
        (site.supplier_ka, KeyUsage.KA, 0),
        (fresh_key(), KeyUsage.KA, 1),
    )
    site.esme.trust_anchors = {
        a.cell: a
        for a in (
            TrustAnchor.from_certificate(ROLE_SUPPLIER, usage, pki.certificate(key, kind))
            for key, kind, usage in cells
        )
    }
    site.esme.root_public_key = pki.root.certificate.public_key()  # type: ignore[assignment]
    return site


def update(
    site: Site,
    pki: Pki,
    ds: ec.EllipticCurvePrivateKey,
    ka: ec.EllipticCurvePrivateKey,
    **extra: object,
) -> Any:
    """6.15.1 replacing the Supplier's DS and KA certificates; the ESME's decoded answer."""
    parameters: dict[str, object] = {
        "digital_signing_certificate": _der(pki.certificate(ds, KeyUsage.DS)),
        "key_agreement_certificate": _der(pki.certificate(ka, KeyUsage.KA)),
        "certification_path_certificates": [_der(pki.issuing.certificate)],
        "floor_seq_number": 0,
        "apply_time_based_cpv_checks": True,
        **extra,
    }
    frame = site.critical(CS02B, parameters, signer=site.supplier_ds)
    return der.decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=2).fields


def statuses(answer: Mapping[str, Any]) -> list[int]:
    results = answer["credentials_replacement_report"]["replacement_results"]
    outcomes = [der.decode_with(REPLACEMENT_OUTCOME, r) for r in results]
    return [o["status"] for o in outcomes if isinstance(o, Mapping)]


def test_replacing_the_suppliers_keys_makes_the_meter_trust_the_new_ones(
    site: Site, pki: Pki
) -> None:
    new_ds, new_ka = fresh_key(), fresh_key()
    assert statuses(update(site, pki, new_ds, new_ka)) == [STATUS_SUCCESS] * 2
    party = site.esme.remote_parties[SUPPLIER_EUI]
    assert party.ds_public_key is not None
    assert party.ds_public_key.public_numbers() == new_ds.public_key().public_numbers()
    # the old DS key no longer signs for the Supplier; the new one does
    with pytest.raises(DeviceRefusal):
        site.critical("ECS43", {}, signer=site.supplier_ds)
    site.supplier_ds, site.supplier_ka = new_ds, new_ka
    site.critical("ECS43", {}, signer=new_ds)
    assert site.read("ECS45").integer == 0  # and reads come back MAC'd for the new KA key


def test_a_certificate_not_issued_under_the_meters_root_is_refused(site: Site, pki: Pki) -> None:
    other = _pki()  # another root: its CA's certificates do not chain to the meter's Root
    before = dict(site.esme.trust_anchors)
    answer = update(site, other, fresh_key(), fresh_key())
    assert statuses(answer) == [STATUS_BAD_CERTIFICATE] * 2
    assert site.esme.trust_anchors == before


def test_a_meter_without_a_root_cell_replaces_nothing(site: Site, pki: Pki) -> None:
    site.esme.root_public_key = None
    assert statuses(update(site, pki, fresh_key(), fresh_key())) == [STATUS_NO_TRUST_ANCHOR] * 2


def test_an_update_from_a_party_not_holding_the_authorising_cell_is_refused(
    site: Site, pki: Pki
) -> None:
    cell = (ROLE_SUPPLIER, KEY_USAGE_DIGITAL_SIGNATURE, 0)
    site.esme.trust_anchors[cell] = dataclasses.replace(
        site.esme.trust_anchors[cell], subject_id=bytes(8)
    )
    with pytest.raises(DeviceRefusal):
        update(site, pki, fresh_key(), fresh_key())


def test_a_future_dated_update_replaces_at_its_execution_time(site: Site, pki: Pki) -> None:
    new_ka = fresh_key()
    at = START + dt.timedelta(hours=1)
    answer = update(site, pki, fresh_key(), new_ka, execution_date_time=at)
    assert answer == {"future_dated_or_null": None}
    site.read("ECS45")  # before its time: the old KA key still MACs the responses
    site.now = at
    site.supplier_ka = new_ka
    site.read("ECS45")  # any command: the meter first carries out what is due


def test_trust_anchors_survive_a_power_cycle(site: Site, pki: Pki) -> None:
    state = site.esme.nonvolatile_state()
    fresh = Site()
    fresh.esme.restore_nonvolatile_state(state)
    assert fresh.esme.trust_anchors == site.esme.trust_anchors


# -- the response against the RTDS vector ------------------------------------------------------

FOLDER = "6.15.1_CS02bSupplierBySupplier"
PREFIX = "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS"
# the cells the RTDS meter held before the update (the response's existing subject key ids)
RTDS_EXISTING = {
    (KEY_USAGE_DIGITAL_SIGNATURE, 0): bytes.fromhex("44899792d196f4b8"),
    (KEY_USAGE_KEY_AGREEMENT, 0): bytes.fromhex("405b8c62687d8f70"),
    (KEY_USAGE_KEY_AGREEMENT, 1): bytes.fromhex("41fb49221588c570"),
}


def _vector(reference_dir: Path, kind: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / FOLDER / f"{PREFIX}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


def test_update_response_matches_the_rtds_vector_but_for_the_signature(
    reference_dir: Path,
) -> None:
    """The RTDS Root key is not published: the path's issuing CA certificate is re-signed by a
    test Root (the replacement certificates, which the CA signed, stay as they are)."""
    command = decode_message(_vector(reference_dir, "COMMAND"))
    assert isinstance(command, GeneralCiphering)
    header = command.general_signing
    schema = der.ASN1_SCHEMAS[(header.message_code, 1)]
    fields = der.decode_with(schema, header.payload)
    assert isinstance(fields, dict)
    ca = x509.load_der_x509_certificate(fields["certification_path_certificates"][0])
    root = fresh_key()
    resigned = x509.CertificateBuilder(
        issuer_name=ca.issuer,
        subject_name=ca.subject,
        public_key=ca.public_key(),
        serial_number=ca.serial_number,
        not_valid_before=ca.not_valid_before_utc,
        not_valid_after=ca.not_valid_after_utc,
        extensions=list(ca.extensions),
    ).sign(root, ca.signature_hash_algorithm)  # type: ignore[arg-type]
    fields["certification_path_certificates"] = [_der(resigned)]
    command = dataclasses.replace(
        command,
        general_signing=dataclasses.replace(header, payload=der.encode_with(schema, fields)),
    )
    reference = decode_message(_vector(reference_dir, "RESPONSE"))
    assert isinstance(reference, GeneralSigning)
    site = Site(now=dt.datetime(2015, 1, 1, tzinfo=dt.UTC))
    site.esme.root_public_key = root.public_key()
    site.esme.trust_anchors = {
        (ROLE_SUPPLIER, usage, cell): TrustAnchor(
            ROLE_SUPPLIER, usage, SUPPLIER_EUI, ski, fresh_key().public_key(), cell
        )
        for (usage, cell), ski in RTDS_EXISTING.items()
    }
    built = decode_message(site.esme.update_security_credentials(command=command, now=site.now))
    assert isinstance(built, GeneralSigning)
    assert built.signed_bytes() == reference.signed_bytes()
