"""6.23 Update Security Credentials (CoS) with the development PKI: `dccsim pki init`'s
Transitional CoS Party, transform signing the command with it (the ACB MAC'd), and an ESME
built as installed (the Supplier's DS and KA cells, the CoS Party's cell, the dev SMKI Root)
taking the new Supplier's certificates, after which it trusts the new Supplier and refuses
the old one.

Not end to end: the SM WAN gateway (gateway/hosting.py) does not yet give its ESMEs a
Transitional CoS cell or trust the CoS Party, so a hosted meter would refuse the command."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from dccsim import estate
from dccsim.bus import Envelope
from dccsim.bus.topology import DUIS_RESPONSE, GBCS_COMMAND
from dccsim.duis.requestid import DCC_EUI, RequestId, parse_eui
from dccsim.duis.xml import parse_response
from dccsim.gbcs import der
from dccsim.gbcs.commands import REPLACEMENT_OUTCOME, CommandContext, command_payload
from dccsim.gbcs.critical import build_pre_command, wrap_command
from dccsim.gbcs.crypto import ecdsa_sign_raw, verify_frame_signature, verify_mac
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.metrics import ServiceMetrics
from dccsim.pki.cos import TRANSITIONAL_COS_EUI, ensure_transitional_cos
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import CertificateAuthority, KeyUsage, Role, issue_organisation_certificate
from dccsim.seed import seed_demo
from dccsim.smi import DeviceRecord, DeviceStatus, DeviceType
from dccsim.testuser import TestUser
from emulators.device import DeviceRefusal, RemoteParty
from emulators.esme import STATUS_SUCCESS, Esme, TrustAnchor
from services.transform.app import Keys, Transformer

SR = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'
NEW_SUPPLIER = bytes.fromhex("90B3D51F3003D000")
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@dataclass
class Installation:
    home: Path
    keystore: KeyStore
    user: TestUser
    esme: bytes

    def private(self, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePrivateKey:
        key = self.keystore.private_key(eui, usage)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def public(self, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePublicKey:
        key = self.keystore.certificate(eui, usage).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    home = tmp_path_factory.mktemp("dccsim-home")
    seed_demo(home, premises=1)
    ensure_transitional_cos(home)
    devices = estate.load(home)[0].devices
    esme = next(d.eui for d in devices if d.device_type.value == "ESME")
    return Installation(
        home,
        KeyStore(home / "pki" / "keystore"),
        TestUser.load(home / "participants" / "90B3D51F3001D000"),
        parse_eui(esme),
    )


def test_the_cos_party_is_an_organisation_certificate_of_role_05(
    installation: Installation,
) -> None:
    entry = installation.keystore.get(TRANSITIONAL_COS_EUI, KeyUsage.DS)
    assert entry.role == Role.TRANSITIONAL_COS and entry.private_key is not None
    ou = entry.certificate.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [a.value for a in ou] == ["05"]
    usage = entry.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_agreement
    layout = PkiLayout.of(installation.home)
    issuing = CertificateAuthority.load(layout.smki_issuing_cert, layout.smki_issuing_key)
    assert entry.certificate.issuer == issuing.certificate.subject
    # idempotent: a second run keeps the party's key
    again = ensure_transitional_cos(installation.home)
    assert again.certificate.serial_number == entry.certificate.serial_number


@dataclass
class NewSupplier:
    ds: ec.EllipticCurvePrivateKey
    ka: ec.EllipticCurvePrivateKey
    body_xml: bytes


def _new_supplier(installation: Installation) -> NewSupplier:
    """The incoming Supplier's DS and KA certificates from the dev PKI's organisation CA, and
    the 6.23 body carrying them with the CA's certificate as the certification path."""
    layout = PkiLayout.of(installation.home)
    issuing = CertificateAuthority.load(layout.smki_issuing_cert, layout.smki_issuing_key)
    ds, ka = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def b64(key: ec.EllipticCurvePrivateKey, usage: KeyUsage) -> str:
        certificate = issue_organisation_certificate(
            issuing,
            eui=NEW_SUPPLIER,
            role=Role.SUPPLIER,
            usage=usage,
            public_key=key.public_key(),
            not_before=NOW - dt.timedelta(days=1),
            not_after=NOW + dt.timedelta(days=3650),
        )
        return base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()

    path = base64.b64encode(issuing.certificate.public_bytes(Encoding.DER)).decode()
    body = (
        f"<sr:UpdateSecurityCredentialsCoS {SR}>"
        "<sr:SupplierFloorSeqNumber>0</sr:SupplierFloorSeqNumber>"
        "<sr:SupplierReplacementCertificates>"
        f"<sr:DigitalSigningCertificate>{b64(ds, KeyUsage.DS)}</sr:DigitalSigningCertificate>"
        f"<sr:KeyAgreementCertificate>{b64(ka, KeyUsage.KA)}</sr:KeyAgreementCertificate>"
        "</sr:SupplierReplacementCertificates>"
        f"<sr:CertificationPathCertificates><sr:Certificate>{path}</sr:Certificate>"
        "</sr:CertificationPathCertificates>"
        "<sr:ApplyTimeBasedCPVChecks>true</sr:ApplyTimeBasedCPVChecks>"
        "</sr:UpdateSecurityCredentialsCoS>"
    ).encode()
    return NewSupplier(ds, ka, body)


class FakeBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope]] = []

    async def publish(self, routing_key: str, envelope: Envelope) -> None:
        self.published.append((routing_key, envelope))


async def _run(
    installation: Installation, body_xml: bytes, counter: int, keys: Keys | None = None
) -> FakeBus:
    """Transform given the User's 6.23 (CV 1); what it published."""
    bus = FakeBus()
    rt = SimpleNamespace(
        metrics=ServiceMetrics("transform_cos_test"),
        settings=SimpleNamespace(home=installation.home),
        bus=bus,
    )
    transformer = Transformer(rt, keys or Keys(installation.keystore))  # type: ignore[arg-type]
    user = parse_eui(installation.user.eui)
    rid = RequestId(user, installation.esme, counter)
    record = DeviceRecord(
        "-".join(f"{b:02X}" for b in installation.esme), DeviceType.ESME, DeviceStatus.COMMISSIONED
    )
    body: dict[str, Any] = {
        "srv": "6.23",
        "cv": 1,
        "user_id": installation.user.user_id,
        "user_eui": installation.user.eui,
        "originator": user,
        "target": installation.esme,
        "counter": counter,
        "device": record.to_wire(),
        "body_xml": body_xml,
    }
    await transformer.on_request(Envelope("sr.accepted", str(rid), body))
    return bus


async def _transformed(installation: Installation, body_xml: bytes, counter: int) -> bytes:
    """The ``gbcs.command`` frame transform publishes for the User's 6.23 (CV 1)."""
    [(key, env)] = (await _run(installation, body_xml, counter)).published
    assert key == GBCS_COMMAND and env.body["use_case"] == "CS02bSupplierByTransCoS"
    frame = env.body["frame"]
    assert isinstance(frame, bytes)
    return frame


def _installed_esme(installation: Installation) -> Esme:
    """The ESME as the gateway builds it, plus the Transitional CoS cell and trust in the CoS
    Party (which holds no KA key: the meter answers it signed, never MAC'd)."""
    supplier = parse_eui(installation.user.eui)
    ks = installation.keystore
    cos_ds = installation.public(TRANSITIONAL_COS_EUI, KeyUsage.DS)
    root = x509.load_pem_x509_certificate(
        PkiLayout.of(installation.home).smki_root_cert.read_bytes()
    )
    root_key = root.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey)
    return Esme(
        eui=installation.esme,
        ka_private_key=installation.private(installation.esme, KeyUsage.KA),
        ds_private_key=installation.private(installation.esme, KeyUsage.DS),
        acb_ka_public=installation.public(DCC_EUI, KeyUsage.KA),
        remote_parties={
            supplier: RemoteParty(
                supplier,
                installation.public(supplier, KeyUsage.KA),
                installation.public(supplier, KeyUsage.DS),
            ),
            TRANSITIONAL_COS_EUI: RemoteParty(TRANSITIONAL_COS_EUI, cos_ds, cos_ds),
        },
        clock=lambda: NOW,
        trust_anchors=(
            TrustAnchor.from_certificate(
                int(Role.SUPPLIER), 0, ks.certificate(supplier, KeyUsage.DS)
            ),
            TrustAnchor.from_certificate(
                int(Role.SUPPLIER), 0, ks.certificate(supplier, KeyUsage.KA)
            ),
            TrustAnchor.from_certificate(
                int(Role.TRANSITIONAL_COS), 0, ks.certificate(TRANSITIONAL_COS_EUI, KeyUsage.DS)
            ),
        ),
        root_public_key=root_key,
    )


def _disable_supply(
    installation: Installation,
    esme: Esme,
    originator: bytes,
    signer: ec.EllipticCurvePrivateKey,
    counter: int,
) -> GeneralSigning:
    """ECS43 signed by ``signer`` for ``originator``, MAC'd by the ACB; the ESME's answer."""
    pre = build_pre_command(
        USE_CASES_BY_NAME["ECS43"],
        originator_title=originator,
        device_title=installation.esme,
        counter=counter,
        payload=command_payload(
            "ECS43", CommandContext(counter, originator, installation.esme, {})
        ),
    )
    signed = decode_message(pre + b"\x40" + ecdsa_sign_raw(signer, pre[1:]))
    assert isinstance(signed, GeneralSigning)
    command = wrap_command(
        signed,
        acb_ka_private=installation.private(DCC_EUI, KeyUsage.KA),
        device_ka_public=installation.public(installation.esme, KeyUsage.KA),
    )
    answer = decode_message(esme.handle(command))
    assert isinstance(answer, GeneralSigning)
    return answer


async def test_cos_signed_update_makes_the_esme_trust_the_new_supplier_only(
    installation: Installation,
) -> None:
    new = _new_supplier(installation)
    frame = await _transformed(installation, new.body_xml, counter=7000)
    message = decode_message(frame)
    assert isinstance(message, GeneralCiphering)
    header = message.general_signing
    assert header.originator_title == TRANSITIONAL_COS_EUI
    assert header.recipient_title == installation.esme
    assert verify_frame_signature(header, installation.public(TRANSITIONAL_COS_EUI, KeyUsage.DS))
    assert verify_mac(
        message,
        private_key=installation.private(DCC_EUI, KeyUsage.KA),
        peer_public_key=installation.public(installation.esme, KeyUsage.KA),
    )

    esme = _installed_esme(installation)
    answer = decode_message(esme.handle(frame))
    assert isinstance(answer, GeneralSigning)  # to the CoS Party, signed by the meter
    assert answer.recipient_title == TRANSITIONAL_COS_EUI
    assert verify_frame_signature(answer, installation.public(installation.esme, KeyUsage.DS))
    fields = der.decode_asn1(answer.payload, message_code=answer.message_code, cra_flag=2).fields
    assert isinstance(fields, dict)
    results = fields["credentials_replacement_report"]["replacement_results"]
    outcomes = [der.decode_with(REPLACEMENT_OUTCOME, r) for r in results]
    assert [o["status"] for o in outcomes if isinstance(o, dict)] == [STATUS_SUCCESS] * 2

    old = parse_eui(installation.user.eui)
    assert old not in esme.remote_parties and NEW_SUPPLIER in esme.remote_parties
    with pytest.raises(DeviceRefusal):  # the old Supplier is no longer trusted
        _disable_supply(installation, esme, old, installation.private(old, KeyUsage.DS), 7001)
    accepted = _disable_supply(installation, esme, NEW_SUPPLIER, new.ds, 1)
    assert verify_frame_signature(accepted, installation.public(installation.esme, KeyUsage.DS))


async def test_a_cos_update_without_the_cos_party_is_answered_e2(
    installation: Installation,
) -> None:
    """A key store without the CoS Party (`dccsim seed` alone, no `dccsim pki init`): no
    command, the User is answered E2 (not offered)."""
    keys = Keys(installation.keystore)
    keys.cos_ds_private = None
    bus = await _run(installation, _new_supplier(installation).body_xml, 7100, keys)
    [(key, env)] = bus.published
    assert key == DUIS_RESPONSE
    assert parse_response(env.body["xml"]).response_code == "E2"
