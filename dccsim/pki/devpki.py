"""The development PKI behind ``dccsim pki init``: test SMKI and DCCKI CAs, the DCC's own
identities, participants' bundles and emulated devices' credentials, all under ``<home>/pki``.

Everything here is idempotent: what exists and is still good (present, with its key, issued by
the current CA, naming what was asked) is left untouched, so a second call changes no file.
These are test credentials: keys are stored unencrypted (mode 0600, directories 0700).
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import fcntl
import hashlib
import ipaddress
import multiprocessing
import os
import resource
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from dccsim.pki.crl import RevocationRegister, ensure_crl
from dccsim.pki.dccki import (
    TlsIdentity,
    create_dccki_ca,
    issue_client_certificate,
    issue_server_certificate,
    participant_identity,
    subject_alt_names,
)
from dccsim.pki.files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    certificate_pem,
    ensure_private_dir,
    load_certificate,
    load_private_key,
    private_key_pem,
    write_atomic,
)
from dccsim.pki.keystore import Entry, KeyStore, PackedCredential
from dccsim.pki.smki import (
    KEY_ID_LENGTH,
    XML_SIGNING_ROLES,
    CertificateAuthority,
    KeyUsage,
    Role,
    issue_device_certificate,
    issue_organisation_certificate,
    key_identifier,
    random_serial,
    role_text,
    verify_issued_by,
)

DCC_EUI = bytes.fromhex("90B3D51F30000002")
"""The EUI the DCC's ACB and DSP XML-signing identities share (as in ZAZ1)."""

DCC_USER_ID = "DCC"

# SMKI certificates start at a fixed past instant so an emulated clock set back (device
# emulators, golden tests) never finds one not yet valid.
SMKI_NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
ORGANISATION_NOT_AFTER = dt.datetime(2099, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


SMKI_ROOT_AUTHORITY = "smki-root"
SMKI_ORGANISATION_AUTHORITY = "smki-oca"
SMKI_DEVICE_AUTHORITY = "smki-dca"
DCCKI_AUTHORITY = "dccki"


class PkiError(RuntimeError):
    """The development PKI cannot do what was asked (not initialised, conflicting identity)."""


@dataclass(frozen=True)
class PkiLayout:
    """Where everything lives under ``<home>/pki``."""

    home: Path
    pki_dir: Path
    smki_root_cert: Path
    smki_root_key: Path
    smki_issuing_cert: Path
    """Organisation CA (subject ``OU=07, CN=...``): signs DS/KA/XML-sign certificates."""
    smki_issuing_key: Path
    smki_device_ca_cert: Path
    """Device CA (subject ``CN=...``): signs device certificates."""
    smki_device_ca_key: Path
    smki_ca_bundle: Path
    """Root, organisation CA and device CA in one PEM file."""
    dccki_ca_cert: Path
    dccki_ca_key: Path
    keystore_dir: Path
    tls_dir: Path
    tls_server_cert: Path
    """The dccsim endpoints' (User gateway, SSI) server certificate."""
    tls_server_key: Path
    tls_ca: Path
    """The DCCKI CA certificate, for verifying peers."""
    wan_client_cert: Path
    """The DCC's WAN side (services/wan) as a TLS client of the gateway emulator."""
    wan_client_key: Path
    gateway_server_cert: Path
    """The SM WAN gateway emulator's server certificate."""
    gateway_server_key: Path
    parties_dir: Path

    @classmethod
    def of(cls, home: Path) -> PkiLayout:
        """The layout for home (nothing is created)."""
        home = Path(home).expanduser().absolute()
        pki = home / "pki"
        smki = pki / "smki"
        tls = pki / "tls"
        return cls(
            home=home,
            pki_dir=pki,
            smki_root_cert=smki / "root.pem",
            smki_root_key=smki / "root.key",
            smki_issuing_cert=smki / "issuing.pem",
            smki_issuing_key=smki / "issuing.key",
            smki_device_ca_cert=smki / "device-ca.pem",
            smki_device_ca_key=smki / "device-ca.key",
            smki_ca_bundle=smki / "smki-ca.pem",
            dccki_ca_cert=pki / "dccki" / "ca.pem",
            dccki_ca_key=pki / "dccki" / "ca.key",
            keystore_dir=pki / "keystore",
            tls_dir=tls,
            tls_server_cert=tls / "server.pem",
            tls_server_key=tls / "server.key",
            tls_ca=tls / "ca.pem",
            wan_client_cert=tls / "wan-client.pem",
            wan_client_key=tls / "wan-client.key",
            gateway_server_cert=tls / "gateway-server.pem",
            gateway_server_key=tls / "gateway-server.key",
            parties_dir=pki / "parties",
        )

    def keystore(self) -> KeyStore:
        return _keystore(self.keystore_dir)

    @property
    def crl_dir(self) -> Path:
        return self.pki_dir / "crl"

    @property
    def dccki_crl(self) -> Path:
        """The DCCKI CA's CRL (PEM): TLS servers watch it (dccki.CrlWatcher)."""
        return self.crl_path(DCCKI_AUTHORITY)

    @property
    def revocations(self) -> Path:
        """The revocation register (crl.RevocationRegister)."""
        return self.pki_dir / "revocations.jsonl"

    def crl_path(self, authority: str) -> Path:
        """Where the CRL of one of AUTHORITIES is published."""
        return self.crl_dir / f"{authority}.crl.pem"

    def authorities(self) -> dict[str, tuple[Path, Path, str]]:
        """dccsim's own CAs: name -> (certificate path, private key path, ``smki``/``dccki``)."""
        return {
            SMKI_ROOT_AUTHORITY: (self.smki_root_cert, self.smki_root_key, "smki"),
            SMKI_ORGANISATION_AUTHORITY: (self.smki_issuing_cert, self.smki_issuing_key, "smki"),
            SMKI_DEVICE_AUTHORITY: (self.smki_device_ca_cert, self.smki_device_ca_key, "smki"),
            DCCKI_AUTHORITY: (self.dccki_ca_cert, self.dccki_ca_key, "dccki"),
        }


@dataclass(frozen=True)
class PartyBundle:
    """What a test participant takes away: its credentials and the CAs to trust."""

    out_dir: Path
    eui: bytes
    role: Role
    user_id: str
    ds_cert: Path
    ds_key: Path
    ka_cert: Path
    ka_key: Path
    xml_sign_cert: Path
    xml_sign_key: Path
    tls_client_cert: Path
    tls_client_key: Path
    dccki_ca: Path
    smki_ca: Path
    dcc_xml_sign_cert: Path
    dcc_acb_ds_cert: Path
    dcc_acb_ka_cert: Path
    readme: Path


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@contextmanager
def _locked(layout: PkiLayout) -> Iterator[None]:
    """Serialise init/issue_party across processes (two services starting at once)."""
    ensure_private_dir(layout.pki_dir)
    fd = os.open(layout.pki_dir / ".lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_if_changed(path: Path, data: bytes, *, mode: int) -> None:
    try:
        if path.read_bytes() == data and path.stat().st_mode & 0o777 == mode:
            return
    except FileNotFoundError:
        pass
    write_atomic(path, data, mode=mode)


def _load_ca(cert_path: Path, key_path: Path) -> CertificateAuthority | None:
    if not (cert_path.exists() and key_path.exists()):
        return None
    ca = CertificateAuthority.load(cert_path, key_path)
    if ca.private_key.public_key() != ca.certificate.public_key():
        return None
    return ca


def _load_tls(cert_path: Path, key_path: Path, ca: CertificateAuthority) -> TlsIdentity | None:
    """The identity on disk if it is whole and issued by ca, else None."""
    if not (cert_path.exists() and key_path.exists()):
        return None
    certificate = load_certificate(cert_path)
    key = load_private_key(key_path)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != (
        certificate.public_key()
    ):
        return None
    if not verify_issued_by(certificate, ca.certificate):
        return None
    return TlsIdentity(certificate, key)


def _good_entry(
    store: KeyStore, eui: bytes, usage: KeyUsage, ca: CertificateAuthority
) -> Entry | None:
    """The store's (eui, usage) entry if it has its key and ca issued it, else None."""
    if (eui, usage) not in store:
        return None
    entry = store.get(eui, usage)
    if entry.private_key is None or not verify_issued_by(entry.certificate, ca.certificate):
        return None
    return entry


def _ensure_organisation(
    store: KeyStore,
    ca: CertificateAuthority,
    *,
    eui: bytes,
    role: int,
    usage: KeyUsage,
    common_name: str | None = None,
) -> Entry:
    entry = _good_entry(store, eui, usage, ca)
    if entry is not None and entry.role == role:
        return entry
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue_organisation_certificate(
        ca,
        eui=eui,
        role=role,
        usage=usage,
        public_key=key.public_key(),
        not_before=SMKI_NOT_BEFORE,
        not_after=ORGANISATION_NOT_AFTER,
        common_name=common_name,
    )
    return store.put(eui, usage, certificate, key, role=role)


_KEYSTORES: dict[Path, KeyStore] = {}


def _keystore(root: Path) -> KeyStore:
    # One KeyStore per directory per process, so its index is read once and then followed.
    store = _KEYSTORES.get(root)
    if store is None:
        store = _KEYSTORES[root] = KeyStore(root)
    return store


_DEVICE_CAS: dict[Path, tuple[int, int, CertificateAuthority]] = {}


def _device_ca(layout: PkiLayout) -> CertificateAuthority:
    # Cached for issue_device's sake, keyed on the file's identity so a re-init is noticed.
    try:
        stat = layout.smki_device_ca_cert.stat()
    except FileNotFoundError:
        raise PkiError(f"no development PKI at {layout.pki_dir}: run `dccsim pki init`") from None
    cached = _DEVICE_CAS.get(layout.pki_dir)
    if cached is not None and cached[:2] == (stat.st_ino, stat.st_mtime_ns):
        return cached[2]
    ca = _load_ca(layout.smki_device_ca_cert, layout.smki_device_ca_key)
    if ca is None:
        raise PkiError(f"device CA at {layout.smki_device_ca_cert} is incomplete")
    _DEVICE_CAS[layout.pki_dir] = (stat.st_ino, stat.st_mtime_ns, ca)
    return ca


def _required_ca(cert_path: Path, key_path: Path, layout: PkiLayout) -> CertificateAuthority:
    ca = _load_ca(cert_path, key_path)
    if ca is None:
        raise PkiError(f"no development PKI at {layout.pki_dir}: run `dccsim pki init`")
    return ca


# --------------------------------------------------------------------------------------------
# init_pki
# --------------------------------------------------------------------------------------------


def init_pki(
    home: Path,
    *,
    hostnames: Iterable[str] | None = None,
    ips: Iterable[str] | None = None,
) -> PkiLayout:
    """Create (or complete) the development PKI under ``home/pki`` and return its layout.

    Makes the SMKI root, organisation CA and device CA; the DCCKI CA; the DCC's ACB DS and KA
    (EUI 90B3D51F30000002, role 04) and DSP XML-signing (role 89) credentials in the key store;
    the DCCKI server certificate for the dccsim endpoints, the WAN side's client certificate and
    the gateway emulator's server certificate. The two server certificates name hostnames and
    ips (default ``localhost`` and ``127.0.0.1``); given explicitly and different from what the
    existing ones name, they are reissued, while None keeps whatever is there, so a caller that
    only needs the PKI to exist (``dccsim seed``) never undoes ``dccsim pki init --hostname``.
    Idempotent: a second call with the same arguments changes nothing.
    """
    layout = PkiLayout.of(home)
    wanted = None if hostnames is None and ips is None else (list(hostnames or ()), list(ips or ()))
    with _locked(layout):
        for directory in (
            layout.smki_root_cert.parent,
            layout.dccki_ca_cert.parent,
            layout.tls_dir,
            layout.parties_dir,
        ):
            ensure_private_dir(directory)

        # SMKI CAs. A new root means new issuing CAs; a new issuing CA, new DCC credentials.
        root = _load_ca(layout.smki_root_cert, layout.smki_root_key)
        fresh = root is None
        if root is None:
            root = CertificateAuthority.create_root(
                common_name="dccsim SMKI Root", not_before=SMKI_NOT_BEFORE
            )
            root.save(layout.smki_root_cert, layout.smki_root_key)
        issuing = None if fresh else _load_ca(layout.smki_issuing_cert, layout.smki_issuing_key)
        if issuing is None or not verify_issued_by(issuing.certificate, root.certificate):
            issuing = CertificateAuthority.create_issuing(
                root, common_name="dccsim OCA", not_before=SMKI_NOT_BEFORE
            )
            issuing.save(layout.smki_issuing_cert, layout.smki_issuing_key)
        device_ca = (
            None if fresh else _load_ca(layout.smki_device_ca_cert, layout.smki_device_ca_key)
        )
        if device_ca is None or not verify_issued_by(device_ca.certificate, root.certificate):
            device_ca = CertificateAuthority.create_issuing(
                root, common_name="dccsim DCA", role=None, not_before=SMKI_NOT_BEFORE
            )
            device_ca.save(layout.smki_device_ca_cert, layout.smki_device_ca_key)
        _write_if_changed(
            layout.smki_ca_bundle,
            b"".join(
                certificate_pem(c)
                for c in (root.certificate, issuing.certificate, device_ca.certificate)
            ),
            mode=PUBLIC_FILE_MODE,
        )

        # The DCC's own SMKI identities.
        store = layout.keystore()
        _ensure_organisation(store, issuing, eui=DCC_EUI, role=Role.ACB, usage=KeyUsage.DS)
        _ensure_organisation(store, issuing, eui=DCC_EUI, role=Role.ACB, usage=KeyUsage.KA)
        _ensure_organisation(
            store, issuing, eui=DCC_EUI, role=Role.DSP_XML_SIGN, usage=KeyUsage.XML_SIGN
        )

        # DCCKI.
        dccki = _load_ca(layout.dccki_ca_cert, layout.dccki_ca_key)
        if dccki is None:
            dccki = create_dccki_ca()
            dccki.save(layout.dccki_ca_cert, layout.dccki_ca_key)
        _write_if_changed(layout.tls_ca, certificate_pem(dccki.certificate), mode=PUBLIC_FILE_MODE)
        _ensure_server(dccki, layout.tls_server_cert, layout.tls_server_key, wanted)
        _ensure_server(dccki, layout.gateway_server_cert, layout.gateway_server_key, wanted)
        wan = _load_tls(layout.wan_client_cert, layout.wan_client_key, dccki)
        if wan is None or participant_identity(wan.certificate) != (DCC_USER_ID, DCC_EUI):
            issue_client_certificate(
                dccki, common_name=DCC_USER_ID, eui=DCC_EUI, organisation="DCC WAN"
            ).write(layout.wan_client_cert, layout.wan_client_key)

        # A CRL per CA from the start: a TLS server checking CRLs refuses every peer whose
        # issuer has none. Republished when missing, stale or signed by a CA since replaced.
        ensure_private_dir(layout.crl_dir)
        register = RevocationRegister(layout.revocations)
        cas = {
            SMKI_ROOT_AUTHORITY: root,
            SMKI_ORGANISATION_AUTHORITY: issuing,
            SMKI_DEVICE_AUTHORITY: device_ca,
            DCCKI_AUTHORITY: dccki,
        }
        for name, ca in cas.items():
            ensure_crl(layout.crl_path(name), ca, register.of(name))
    return layout


DEFAULT_SERVER_NAMES = (["localhost"], ["127.0.0.1"])


def _ensure_server(
    ca: CertificateAuthority,
    cert_path: Path,
    key_path: Path,
    wanted: tuple[list[str], list[str]] | None,
) -> None:
    """Keep a whole server identity from ca that names wanted (anything, when wanted is None);
    otherwise issue one for wanted or the default names."""
    current = _load_tls(cert_path, key_path, ca)
    if current is not None:
        if wanted is None:
            return
        dns, addresses = subject_alt_names(current.certificate)
        hosts, ips = wanted
        if sorted(dns) == sorted(hosts) and sorted(addresses) == sorted(
            str(ipaddress.ip_address(a)) for a in ips
        ):
            return
    hosts, ips = wanted or DEFAULT_SERVER_NAMES
    issue_server_certificate(ca, hostnames=hosts, ip_addresses=ips).write(cert_path, key_path)


# --------------------------------------------------------------------------------------------
# issue_party
# --------------------------------------------------------------------------------------------

_README = """\
# dccsim test credentials for {user_id} (EUI {eui}, role {role_hex} {role_name})

Test credentials only: issued by a dccsim development PKI and trusted by nothing else.
The `.key` files are unencrypted PKCS#8 PEM (mode 0600): keep them private.

- `tls-client.pem`, `tls-client.key`: DCCKI client certificate (CN={user_id},
  serialNumber={eui}) and key. Present them when your User System connects to dccsim's
  DUIS endpoints over mutual TLS.
- `dccki-ca.pem`: the DCCKI CA. Verify dccsim's TLS server certificate against it.
- `xml-sign.pem`, `xml-sign.key`: SMKI XML-signing certificate (OU=87) and key. Sign your
  DUIS Service Requests (XMLDSig) with them.
- `ds.pem`, `ds.key`: SMKI digital-signing certificate (OU={role_hex}) and key. Sign GBCS
  commands with them (Signed Pre-Commands, CV 5).
- `ka.pem`, `ka.key`: SMKI key-agreement certificate (OU={role_hex}) and key. Agree GBCS
  keys with devices (to check the MACs on their responses and alerts, and to decrypt).
- `smki-ca.pem`: SMKI root, organisation CA and device CA. Verify SMKI certificates
  (yours, the DCC's, devices') against it.
- `dcc-xml-sign.pem`: the DSP's XML-signing certificate (OU=89). Verify the signatures on
  DUIS Responses and Alerts with it.
- `dcc-acb-ds.pem`, `dcc-acb-ka.pem`: the DCC Access Control Broker's certificates (OU=04),
  the DCC identity devices hold for DCC-originated commands.
"""


def issue_party(
    home: Path,
    *,
    eui: bytes,
    role: Role,
    user_id: str,
    out_dir: Path,
) -> PartyBundle:
    """Issue a test participant's credentials and write them to out_dir (see its README.md).

    The SMKI DS, KA (role) and XML-sign (role 87) certificates and keys go into the key store
    too, so dccsim can verify the participant's signatures; the DCCKI client certificate names
    user_id and eui. Idempotent: re-running keeps the same keys and files. Raises PkiError when
    the PKI is not initialised, the role is not a participant's, or the EUI already belongs to
    another role.
    """
    layout = PkiLayout.of(home)
    role = Role(role)
    if role in XML_SIGNING_ROLES or role in (Role.ROOT, Role.ISSUING_AUTHORITY):
        raise PkiError(f"role {role_text(role)} ({role.name}) is not a participant's role")
    if eui == DCC_EUI:
        raise PkiError(f"EUI {eui.hex().upper()} is the DCC's own")
    if not user_id:
        raise PkiError("a participant needs a DCC User ID")
    out_dir = Path(out_dir)
    with _locked(layout):
        root = _required_ca(layout.smki_root_cert, layout.smki_root_key, layout)
        issuing = _required_ca(layout.smki_issuing_cert, layout.smki_issuing_key, layout)
        device_ca = _required_ca(layout.smki_device_ca_cert, layout.smki_device_ca_key, layout)
        dccki = _required_ca(layout.dccki_ca_cert, layout.dccki_ca_key, layout)
        store = layout.keystore()

        for usage in (KeyUsage.DS, KeyUsage.KA):
            held = _good_entry(store, eui, usage, issuing)
            if held is not None and held.role != role:
                raise PkiError(
                    f"EUI {eui.hex().upper()} already holds {usage.value} credentials "
                    f"for role {held.role}"
                )
        ds = _ensure_organisation(store, issuing, eui=eui, role=role, usage=KeyUsage.DS)
        ka = _ensure_organisation(store, issuing, eui=eui, role=role, usage=KeyUsage.KA)
        xml = _ensure_organisation(
            store, issuing, eui=eui, role=Role.XML_SIGN, usage=KeyUsage.XML_SIGN
        )

        party_dir = ensure_private_dir(layout.parties_dir / eui.hex().upper())
        tls_cert, tls_key = party_dir / "tls-client.pem", party_dir / "tls-client.key"
        tls = _load_tls(tls_cert, tls_key, dccki)
        if tls is None or participant_identity(tls.certificate) != (user_id, eui):
            tls = issue_client_certificate(dccki, common_name=user_id, eui=eui)
            tls.write(tls_cert, tls_key)

        dcc = {usage: store.certificate(DCC_EUI, usage) for usage in KeyUsage}
        ensure_private_dir(out_dir)
        bundle = PartyBundle(
            out_dir=out_dir,
            eui=bytes(eui),
            role=role,
            user_id=user_id,
            ds_cert=out_dir / "ds.pem",
            ds_key=out_dir / "ds.key",
            ka_cert=out_dir / "ka.pem",
            ka_key=out_dir / "ka.key",
            xml_sign_cert=out_dir / "xml-sign.pem",
            xml_sign_key=out_dir / "xml-sign.key",
            tls_client_cert=out_dir / "tls-client.pem",
            tls_client_key=out_dir / "tls-client.key",
            dccki_ca=out_dir / "dccki-ca.pem",
            smki_ca=out_dir / "smki-ca.pem",
            dcc_xml_sign_cert=out_dir / "dcc-xml-sign.pem",
            dcc_acb_ds_cert=out_dir / "dcc-acb-ds.pem",
            dcc_acb_ka_cert=out_dir / "dcc-acb-ka.pem",
            readme=out_dir / "README.md",
        )
        public: list[tuple[Path, x509.Certificate]] = [
            (bundle.ds_cert, ds.certificate),
            (bundle.ka_cert, ka.certificate),
            (bundle.xml_sign_cert, xml.certificate),
            (bundle.tls_client_cert, tls.certificate),
            (bundle.dccki_ca, dccki.certificate),
            (bundle.dcc_xml_sign_cert, dcc[KeyUsage.XML_SIGN]),
            (bundle.dcc_acb_ds_cert, dcc[KeyUsage.DS]),
            (bundle.dcc_acb_ka_cert, dcc[KeyUsage.KA]),
        ]
        for path, certificate in public:
            _write_if_changed(path, certificate_pem(certificate), mode=PUBLIC_FILE_MODE)
        _write_if_changed(
            bundle.smki_ca,
            b"".join(
                certificate_pem(c)
                for c in (root.certificate, issuing.certificate, device_ca.certificate)
            ),
            mode=PUBLIC_FILE_MODE,
        )
        for path, entry in ((bundle.ds_key, ds), (bundle.ka_key, ka), (bundle.xml_sign_key, xml)):
            assert entry.private_key is not None
            _write_if_changed(path, private_key_pem(entry.private_key), mode=PRIVATE_FILE_MODE)
        _write_if_changed(bundle.tls_client_key, private_key_pem(tls.private_key), mode=0o600)
        readme = _README.format(
            user_id=user_id, eui=eui.hex().upper(), role_hex=role_text(role), role_name=role.name
        )
        _write_if_changed(bundle.readme, readme.encode(), mode=PUBLIC_FILE_MODE)
    return bundle


# --------------------------------------------------------------------------------------------
# Device certificates from a template
# --------------------------------------------------------------------------------------------

_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
# How cryptography's PKCS#8 DER of a P-256 key ends: [1] { BIT STRING 00 || uncompressed point }.
_PKCS8_P256_LENGTH = 138
_PKCS8_POINT_PREFIX = bytes.fromhex("a144034200")
_POINT_LENGTH = 65
_SERIAL_LENGTH = 16
_PREHASHED_SHA256 = ec.ECDSA(Prehashed(hashes.SHA256()))
_P256 = ec.SECP256R1()
_NO_ENCRYPTION = serialization.NoEncryption()
_KEY_USAGE_DER = {KeyUsage.DS: bytes.fromhex("03020780"), KeyUsage.KA: bytes.fromhex("03020308")}


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _point_key_id(point: bytes) -> bytes:
    # smki.key_identifier from the uncompressed point itself (RFC 5280 4.2.1.2 method 2).
    digest = hashlib.sha1(point, usedforsecurity=False).digest()[-KEY_ID_LENGTH:]
    return bytes([0x40 | (digest[0] & 0x0F)]) + digest[1:]


def _pem_body(data: bytes) -> bytes:
    """The DER inside one PEM block (or data itself when it is DER already)."""
    if not data.startswith(b"-----BEGIN"):
        return data
    lines = data.split(b"\n")
    return base64.b64decode(
        b"".join(line for line in lines if line and not line.startswith(b"---"))
    )


def _serial_of(der: bytes) -> int | None:
    """The serialNumber of a DER certificate, read without parsing the rest; None if malformed."""

    def header(at: int) -> tuple[int, int]:  # (content offset, content length) of the TLV at
        length = der[at + 1]
        at += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(der[at : at + count], "big")
            at += count
        return at, length

    try:
        at, _ = header(0)  # Certificate
        at, _ = header(at)  # TBSCertificate
        if der[at] == 0xA0:  # [0] version
            content, length = header(at)
            at = content + length
        if der[at] != 0x02:
            return None
        content, length = header(at)
        return int.from_bytes(der[content : content + length], "big", signed=True)
    except IndexError:
        return None


class DeviceCertificateTemplate:
    """The device certificates one CA issues from one notBefore, as DER with holes.

    The GBCS device profile fixes everything but the serial, the public key, its SKI and the
    EUI in the hardwareModuleName, and with a 16-byte serial (``smki.random_serial``) every one
    of those has a fixed length, so a certificate is its TBSCertificate's constant pieces with
    the four values put in, signed with the CA's key. The pieces are cut from a specimen that
    ``smki.issue_device_certificate`` (cryptography's x509 builder) makes, so the two are the
    same certificate for the same inputs byte for byte up to the signature. That costs one
    ECDSA signature and a few concatenations per certificate instead of the builder's work.
    """

    def __init__(self, ca: CertificateAuthority, not_before: dt.datetime) -> None:
        self.ca = ca
        self.not_before = not_before
        self._pieces: dict[KeyUsage, tuple[bytes, bytes, bytes, bytes, bytes]] = {}
        for usage in (KeyUsage.DS, KeyUsage.KA):
            # A specimen whose random values each occur once in its TBS, to cut around.
            key = ec.generate_private_key(ec.SECP256R1())
            point = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            serial = random_serial()
            eui = secrets.token_bytes(8)
            specimen = issue_device_certificate(
                ca,
                eui=eui,
                usage=usage,
                public_key=key.public_key(),
                not_before=not_before,
                serial=serial,
            )
            tbs = specimen.tbs_certificate_bytes
            holes = [
                serial.to_bytes(_SERIAL_LENGTH, "big"),
                point,
                key_identifier(key.public_key()),
                eui,
            ]
            pieces: list[bytes] = []
            at = 0
            for hole in holes:
                where = tbs.find(hole, at)
                if where < 0 or tbs.find(hole, where + 1) >= 0:
                    raise PkiError("device certificate layout is not the one the template knows")
                pieces.append(tbs[at:where])
                at = where + len(hole)
            pieces.append(tbs[at:])
            self._pieces[usage] = (pieces[0], pieces[1], pieces[2], pieces[3], pieces[4])
            if self.tbs(usage, serial=serial, point=point, eui=eui) != tbs or specimen.public_bytes(
                serialization.Encoding.DER
            ) != self._certificate(tbs, specimen.signature):
                raise PkiError("device certificate template does not rebuild its specimen")
        self._issuer_der = ca.certificate.subject.public_bytes()
        self._authority_key_id = b"\x80\x08" + ca.key_identifier

    def tbs(self, usage: KeyUsage, *, serial: int, point: bytes, eui: bytes) -> bytes:
        """The TBSCertificate of the (usage) device certificate for eui, serial and the public
        key's uncompressed point. serial must be a 16-byte one (2**120 <= serial < 2**127)."""
        if not (1 << 120) <= serial < (1 << 127):
            raise ValueError("the template takes 16-byte serials (smki.random_serial)")
        if len(point) != _POINT_LENGTH or point[0] != 4 or len(eui) != 8:
            raise ValueError("a P-256 uncompressed point and an 8-byte EUI")
        a, b, c, d, e = self._pieces[KeyUsage(usage)]
        return b"".join(
            (
                a,
                serial.to_bytes(_SERIAL_LENGTH, "big"),
                b,
                point,
                c,
                _point_key_id(point),
                d,
                eui,
                e,
            )
        )

    @staticmethod
    def _certificate(tbs: bytes, signature: bytes) -> bytes:
        return _tlv(0x30, tbs + _ECDSA_WITH_SHA256 + _tlv(0x03, b"\x00" + signature))

    def certificate_der(self, usage: KeyUsage, *, serial: int, point: bytes, eui: bytes) -> bytes:
        """The DER device certificate, signed now with the CA's key (ECDSA with SHA-256)."""
        tbs = self.tbs(usage, serial=serial, point=point, eui=eui)
        digest = hashlib.sha256(tbs).digest()  # prehashed: cheaper than the ECDSA(SHA256) path
        return self._certificate(tbs, self.ca.private_key.sign(digest, _PREHASHED_SHA256))

    def credential(self, eui: bytes, usage: KeyUsage) -> PackedCredential:
        """A fresh P-256 key pair for (eui, usage) and its certificate, both as DER. (What
        certificate_der does, inlined: this runs 800,000 times for a large estate.)"""
        usage = KeyUsage(usage)
        if len(eui) != 8:
            raise ValueError("an 8-byte EUI")
        key = ec.generate_private_key(_P256)
        key_der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            _NO_ENCRYPTION,
        )
        if len(key_der) == _PKCS8_P256_LENGTH and key_der[-70:-65] == _PKCS8_POINT_PREFIX:
            point = key_der[-_POINT_LENGTH:]  # the PKCS#8 DER carries the public point already
        else:
            point = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        serial = random_serial()  # 2**120 <= serial < 2**127: the template's 16 bytes
        a, b, c, d, e = self._pieces[usage]
        tbs = b"".join(
            (
                a,
                serial.to_bytes(_SERIAL_LENGTH, "big"),
                b,
                point,
                c,
                _point_key_id(point),
                d,
                eui,
                e,
            )
        )
        signature = self.ca.private_key.sign(hashlib.sha256(tbs).digest(), _PREHASHED_SHA256)
        return PackedCredential(
            bytes(eui), usage, serial, self._certificate(tbs, signature), key_der
        )

    def held_serial(self, stored: tuple[bytes, bytes | None, bool], usage: KeyUsage) -> int | None:
        """The serial of a stored credential (KeyStore.raw) when it is one this CA issued for
        usage with its private key beside it, else None. Checked from the bytes, without
        parsing or verifying: the issuer name, the CA's key identifier in the AKI and the key
        usage are in the certificate, and the key's public point is the certificate's. (The
        store writes atomically, so a stored certificate is never torn; a certificate from
        another CA, such as one since re-initialised, lacks this CA's key identifier.)"""
        certificate, key, _as_files = stored
        if key is None:
            return None
        try:
            certificate, key = _pem_body(certificate), _pem_body(key)
        except ValueError:
            return None
        if (
            self._issuer_der not in certificate
            or self._authority_key_id not in certificate
            or _KEY_USAGE_DER[KeyUsage(usage)] not in certificate
        ):
            return None
        if len(key) == _PKCS8_P256_LENGTH and key[-70:-65] == _PKCS8_POINT_PREFIX:
            if key[-_POINT_LENGTH:] not in certificate:
                return None
        else:
            try:
                private = serialization.load_der_private_key(key, password=None)
                public = x509.load_der_x509_certificate(certificate).public_key()
            except ValueError:
                return None
            if private.public_key() != public:
                return None
        return _serial_of(certificate)


_TEMPLATES: dict[tuple[int, dt.datetime], DeviceCertificateTemplate] = {}


def _template(ca: CertificateAuthority, not_before: dt.datetime) -> DeviceCertificateTemplate:
    # One per CA and notBefore per process (the CA object is itself cached by _device_ca).
    key = (id(ca), not_before)
    template = _TEMPLATES.get(key)
    if template is None or template.ca is not ca:
        template = _TEMPLATES[key] = DeviceCertificateTemplate(ca, not_before)
    return template


# --------------------------------------------------------------------------------------------
# issue_device
# --------------------------------------------------------------------------------------------


def issue_device(
    home: Path, *, eui: bytes, not_before: dt.datetime = SMKI_NOT_BEFORE
) -> tuple[Entry, Entry]:
    """The device's (DS, KA) credentials, issued by the device CA and kept with their private
    keys in the key store (dccsim plays the device). Returns the existing pair when the store
    already holds both; raises PkiError when the PKI is not initialised."""
    return issue_devices(home, [eui], not_before=not_before)[0]


def issue_devices(
    home: Path,
    euis: Iterable[bytes],
    *,
    not_before: dt.datetime = SMKI_NOT_BEFORE,
    batch: int = 500,
) -> list[tuple[Entry, Entry]]:
    """issue_device for many EUIs (in order), writing the key store batch devices at a time
    (as files, one pair a credential). For a whole estate, issue_device_estate is far quicker."""
    layout = PkiLayout.of(home)
    ca, store = _device_ca(layout), layout.keystore()
    template = _template(ca, not_before)
    pending: list[tuple[bytes, KeyUsage, x509.Certificate, ec.EllipticCurvePrivateKey, None]] = []
    slots: list[tuple[int, int]] = []  # (pair index, 0 for DS / 1 for KA) of each pending item
    found: list[list[Entry | None]] = []

    def flush() -> None:
        for (index, position), entry in zip(slots, store.put_many(pending), strict=True):
            found[index][position] = entry
        pending.clear()
        slots.clear()

    seen: dict[bytes, list[Entry | None]] = {}
    for eui in euis:
        if eui in seen:  # the same device twice in one call: issue it once
            found.append(seen[eui])
            continue
        pair: list[Entry | None] = [None, None]
        found.append(pair)
        seen[eui] = pair
        for position, usage in enumerate((KeyUsage.DS, KeyUsage.KA)):
            if (eui, usage) in store:
                entry = store.get(eui, usage)
                if entry.private_key is not None and verify_issued_by(
                    entry.certificate, ca.certificate
                ):
                    pair[position] = entry
                    continue
            fresh = template.credential(eui, usage)
            key = serialization.load_der_private_key(fresh.private_key_der, password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            certificate = x509.load_der_x509_certificate(fresh.certificate_der)
            pending.append((eui, usage, certificate, key, None))
            slots.append((len(found) - 1, position))
        if len(pending) >= 2 * batch:
            flush()
    flush()
    pairs = []
    for ds, ka in found:
        assert ds is not None and ka is not None
        pairs.append((ds, ka))
    return pairs


# --------------------------------------------------------------------------------------------
# issue_device_estate: a whole test estate's device credentials
# --------------------------------------------------------------------------------------------

DEVICES_PER_PACK = 4096


@dataclass(frozen=True)
class DeviceIssueReport:
    """What issue_device_estate did: devices asked for, credentials issued and already held,
    packs written, wall seconds and CPU seconds of the issuing (the workers', or this
    process's when it ran inline; not what the caller did meanwhile)."""

    devices: int
    issued: int
    held: int
    packs: int
    seconds: float
    cpu_seconds: float

    @property
    def devices_per_second(self) -> float:
        return self.devices / self.seconds if self.seconds else 0.0


def _issue_chunk(
    home: str,
    euis: Sequence[bytes],
    not_before: dt.datetime,
    look: bool,
    filed: frozenset[bytes] = frozenset(),
) -> tuple[int, int, int]:
    """Issue the DS and KA credentials of euis (sorted, distinct) that the store does not hold
    good, as one pack. look=False: the caller knows the store holds none of them; filed: those
    of euis that have certificate files. Returns (issued, held, packs written). Runs in a
    worker process or inline."""
    layout = PkiLayout.of(Path(home))
    template = _template(_device_ca(layout), not_before)
    store = layout.keystore()
    fresh: list[PackedCredential] = []
    replacing: list[tuple[bytes, KeyUsage]] = []
    unindexed: list[tuple[bytes, KeyUsage, int]] = []
    held = 0
    indexed = store.indexed_serials(euis) if look else {}
    for eui in euis:
        for usage in (KeyUsage.DS, KeyUsage.KA):
            stored = store.raw(eui, usage, files=eui in filed) if look else None
            if stored is not None:
                serial = template.held_serial(stored, usage)
                if serial is not None:
                    held += 1
                    if indexed.get((eui, usage)) != serial:
                        unindexed.append((eui, usage, serial))  # a pack a crash left unindexed
                    continue
                if stored[2]:
                    replacing.append((eui, usage))
            fresh.append(template.credential(eui, usage))
    store.add_index_lines(unindexed)
    pack = store.put_pack(fresh, replacing_files=replacing)
    return len(fresh), held, 0 if pack is None else 1


def _children_cpu_seconds() -> float:
    # Counts children once reaped: the workers, after the pool's shutdown in wait().
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


class DeviceEstateIssue:
    """issue_device_estate under way: start() returns at once (the work runs in worker
    processes), wait() blocks until every pack is in and synced and returns the report, or
    raises what a worker raised. A run killed part way leaves whole packs only; running it
    again issues just what is missing."""

    def __init__(
        self,
        home: Path,
        euis: Iterable[bytes],
        *,
        workers: int | None = None,
        devices_per_pack: int = DEVICES_PER_PACK,
        not_before: dt.datetime = SMKI_NOT_BEFORE,
    ) -> None:
        self.layout = PkiLayout.of(home)
        _device_ca(self.layout)  # PkiError now, not in a worker, when there is no PKI
        self._start = time.perf_counter()
        self._children_cpu = _children_cpu_seconds()
        setup_started = time.process_time()
        ordered = sorted(set(euis))
        self._devices = len(ordered)
        store = self.layout.keystore()
        store.discard_stale_temps()
        # What the store may already hold (one folder listing, the pack ranges): a chunk that
        # none of it touches skips the per-credential lookups.
        filed = {name[:16] for name in os.listdir(store.root / "certs") if name.endswith(".pem")}
        ranges = store.pack_ranges()
        chunks: list[tuple[Sequence[bytes], bool, frozenset[bytes]]] = []
        for offset in range(0, len(ordered), devices_per_pack):
            chunk = ordered[offset : offset + devices_per_pack]
            first, last = chunk[0], chunk[-1]
            with_files = frozenset(eui for eui in chunk if eui.hex() in filed)
            look = bool(with_files) or any(a <= last and first <= b for a, b in ranges)
            chunks.append((chunk, look, with_files))
        count = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._futures: list[concurrent.futures.Future[tuple[int, int, int]]] = []
        self._inline: list[tuple[Sequence[bytes], bool, frozenset[bytes]]] = []
        home_text = str(self.layout.home)
        if count <= 1 or len(chunks) <= 1:
            self._inline = chunks
        else:
            # fork: quick, and needs no importable __main__ (spawn re-runs the caller's script).
            # With fork every worker is started at the first submit, i.e. here, before the
            # caller goes on to start threads of its own (an event loop's executor).
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(count, len(chunks)),
                mp_context=multiprocessing.get_context("fork"),
            )
            self._futures = [
                self._pool.submit(_issue_chunk, home_text, chunk, not_before, look, with_files)
                for chunk, look, with_files in chunks
            ]
        self._not_before = not_before
        self._setup_cpu = time.process_time() - setup_started

    def cancel(self) -> None:
        """Stop: chunks not started are dropped, the ones in progress finish their pack (so the
        store stays whole) in the background; a later run completes the rest."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._inline = []

    def wait(self) -> DeviceIssueReport:
        issued = held = packs = 0
        inline_started = time.process_time()
        inline_cpu = 0.0
        try:
            results = [
                _issue_chunk(str(self.layout.home), chunk, self._not_before, look, with_files)
                for chunk, look, with_files in self._inline
            ]
            inline_cpu = time.process_time() - inline_started
            results += [future.result() for future in self._futures]
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
        for one_issued, one_held, one_packs in results:
            issued += one_issued
            held += one_held
            packs += one_packs
        self.layout.keystore().sync()
        return DeviceIssueReport(
            devices=self._devices,
            issued=issued,
            held=held,
            packs=packs,
            seconds=time.perf_counter() - self._start,
            cpu_seconds=self._setup_cpu + inline_cpu + _children_cpu_seconds() - self._children_cpu,
        )


def issue_device_estate(
    home: Path,
    euis: Iterable[bytes],
    *,
    workers: int | None = None,
    devices_per_pack: int = DEVICES_PER_PACK,
    not_before: dt.datetime = SMKI_NOT_BEFORE,
) -> DeviceIssueReport:
    """The DS and KA credentials of every device in euis, issued by the device CA into the key
    store as packs (KeyStore.put_pack; read like any other credential) by ``workers`` processes
    (default: one a CPU; 1 runs inline). What the store already holds good is kept, so it is
    idempotent and completes an interrupted run. Raises PkiError when the PKI is not
    initialised. ``DeviceEstateIssue`` is the same started in the background."""
    return DeviceEstateIssue(
        home, euis, workers=workers, devices_per_pack=devices_per_pack, not_before=not_before
    ).wait()
