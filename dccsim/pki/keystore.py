"""A key store on disk: SMKI certificates and private keys by (EUI-64, key usage).

Layout under the root (every directory 0700)::

    certs/<eui>-<usage>.pem           the (eui, usage) credential's certificate, PEM
    keys/<eui>-<usage>.key            its private key, PKCS#8 PEM, 0600 (absent when not held)
    certs/<eui>-<usage>~<label>.pem   further credentials for the same (eui, usage), e.g. the
    keys/<eui>-<usage>~<label>.key    older and prepayment certificates of an imported test set
    packs/<seq>-<first>-<last>.pack   device DS/KA credentials issued in bulk (put_pack): DER
                                      certificates and PKCS#8 keys of EUIs first..last, 0600
    index.jsonl                       one JSON line per put: eui, usage, serial, role (and label,
                                      name, source, legacy when set)
    .lock                             writers hold an exclusive flock on it

``<eui>`` is 16 lower-case hex digits, as in DCC's reference key stores. get(eui, usage) answers
with the unlabelled credential; by_serial() finds labelled ones too (an XML signature names its
certificate by serial, and DCC's test sets hold several certificates per (EUI, usage)). A
credential marked ``legacy`` comes from an external test set whose expiry is not enforced.

Files are written to a temp file and os.replace'd, and the index only ever grows by whole lines
appended under the lock, so any number of processes can read while others write; a reader picks
up new lines on its next lookup. A later line for the same (eui, usage[, label]) supersedes
earlier ones.

Packs exist because a whole test estate's device credentials (800,000 for 100,000 premises) as
four files a device cost more in file creation alone than the estate seed's one-minute budget
(tens of microseconds of kernel time per file here). A pack is written whole to a temp file,
fsync'd and renamed into place under the lock before its index lines are appended; it is never
changed afterwards. Readers do not change: certificate(), private_key(), get() and the rest
answer for a packed credential exactly as for a filed one. The files win: a credential
put() as files after it was packed is read from its files; among packs, the newest (highest
seq) holding the (eui, usage) wins. Pack format (big-endian): magic ``DCCSIMPK``, version u8,
3 zero bytes, count u32; then count records sorted by (eui, usage) of eui (8 bytes), usage u8
(0 DS, 1 KA), a zero byte, certificate length u16, key length u16, offset u64; then the DER.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from dccsim.pki.files import (
    PRIVATE_FILE_MODE,
    certificate_pem,
    ensure_private_dir,
    parse_certificate,
    parse_private_key,
    private_key_pem,
    write_atomic,
)
from dccsim.pki.smki import EUI_LENGTH, KeyUsage, role_of

INDEX_NAME = "index.jsonl"
PACKS_DIR = "packs"
_READ_ATTEMPTS = 50
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")

_PACK_MAGIC = b"DCCSIMPK"
_PACK_VERSION = 1
_PACK_HEADER = struct.Struct(">8sB3xI")
_PACK_RECORD = struct.Struct(">8sBxHHQ")
_PACK_USAGES = (KeyUsage.DS, KeyUsage.KA)
_PACK_NAME_RE = re.compile(r"(\d{8})-([0-9a-f]{16})-([0-9a-f]{16})\.pack")


@dataclass(frozen=True)
class PackedCredential:
    """One device credential for put_pack: DER certificate (its serial given, so the index line
    needs no parse) and PKCS#8 DER private key."""

    eui: bytes
    usage: KeyUsage
    serial: int
    certificate_der: bytes
    private_key_der: bytes


class _Pack:
    """A pack file, mapped read-only; records bisected by (eui, usage)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        magic, version, self.count = _PACK_HEADER.unpack_from(self._map, 0)
        if magic != _PACK_MAGIC or version != _PACK_VERSION:
            raise KeyStoreError(f"{path}: not a key-store pack (version {_PACK_VERSION})")

    def find(self, eui: bytes, usage: KeyUsage) -> tuple[bytes, bytes] | None:
        """(certificate DER, private key DER) of (eui, usage), or None."""
        want = eui + bytes([_PACK_USAGES.index(usage)])
        size, base, data = _PACK_RECORD.size, _PACK_HEADER.size, self._map
        low, high = 0, self.count
        while low < high:
            middle = (low + high) // 2
            at = base + middle * size
            key = data[at : at + 9]
            if key < want:
                low = middle + 1
            elif key > want:
                high = middle
            else:
                _eui, _usage, cert_len, key_len, offset = _PACK_RECORD.unpack_from(data, at)
                return (
                    data[offset : offset + cert_len],
                    data[offset + cert_len : offset + cert_len + key_len],
                )
        return None


def _pack_bytes(items: Sequence[PackedCredential]) -> bytes:
    records = sorted(items, key=lambda item: (item.eui, _PACK_USAGES.index(item.usage)))
    offset = _PACK_HEADER.size + _PACK_RECORD.size * len(records)
    table = [_PACK_HEADER.pack(_PACK_MAGIC, _PACK_VERSION, len(records))]
    blobs: list[bytes] = []
    previous = None
    for item in records:
        slot = (item.eui, item.usage)
        if slot == previous:
            raise KeyStoreError(f"{item.eui.hex()}-{item.usage}: twice in one pack")
        previous = slot
        usage = _PACK_USAGES.index(item.usage)
        cert, key = item.certificate_der, item.private_key_der
        table.append(_PACK_RECORD.pack(item.eui, usage, len(cert), len(key), offset))
        blobs += (cert, key)
        offset += len(cert) + len(key)
    return b"".join(table + blobs)


class KeyStoreError(LookupError):
    """A certificate or key the store does not hold, or a store that cannot be read."""


@dataclass(frozen=True)
class Entry:
    """One credential: a certificate, its private key when the store holds it, and its role."""

    eui: bytes
    usage: KeyUsage
    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None
    role: int | None
    certificate_path: Path
    """The file it was read from: its PEM file, or the pack that holds it."""
    private_key_path: Path | None
    label: str | None = None
    """None for the (eui, usage) credential get() answers with; else a further one's slot."""
    name: str | None = None
    """What the set it came from calls it (e.g. ZAZ1's ``Z1-supplier-ds``)."""
    source: str | None = None
    """Where it came from when imported (``zaz1``, ``rtds``); None when dccsim issued it."""
    legacy: bool = False
    """From a legacy test set whose expiry is not enforced."""

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def expired(self, at: dt.datetime | None = None) -> bool:
        """Whether the certificate is past its notAfter at ``at`` (default now). Never for a
        legacy entry: ZAZ1's core certificates expired in 2025-26, yet DCC Boxed still uses them."""
        if self.legacy:
            return False
        when = at if at is not None else dt.datetime.now(dt.UTC)
        return when > self.certificate.not_valid_after_utc


@dataclass(frozen=True)
class _IndexRow:
    serial: int
    role: int | None
    name: str | None = None
    source: str | None = None
    legacy: bool = False


_Slot = tuple[str, KeyUsage, str]  # (eui text, usage, label or "")


def _index_line(
    eui_text: str,
    usage: KeyUsage,
    serial: int,
    role: int | None,
    *,
    label: str = "",
    name: str | None = None,
    source: str | None = None,
    legacy: bool = False,
) -> bytes:
    record: dict[str, object] = {
        "eui": eui_text,
        "usage": usage.value,
        "serial": format(serial, "x"),
        "role": role,
    }
    # Only what is set, so the lines of dccsim's own (many) device credentials stay short.
    if label:
        record["label"] = label
    if name is not None:
        record["name"] = name
    if source is not None:
        record["source"] = source
    if legacy:
        record["legacy"] = True
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def _label_text(label: str | None) -> str:
    if label is None or label == "":
        return ""
    if not _LABEL_RE.fullmatch(label):
        raise KeyStoreError(f"a key-store label is letters, digits, '.', '_' or '-', got {label!r}")
    return label


@dataclass(frozen=True)
class _Put:
    eui: bytes
    usage: KeyUsage
    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None
    role: int | None
    label: str = ""
    name: str | None = None
    source: str | None = None
    legacy: bool = False


def _eui_text(eui: bytes) -> str:
    if not isinstance(eui, bytes | bytearray) or len(eui) != EUI_LENGTH:
        raise KeyStoreError(f"an EUI-64 is {EUI_LENGTH} bytes, got {eui!r}")
    return bytes(eui).hex()


class KeyStore:
    """Certificates and keys by (EUI-64, usage), shared safely between processes.

    put() writes; get(), certificate(), private_key(), by_serial(), find() and entries() read.
    Missing items raise KeyStoreError (by_serial returns None instead). ``label`` arguments name
    a further credential for the same (eui, usage); None (the default) is the one get() answers.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._certs = self.root / "certs"
        self._keys = self.root / "keys"
        self._packs_dir = self.root / PACKS_DIR
        self._index_path = self.root / INDEX_NAME
        self._lock_path = self.root / ".lock"
        for directory in (self.root, self._certs, self._keys):
            ensure_private_dir(directory)
        self._mutex = threading.RLock()
        self._rows: dict[_Slot, _IndexRow] = {}
        self._by_serial: dict[int, _Slot] = {}
        self._offset = 0
        self._inode: int | None = None
        # Packs by name (newest first) with their EUI range, re-listed when the folder changes.
        self._pack_list: list[tuple[int, bytes, bytes, str]] = []
        self._pack_list_stamp: int | None = None
        self._pack_maps: dict[str, _Pack] = {}

    def __repr__(self) -> str:
        return f"KeyStore({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------------

    def _stem(self, eui: bytes, usage: KeyUsage, label: str | None) -> str:
        text = _label_text(label)
        stem = f"{_eui_text(eui)}-{KeyUsage(usage).value}"
        return f"{stem}~{text}" if text else stem

    def certificate_path(self, eui: bytes, usage: KeyUsage, label: str | None = None) -> Path:
        return self._certs / f"{self._stem(eui, usage, label)}.pem"

    def private_key_path(self, eui: bytes, usage: KeyUsage, label: str | None = None) -> Path:
        return self._keys / f"{self._stem(eui, usage, label)}.key"

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def _writer(self) -> Iterator[None]:
        with self._mutex:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def put(
        self,
        eui: bytes,
        usage: KeyUsage,
        certificate: x509.Certificate,
        private_key: PrivateKeyTypes | None,
        *,
        role: int | None,
        label: str | None = None,
        name: str | None = None,
        source: str | None = None,
        legacy: bool = False,
    ) -> Entry:
        """Store certificate (and private_key, or none) as the (eui, usage[, label]) credential,
        replacing what was there. The key must match the certificate. name, source and legacy
        record where an imported credential came from (legacy: its expiry is not enforced).
        Returns the new Entry."""
        spec = _Put(
            eui=eui,
            usage=KeyUsage(usage),
            certificate=certificate,
            private_key=private_key,
            role=role,
            label=_label_text(label),
            name=name,
            source=source,
            legacy=legacy,
        )
        return self._put([spec])[0]

    def put_many(
        self,
        items: Iterable[
            tuple[bytes, KeyUsage, x509.Certificate, PrivateKeyTypes | None, int | None]
        ],
    ) -> list[Entry]:
        """put() for many (eui, usage, certificate, private_key, role) at once: one lock and
        one index write for the lot, which is what makes issuing thousands of devices quick."""
        return self._put(
            [
                _Put(eui=eui, usage=KeyUsage(usage), certificate=c, private_key=k, role=role)
                for eui, usage, c, k, role in items
            ]
        )

    def _put(self, specs: list[_Put]) -> list[Entry]:
        entries: list[Entry] = []
        lines: list[bytes] = []
        for spec in specs:
            eui_text = _eui_text(spec.eui)
            private_key = spec.private_key
            if (
                private_key is not None
                and private_key.public_key() != spec.certificate.public_key()
            ):
                raise KeyStoreError(
                    f"{eui_text}-{spec.usage}: private key does not match certificate"
                )
            label = spec.label or None
            key_path = self.private_key_path(spec.eui, spec.usage, label)
            entries.append(
                Entry(
                    eui=bytes(spec.eui),
                    usage=spec.usage,
                    certificate=spec.certificate,
                    private_key=private_key,
                    role=spec.role,
                    certificate_path=self.certificate_path(spec.eui, spec.usage, label),
                    private_key_path=key_path if private_key is not None else None,
                    label=label,
                    name=spec.name,
                    source=spec.source,
                    legacy=spec.legacy,
                )
            )
            lines.append(
                _index_line(
                    eui_text,
                    spec.usage,
                    spec.certificate.serial_number,
                    spec.role,
                    label=spec.label,
                    name=spec.name,
                    source=spec.source,
                    legacy=spec.legacy,
                )
            )
        with self._writer():
            for entry in entries:
                # Key first: get() retries while it finds a key that does not match its cert.
                if entry.private_key is None:
                    # A stale key beside a new certificate would be worse than no key.
                    self.private_key_path(entry.eui, entry.usage, entry.label).unlink(
                        missing_ok=True
                    )
                else:
                    assert entry.private_key_path is not None
                    write_atomic(
                        entry.private_key_path,
                        private_key_pem(entry.private_key),
                        mode=PRIVATE_FILE_MODE,
                    )
                write_atomic(entry.certificate_path, certificate_pem(entry.certificate))
            self._append_index(lines)
        return entries

    def put_pack(
        self,
        items: Sequence[PackedCredential],
        *,
        replacing_files: Iterable[tuple[bytes, KeyUsage]] = (),
    ) -> Path | None:
        """Store many device DS/KA credentials (no role, no label) as one pack and index them.

        The pack is written and fsync'd beside its final name, renamed in under the lock, and
        only then are its index lines appended, so a crash leaves either no trace of it or a
        pack whose index lines a rerun adds (see has_line). The (eui, usage) of replacing_files
        are held as files that the pack supersedes: their files are removed (certificate first,
        so a reader goes from the old pair to the new one). Certificates and keys are not parsed
        here; the caller vouches that each key matches its certificate. Returns the pack's path
        (None for no items)."""
        if not items:
            return None
        for item in items:
            _eui_text(item.eui)
            if item.usage not in _PACK_USAGES:
                raise KeyStoreError(f"packs hold DS and KA credentials, not {item.usage}")
        data = _pack_bytes(items)
        first = min(item.eui for item in items).hex()
        last = max(item.eui for item in items).hex()
        ensure_private_dir(self._packs_dir)
        temp = self._packs_dir / f".{first}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # one fsync per pack (thousands of credentials), not per credential
        finally:
            os.close(fd)
        # What _index_line writes for a role-less, unlabelled credential, without json.dumps
        # (800,000 of them for a large estate).
        lines = [
            b'{"eui":"%s","usage":"%s","serial":"%x","role":null}\n'
            % (item.eui.hex().encode(), item.usage.value.encode(), item.serial)
            for item in items
        ]
        try:
            with self._writer():
                names = os.listdir(self._packs_dir)
                seq = 1 + max(
                    (int(m.group(1)) for m in map(_PACK_NAME_RE.fullmatch, names) if m),
                    default=0,
                )
                path = self._packs_dir / f"{seq:08d}-{first}-{last}.pack"
                os.replace(temp, path)
                self._append_index(lines)
                for eui, usage in replacing_files:
                    self.certificate_path(eui, usage).unlink(missing_ok=True)
                    self.private_key_path(eui, usage).unlink(missing_ok=True)
        finally:
            temp.unlink(missing_ok=True)
        return path

    def discard_stale_temps(self) -> int:
        """Remove the temp files of put_pack calls whose process has died (a killed bulk issue):
        they are never read, only disk. Returns how many were removed."""
        removed = 0
        try:
            names = os.listdir(self._packs_dir)
        except FileNotFoundError:
            return 0
        for name in names:
            parts = name.split(".")
            if not (name.startswith(".") and name.endswith(".tmp") and len(parts) == 5):
                continue
            try:
                os.kill(int(parts[2]), 0)
                continue  # its writer is still at work
            except ProcessLookupError:
                pass
            except (PermissionError, ValueError):
                continue
            (self._packs_dir / name).unlink(missing_ok=True)
            removed += 1
        return removed

    def add_index_lines(self, items: Iterable[tuple[bytes, KeyUsage, int]]) -> None:
        """Append index lines (no role) for (eui, usage, serial) credentials already held, e.g.
        those of a pack whose lines a crash kept from being written."""
        lines = [
            _index_line(_eui_text(eui), KeyUsage(usage), serial, None)
            for eui, usage, serial in items
        ]
        if lines:
            with self._writer():
                self._append_index(lines)

    def _append_index(self, lines: list[bytes]) -> None:
        # Whole lines, appended under the lock: readers only ever take complete lines.
        fd = os.open(self._index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(b"".join(lines))
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make the index and the folders durable (fsync; each pack was fsync'd as it was
        written), so a bulk writer syncs once at the end rather than once a file."""
        for path in (self._index_path, self._packs_dir, self._certs, self._keys, self.root):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- reading --------------------------------------------------------------------------

    def _packs(self, *, relist: bool = False) -> list[tuple[int, bytes, bytes, str]]:
        """(seq, first EUI, last EUI, name) of every pack, newest first. Listed again when the
        folder's mtime changed, or when relist (the mtime is coarse: two packs renamed in
        within one tick leave it as the first one set it)."""
        try:
            stamp = os.stat(self._packs_dir).st_mtime_ns
        except FileNotFoundError:
            return []
        if relist or stamp != self._pack_list_stamp:
            found = []
            for name in os.listdir(self._packs_dir):
                match = _PACK_NAME_RE.fullmatch(name)
                if match:
                    seq, first, last = match.groups()
                    found.append((int(seq), bytes.fromhex(first), bytes.fromhex(last), name))
            self._pack_list = sorted(found, reverse=True)
            self._pack_list_stamp = stamp
        return self._pack_list

    def pack_ranges(self) -> list[tuple[bytes, bytes]]:
        """(first EUI, last EUI) of every pack, newest first."""
        with self._mutex:
            return [(first, last) for _seq, first, last, _name in self._packs()]

    def packed(self, eui: bytes, usage: KeyUsage) -> tuple[Path, bytes, bytes] | None:
        """Where the newest pack holds (eui, usage): (pack path, certificate DER, key DER), or
        None. Files, where present, supersede it (certificate() and the rest read those)."""
        usage = KeyUsage(usage)
        if usage not in _PACK_USAGES:
            return None
        eui = bytes(eui)
        with self._mutex:
            for relist in (False, True):  # a miss looks at a fresh listing before it answers
                for _seq, first, last, name in self._packs(relist=relist):
                    if not first <= eui <= last:
                        continue
                    pack = self._pack_maps.get(name)
                    if pack is None:
                        try:
                            pack = self._pack_maps[name] = _Pack(self._packs_dir / name)
                        except FileNotFoundError:
                            continue
                    found = pack.find(eui, usage)
                    if found is not None:
                        return pack.path, found[0], found[1]
        return None

    def raw(
        self, eui: bytes, usage: KeyUsage, *, files: bool = True
    ) -> tuple[bytes, bytes | None, bool] | None:
        """The (eui, usage) credential's bytes as stored, without parsing them: (certificate,
        private key or None, True when held as files). PEM for files, DER for packs; None when
        the store does not hold it. files=False: the caller knows it has no files (it listed
        the certificate folder), so only the packs are looked at."""
        try:
            if not files:
                raise FileNotFoundError
            certificate = self.certificate_path(eui, usage).read_bytes()
        except FileNotFoundError:
            packed = self.packed(eui, usage)
            return None if packed is None else (packed[1], packed[2], False)
        try:
            key: bytes | None = self.private_key_path(eui, usage).read_bytes()
        except FileNotFoundError:
            key = None
        return certificate, key, True

    def indexed_serials(self, euis: Iterable[bytes]) -> dict[tuple[bytes, KeyUsage], int]:
        """The serial the index's current line names for the DS and KA credentials of euis
        (those it has a line for), reading the index once."""
        found: dict[tuple[bytes, KeyUsage], int] = {}
        with self._mutex:
            self._refresh()
            for eui in euis:
                text = _eui_text(eui)
                for usage in _PACK_USAGES:
                    row = self._rows.get((text, usage, ""))
                    if row is not None:
                        found[(bytes(eui), usage)] = row.serial
        return found

    def _refresh(self) -> None:
        """Read index lines appended since last time (all of them if the file was replaced)."""
        try:
            stat = os.stat(self._index_path)
        except FileNotFoundError:
            return
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            self._rows.clear()
            self._by_serial.clear()
            self._offset = 0
            self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return
        with open(self._index_path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1  # a line still being written is read next time
        for raw in data[:complete].splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                slot = (str(record["eui"]), KeyUsage(record["usage"]), str(record.get("label", "")))
                row = _IndexRow(
                    int(record["serial"], 16),
                    record.get("role"),
                    record.get("name"),
                    record.get("source"),
                    bool(record.get("legacy", False)),
                )
            except (ValueError, KeyError, TypeError) as error:
                raise KeyStoreError(f"{self._index_path}: bad index line {raw!r}") from error
            self._rows[slot] = row
            self._by_serial[row.serial] = slot
        self._offset += complete

    def get(self, eui: bytes, usage: KeyUsage, label: str | None = None) -> Entry:
        """The (eui, usage[, label]) credential; private_key is None when the store holds no key."""
        usage = KeyUsage(usage)
        label_text = _label_text(label)
        for attempt in range(_READ_ATTEMPTS):
            certificate, private_key, cert_path, key_path = self._pair(eui, usage, label)
            if private_key is None or private_key.public_key() == certificate.public_key():
                break
            # A put() is between replacing the key and the certificate: read the pair again.
            # Back off (1 ms doubling to 50 ms, ~2 s in all) so a writer descheduled between
            # its two renames on a loaded machine finishes before we give up.
            time.sleep(min(0.001 * 2**attempt, 0.05))
        else:
            raise KeyStoreError(f"{key_path} does not match {cert_path}")
        with self._mutex:
            self._refresh()
            row = self._rows.get((_eui_text(eui), usage, label_text))
        if row is not None and row.serial != certificate.serial_number:
            row = None  # the index line of a certificate since replaced by an older writer
        return Entry(
            eui=bytes(eui),
            usage=usage,
            certificate=certificate,
            private_key=private_key,
            role=row.role if row is not None else role_of(certificate),
            certificate_path=cert_path,
            private_key_path=key_path if private_key is not None else None,
            label=label_text or None,
            name=row.name if row is not None else None,
            source=row.source if row is not None else None,
            legacy=row.legacy if row is not None else False,
        )

    def _pair(
        self, eui: bytes, usage: KeyUsage, label: str | None
    ) -> tuple[x509.Certificate, PrivateKeyTypes | None, Path, Path]:
        """(certificate, key or None, certificate's file, key's file) as stored: from the
        files when the certificate file exists, else from the newest pack holding it."""
        cert_path = self.certificate_path(eui, usage, label)
        key_path = self.private_key_path(eui, usage, label)
        try:
            certificate = parse_certificate(cert_path.read_bytes())
        except FileNotFoundError:
            packed = None if label else self.packed(eui, usage)
            if packed is None:
                raise self._missing("certificate", eui, usage, label) from None
            pack_path, cert_der, key_der = packed
            return (
                x509.load_der_x509_certificate(cert_der),
                serialization.load_der_private_key(key_der, password=None),
                pack_path,
                pack_path,
            )
        try:
            private_key: PrivateKeyTypes | None = parse_private_key(key_path.read_bytes())
        except FileNotFoundError:
            private_key = None
        return certificate, private_key, cert_path, key_path

    def _missing(self, what: str, eui: bytes, usage: KeyUsage, label: str | None) -> KeyStoreError:
        which = f" ({label})" if label else ""
        return KeyStoreError(
            f"no {usage.value} {what}{which} for {_eui_text(eui).upper()} in {self.root}"
        )

    def certificate(
        self, eui: bytes, usage: KeyUsage, label: str | None = None
    ) -> x509.Certificate:
        """The (eui, usage[, label]) certificate; KeyStoreError when there is none."""
        usage = KeyUsage(usage)
        try:
            return parse_certificate(self.certificate_path(eui, usage, label).read_bytes())
        except FileNotFoundError:
            packed = None if label else self.packed(eui, usage)
            if packed is None:
                raise self._missing("certificate", eui, usage, label) from None
            return x509.load_der_x509_certificate(packed[1])

    def private_key(self, eui: bytes, usage: KeyUsage, label: str | None = None) -> PrivateKeyTypes:
        """The (eui, usage[, label]) private key; KeyStoreError when the store does not hold it."""
        usage = KeyUsage(usage)
        try:
            return parse_private_key(self.private_key_path(eui, usage, label).read_bytes())
        except FileNotFoundError:
            # Packed only when no certificate file supersedes the pack (a filed certificate
            # without its key file has no key).
            packed = None
            if not label and not self.certificate_path(eui, usage).exists():
                packed = self.packed(eui, usage)
            if packed is None:
                raise self._missing("private key", eui, usage, label) from None
            return serialization.load_der_private_key(packed[2], password=None)

    def __contains__(self, item: tuple[bytes, KeyUsage]) -> bool:
        eui, usage = item
        return self.certificate_path(eui, usage).exists() or self.packed(eui, usage) is not None

    def _entry(self, slot: _Slot) -> Entry | None:
        eui_text, usage, label = slot
        try:
            return self.get(bytes.fromhex(eui_text), usage, label or None)
        except KeyStoreError:
            return None

    def by_serial(self, serial: int) -> Entry | None:
        """The credential whose certificate has this serial number, or None."""
        with self._mutex:
            self._refresh()
            slot = self._by_serial.get(serial)
            primary = (slot[0], slot[1], "") if slot is not None else None
            if primary is not None and primary in self._rows:
                if self._rows[primary].serial == serial:
                    slot = primary  # the same certificate in both slots: answer with get()'s
        if slot is None:
            return None
        entry = self._entry(slot)
        # The serial may belong to a certificate since replaced.
        return entry if entry is not None and entry.serial == serial else None

    def find(self, eui: bytes | None = None, usage: KeyUsage | None = None) -> list[Entry]:
        """The credentials (labelled ones too) for eui and/or usage, or all of them; each
        certificate once (the unlabelled slot when it sits in two), ordered by EUI, usage, label.
        Only the matching entries are read from disk."""
        eui_text = _eui_text(eui) if eui is not None else None
        with self._mutex:
            self._refresh()
            slots = sorted(
                slot
                for slot in self._rows
                if (eui_text is None or slot[0] == eui_text) and (usage is None or slot[1] == usage)
            )
        found: list[Entry] = []
        seen: set[int] = set()
        for slot in slots:
            entry = self._entry(slot)
            if entry is None or entry.serial in seen:
                continue
            seen.add(entry.serial)
            found.append(entry)
        return found

    def entries(self) -> list[Entry]:
        """Every unlabelled credential in the store, ordered by EUI then usage (find() lists
        labelled ones too)."""
        with self._mutex:
            self._refresh()
            slots = sorted(slot for slot in self._rows if not slot[2])
        found = []
        for slot in slots:
            entry = self._entry(slot)
            if entry is not None:
                found.append(entry)
        return found

    def __len__(self) -> int:
        with self._mutex:
            self._refresh()
            return sum(1 for slot in self._rows if not slot[2])

    def compact(self) -> None:
        """Rewrite the index with one line per credential (atomically; readers reload it)."""
        with self._writer():
            self._refresh()
            lines = [
                _index_line(
                    eui,
                    usage,
                    row.serial,
                    row.role,
                    label=label,
                    name=row.name,
                    source=row.source,
                    legacy=row.legacy,
                )
                for (eui, usage, label), row in sorted(self._rows.items())
            ]
            write_atomic(self._index_path, b"".join(lines), mode=0o600)
            self._refresh()
