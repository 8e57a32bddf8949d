"""GBCS General Signing and General Ciphering frames: exact decode and byte-identical encode.

Layout (see PROTOCOL.md, "GBCS frames")::

    General Signing  DF 09 <CRA> <counter:8> 08 <orig title> 08 <recip title>
                     <date-time: 00 | 0C + 12> <other info: len, code:2, extras>
                     <content: len, payload> <signature: absent | 00 | 40 + r||s>
    General Ciphering DD 00 00 00 00 00 00 <len> 11 00 00 00 00 <General Signing> <MAC:12>
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.octets import OctetReader, encode_length

GENERAL_SIGNING_TAG = 0xDF
GENERAL_CIPHERING_TAG = 0xDD
# transaction-id, originator and recipient system titles, date-time, other-information and
# key-info of the DLMS general-ciphering APDU: all empty in GBCS.
GENERAL_CIPHERING_EMPTY_FIELDS = bytes(6)
SECURITY_HEADER = bytes.fromhex("1100000000")  # authentication only, invocation counter 0
MAC_LENGTH = 12
SIGNATURE_LENGTH = 64
DATE_TIME_LENGTH = 12
TITLE_LENGTH = 8

CRA_COMMAND = 1
CRA_RESPONSE = 2
CRA_ALERT = 3

SignatureField = Literal["absent", "unsigned", "signed"]


@dataclass(frozen=True)
class GeneralSigning:
    """A GBCS General Signing APDU (``DF``): header, payload and signature field.

    ``signature_field`` is ``"absent"`` for a Pre-Command (nothing after the payload),
    ``"unsigned"`` for the ``00`` seen inside a General Ciphering wrapper, ``"signed"`` for
    ``40`` followed by the 64-byte ``signature`` (r‖s).
    """

    cra_flag: int
    originator_counter: int
    originator_title: bytes
    recipient_title: bytes
    date_time: bytes | None
    message_code: int
    other_info_extras: bytes
    payload: bytes
    signature: bytes | None
    signature_field: SignatureField

    def __post_init__(self) -> None:
        if not 0 <= self.cra_flag <= 0xFF:
            raise ValueError("cra_flag must fit one byte")
        if not 0 <= self.originator_counter < 1 << 64:
            raise ValueError("originator_counter must be an unsigned 64-bit integer")
        if len(self.originator_title) != TITLE_LENGTH or len(self.recipient_title) != TITLE_LENGTH:
            raise ValueError("system titles are 8 bytes")
        if self.date_time is not None and len(self.date_time) != DATE_TIME_LENGTH:
            raise ValueError("date_time is a 12-byte DLMS date-time or None")
        if not 0 <= self.message_code <= 0xFFFF:
            raise ValueError("message_code is 2 bytes")
        if self.signature_field == "signed":
            if self.signature is None or len(self.signature) != SIGNATURE_LENGTH:
                raise ValueError("a signed frame carries a 64-byte signature")
        elif self.signature is not None:
            raise ValueError(f"a {self.signature_field} frame carries no signature")

    def _header_and_payload(self) -> bytes:
        other_info = self.message_code.to_bytes(2, "big") + self.other_info_extras
        date_time = b"\x00" if self.date_time is None else b"\x0c" + self.date_time
        return b"".join(
            (
                b"\x09",
                bytes([self.cra_flag]),
                self.originator_counter.to_bytes(8, "big"),
                b"\x08",
                self.originator_title,
                b"\x08",
                self.recipient_title,
                date_time,
                encode_length(len(other_info)),
                other_info,
                encode_length(len(self.payload)),
                self.payload,
            )
        )

    def signed_bytes(self) -> bytes:
        """What the ECDSA signature covers: everything after ``DF`` up to the last payload byte."""
        return self._header_and_payload()

    def encode(self) -> bytes:
        """The APDU bytes, ``DF`` through the signature field."""
        if self.signature_field == "absent":
            trailer = b""
        elif self.signature_field == "unsigned":
            trailer = b"\x00"
        else:
            assert self.signature is not None
            trailer = b"\x40" + self.signature
        return bytes([GENERAL_SIGNING_TAG]) + self._header_and_payload() + trailer


@dataclass(frozen=True)
class GeneralCiphering:
    """A GBCS General Ciphering APDU (``DD``): a General Signing APDU plus its 12-byte MAC."""

    general_signing: GeneralSigning
    mac: bytes

    def __post_init__(self) -> None:
        if len(self.mac) != MAC_LENGTH:
            raise ValueError("the GBCS MAC is 12 bytes")

    def apdu_bytes(self) -> bytes:
        """The embedded General Signing APDU, as the MAC's additional data covers it."""
        return self.general_signing.encode()

    def encode(self) -> bytes:
        content = SECURITY_HEADER + self.apdu_bytes() + self.mac
        return (
            bytes([GENERAL_CIPHERING_TAG])
            + GENERAL_CIPHERING_EMPTY_FIELDS
            + encode_length(len(content))
            + content
        )


def _decode_general_signing(data: bytes) -> GeneralSigning:
    reader = OctetReader(data)
    reader.expect(bytes([GENERAL_SIGNING_TAG]), "General Signing tag")
    reader.expect(b"\x09", "transaction id length")
    cra_flag = reader.byte("CRA flag")
    counter = reader.uint(8, "originator counter")
    reader.expect(b"\x08", "originator system title length")
    originator = reader.take(TITLE_LENGTH, "originator system title")
    reader.expect(b"\x08", "recipient system title length")
    recipient = reader.take(TITLE_LENGTH, "recipient system title")
    dt_len = reader.byte("date-time length")
    if dt_len == 0:
        date_time = None
    elif dt_len == DATE_TIME_LENGTH:
        date_time = reader.take(DATE_TIME_LENGTH, "date-time")
    else:
        raise GbcsError(f"bad date-time length {dt_len}")
    other_info = reader.sized("other information")
    if len(other_info) < 2:
        raise GbcsError("other information shorter than its message code")
    payload = reader.sized("content")
    signature: bytes | None = None
    field: SignatureField
    if reader.at_end():
        field = "absent"
    else:
        marker = reader.byte("signature length")
        if marker == 0:
            field = "unsigned"
        elif marker == SIGNATURE_LENGTH:
            field = "signed"
            signature = reader.take(SIGNATURE_LENGTH, "signature")
        else:
            raise GbcsError(f"bad signature length {marker}")
    if not reader.at_end():
        raise GbcsError(f"{reader.remaining()} trailing bytes after General Signing")
    return GeneralSigning(
        cra_flag=cra_flag,
        originator_counter=counter,
        originator_title=originator,
        recipient_title=recipient,
        date_time=date_time,
        message_code=int.from_bytes(other_info[:2], "big"),
        other_info_extras=other_info[2:],
        payload=payload,
        signature=signature,
        signature_field=field,
    )


def _decode_general_ciphering(data: bytes) -> GeneralCiphering:
    reader = OctetReader(data)
    reader.expect(bytes([GENERAL_CIPHERING_TAG]), "General Ciphering tag")
    reader.expect(GENERAL_CIPHERING_EMPTY_FIELDS, "General Ciphering empty fields")
    content = reader.sized("ciphered content")
    if not reader.at_end():
        raise GbcsError(f"{reader.remaining()} trailing bytes after General Ciphering")
    inner = OctetReader(content)
    inner.expect(SECURITY_HEADER, "security header")
    if inner.remaining() < MAC_LENGTH + 1:
        raise GbcsError("ciphered content too short for a General Signing APDU and MAC")
    apdu = inner.take(inner.remaining() - MAC_LENGTH, "General Signing APDU")
    mac = inner.take(MAC_LENGTH, "MAC")
    return GeneralCiphering(general_signing=_decode_general_signing(apdu), mac=mac)


def decode_message(data: bytes) -> GeneralCiphering | GeneralSigning:
    """Decode a whole GBCS message (``DD`` or ``DF``) to its last byte.

    Raises :class:`GbcsError` on anything else: empty input, unknown tag, truncation, bad or
    non-minimal lengths, or trailing bytes.
    """
    if not data:
        raise GbcsError("empty GBCS message")
    if data[0] == GENERAL_CIPHERING_TAG:
        return _decode_general_ciphering(data)
    if data[0] == GENERAL_SIGNING_TAG:
        return _decode_general_signing(data)
    raise GbcsError(f"unknown GBCS APDU tag {data[0]:02x}")


_HEX = re.compile(r"[0-9A-Fa-f\s]+")


def parse_hex_or_base64(text: str) -> bytes:
    """Bytes from hex (whitespace ignored, as in the RTDS ``.HEX`` files) or else base64.

    Raises :class:`GbcsError` when the text is neither.
    """
    stripped = "".join(text.split())
    if not stripped:
        raise GbcsError("empty message text")
    if _HEX.fullmatch(stripped) and len(stripped) % 2 == 0:
        return bytes.fromhex(stripped)
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GbcsError("text is neither hex nor base64") from exc
