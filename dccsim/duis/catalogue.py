"""The SRV catalogue: every Service Reference Variant of DUIS, for which User Roles, how it flows.

Data, read by code (STYLE.md): the table is ``srvs.csv`` beside this module, one row per SRV
(all 129 of DUIS 5.4). A test compares every row with DCC's own request matrix
(reference/duis/request-matrix.json) and every body element with the DUIS XSD. Columns:

``variant``        e.g. ``4.1.1`` (the ServiceReference is the variant without its third part)
``name``           DUIS's Service Request name
``roles``          the eligible User Role codes, space separated (empty: no User may send it)
``critical``       ``yes``: a critical SRV, sent as CV 4 then a Signed Pre-Command (CV 5/6/7)
``on_demand``      ``yes``: may be executed on demand
``future_dated``   the future-dated response pattern: ``no``, ``device``, ``dsp``, ``dsp+device``
``dcc_scheduled``  ``yes``: may be scheduled by the DCC (5.1 Create Schedule)
``non_device``     ``yes``: answered by the DCC itself (CV 8), not sent to a Device
``device_types``   the Device types a device SRV may target (E11 otherwise), space separated
``body_element``   the DUIS Body element's local name
``local_delivery`` ``yes``: the User may ask for the command for local delivery (CV 2 or 3, a
                   critical SRV's Signed Pre-Command as CV 6 or 7); ``no``: E17. DCC's request
                   matrix has no column for this. dccsim says ``no`` for the non-device SRVs and
                   for the SRVs whose command the DCC itself must carry over the SM WAN to keep
                   its own records right: 6.21 (handover), 6.23 (the CoS Party signs), 8.5
                   (opt out), the CHF and GPF device logs (8.9, 8.11, 8.12.x; 8.11's command the
                   ACB originates) and the CHF Sub GHz SRVs (6.28 to 6.32).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Final


class UserRole(StrEnum):
    IMPORT_SUPPLIER = "IS"
    EXPORT_SUPPLIER = "ES"
    GAS_SUPPLIER = "GS"
    ELECTRICITY_DISTRIBUTOR = "ED"
    GAS_TRANSPORTER = "GT"
    REGISTERED_SUPPLIER_AGENT = "RSA"
    OTHER_USER = "OU"


class FutureDating(StrEnum):
    """Who answers a future-dated request (DUIS "Future Dated Response Pattern")."""

    NONE = "no"  # not future-datable
    DEVICE = "device"  # the Device holds the command and raises the outcome alert
    DSP = "dsp"  # the DSP holds the request and sends it when due
    DSP_AND_DEVICE = "dsp+device"


@dataclass(frozen=True)
class ServiceReferenceVariant:
    variant: str  # e.g. "4.1.1"
    reference: str  # e.g. "4.1"
    name: str
    roles: frozenset[UserRole]
    critical: bool
    non_device: bool
    device_types: frozenset[str]  # device types the SRV may target (E11 otherwise)
    body_element: str  # the DUIS body element name
    on_demand: bool = True
    future_dating: FutureDating = FutureDating.NONE
    dcc_scheduled: bool = False
    local_delivery: bool = False

    @property
    def future_datable(self) -> bool:
        return self.future_dating is not FutureDating.NONE


def reference_of(variant: str) -> str:
    """The ServiceReference of a variant: ``4.1.1`` -> ``4.1``, ``8.2`` -> ``8.2``."""
    return variant.rsplit(".", 1)[0] if variant.count(".") == 2 else variant


_COLUMNS: Final = (
    "variant",
    "name",
    "roles",
    "critical",
    "on_demand",
    "future_dated",
    "dcc_scheduled",
    "non_device",
    "device_types",
    "body_element",
    "local_delivery",
)


class CatalogueError(ValueError):
    """The catalogue file does not follow its format."""


def _flag(value: str, column: str, variant: str) -> bool:
    if value not in ("yes", "no"):
        raise CatalogueError(f"{variant}: {column} must be yes or no, not {value!r}")
    return value == "yes"


def parse_catalogue(text: str) -> dict[str, ServiceReferenceVariant]:
    """The rows of a catalogue CSV document, by variant; :class:`CatalogueError` if malformed."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != _COLUMNS:
        raise CatalogueError(f"catalogue columns must be {', '.join(_COLUMNS)}")
    rows: dict[str, ServiceReferenceVariant] = {}
    for raw in reader:
        variant = raw["variant"].strip()
        if not variant or variant in rows:
            raise CatalogueError(f"empty or repeated variant {variant!r}")
        try:
            roles = frozenset(UserRole(r) for r in raw["roles"].split())
            future = FutureDating(raw["future_dated"])
        except ValueError as exc:
            raise CatalogueError(f"{variant}: {exc}") from None
        non_device = _flag(raw["non_device"], "non_device", variant)
        device_types = frozenset(raw["device_types"].split())
        if non_device == bool(device_types):
            raise CatalogueError(f"{variant}: device SRVs name device types, non-device ones none")
        rows[variant] = ServiceReferenceVariant(
            variant=variant,
            reference=reference_of(variant),
            name=raw["name"].strip(),
            roles=roles,
            critical=_flag(raw["critical"], "critical", variant),
            non_device=non_device,
            device_types=device_types,
            body_element=raw["body_element"].strip(),
            on_demand=_flag(raw["on_demand"], "on_demand", variant),
            future_dating=future,
            dcc_scheduled=_flag(raw["dcc_scheduled"], "dcc_scheduled", variant),
            local_delivery=_flag(raw["local_delivery"], "local_delivery", variant),
        )
        if non_device and rows[variant].local_delivery:
            raise CatalogueError(f"{variant}: a non-device SRV has no command to deliver locally")
    return rows


def _load() -> dict[str, ServiceReferenceVariant]:
    text = resources.files("dccsim.duis").joinpath("srvs.csv").read_text(encoding="utf-8")
    return parse_catalogue(text)


CATALOGUE: MappingProxyType[str, ServiceReferenceVariant] = MappingProxyType(_load())
"""Every SRV of DUIS 5.4, by variant."""

BY_BODY_ELEMENT: MappingProxyType[str, ServiceReferenceVariant] = MappingProxyType(
    {row.body_element: row for row in CATALOGUE.values()}
)


def lookup(variant: str) -> ServiceReferenceVariant | None:
    return CATALOGUE.get(variant)
