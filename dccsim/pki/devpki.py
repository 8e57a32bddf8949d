"""The development PKI behind ``dccsim pki init``: test SMKI and DCCKI CAs, the DCC's own
identities, participants' bundles and emulated devices' credentials, all under ``<home>/pki``.

Everything here is idempotent: what exists and is still good (present, with its key, issued by
the current CA, naming what was asked) is left untouched, so a second call changes no file.
These are test credentials: keys are stored unencrypted (mode 0600, directories 0700).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

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
from dccsim.pki.keystore import Entry, KeyStore
from dccsim.pki.smki import (
    XML_SIGNING_ROLES,
    CertificateAuthority,
    KeyUsage,
    Role,
    issue_device_certificate,
    issue_organisation_certificate,
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
    """issue_device for many EUIs (in order), writing the key store batch devices at a time."""
    layout = PkiLayout.of(home)
    ca, store = _device_ca(layout), layout.keystore()
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
            key = ec.generate_private_key(ec.SECP256R1())
            certificate = issue_device_certificate(
                ca, eui=eui, usage=usage, public_key=key.public_key(), not_before=not_before
            )
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
