"""The SRV catalogue: which Service Reference Variants dccsim serves, for which User Roles.

Data, read by code (STYLE.md): one row per SRV. A test compares every row with DCC's own request
matrix (reference/duis/request-matrix.json). Rows are added as the transform learns each SRV.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class UserRole(StrEnum):
    IMPORT_SUPPLIER = "IS"
    EXPORT_SUPPLIER = "ES"
    GAS_SUPPLIER = "GS"
    ELECTRICITY_DISTRIBUTOR = "ED"
    GAS_TRANSPORTER = "GT"
    REGISTERED_SUPPLIER_AGENT = "RSA"
    OTHER_USER = "OU"


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


def _row(
    variant: str,
    name: str,
    roles: str,
    critical: bool,
    non_device: bool,
    device_types: str,
    body: str,
) -> ServiceReferenceVariant:
    return ServiceReferenceVariant(
        variant=variant,
        reference=variant.rsplit(".", 1)[0] if variant.count(".") == 2 else variant,
        name=name,
        roles=frozenset(UserRole(r) for r in roles.split()),
        critical=critical,
        non_device=non_device,
        device_types=frozenset(device_types.split()),
        body_element=body,
    )


CATALOGUE: dict[str, ServiceReferenceVariant] = {
    row.variant: row
    for row in (
        _row(
            "4.1.1",
            "Read Instantaneous Import Registers",
            "IS GS ED GT",
            False,
            False,
            "ESME",
            "ReadInstantaneousImportRegisters",
        ),
    )
}


def lookup(variant: str) -> ServiceReferenceVariant | None:
    return CATALOGUE.get(variant)
