"""A key store on disk: SMKI certificates and private keys by (EUI-64, key usage).

Layout under the root (every directory 0700)::

    certs/<eui>-<usage>.pem     certificate, PEM
    keys/<eui>-<usage>.key      private key, PKCS#8 PEM, 0600 (absent when not held)
    index.jsonl                 one JSON line per put: eui, usage, serial, role
    .lock                       writers hold an exclusive flock on it

``<eui>`` is 16 lower-case hex digits, as in DCC's reference key stores. Files are written to a
temp file and os.replace'd, and the index only ever grows by whole lines appended under the
lock, so any number of processes can read while others write; a reader picks up new lines on
its next lookup. A later line for the same (eui, usage) supersedes earlier ones.
"""

from __future__ import annotations

import fcntl
import json
import os
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

    @property
    def serial(self) -> int:
        return self.certificate.serial_number


@dataclass(frozen=True)
class _IndexRow:
    serial: int
    role: int | None


def _index_line(eui_text: str, usage: KeyUsage, serial: int, role: int | None) -> bytes:
    record = {"eui": eui_text, "usage": usage.value, "serial": format(serial, "x"), "role": role}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def _eui_text(eui: bytes) -> str:
    if not isinstance(eui, bytes | bytearray) or len(eui) != EUI_LENGTH:
        raise KeyStoreError(f"an EUI-64 is {EUI_LENGTH} bytes, got {eui!r}")
    return bytes(eui).hex()


class KeyStore:
    """Certificates and keys by (EUI-64, usage), shared safely between processes.

    put() writes; get(), certificate(), private_key(), by_serial() and entries() read. Missing
    items raise KeyStoreError (by_serial returns None instead).
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
        self._rows: dict[tuple[str, KeyUsage], _IndexRow] = {}
        self._by_serial: dict[int, tuple[str, KeyUsage]] = {}
        self._offset = 0
        self._inode: int | None = None

    def __repr__(self) -> str:
        return f"KeyStore({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------------

    def certificate_path(self, eui: bytes, usage: KeyUsage) -> Path:
        return self._certs / f"{_eui_text(eui)}-{KeyUsage(usage).value}.pem"

    def private_key_path(self, eui: bytes, usage: KeyUsage) -> Path:
        return self._keys / f"{_eui_text(eui)}-{KeyUsage(usage).value}.key"

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
    ) -> Entry:
        """Store certificate (and private_key, or none) as the (eui, usage) credential,
        replacing what was there. The key must match the certificate. Returns the new Entry."""
        return self.put_many([(eui, usage, certificate, private_key, role)])[0]

    def put_many(
        self,
        items: Iterable[
            tuple[bytes, KeyUsage, x509.Certificate, PrivateKeyTypes | None, int | None]
        ],
    ) -> list[Entry]:
        """put() for many (eui, usage, certificate, private_key, role) at once: one lock and
        one index write for the lot, which is what makes issuing thousands of devices quick."""
        entries: list[Entry] = []
        lines: list[bytes] = []
        for eui, usage, certificate, private_key, role in items:
            usage = KeyUsage(usage)
            eui_text = _eui_text(eui)
            if private_key is not None and private_key.public_key() != certificate.public_key():
                raise KeyStoreError(f"{eui_text}-{usage}: private key does not match certificate")
            key_path = self.private_key_path(eui, usage)
            entries.append(
                Entry(
                    eui=bytes(eui),
                    usage=usage,
                    certificate=certificate,
                    private_key=private_key,
                    role=role,
                    certificate_path=self.certificate_path(eui, usage),
                    private_key_path=key_path if private_key is not None else None,
                )
            )
            lines.append(_index_line(eui_text, usage, certificate.serial_number, role))
        with self._writer():
            for entry in entries:
                # Key first: get() retries while it finds a key that does not match its cert.
                if entry.private_key is None:
                    # A stale key beside a new certificate would be worse than no key.
                    self.private_key_path(entry.eui, entry.usage).unlink(missing_ok=True)
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
                key = (str(record["eui"]), KeyUsage(record["usage"]))
                row = _IndexRow(int(record["serial"], 16), record.get("role"))
            except (ValueError, KeyError, TypeError) as error:
                raise KeyStoreError(f"{self._index_path}: bad index line {raw!r}") from error
            self._rows[key] = row
            self._by_serial[row.serial] = key
        self._offset += complete

    def get(self, eui: bytes, usage: KeyUsage) -> Entry:
        """The (eui, usage) credential; private_key is None when the store holds no key."""
        usage = KeyUsage(usage)
        cert_path = self.certificate_path(eui, usage)
        key_path = self.private_key_path(eui, usage)
        for _attempt in range(_READ_ATTEMPTS):
            certificate = self.certificate(eui, usage)
            try:
                private_key: PrivateKeyTypes | None = parse_private_key(key_path.read_bytes())
            except FileNotFoundError:
                private_key = None
            if private_key is None or private_key.public_key() == certificate.public_key():
                break
            # A put() is between replacing the key and the certificate: read the pair again.
            time.sleep(0.001)
        else:
            raise KeyStoreError(f"{key_path} does not match {cert_path}")
        with self._mutex:
            self._refresh()
            row = self._rows.get((_eui_text(eui), usage))
        role = row.role if row is not None else role_of(certificate)
        return Entry(
            eui=bytes(eui),
            usage=usage,
            certificate=certificate,
            private_key=private_key,
            role=role,
            certificate_path=cert_path,
            private_key_path=key_path if private_key is not None else None,
        )

    def certificate(self, eui: bytes, usage: KeyUsage) -> x509.Certificate:
        """The (eui, usage) certificate; KeyStoreError when there is none."""
        usage = KeyUsage(usage)
        try:
            return parse_certificate(self.certificate_path(eui, usage).read_bytes())
        except FileNotFoundError:
            raise KeyStoreError(
                f"no {usage.value} certificate for {_eui_text(eui).upper()} in {self.root}"
            ) from None

    def private_key(self, eui: bytes, usage: KeyUsage) -> PrivateKeyTypes:
        """The (eui, usage) private key; KeyStoreError when the store does not hold it."""
        usage = KeyUsage(usage)
        try:
            return parse_private_key(self.private_key_path(eui, usage).read_bytes())
        except FileNotFoundError:
            raise KeyStoreError(
                f"no {usage.value} private key for {_eui_text(eui).upper()} in {self.root}"
            ) from None

    def __contains__(self, item: tuple[bytes, KeyUsage]) -> bool:
        eui, usage = item
        return self.certificate_path(eui, usage).exists()

    def by_serial(self, serial: int) -> Entry | None:
        """The credential whose certificate has this serial number, or None."""
        with self._mutex:
            self._refresh()
            key = self._by_serial.get(serial)
        if key is None:
            return None
        try:
            entry = self.get(bytes.fromhex(key[0]), key[1])
        except KeyStoreError:
            return None
        # The serial may belong to a certificate since replaced.
        return entry if entry.serial == serial else None

    def entries(self) -> list[Entry]:
        """Every credential in the store, ordered by EUI then usage."""
        with self._mutex:
            self._refresh()
            keys = sorted(self._rows)
        found = []
        for eui_text, usage in keys:
            try:
                found.append(self.get(bytes.fromhex(eui_text), usage))
            except KeyStoreError:
                continue
        return found

    def __len__(self) -> int:
        with self._mutex:
            self._refresh()
            return len(self._rows)

    def compact(self) -> None:
        """Rewrite the index with one line per credential (atomically; readers reload it)."""
        with self._writer():
            self._refresh()
            lines = [
                _index_line(eui, usage, row.serial, row.role)
                for (eui, usage), row in sorted(self._rows.items())
            ]
            write_atomic(self._index_path, b"".join(lines), mode=0o600)
            self._refresh()
