"""The non-device Service Requests (CV 8) the DCC answers itself, from the inventory.

One row per SRV: how its DUIS body becomes an inventory RPC call (services/inventory/requests.py
documents each method) and how the reply becomes the synchronous Response's content. Pure: DUIS
elements and dicts in, dicts and elements out; app.py makes the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from dccsim.duis.codes import MALFORMED_REQUEST, DuisError
from dccsim.duis.xml import SR_NS, dsp_inventory

Body = dict[str, Any]
Reply = dict[str, Any]


def _sr(local: str) -> str:
    return f"{{{SR_NS}}}{local}"


def _text(parent: etree._Element, *path: str) -> str | None:
    element: etree._Element | None = parent
    for local in path:
        element = element.find(_sr(local)) if element is not None else None
    if element is None:
        return None
    return (element.text or "").strip() or None


def _required(parent: etree._Element, *path: str) -> str:
    value = _text(parent, *path)
    if value is None:
        raise DuisError(MALFORMED_REQUEST, f"{'/'.join(path)} is missing")
    return value


def _address(parent: etree._Element, element: str) -> Body:
    """UPRN, or a PostCode and AddressIdentifier inside ``element``."""
    uprn = _text(parent, "UPRN")
    if uprn:
        return {"uprn": uprn}
    postcode = _text(parent, element, "PostCode")
    if postcode:
        return {
            "postcode": postcode,
            "address_identifier": _text(parent, element, "AddressIdentifier"),
        }
    raise DuisError(MALFORMED_REQUEST, f"a UPRN or {element} is required")


def _read_inventory(body: etree._Element) -> Body:
    for local, key in (("DeviceID", "device_id"), ("MPxN", "mpxn")):
        value = _text(body, local)
        if value:
            return {key: value}
    return _address(body, "PropertyFilter")


def _decommission(body: etree._Element) -> Body:
    return {"device_id": _required(body, "DeviceID")}


def _update_inventory(body: etree._Element) -> Body:
    request: Body = {"device_id": _required(body, "DeviceID")}
    if (value := _text(body, "UpdateDeviceStatusExceptCH")) is not None:
        request["status_except_ch"] = value
    elif (value := _text(body, "UpdateDeviceStatusCH")) is not None:
        request["status_ch"] = value
    elif body.find(_sr("DeleteDevice")) is not None:
        request["delete_device"] = True
    elif (mpxn := body.find(_sr("UpdateMPxN"))) is not None:
        request["update_mpxn"] = {"import_mpxn": _text(mpxn, "ImportMPxN")}
    elif (details := body.find(_sr("UpdateDeviceDetails"))) is not None:
        fields = {
            "manufacturer": "DeviceManufacturer",
            "model": "DeviceModel",
            "smets_chts_version": "SMETSCHTSVersion",
            "firmware_version": "FirmwareVersion",
            "esme_variant": "ESMEVariant",
        }
        request["device_details"] = {
            key: value for key, local in fields.items() if (value := _text(details, local))
        }
    return request


def _hub_status(variant: str) -> Callable[[etree._Element], Body]:
    def parse(body: etree._Element) -> Body:
        return {
            "variant": variant,
            "device_id": _required(body, "DeviceID"),
            "mpxn": _text(body, "MPxN"),
            "install_type": _text(body, "CHFInstallType"),
            "fault_return_type": _text(body, "CHFFaultReturnType"),
            "no_fault_return_type": _text(body, "CHFNoFaultReturnType"),
            "other_device_id": _text(body, "OtherDeviceID"),
            "fault_reason": _text(body, "CHFFaultReason"),
        }

    return parse


def _wan_matrix(body: etree._Element) -> Body:
    return _address(body, "PartialAddress")


def _prenotify(body: etree._Element) -> Body:
    return {
        "device_id": _required(body, "DeviceID"),
        "device_manufacturer": _required(body, "DeviceManufacturer"),
        "device_model": _required(body, "DeviceModel"),
        "device_type": _required(body, "DeviceType"),
        "smets_chts_version": _text(body, "SMETSCHTSVersion"),
        "firmware_version": _text(body, "FirmwareVersion"),
        "esme_variant": _text(body, "ESMEVariant"),
        "gbcs_version": _text(body, "DeviceGBCSVersion"),
    }


# --- replies -> Response content ----------------------------------------------------------------


def _inventory_content(reply: Reply, _request: etree._Element) -> etree._Element | None:
    pages = reply.get("pages") or []
    if not pages:
        return None
    # DSPInventory needs a manufacturer and model; the inventory may not know them yet.
    devices = [
        {**d, "device_manufacturer": d.get("device_manufacturer") or "Unknown"}
        | {"device_model": d.get("device_model") or "Unknown"}
        for d in pages[0]
    ]
    return dsp_inventory(devices)


def _wan_matrix_content(reply: Reply, request: etree._Element) -> etree._Element:
    matrix = etree.Element(_sr("DSPWANMatrix"), nsmap={"sr": SR_NS})
    echo = etree.SubElement(matrix, _sr("Request"))
    for child in request:
        if isinstance(child.tag, str):
            echo.append(etree.fromstring(etree.tostring(child)))
    for item in reply.get("responses") or []:
        answer = etree.SubElement(matrix, _sr("DSPWANMatrixResponse"))
        for local, key in (
            ("CSPRegion", "csp_region"),
            ("CSPRegionResponseCode", "csp_region_response_code"),
            ("CoverageAvailability", "coverage_availability"),
            ("WANTechnology", "wan_technology"),
            ("ConnectivityLikelihood", "connectivity_likelihood"),
        ):
            value = item.get(key)
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            etree.SubElement(answer, _sr(local)).text = text
    return matrix


def _no_content(_reply: Reply, _request: etree._Element) -> None:
    return None


@dataclass(frozen=True)
class NonDeviceService:
    """One non-device SRV: the inventory method, how to read its body, what to answer with."""

    variant: str
    method: str
    request: Callable[[etree._Element], Body]
    content: Callable[[Reply, etree._Element], etree._Element | None] = _no_content


NON_DEVICE_SERVICES: dict[str, NonDeviceService] = {
    s.variant: s
    for s in (
        NonDeviceService("8.2", "inventory.read", _read_inventory, _inventory_content),
        NonDeviceService("8.3", "device.decommission", _decommission),
        NonDeviceService("8.4", "inventory.update", _update_inventory),
        *(
            NonDeviceService(v, "hub.status_update", _hub_status(v))
            for v in ("8.14.1", "8.14.2", "8.14.3", "8.14.4")
        ),
        NonDeviceService("12.1", "wan.matrix", _wan_matrix, _wan_matrix_content),
        NonDeviceService("12.2", "device.prenotify", _prenotify),
    )
}
"""The non-device SRVs answered here, by variant; the others are not offered (E2)."""


def content_for(
    service: NonDeviceService, reply: Reply, request: etree._Element
) -> etree._Element | None:
    """The Response content for an inventory ``reply``, or DuisError with its refusal code."""
    code = str(reply.get("code") or "")
    if code != "I0":
        raise DuisError(code or "E13", str(reply.get("reason") or "refused by the inventory"))
    return service.content(reply, request)
