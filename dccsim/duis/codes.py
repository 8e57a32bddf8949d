"""DUIS response codes that dccsim answers with, and the error that carries one.

Every code here is in the ``ResponseCode`` enumeration of the DUIS 5.4 XSD, so a Response or
acknowledgement built with it validates. The names are DUIS's own (SEC Appendix AD, "DCC Systems
Response Codes"); the XSD lists the codes without names.

The XSD has no E6-E10, E14-E16 or E18, and none of its general codes is named for "the XML is not
well formed" or "the signature does not verify". dccsim therefore answers those failures with the
nearest named code (see ``MALFORMED_REQUEST``, ``INVALID_SIGNATURE``, ``INVALID_REQUEST_ID``);
the :class:`DuisError` reason says which check failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Outcome(StrEnum):
    """What a code tells the User: information (I) or error (E)."""

    INFORMATION = "information"
    ERROR = "error"


@dataclass(frozen=True)
class ResponseCode:
    """One DUIS response code: the code, DUIS's name for it, and what it means."""

    code: str
    name: str
    meaning: str

    @property
    def outcome(self) -> Outcome:
        return Outcome.INFORMATION if self.code.startswith("I") else Outcome.ERROR


_TABLE: tuple[ResponseCode, ...] = (
    ResponseCode("I0", "Success", "The request has had a successful outcome."),
    ResponseCode(
        "I99",
        "Acknowledgement",
        "A request for a Device has been accepted and passed access control; its outcome "
        "follows asynchronously. Also answers a non-device request that returns no data.",
    ),
    ResponseCode(
        "E1",
        "Failed Authorisation - Invalid User / User Role",
        "The User / User Role is not a valid SEC Party / User Role.",
    ),
    ResponseCode(
        "E2",
        "Failed Authorisation - Invalid User Role / Service Reference",
        "The User Role may not send this Service Reference.",
    ),
    ResponseCode(
        "E3",
        "Failed Authorisation - Invalid User Status",
        "The User's status does not permit this Service Reference.",
    ),
    ResponseCode(
        "E4",
        "Failed Authorisation - Invalid User / User Role for Device",
        "The User Role is not authorised for the Device at the required date and time.",
    ),
    ResponseCode(
        "E5",
        "Failed Authorisation - Invalid Device Status",
        "The Device's SMI status is incompatible with the Service Reference.",
    ),
    ResponseCode(
        "E11",
        "Failed Validation - Invalid Service Request / Device Type combination",
        "The Service Reference is not compatible with the specified Device.",
    ),
    ResponseCode(
        "E12",
        "Failed Validation - Invalid Request / Command Variant combination",
        "The Command Variant is not applicable to the request type.",
    ),
    ResponseCode(
        "E13",
        "Failed Validation - Invalid Request Type for URL",
        "The request is not valid for the web service it was sent to, e.g. a non-device "
        "Service Request sent to the Transform service.",
    ),
    ResponseCode(
        "E17",
        "Failed Authorisation - not available for Local Command Services",
        "The User Role / Device status does not permit a command for local delivery.",
    ),
    ResponseCode(
        "E19",
        "Failed Authorisation - Device doesn't exist",
        "The Device ID is not in the Smart Metering Inventory.",
    ),
    ResponseCode(
        "E20",
        "Communications Failure - Unable to Communicate with Device",
        "DCC Systems cannot establish communications with the Device.",
    ),
    ResponseCode(
        "E21",
        "Communications Failure - No Response Received from Device",
        "No response was received from the Device for an on-demand or future-dated command.",
    ),
    ResponseCode(
        "E30",
        "Time-out - Future Dated Command",
        "A future-dated command's outcome did not arrive in time.",
    ),
)

RESPONSE_CODES: Mapping[str, ResponseCode] = MappingProxyType({c.code: c for c in _TABLE})
"""The response codes dccsim uses, by code."""

# The conditions dccsim reports for which DUIS names no code of its own; one place to change them.
MALFORMED_REQUEST = "E13"
"""Not well-formed or unsafe XML (DOCTYPE, entities, too large), not a DUIS Request, or fails the
schema: not a valid request for any URL."""
INVALID_SIGNATURE = "E1"
"""Missing, malformed or unverifiable XML signature, or an unknown signing certificate: the sender
is not shown to be a valid User."""
INVALID_REQUEST_ID = "E1"
"""A RequestID whose originator is not the authenticated User, or whose counter does not strictly
increase: the request is not shown to come, afresh, from a valid User. (A RequestID that does not
even match the schema pattern is ``MALFORMED_REQUEST``.)"""
SERVICE_NOT_OFFERED = "E2"
"""A Service Reference Variant (or Command Variant, or SRV for this Device type) that this DCC
does not offer: no User Role may send it here. The same code the informal-testing rules give for
an SRV not offered in pre-UIT; the reason names what is missing."""


def response_code(code: str) -> ResponseCode:
    """The table entry for ``code``; KeyError if dccsim does not use it."""
    return RESPONSE_CODES[code]


class DuisError(Exception):
    """A DUIS check that failed, carrying the DUIS response code to answer with.

    ``code`` is a DUIS response code such as ``"E19"`` (usually a key of :data:`RESPONSE_CODES`;
    Service-Request-specific codes like ``"E080201"`` are allowed too); ``reason`` is a short,
    log-safe description of what was wrong. Convert it to a DUIS answer in exactly one place.
    """

    def __init__(self, code: str, reason: str) -> None:
        if not _CODE_SHAPE.fullmatch(code):
            raise ValueError(f"{code!r} is not shaped like a DUIS response code")
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def response_code(self) -> ResponseCode | None:
        """The table entry for this code, or None for a code outside dccsim's table."""
        return RESPONSE_CODES.get(self.code)


_CODE_SHAPE = re.compile(r"[IEW][0-9]{1,6}", re.ASCII)
