"""Non-device Service Requests (CV 8) end to end: serviceD answers synchronously from the
inventory with I0 and the SRV's content, signed by the DSP and valid against the DUIS 5.4 XSD."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from dccsim import estate
from dccsim.duis import xmldsig
from dccsim.duis.xml import load_schema, parse_response, parse_safely
from dccsim.pki.files import load_certificate
from dccsim.testuser import TestUser
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
DCC = "90-B3-D5-1F-30-00-00-02"


@pytest.fixture(scope="module")
def schema(reference_dir: Path) -> etree.XMLSchema:
    return load_schema(reference_dir / "duis" / "xsd")


async def service_d(
    system: System,
    session: aiohttp.ClientSession,
    user: TestUser,
    srv: str,
    body: str,
    schema: etree.XMLSchema,
) -> etree._Element:
    _, document = user.service_request(srv, DCC, command_variant=8, body_xml=body.encode())
    async with session.post(
        system.url("serviceD"), data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert resp.status == 200
        raw = await resp.read()
    root = parse_safely(raw)
    assert schema.validate(root), schema.error_log
    cert = load_certificate(user.bundle / "dcc-xml-sign.pem")
    xmldsig.verify(root, find_certificate=lambda s: cert if s == cert.serial_number else None)
    return root


def code_of(root: etree._Element) -> str:
    return root.findtext(f"{SR}Header/{SR}ResponseCode") or ""


async def test_read_inventory_by_device_lists_the_hub_and_its_devices(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    esme = system.esmes()[0]
    body = (
        f'<sr:ReadInventory xmlns:sr="{SR_NS}"><sr:DeviceID>{esme}</sr:DeviceID></sr:ReadInventory>'
    )
    root = await service_d(system, session, user, "8.2", body, schema)
    assert code_of(root) == "I0"
    devices = root.findall(f"{SR}Body/{SR}ResponseMessage/{SR}DSPInventory/{SR}Device")
    ids = {d.findtext(f"{SR}DeviceID") for d in devices}
    premises = next(p for p in estate.load(system.home) if any(d.eui == esme for d in p.devices))
    assert esme in ids
    assert {d.eui for d in premises.devices} <= ids
    types = {d.findtext(f"{SR}DeviceType") for d in devices}
    assert {"ESME", "CHF"} <= types


async def test_read_inventory_for_an_unknown_device_is_i0_without_devices(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    body = (
        f'<sr:ReadInventory xmlns:sr="{SR_NS}"><sr:DeviceID>00-DC-C5-FF-FF-FF-FF-02'
        "</sr:DeviceID></sr:ReadInventory>"
    )
    root = await service_d(system, session, user, "8.2", body, schema)
    assert code_of(root) == "I0"
    assert root.find(f"{SR}Body/{SR}ResponseMessage/{SR}DSPInventory") is None


async def test_wan_matrix_by_postcode_answers_each_csp_region(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    postcode = estate.load(system.home)[0].postcode
    body = (
        f'<sr:RequestWANMatrix xmlns:sr="{SR_NS}"><sr:PartialAddress><sr:PostCode>{postcode}'
        "</sr:PostCode><sr:AddressIdentifier>1</sr:AddressIdentifier></sr:PartialAddress>"
        "</sr:RequestWANMatrix>"
    )
    root = await service_d(system, session, user, "12.1", body, schema)
    assert code_of(root) == "I0"
    answers = root.findall(
        f"{SR}Body/{SR}ResponseMessage/{SR}DSPWANMatrix/{SR}DSPWANMatrixResponse"
    )
    assert answers and all(a.findtext(f"{SR}CSPRegionResponseCode") == "I0" for a in answers)


async def test_pre_notified_device_then_appears_in_the_inventory(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    eui = "00-DC-C5-AA-00-00-00-01"
    body = (
        f'<sr:DevicePrenotification xmlns:sr="{SR_NS}"><sr:DeviceID>{eui}</sr:DeviceID>'
        "<sr:DeviceManufacturer>AB01</sr:DeviceManufacturer><sr:DeviceModel>010A030B"
        "</sr:DeviceModel><sr:DeviceType>ESME</sr:DeviceType></sr:DevicePrenotification>"
    )
    assert code_of(await service_d(system, session, user, "12.2", body, schema)) == "I0"
    read = (
        f'<sr:ReadInventory xmlns:sr="{SR_NS}"><sr:DeviceID>{eui}</sr:DeviceID></sr:ReadInventory>'
    )
    root = await service_d(system, session, user, "8.2", read, schema)
    device = root.find(f"{SR}Body/{SR}ResponseMessage/{SR}DSPInventory/{SR}Device")
    assert device is not None
    assert device.findtext(f"{SR}DeviceStatus") == "Pending"
    # ... and a second pre-notification of the same device is refused by the inventory.
    assert code_of(await service_d(system, session, user, "12.2", body, schema)) == "E5"


async def test_a_non_device_srv_not_offered_is_e2_not_a_500(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    body = (
        f'<sr:UpdatePPMIDFirmware xmlns:sr="{SR_NS}"><sr:FirmwareImage>AAEC</sr:FirmwareImage>'
        "<sr:FirmwareVersion>00000000</sr:FirmwareVersion>"
        f"<sr:DeviceIDList>{system.esmes()[0]}</sr:DeviceIDList></sr:UpdatePPMIDFirmware>"
    )
    root = await service_d(system, session, user, "11.4", body, schema)
    assert code_of(root) == "E2"


async def test_a_non_device_srv_sent_to_serviceS_is_e13(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    body = (
        f'<sr:ReadInventory xmlns:sr="{SR_NS}"><sr:DeviceID>{DCC}</sr:DeviceID></sr:ReadInventory>'
    )
    _, document = user.service_request("8.2", DCC, command_variant=8, body_xml=body.encode())
    async with session.post(
        system.service_s, data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert parse_response(await resp.read()).response_code == "E13"
