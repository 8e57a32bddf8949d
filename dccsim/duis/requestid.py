"""The DUIS RequestID ``originatorEUI:targetEUI:counter`` and the rule its counter obeys."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dccsim.duis.codes import INVALID_REQUEST_ID, MALFORMED_REQUEST, DuisError

COUNTER_MAX = 2**64 - 1
"""The counter is an unsigned 64-bit integer (it becomes the GBCS Originator Counter)."""

DCC_EUI = bytes.fromhex("90B3D51F30000002")
"""The DCC's EUI-64: the target of every non-device Service Request."""

_OCTET = r"[0-9A-Fa-f]{2}"
_EUI = rf"{_OCTET}(?:-{_OCTET}){{7}}"
_EUI_RE = re.compile(_EUI, re.ASCII)
# Decimal without a sign or leading zeros, as the XSD's RequestIDType pattern demands.
_REQUEST_ID_RE = re.compile(rf"({_EUI}):({_EUI}):(0|[1-9][0-9]{{0,19}})", re.ASCII)


def format_eui(eui: bytes) -> str:
    """An 8-byte EUI-64 in DUIS form, upper-case octets joined by ``-`` (``90-B3-D5-1F-...``)."""
    if len(eui) != 8:
        raise ValueError(f"an EUI-64 has 8 bytes, not {len(eui)}")
    return eui.hex("-").upper()


def parse_eui(text: str) -> bytes:
    """The 8 bytes of a DUIS EUI-64 (8 hex octets joined by ``-``, any case).

    Raises :class:`DuisError` (malformed request) for anything else.
    """
    if not _EUI_RE.fullmatch(text):
        raise DuisError(MALFORMED_REQUEST, "EUI-64 is not 8 hex octets joined by '-'")
    return bytes.fromhex(text.replace("-", ""))


@dataclass(frozen=True)
class RequestId:
    """A DUIS RequestID: who sent the request, to which Device (or the DCC), and its counter."""

    originator: bytes
    target: bytes
    counter: int

    def __post_init__(self) -> None:
        if len(self.originator) != 8 or len(self.target) != 8:
            raise ValueError("originator and target are 8-byte EUI-64s")
        if not 0 <= self.counter <= COUNTER_MAX:
            raise ValueError("counter is an unsigned 64-bit integer")

    @classmethod
    def parse(cls, text: str) -> RequestId:
        """Parse ``originatorEUI:targetEUI:counter`` (EUIs in any case; surrounding blanks, which
        the schema's xs:token collapses, are ignored).

        Raises :class:`DuisError` (malformed request) when the text does not have that shape or
        the counter exceeds 64 bits.
        """
        match = _REQUEST_ID_RE.fullmatch(text.strip(" \t\r\n"))
        if match is None:
            raise DuisError(
                MALFORMED_REQUEST, "RequestID is not originatorEUI:targetEUI:decimal counter"
            )
        originator, target, counter = match.groups()
        value = int(counter)
        if value > COUNTER_MAX:
            raise DuisError(MALFORMED_REQUEST, "RequestID counter exceeds 64 bits")
        return cls(parse_eui(originator), parse_eui(target), value)

    def __str__(self) -> str:
        return f"{format_eui(self.originator)}:{format_eui(self.target)}:{self.counter}"

    def response_id(self) -> str:
        """The ResponseID that answers this request: the same with the EUIs swapped."""
        return f"{format_eui(self.target)}:{format_eui(self.originator)}:{self.counter}"

    @property
    def targets_dcc(self) -> bool:
        """True for a non-device request, addressed to the DCC itself."""
        return self.target == DCC_EUI


def check_counter(last: int | None, new: int) -> None:
    """The counter rule: per originator, each request's counter is strictly greater than the last.

    ``last`` is the highest counter already accepted from this originator (None if none yet).
    Raises :class:`DuisError` (invalid RequestID) when ``new`` does not exceed it or is not an
    unsigned 64-bit value.
    """
    if not 0 <= new <= COUNTER_MAX:
        raise DuisError(INVALID_REQUEST_ID, "RequestID counter is not an unsigned 64-bit integer")
    if last is not None and new <= last:
        raise DuisError(INVALID_REQUEST_ID, "RequestID counter does not exceed the last accepted")
