"""A test site for the GSME model: fresh keys for the GSME, the ACB and a Supplier, a test
SMKI (Root, issuing CA) whose certificates fill the GSME's Supplier cells, an adjustable
clock, and helpers that send the GSME the transform's commands for an SRV (critical ones
signed by the Supplier) and check its answers' signatures and MACs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from dccsim.gbcs.crypto import ecdsa_sign_raw, verify_frame_signature, verify_mac
from dccsim.gbcs.frames import CRA_RESPONSE, GeneralCiphering, GeneralSigning, decode_message
from dccsim.pki.smki import CertificateAuthority, KeyUsage, Role, issue_organisation_certificate
from emulators.credentials import TrustAnchor
from emulators.device import RemoteParty
from emulators.gsme import GasLoadProfile, Gsme
from services.transform.srvs import (
    build_command,
    build_pre_command,
    command_from_signed_pre_command,
    lookup,
)
from tests.unit.gbcs_site import SUPPLIER_EUI as SUPPLIER_EUI
from tests.unit.gbcs_site import CriticalKeys
from tests.unit.gbcs_site import fresh_key as fresh_key

GSME_EUI = bytes.fromhex("00DB1234567890A1")  # the RTDS GSME
START = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)  # the RTDS responses' date-time
NOT_AFTER = START + dt.timedelta(days=365 * 30)  # past the templates' 2030 execution times
RTDS_ISSUED_AT = START  # the Issuer Event ID the RTDS gas commands carry


def rtds_load() -> GasLoadProfile:
    """The load profile of the RTDS-style GSME tests: 1,000,000 l, 150 l an hour."""
    return GasLoadProfile(start_litres=1_000_000, mean_litres_per_hour=150.0)


def der_of(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


@dataclass
class Smki:
    root: CertificateAuthority
    issuing: CertificateAuthority

    @classmethod
    def create(cls) -> Smki:
        root = CertificateAuthority.create_root(not_before=START - dt.timedelta(days=2))
        issuing = CertificateAuthority.create_issuing(root, not_before=START - dt.timedelta(days=2))
        return cls(root, issuing)

    def certificate(
        self,
        key: ec.EllipticCurvePrivateKey,
        usage: KeyUsage,
        eui: bytes = SUPPLIER_EUI,
        role: Role = Role.SUPPLIER,
    ) -> x509.Certificate:
        return issue_organisation_certificate(
            self.issuing,
            eui=eui,
            role=role,
            usage=usage,
            public_key=key.public_key(),
            not_before=START - dt.timedelta(days=1),
            not_after=NOT_AFTER,
        )

    def root_key(self) -> ec.EllipticCurvePublicKey:
        key = self.root.certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key


@dataclass
class GasSite:
    pki: Smki = field(default_factory=Smki.create)
    acb_ka: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    device_ka: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    device_ds: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    supplier_ka: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    supplier_ds: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    supplier_top_up_ka: ec.EllipticCurvePrivateKey = field(default_factory=fresh_key)
    now: dt.datetime = START
    counter: int = 1000
    gsme: Gsme = field(init=False)

    def __post_init__(self) -> None:
        self.gsme = self.build()

    def supplier_cells(self) -> tuple[TrustAnchor, ...]:
        """The Supplier's DS, KA and prepayment top-up KA cells, from the test SMKI."""
        return tuple(
            TrustAnchor.from_certificate(int(Role.SUPPLIER), cell, self.pki.certificate(key, kind))
            for key, kind, cell in (
                (self.supplier_ds, KeyUsage.DS, 0),
                (self.supplier_ka, KeyUsage.KA, 0),
                (self.supplier_top_up_ka, KeyUsage.KA, 1),
            )
        )

    def build(self, *extra_cells: TrustAnchor) -> Gsme:
        """A GSME as installed: trusting the Supplier, its cells filled, the test Root."""
        party = RemoteParty(
            SUPPLIER_EUI, self.supplier_ka.public_key(), self.supplier_ds.public_key()
        )
        return Gsme(
            eui=GSME_EUI,
            ka_private_key=self.device_ka,
            ds_private_key=self.device_ds,
            acb_ka_public=self.acb_ka.public_key(),
            remote_parties={SUPPLIER_EUI: party},
            clock=lambda: self.now,
            trust_anchors=(*self.supplier_cells(), *extra_cells),
            root_public_key=self.pki.root_key(),
        )

    def pre_command(
        self,
        srv: str,
        body: etree._Element | None = None,
        extra: dict[str, object] | None = None,
        *,
        counter: int | None = None,
        originator: bytes = SUPPLIER_EUI,
    ) -> bytes:
        """The transform's Pre-Command of ``srv`` to the GSME, from ``originator``."""
        transformation = lookup(srv, "GSME")
        assert transformation is not None and transformation.critical
        if counter is None:
            self.counter += 1
            counter = self.counter
        return build_pre_command(
            transformation,
            originator_title=originator,
            device_title=GSME_EUI,
            counter=counter,
            body=body,
            extra_parameters=extra,
        )

    def send_signed(self, pre: bytes, signer: ec.EllipticCurvePrivateKey) -> GeneralSigning:
        """``pre`` signed by ``signer`` and wrapped by the ACB; the GSME's answer, signed by
        its DS key."""
        signed = pre + b"\x40" + ecdsa_sign_raw(signer, pre[1:])
        command = command_from_signed_pre_command(
            signed,
            pre_command=pre,
            user_ds_public=signer.public_key(),
            acb_ka_private=self.acb_ka,
            device_ka_public=self.device_ka.public_key(),
        )
        reply = decode_message(self.gsme.handle(command))
        assert isinstance(reply, GeneralSigning) and reply.cra_flag == CRA_RESPONSE
        assert verify_frame_signature(reply, self.device_ds.public_key())
        return reply

    def critical(
        self,
        srv: str,
        body: etree._Element | None = None,
        extra: dict[str, object] | None = None,
        *,
        signer: ec.EllipticCurvePrivateKey | None = None,
        originator: bytes = SUPPLIER_EUI,
    ) -> GeneralSigning:
        """``srv``'s Pre-Command from ``originator``, signed by ``signer`` (the Supplier's
        DS key by default); the GSME's signed answer."""
        pre = self.pre_command(srv, body, extra, originator=originator)
        return self.send_signed(pre, signer or self.supplier_ds)

    def read(self, srv: str) -> GeneralCiphering:
        """The non-critical ``srv``'s command, MAC'd by the ACB; the answer, its MAC checked
        with the Supplier's KA key."""
        transformation = lookup(srv, "GSME")
        assert transformation is not None and not transformation.critical
        self.counter += 1
        command = build_command(
            transformation,
            originator_title=SUPPLIER_EUI,
            device_title=GSME_EUI,
            counter=self.counter,
            acb_ka_private=self.acb_ka,
            device_ka_public=self.device_ka.public_key(),
        )
        reply = decode_message(self.gsme.handle(command))
        assert isinstance(reply, GeneralCiphering)
        assert verify_mac(
            reply, private_key=self.supplier_ka, peer_public_key=self.device_ka.public_key()
        )
        return reply


def keyed_gsme(
    keys: CriticalKeys,
    clock: Callable[[], dt.datetime],
    *,
    load_profile: GasLoadProfile | None = None,
    epoch: dt.datetime | None = None,
) -> Gsme:
    """A GSME with ``keys``, trusting the Supplier, on ``clock``."""
    party = RemoteParty(SUPPLIER_EUI, keys.supplier_ka.public_key(), keys.supplier_ds.public_key())
    return Gsme(
        eui=GSME_EUI,
        ka_private_key=keys.device_ka,
        ds_private_key=keys.device_ds,
        acb_ka_public=keys.acb.public_key(),
        remote_parties={SUPPLIER_EUI: party},
        clock=clock,
        load_profile=load_profile,
        epoch=epoch,
    )


def signed_command(
    keys: CriticalKeys,
    srv: str,
    counter: int,
    body: etree._Element | None = None,
    *,
    issued_at: dt.datetime | None = RTDS_ISSUED_AT,
) -> bytes:
    """The transform's Pre-Command for the critical ``srv`` to the GSME (with the RTDS Issuer
    Event ID unless ``issued_at`` is None), signed by the Supplier, wrapped by the ACB."""
    transformation = lookup(srv, "GSME")
    assert transformation is not None and transformation.critical
    pre = build_pre_command(
        transformation,
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter,
        body=body,
        extra_parameters=None if issued_at is None else {"issued_at": issued_at},
    )
    return sign_and_wrap(keys, pre)


def sign_and_wrap(
    keys: CriticalKeys, pre: bytes, signer: ec.EllipticCurvePrivateKey | None = None
) -> bytes:
    """``pre`` signed by ``signer`` (the Supplier's DS key by default), wrapped by the ACB."""
    signer = signer or keys.supplier_ds
    signed = pre + b"\x40" + ecdsa_sign_raw(signer, pre[1:])
    return command_from_signed_pre_command(
        signed,
        pre_command=pre,
        user_ds_public=signer.public_key(),
        acb_ka_private=keys.acb,
        device_ka_public=keys.device_ka.public_key(),
    )


def signed_reply(gsme: Gsme, keys: CriticalKeys, command: bytes) -> GeneralSigning:
    """``gsme``'s answer to ``command``, checked to be signed by its DS key."""
    reply = decode_message(gsme.handle(command))
    assert isinstance(reply, GeneralSigning) and reply.signature_field == "signed"
    assert verify_frame_signature(reply, keys.device_ds.public_key())
    return reply
