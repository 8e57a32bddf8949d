"""A key store on disk: SMKI certificates and private keys by (EUI-64, key usage).

Layout under the root (every directory 0700)::

    certs/<eui>-<usage>.pem           the (eui, usage) credential's certificate, PEM
    keys/<eui>-<usage>.key            its private key, PKCS#8 PEM, 0600 (absent when not held)
    certs/<eui>-<usage>~<label>.pem   further credentials for the same (eui, usage), e.g. the
    keys/<eui>-<usage>~<label>.key    older and prepayment certificates of an imported test set
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
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
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
_READ_ATTEMPTS = 50
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


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
        self._index_path = self.root / INDEX_NAME
        self._lock_path = self.root / ".lock"
        for directory in (self.root, self._certs, self._keys):
            ensure_private_dir(directory)
        self._mutex = threading.RLock()
        self._rows: dict[_Slot, _IndexRow] = {}
        self._by_serial: dict[int, _Slot] = {}
        self._offset = 0
        self._inode: int | None = None

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
            # Whole lines, appended under the lock: readers only ever take complete lines.
            fd = os.open(self._index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(b"".join(lines))
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        return entries

    # -- reading --------------------------------------------------------------------------

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
        cert_path = self.certificate_path(eui, usage, label)
        key_path = self.private_key_path(eui, usage, label)
        for attempt in range(_READ_ATTEMPTS):
            certificate = self.certificate(eui, usage, label)
            try:
                private_key: PrivateKeyTypes | None = parse_private_key(key_path.read_bytes())
            except FileNotFoundError:
                private_key = None
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

    def certificate(
        self, eui: bytes, usage: KeyUsage, label: str | None = None
    ) -> x509.Certificate:
        """The (eui, usage[, label]) certificate; KeyStoreError when there is none."""
        usage = KeyUsage(usage)
        try:
            return parse_certificate(self.certificate_path(eui, usage, label).read_bytes())
        except FileNotFoundError:
            which = f" ({label})" if label else ""
            raise KeyStoreError(
                f"no {usage.value} certificate{which} for {_eui_text(eui).upper()} in {self.root}"
            ) from None

    def private_key(self, eui: bytes, usage: KeyUsage, label: str | None = None) -> PrivateKeyTypes:
        """The (eui, usage[, label]) private key; KeyStoreError when the store does not hold it."""
        usage = KeyUsage(usage)
        try:
            return parse_private_key(self.private_key_path(eui, usage, label).read_bytes())
        except FileNotFoundError:
            which = f" ({label})" if label else ""
            raise KeyStoreError(
                f"no {usage.value} private key{which} for {_eui_text(eui).upper()} in {self.root}"
            ) from None

    def __contains__(self, item: tuple[bytes, KeyUsage]) -> bool:
        eui, usage = item
        return self.certificate_path(eui, usage).exists()

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
