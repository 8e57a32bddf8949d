"""Certificates and keys on disk: atomic writes, private files 0600, PEM or DER on the way in."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
PUBLIC_FILE_MODE = 0o644


def ensure_private_dir(path: Path) -> Path:
    """Create path (and parents) if needed; the leaf directory ends up mode 0700."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_FILE_MODE) -> None:
    """Write data to path so that readers see the old file or the new one, never a torn one:
    a temp file in the same directory (created with mode, so a key is never world-readable
    even for an instant), then os.replace. Creates a missing parent directory (mode 0700)."""
    # The temp name is unique per process and thread; O_EXCL catches anything left by a crash.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(temp, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(temp, flags, mode)
    except FileExistsError:
        os.unlink(temp)
        fd = os.open(temp, flags, mode)
    try:
        os.fchmod(fd, mode)  # in case the umask took bits away
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
        fd = -1
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temp.unlink(missing_ok=True)
        raise


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_pem(private_key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 PEM: the form dccsim, openssl and DCC's tools all read."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_certificate(path: Path, certificate: x509.Certificate) -> None:
    write_atomic(path, certificate_pem(certificate), mode=PUBLIC_FILE_MODE)


def write_certificates(path: Path, certificates: list[x509.Certificate]) -> None:
    """A PEM bundle (e.g. a CA chain), one certificate after another."""
    write_atomic(path, b"".join(certificate_pem(c) for c in certificates), mode=PUBLIC_FILE_MODE)


def write_private_key(path: Path, private_key: PrivateKeyTypes) -> None:
    write_atomic(path, private_key_pem(private_key), mode=PRIVATE_FILE_MODE)


def parse_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def parse_private_key(data: bytes) -> PrivateKeyTypes:
    """An unencrypted private key from PEM or DER (PKCS#8, or the traditional forms)."""
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


def load_certificate(path: Path) -> x509.Certificate:
    return parse_certificate(path.read_bytes())


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (or the one in a DER file)."""
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def load_private_key(path: Path) -> PrivateKeyTypes:
    return parse_private_key(path.read_bytes())
