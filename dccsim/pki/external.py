"""Import external test key sets into the key store, so dccsim verifies and signs as DCC Boxed.

Two sets come from DCC's public tooling (see ../shared/reference/README.md):

- **ZAZ1**, the test SMKI organisation set: a folder of ``<name>.pem`` certificates with DER
  PKCS#8 ``<name>.key`` keys (one ``.key.pem`` is PEM), and DCC Boxed's key store JSON
  (``{eui: {digitalSignature|keyAgreement: {serial: {certificate, privateKey, name, role}}}}``).
- **RTDS**, the GBCS test-vector key store: ``<eui>-ds.pem`` / ``<eui>-ka.pem`` device
  certificates (no keys) and remote parties' ``<eui>-<usage>.pem`` + ``.key`` pairs.

Both are legacy test sets: every credential imported is marked ``legacy`` (its expiry is not
enforced; ZAZ1's core certificates expired in 2025-26). Each set holds several certificates per
(EUI, usage) — Z1 and Z1b generations, prepayment KA pairs, three DSP XML-signing certificates —
so every certificate goes into a labelled slot named after it (found by serial, as an XML
signature names its signer) and one per (EUI, usage) also into the unlabelled slot that
``KeyStore.get`` answers with, unless the store already holds a credential there from
elsewhere (dccsim's own DCC identities stay in place unless ``make_primary``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.pki.keystore import KeyStore, KeyStoreError
from dccsim.pki.smki import (
    KeyUsage,
    ProfileError,
    check_smki_certificate,
    eui_of,
    parse_smki_certificate,
    parse_smki_private_key,
    role_of,
)

log = logging.getLogger(__name__)

ZAZ1 = "zaz1"
RTDS = "rtds"

_JSON_USAGES = {
    "digitalSignature": (KeyUsage.DS, KeyUsage.XML_SIGN),
    "keyAgreement": (KeyUsage.KA,),
}
# How strict parsers fail on ZAZ1's two "mdr" certificates, whose signature AlgorithmIdentifier
# carries an explicit NULL parameter (PROTOCOL.md, "File quirks").
_EXPLICIT_NULL_HINT = "signature_alg"
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ImportedCredential:
    """One certificate the import put into the key store."""

    name: str
    eui: bytes
    usage: KeyUsage
    serial: int
    role: int | None
    has_private_key: bool
    primary: bool
    """Whether it is now the (eui, usage) credential that KeyStore.get answers with."""


@dataclass
class ImportReport:
    """What an import did: what went in, what was left out and why, and what looked odd."""

    source: str
    imported: list[ImportedCredential] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(item, why) for each file or entry not imported."""
    warnings: list[str] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append((item, reason))
        log.warning("%s import: skipped %s: %s", self.source, item, reason)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s import: %s", self.source, message)

    def serials(self) -> set[int]:
        return {credential.serial for credential in self.imported}

    def summary(self) -> str:
        """One line: counts of certificates, private keys, primaries and skipped items."""
        keys = sum(1 for c in self.imported if c.has_private_key)
        primaries = sum(1 for c in self.imported if c.primary)
        return (
            f"{self.source}: imported {len(self.imported)} certificates ({keys} with private "
            f"keys, {primaries} primary), skipped {len(self.skipped)}, "
            f"{len(self.warnings)} warnings"
        )


@dataclass
class _Candidate:
    name: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | None
    eui: bytes
    usage: KeyUsage
    role: int | None
    preferred: bool = False
    """Named by its file as the (eui, usage) credential (RTDS's ``<eui>-<usage>``)."""


def _label(name: str) -> str:
    return _LABEL_UNSAFE.sub("_", name).strip("._-")[:80] or "unnamed"


def _candidate(
    report: ImportReport,
    name: str,
    certificate_data: bytes,
    key_data: bytes | None,
    *,
    expect_usages: tuple[KeyUsage, ...] | None = None,
    expect_role: int | None = None,
    expect_eui: bytes | None = None,
) -> _Candidate | None:
    """Parse and check one certificate (and key); None, with the reason reported, if unusable."""
    try:
        certificate = parse_smki_certificate(certificate_data)
    except ProfileError as error:
        if _EXPLICIT_NULL_HINT in str(error):
            report.warn(
                f"skipped {name}: its signature algorithm is encoded with an explicit NULL "
                "parameter, which strict parsers (Python cryptography) reject"
            )
            report.skipped.append((name, "signature algorithm with an explicit NULL"))
        else:
            report.skip(name, str(error))
        return None
    try:
        usage = check_smki_certificate(certificate)
    except ProfileError as error:
        report.skip(name, str(error))
        return None
    if usage is None:
        report.skip(name, "a CA or other certificate with no DS, KA or XML-sign usage")
        return None
    eui = eui_of(certificate)
    if eui is None:
        report.skip(name, "certificate names no EUI-64")
        return None
    role = role_of(certificate)
    if expect_usages is not None and usage not in expect_usages:
        report.warn(f"{name}: listed as {expect_usages[0].value} but its keyUsage says {usage}")
    if expect_role is not None and role is not None and expect_role != role:
        report.warn(f"{name}: listed with role {expect_role} but its OU says {role}")
    if expect_eui is not None and expect_eui != eui:
        report.warn(
            f"{name}: listed under {expect_eui.hex().upper()} but the certificate names "
            f"{eui.hex().upper()}; imported under {eui.hex().upper()}"
        )
    private_key = None
    if key_data is not None:
        try:
            private_key = parse_smki_private_key(key_data)
        except ProfileError as error:
            report.warn(f"{name}: private key not imported: {error}")
        else:
            if private_key.public_key() != certificate.public_key():
                report.warn(f"{name}: private key does not match the certificate; not imported")
                private_key = None
    return _Candidate(name, certificate, private_key, eui, usage, role)


def _merge(candidates: Iterable[_Candidate], report: ImportReport) -> list[_Candidate]:
    """One candidate per serial: the first seen, with a private key taken from a later copy."""
    by_serial: dict[int, _Candidate] = {}
    for candidate in candidates:
        serial = candidate.certificate.serial_number
        held = by_serial.get(serial)
        if held is None:
            by_serial[serial] = candidate
            continue
        if held.private_key is None and candidate.private_key is not None:
            held.private_key = candidate.private_key
        if candidate.preferred and not held.preferred:
            # Keep the name of the file filed under the EUI the certificate names.
            held.name, candidate.name, held.preferred = candidate.name, held.name, True
        if candidate.name != held.name:
            report.skipped.append((candidate.name, f"same certificate as {held.name}"))
    return list(by_serial.values())


def _rank(candidate: _Candidate) -> tuple[bool, bool, bool, bool, float]:
    """Sort key: the best candidate for the unlabelled (eui, usage) slot sorts first.

    A file named for the slot first (RTDS); then not a prepayment KA pair; then the Z1
    generation (the one the RTDS vectors and DCC Boxed's samples use) before Z1b; then not a
    ``pre-`` (superseded) certificate; then the most recently issued.
    """
    name = candidate.name.lower()
    return (
        not candidate.preferred,
        "pp-ka" in name or "pp-" in name,
        name.startswith("z1b-"),
        "-pre-" in name,
        -candidate.certificate.not_valid_before_utc.timestamp(),
    )


def _store(
    store: KeyStore,
    candidates: list[_Candidate],
    report: ImportReport,
    *,
    make_primary: bool,
) -> ImportReport:
    groups: dict[tuple[bytes, KeyUsage], list[_Candidate]] = {}
    for candidate in candidates:
        groups.setdefault((candidate.eui, candidate.usage), []).append(candidate)
    for (eui, usage), group in sorted(groups.items()):
        group.sort(key=_rank)
        best = group[0]
        primary_ok = make_primary
        if not primary_ok:
            try:
                held = store.get(eui, usage)
            except KeyStoreError:
                primary_ok = True  # nothing there yet
            else:
                if held.serial == best.certificate.serial_number:
                    primary_ok = held.private_key is None and best.private_key is not None
                    if not primary_ok:
                        report.imported.append(_imported(best, primary=True))
                        group = group[1:]  # already the primary; keep it as it is
                elif held.source in (ZAZ1, RTDS):
                    primary_ok = True  # an earlier import of a test set: this one replaces it
                else:
                    report.warn(
                        f"{eui.hex().upper()} {usage.value}: kept the store's own credential "
                        f"(serial {held.serial}) as primary; {best.name} is found by serial"
                    )
        for candidate in group:
            primary = primary_ok and candidate is best
            for label in ([None] if primary else []) + [_label(candidate.name)]:
                store.put(
                    eui,
                    usage,
                    candidate.certificate,
                    candidate.private_key,
                    role=candidate.role,
                    label=label,
                    name=candidate.name,
                    source=report.source,
                    legacy=True,
                )
            report.imported.append(_imported(candidate, primary=primary))
    report.imported.sort(key=lambda c: (c.eui, c.usage, not c.primary, c.name))
    return report


def _imported(candidate: _Candidate, *, primary: bool) -> ImportedCredential:
    return ImportedCredential(
        name=candidate.name,
        eui=candidate.eui,
        usage=candidate.usage,
        serial=candidate.certificate.serial_number,
        role=candidate.role,
        has_private_key=candidate.private_key is not None,
        primary=primary,
    )


def _folder_pairs(folder: Path, report: ImportReport) -> list[tuple[str, bytes, bytes | None]]:
    """(name, certificate bytes, key bytes or None) for each ``<name>.pem`` in folder; keys are
    ``<name>.key`` (PEM or DER) or ``<name>.key.pem``. Keys without a certificate are reported."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    pairs: list[tuple[str, bytes, bytes | None]] = []
    used_keys: set[Path] = set()
    for path in sorted(folder.glob("*.pem")):
        if path.name.endswith(".key.pem"):
            continue
        name = path.stem
        key_data = None
        for key_path in (folder / f"{name}.key", folder / f"{name}.key.pem"):
            if key_path.is_file():
                key_data = key_data or key_path.read_bytes()
                used_keys.add(key_path)
        pairs.append((name, path.read_bytes(), key_data))
    for path in sorted(folder.iterdir()):
        if path.name.endswith((".key", ".key.pem")) and path not in used_keys:
            report.skip(path.name, "private key without a certificate")
    return pairs


def import_zaz1(
    store: KeyStore,
    folder: Path | None,
    json_path: Path | None = None,
    *,
    make_primary: bool = False,
) -> ImportReport:
    """Import the ZAZ1 test SMKI set from its folder (``<name>.pem`` + ``<name>.key``) and/or DCC
    Boxed's key store JSON, as legacy credentials whose expiry is not enforced.

    Every certificate is kept (findable by serial with ``store.by_serial``); per (EUI, usage) the
    Z1-generation, non-prepayment one also becomes the credential ``store.get`` answers with,
    unless the store holds one that did not come from a test-set import (dccsim's own ACB and
    DSP identities share ZAZ1's EUI 90B3D51F30000002) and ``make_primary`` is False. The two
    "mdr" entries, whose signature algorithm carries an explicit NULL, are skipped with a
    warning. Returns what was imported and skipped. FileNotFoundError when neither source exists.
    """
    report = ImportReport(ZAZ1)
    candidates: list[_Candidate] = []
    if folder is None and json_path is None:
        raise FileNotFoundError("import_zaz1 needs the ZAZ1 folder, its JSON key store, or both")
    if folder is not None:
        for name, certificate_data, key_data in _folder_pairs(Path(folder), report):
            found = _candidate(report, name, certificate_data, key_data)
            if found is not None:
                candidates.append(found)
    if json_path is not None:
        candidates.extend(_json_candidates(Path(json_path), report))
    return _store(store, _merge(candidates, report), report, make_primary=make_primary)


def _json_candidates(json_path: Path, report: ImportReport) -> list[_Candidate]:
    try:
        data = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path}: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{json_path}: expected an object of EUIs")
    candidates: list[_Candidate] = []
    for eui_text, groups in data.items():
        try:
            listed_eui: bytes | None = bytes.fromhex(eui_text)
        except ValueError:
            listed_eui = None
        if listed_eui is None or len(listed_eui) != 8 or not isinstance(groups, dict):
            report.skip(str(eui_text), "not an EUI-64 with certificate groups")
            continue
        for group, entries in groups.items():
            usages = _JSON_USAGES.get(group)
            if usages is None or not isinstance(entries, dict):
                report.skip(f"{eui_text}/{group}", "unknown key usage group")
                continue
            for serial_text, entry in entries.items():
                item = f"{eui_text}/{group}/{serial_text}"
                if not isinstance(entry, dict) or not isinstance(entry.get("certificate"), str):
                    report.skip(item, "entry without a certificate")
                    continue
                name = str(entry.get("name") or item)
                key_text = entry.get("privateKey")
                role = entry.get("role")
                found = _candidate(
                    report,
                    name,
                    entry["certificate"].encode(),
                    key_text.encode() if isinstance(key_text, str) else None,
                    expect_usages=usages,
                    expect_role=role if isinstance(role, int) else None,
                    expect_eui=listed_eui,
                )
                if found is None:
                    continue
                if str(found.certificate.serial_number) != serial_text:
                    report.warn(
                        f"{name}: listed as serial {serial_text}, "
                        f"certificate has {found.certificate.serial_number}"
                    )
                candidates.append(found)
    return candidates


_RTDS_NAME = re.compile(r"(?P<eui>[0-9a-fA-F]{16})-(?P<usage>ds|ka|pp-ka)")


def import_rtds_keystore(
    store: KeyStore, folder: Path, *, make_primary: bool = False
) -> ImportReport:
    """Import the RTDS key store folder: the test devices' DS and KA certificates (no keys) and
    the remote parties' ``<eui>-<usage>.pem`` + ``.key`` pairs (prepayment ``-pp-ka`` pairs go
    into a labelled slot), as legacy credentials. A certificate filed under another EUI (the
    ``90b3d51f30000007-ka`` copy of supplier2's KA pair) is imported under the EUI it names;
    keys without a certificate and files that hold no certificate are skipped and reported.
    make_primary as for import_zaz1."""
    report = ImportReport(RTDS)
    candidates: list[_Candidate] = []
    for name, certificate_data, key_data in _folder_pairs(Path(folder), report):
        match = _RTDS_NAME.fullmatch(name)
        expect_eui = bytes.fromhex(match["eui"]) if match else None
        found = _candidate(report, name, certificate_data, key_data, expect_eui=expect_eui)
        if found is None:
            continue
        found.preferred = (
            match is not None and match["usage"] != "pp-ka" and expect_eui == found.eui
        )
        candidates.append(found)
    return _store(store, _merge(candidates, report), report, make_primary=make_primary)
