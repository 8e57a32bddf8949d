"""The non-device Service Requests (CV 8) the DCC answers itself, from the inventory.

One row per SRV: how its DUIS body becomes an inventory RPC call (services/inventory/requests.py,
schedules.py and firmware.py document each method) and how the reply becomes the Response's
content: 8.2 DSPInventory (several pages: I99, then one async Response per page, see
``answer_for``), 5.1 DSPScheduleID, 5.2 DSPSchedulesRead, 11.1 DSPUpdateFirmwareWarning, 12.1
DSPWANMatrix. Pure: DUIS elements and dicts in, dicts and elements out; app.py makes the calls
(``fetch`` is handed the call).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


def _leaf_fields(element: etree._Element) -> Body:
    """An element's children as {local name: text}, in document order."""
    return {
        etree.QName(child).localname: (child.text or "").strip()
        for child in element
        if isinstance(child.tag, str)
    }


# CreateSchedule's own fields (DSPSchedule); the one other child is the scheduled SR's body.
_SCHEDULE_FIELDS = {
    "ScheduleFrequency": "frequency",
    "ScheduleStartDate": "start_date",
    "ScheduleEndDate": "end_date",
    "ScheduleExecutionStartTime": "execution_time",
    "KAPublicSecurityCredential": None,  # not kept: the DCC's ACB is the Remote Party here
    "DSPScheduledServiceReference": "service_reference",
    "DSPScheduledServiceReferenceVariant": "variant",
    "DeviceID": "device_id",
}


def _create_schedule(body: etree._Element) -> Body:
    request: Body = {}
    scheduled: Body = {}
    for child in body:
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        if local in _SCHEDULE_FIELDS:
            key = _SCHEDULE_FIELDS[local]
            if key is not None:
                request[key] = (child.text or "").strip()
        else:
            scheduled[local] = _leaf_fields(child)
    for key in ("frequency", "start_date", "variant", "device_id"):
        if not request.get(key):
            raise DuisError(MALFORMED_REQUEST, f"CreateSchedule needs its {key}")
    if len(scheduled) != 1:
        raise DuisError(MALFORMED_REQUEST, "CreateSchedule names one scheduled request body")
    return request | {"request": scheduled}


def _schedule_selector(body: etree._Element) -> Body:
    """ReadSchedule / DeleteSchedule: a DSPScheduleID or a DeviceID."""
    schedule_id = _text(body, "DSPScheduleID")
    if schedule_id is not None:
        try:
            return {"schedule_id": int(schedule_id)}
        except ValueError:
            raise DuisError(MALFORMED_REQUEST, f"DSPScheduleID {schedule_id!r}") from None
    return {"device_id": _required(body, "DeviceID")}


def _update_firmware(body: etree._Element) -> Body:
    return {
        "image_b64": "".join(_required(body, "FirmwareImage").split()),
        "version": _required(body, "FirmwareVersion"),
        "device_ids": _required(body, "DeviceIDList"),
    }


# --- replies -> Response content ----------------------------------------------------------------


def _inventory_page(page: list[Body]) -> etree._Element:
    # DSPInventory needs a manufacturer and model; the inventory may not know them yet.
    devices = [
        {**d, "device_manufacturer": d.get("device_manufacturer") or "Unknown"}
        | {"device_model": d.get("device_model") or "Unknown"}
        for d in page
    ]
    return dsp_inventory(devices)


def _inventory_content(reply: Reply, _request: etree._Element) -> etree._Element | None:
    pages = reply.get("pages") or []
    return _inventory_page(pages[0]) if pages else None


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


def _schedule_id_content(reply: Reply, _request: etree._Element) -> etree._Element:
    element = etree.Element(_sr("DSPScheduleID"), nsmap={"sr": SR_NS})
    element.text = str(reply["schedule_id"])
    return element


def dsp_schedule_details(schedule: Body, parent: etree._Element) -> etree._Element:
    """A schedule (the inventory's ``schedule`` dict) as a DUIS ``DSPSchedule`` under
    ``parent``: CreateSchedule's fields in XSD order, then the scheduled request's element."""
    details = etree.SubElement(parent, _sr("DSPScheduleDetails"))
    for local, key in (
        ("ScheduleFrequency", "frequency"),
        ("ScheduleStartDate", "start_date"),
        ("ScheduleEndDate", "end_date"),
        ("ScheduleExecutionStartTime", "execution_time"),
        ("DSPScheduledServiceReference", "service_reference"),
        ("DSPScheduledServiceReferenceVariant", "service_reference_variant"),
        ("DeviceID", "device_id"),
    ):
        if schedule.get(key) is not None:
            etree.SubElement(details, _sr(local)).text = str(schedule[key])
    for name, fields in dict(schedule.get("request") or {}).items():
        element = etree.SubElement(details, _sr(name))
        for local, value in dict(fields or {}).items():
            etree.SubElement(element, _sr(local)).text = str(value)
    return details


def _schedules_read_content(reply: Reply, _request: etree._Element) -> etree._Element | None:
    schedules = reply.get("schedules") or []
    if not schedules:
        return None  # DSPSchedulesRead needs at least one: I0 without content
    read = etree.Element(_sr("DSPSchedulesRead"), nsmap={"sr": SR_NS})
    for schedule in schedules:
        entry = etree.SubElement(read, _sr("DSPSchedules"))
        etree.SubElement(entry, _sr("DSPScheduleID")).text = str(schedule["schedule_id"])
        dsp_schedule_details(schedule, entry)
    return read


# The inventory's warning lists -> DSPUpdateFirmwareWarning's elements, in XSD order.
_FIRMWARE_WARNINGS = (
    ("InvalidDeviceIDList", "invalid_device_ids"),
    ("NotCommissionedDeviceIDList", "not_commissioned_device_ids"),
    ("NotApplicableFirmwareDeviceIDList", "not_applicable_firmware_device_ids"),
)


def _firmware_content(reply: Reply, _request: etree._Element) -> etree._Element | None:
    warnings = dict(reply.get("warnings") or {})
    if not any(warnings.get(key) for _, key in _FIRMWARE_WARNINGS):
        return None
    element = etree.Element(_sr("DSPUpdateFirmwareWarning"), nsmap={"sr": SR_NS})
    for local, key in _FIRMWARE_WARNINGS:
        if warnings.get(key):
            etree.SubElement(element, _sr(local)).text = ",".join(warnings[key])
    return element


def _no_content(_reply: Reply, _request: etree._Element) -> None:
    return None


@dataclass(frozen=True)
class NonDeviceService:
    """One non-device SRV: the inventory method, how to read its body, what to answer with."""

    variant: str
    method: str
    request: Callable[[etree._Element], Body]
    content: Callable[[Reply, etree._Element], etree._Element | None] = _no_content
    # The reply comes in pages (8.2): more than one page is answered I99, then one async
    # Response per page.
    paged: bool = False


NON_DEVICE_SERVICES: dict[str, NonDeviceService] = {
    s.variant: s
    for s in (
        NonDeviceService("8.2", "inventory.read", _read_inventory, _inventory_content, paged=True),
        NonDeviceService("8.3", "device.decommission", _decommission),
        NonDeviceService("8.4", "inventory.update", _update_inventory),
        *(
            NonDeviceService(v, "hub.status_update", _hub_status(v))
            for v in ("8.14.1", "8.14.2", "8.14.3", "8.14.4")
        ),
        NonDeviceService("12.1", "wan.matrix", _wan_matrix, _wan_matrix_content),
        NonDeviceService("12.2", "device.prenotify", _prenotify),
        NonDeviceService("5.1", "schedule.create", _create_schedule, _schedule_id_content),
        NonDeviceService("5.2", "schedule.read", _schedule_selector, _schedules_read_content),
        NonDeviceService("5.3", "schedule.delete", _schedule_selector),
        NonDeviceService("11.1", "firmware.distribute", _update_firmware, _firmware_content),
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


# At most this many DSPInventory pages (17 devices each) are sent for one 8.2.
MAX_INVENTORY_PAGES = 60


async def fetch(
    service: NonDeviceService, call: Callable[[Body], Awaitable[Reply]], body: Body
) -> list[Reply]:
    """The inventory's replies to one request: one, or for a paged SRV each batch of pages
    (``next_page``) up to ``MAX_INVENTORY_PAGES`` pages. ``call`` makes the RPC call."""
    replies = [await call(body)]
    pages = len(replies[0].get("pages") or [])
    while service.paged and replies[-1].get("code") == "I0" and pages < MAX_INVENTORY_PAGES:
        next_page = replies[-1].get("next_page")
        if next_page is None:
            break
        reply = await call(
            body | {"first_page": next_page, "max_pages": MAX_INVENTORY_PAGES - pages}
        )
        replies.append(reply)
        pages += len(reply.get("pages") or [])
    return replies


@dataclass(frozen=True)
class NonDeviceAnswer:
    """What the User Gateway answers: ``code`` I0 with ``content`` (or none) synchronously, or
    I99 when the content follows as asynchronous Responses, one per element of ``later``."""

    code: str
    content: etree._Element | None = None
    later: tuple[etree._Element, ...] = ()


def answer_for(
    service: NonDeviceService, replies: list[Reply], request: etree._Element
) -> NonDeviceAnswer:
    """The answer to the inventory's ``replies`` (see :func:`fetch`), or DuisError with the
    refusal code.

    8.2: the XSD gives neither a paging element in ReadInventory nor a continuation marker in
    the Response (DSPInventory holds 1..17 Devices), so a result of more than one page is
    acknowledged I99 and each page is its own asynchronous I0 Response to the same RequestID;
    one page (or none) is the synchronous I0 as before."""
    content = content_for(service, replies[0], request)
    if service.paged:
        pages = [page for reply in replies for page in reply.get("pages") or []]
        if len(pages) > 1:
            return NonDeviceAnswer("I99", None, tuple(_inventory_page(p) for p in pages))
    return NonDeviceAnswer("I0", content)
