"""``dccsim gbcs``: GBCS messages from the command line.

``dccsim gbcs decode FILE|- [--keystore DIR]...`` reads one message as hex (whitespace ignored,
as in the RTDS ``.HEX`` files), base64 or raw bytes, prints its decoded fields as JSON and
whether its MAC and signature verified. Exit status: 0 decoded and no check failed, 1 a MAC or
signature check failed, 2 the input is not a GBCS message (or cannot be read).

``--keystore`` takes dccsim's own key store (a folder with ``index.jsonl``, see
dccsim/pki/keystore.py) or a folder laid out like DCC's reference key store
(``<eui>-ka.pem``, ``<eui>-ka.key``, ``<eui>-ds.pem``); give it more than once to search several.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.describe import KeyLookup, describe
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    GENERAL_CIPHERING_TAG,
    GENERAL_SIGNING_TAG,
    parse_hex_or_base64,
)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_NOT_DECODED = 2
KEYSTORE_INDEX = "index.jsonl"  # what marks a dccsim KeyStore (dccsim/pki/keystore.py)


class FolderKeys:
    """Keys in a folder laid out like reference/gbcs/keystore: ``<eui hex>-<usage>.pem|.key``
    (private keys PEM or DER PKCS#8). Each file is read once, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Any] = {}

    def _load(self, name: str) -> Any:
        if name not in self._cache:
            path = self.root / name
            value: Any = None
            if path.is_file():
                data = path.read_bytes()
                if name.endswith(".pem"):
                    value = x509.load_pem_x509_certificate(data).public_key()
                elif data.startswith(b"-----"):
                    value = serialization.load_pem_private_key(data, None)
                else:
                    value = serialization.load_der_private_key(data, None)
            self._cache[name] = value
        return self._cache[name]

    def ka_private(self, eui: bytes) -> ec.EllipticCurvePrivateKey | None:
        key = self._load(f"{eui.hex()}-ka.key")
        return key if isinstance(key, ec.EllipticCurvePrivateKey) else None

    def ka_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        key = self._load(f"{eui.hex()}-ka.pem")
        return key if isinstance(key, ec.EllipticCurvePublicKey) else None

    def ds_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        key = self._load(f"{eui.hex()}-ds.pem")
        return key if isinstance(key, ec.EllipticCurvePublicKey) else None


class StoreKeys:
    """Keys in dccsim's own :class:`~dccsim.pki.keystore.KeyStore`."""

    def __init__(self, root: Path) -> None:
        from dccsim.pki.keystore import KeyStore

        self.store = KeyStore(root)

    def _entry(self, eui: bytes, usage: str) -> Any:
        from dccsim.pki.keystore import KeyStoreError
        from dccsim.pki.smki import KeyUsage

        try:
            return self.store.get(eui, KeyUsage(usage))
        except KeyStoreError:
            return None

    def ka_private(self, eui: bytes) -> ec.EllipticCurvePrivateKey | None:
        entry = self._entry(eui, "ka")
        key = None if entry is None else entry.private_key
        return key if isinstance(key, ec.EllipticCurvePrivateKey) else None

    def _public(self, eui: bytes, usage: str) -> ec.EllipticCurvePublicKey | None:
        entry = self._entry(eui, usage)
        key = None if entry is None else entry.certificate.public_key()
        return key if isinstance(key, ec.EllipticCurvePublicKey) else None

    def ka_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        return self._public(eui, "ka")

    def ds_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        return self._public(eui, "ds")


class KeyChain:
    """Several :class:`KeyLookup`s searched in order; the first that holds a key answers."""

    def __init__(self, lookups: Sequence[KeyLookup]) -> None:
        self.lookups = list(lookups)

    def ka_private(self, eui: bytes) -> ec.EllipticCurvePrivateKey | None:
        return next((k for s in self.lookups if (k := s.ka_private(eui)) is not None), None)

    def ka_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        return next((k for s in self.lookups if (k := s.ka_public(eui)) is not None), None)

    def ds_public(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        return next((k for s in self.lookups if (k := s.ds_public(eui)) is not None), None)


def open_keystore(root: Path) -> KeyLookup:
    """dccsim's KeyStore when ``root`` holds its index, else a reference-layout folder."""
    if not root.is_dir():
        raise FileNotFoundError(f"key store folder {root} does not exist")
    if (root / KEYSTORE_INDEX).is_file():
        return StoreKeys(root)
    return FolderKeys(root)


def read_message(raw: bytes) -> bytes:
    """The message bytes from raw GBCS, or hex or base64 text."""
    if raw[:1] in (bytes([GENERAL_CIPHERING_TAG]), bytes([GENERAL_SIGNING_TAG])):
        return raw
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise GbcsError("input is neither GBCS bytes nor hex or base64 text") from exc
    return parse_hex_or_base64(text)


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        keys = KeyChain([open_keystore(Path(d)) for d in args.keystore or []])
    except OSError as exc:
        print(f"dccsim gbcs decode: {exc}", file=sys.stderr)
        return EXIT_NOT_DECODED
    try:
        report = describe(read_message(raw), keys)
    except GbcsError as exc:
        print(json.dumps({"ok": False, "error": exc.reason}, indent=2))
        return EXIT_NOT_DECODED
    print(json.dumps(report, indent=2))
    return EXIT_OK if report["ok"] else EXIT_CHECK_FAILED


def register(sub: Any) -> None:
    """Add the ``gbcs`` command group to the dccsim CLI."""
    gbcs = sub.add_parser("gbcs", help="GBCS messages: decode and check them")
    gbcs_sub = gbcs.add_subparsers(dest="gbcs_command", required=True)
    decode = gbcs_sub.add_parser(
        "decode",
        help="decode a GBCS message (hex, base64 or raw) to JSON and check its MAC and signature",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("file", metavar="FILE", help="the message file, or - for stdin")
    decode.add_argument(
        "--keystore",
        action="append",
        metavar="DIR",
        help="dccsim key store or reference-layout key folder (repeatable)",
    )
    decode.set_defaults(func=cmd_decode)
