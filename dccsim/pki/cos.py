"""The DCC's Transitional Change of Supplier (CoS) Party in the development PKI.

On a change of supplier the DCC's CoS Party signs the command that puts the new Supplier's
certificates into a device's Supplier trust anchor cells (6.23, GBCS CS02b "Supplier by
Transitional CoS"); the ACB then MACs it as any command. The device authorises it by its
Transitional CoS trust anchor cell, so the party holds an SMKI organisation certificate of
remote-party role 05 (OU ``05``), Digital Signing only, as in the GBCS test data, issued by the
dev PKI's organisation CA and kept in the key store under its EUI-64.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.pki.devpki import PkiError, PkiLayout
from dccsim.pki.keystore import Entry, KeyStore
from dccsim.pki.smki import (
    CertificateAuthority,
    KeyUsage,
    Role,
    issue_organisation_certificate,
    verify_issued_by,
)

# The RTDS Transitional CoS Party's EUI-64 (the 6.23 vectors' originator)
TRANSITIONAL_COS_EUI = bytes.fromhex("90B3D51F30000004")
COMMON_NAME = "dccsim Transitional CoS"
# the same validity as the dev PKI's other organisation certificates (devpki.py)
NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2099, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def _held(store: KeyStore, issuing: CertificateAuthority) -> Entry | None:
    """The party's DS credential if the store holds it with its key, role and issuer."""
    if (TRANSITIONAL_COS_EUI, KeyUsage.DS) not in store:
        return None
    entry = store.get(TRANSITIONAL_COS_EUI, KeyUsage.DS)
    if (
        entry.private_key is None
        or entry.role != Role.TRANSITIONAL_COS
        or not verify_issued_by(entry.certificate, issuing.certificate)
    ):
        return None
    return entry


def ensure_transitional_cos(home: Path) -> Entry:
    """Issue (or keep) the Transitional CoS Party's SMKI DS certificate and key in the key
    store of the dev PKI under ``home``; the key store entry. Idempotent: a party already
    held, with its key and issued by the current organisation CA, is kept. Raises
    :class:`PkiError` when the PKI is not initialised (``dccsim pki init``)."""
    layout = PkiLayout.of(home)
    if not (layout.smki_issuing_cert.exists() and layout.smki_issuing_key.exists()):
        raise PkiError("the development PKI is not initialised; run `dccsim pki init`")
    issuing = CertificateAuthority.load(layout.smki_issuing_cert, layout.smki_issuing_key)
    store = layout.keystore()
    held = _held(store, issuing)
    if held is not None:
        return held
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue_organisation_certificate(
        issuing,
        eui=TRANSITIONAL_COS_EUI,
        role=Role.TRANSITIONAL_COS,
        usage=KeyUsage.DS,
        public_key=key.public_key(),
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
        common_name=COMMON_NAME,
    )
    return store.put(
        TRANSITIONAL_COS_EUI, KeyUsage.DS, certificate, key, role=Role.TRANSITIONAL_COS
    )
