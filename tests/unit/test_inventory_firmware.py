"""Firmware: the image store (bytes on disk by sha256) and 11.1 distribution records with the
per-device refusals (E19, E11, E4, E5) — on SQLite and PostgreSQL (the ``inventory`` fixture of
the inventory suite)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from lxml import etree

from dccsim.seed import supplier_eui
from dccsim.smi import StatusEvent
from services.inventory.firmware import FirmwareRequests, FirmwareStore
from services.inventory.seed import seed_estate
from services.inventory.store import SmartMeteringInventory
from tests.unit.test_inventory_store import eui, inventory, pg_database  # noqa: F401

S1, S2 = supplier_eui(0), supplier_eui(1)
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
ESME_MODEL = ("DCC5", "0E010001")  # the seeded estate's ESMEs
IMAGE = b"ESME firmware 1.2 " * 64
UNKNOWN = "00-DC-C5-FF-FF-FF-FF-02"


@pytest.fixture
def firmware_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "firmware"


@pytest.fixture
async def methods(
    inventory: SmartMeteringInventory,  # noqa: F811
    firmware_dir: Path,
) -> FirmwareRequests:
    await seed_estate(inventory, premises=3, suppliers=2)  # premises 1, 3: S1; premises 2: S2
    return FirmwareRequests(FirmwareStore(inventory, firmware_dir))


def add_body(
    image: bytes = IMAGE, version: str = "00010200", **fields: object
) -> dict[str, object]:
    manufacturer, model = ESME_MODEL
    return {"manufacturer": manufacturer, "model": model, "version": version, "image": image} | (
        fields
    )


def distribute_body(
    devices: object, user: str = S1, roles: tuple[str, ...] = ("IS", "GS"), **fields: object
) -> dict[str, object]:
    return {"user_eui": user, "user_roles": list(roles), "device_ids": devices, **fields}


async def test_add_keeps_the_bytes_on_disk_under_their_sha256(
    methods: FirmwareRequests, firmware_dir: Path
) -> None:
    digest = hashlib.sha256(IMAGE).hexdigest()
    reply = await methods.add(add_body(sha256=digest, size=len(IMAGE)))
    assert reply["code"] == "I0" and reply["added"] is True
    assert reply["image"] | {"added_at": None} == {
        "sha256": digest,
        "manufacturer": "DCC5",
        "model": "0E010001",
        "version": "00010200",
        "size": len(IMAGE),
        "added_at": None,
    }
    assert (firmware_dir / digest).read_bytes() == IMAGE
    assert methods.store.image_bytes(digest) == IMAGE


async def test_adding_the_same_image_again_stores_nothing_new(methods: FirmwareRequests) -> None:
    await methods.add(add_body())
    again = await methods.add(
        add_body() | {"image": None, "image_b64": base64.b64encode(IMAGE).decode()}
    )
    assert again["code"] == "I0" and again["added"] is False
    assert len((await methods.list_images({}))["images"]) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"sha256": "00" * 32},
        {"size": 3},
        {"image": b""},
        {"image": None},
        {"version": ""},
        {"version": "123456789"},
        {"manufacturer": "TOOLONG"},
    ],
)
async def test_add_refuses_what_disagrees_with_the_bytes_or_the_fields(
    methods: FirmwareRequests, fields: dict[str, object]
) -> None:
    assert (await methods.add(add_body() | fields))["code"] == "E13"


async def test_one_version_of_a_model_cannot_name_two_images(methods: FirmwareRequests) -> None:
    await methods.add(add_body())
    assert (await methods.add(add_body(image=b"other bytes")))["code"] == "E13"
    assert (await methods.add(add_body(version="00010300")))["code"] == "E13"  # same bytes


async def test_list_filters_by_manufacturer_and_model(methods: FirmwareRequests) -> None:
    await methods.add(add_body())
    await methods.add(add_body(image=b"gas meter image", model="06010001"))
    everything = await methods.list_images({})
    gas = await methods.list_images({"manufacturer": "dcc5", "model": "06010001"})
    assert len(everything["images"]) == 2
    assert [i["model"] for i in gas["images"]] == ["06010001"]


async def test_distribute_records_each_device_accepted_or_refused_with_its_code(
    methods: FirmwareRequests,
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    digest = (await methods.add(add_body()))["image"]["sha256"]
    await inventory.transition(eui(3, 2), StatusEvent.SUSPEND, reason="test")
    devices = [eui(1, 2), eui(1, 3), UNKNOWN, eui(2, 2), eui(3, 2)]
    reply = await methods.distribute(distribute_body(devices, sha256=digest, request_id="r-1"))
    assert reply["code"] == "I0"
    outcomes = {d["eui"]: (d["status"], d["code"]) for d in reply["distribution"]["devices"]}
    assert outcomes == {
        eui(1, 2): ("Distributing", None),
        eui(1, 3): ("Refused", "E11"),  # a GSME: another model
        UNKNOWN: ("Refused", "E19"),
        eui(2, 2): ("Refused", "E4"),  # S2's ESME
        eui(3, 2): ("Refused", "E5"),  # suspended
    }
    assert reply["warnings"] == {
        "invalid_device_ids": [UNKNOWN, eui(2, 2)],
        "not_applicable_firmware_device_ids": [eui(1, 3)],
        "not_commissioned_device_ids": [eui(3, 2)],
    }


async def test_the_distribution_is_kept_and_read_back_by_its_sender_only(
    methods: FirmwareRequests,
) -> None:
    digest = (await methods.add(add_body()))["image"]["sha256"]
    sent = await methods.distribute(distribute_body([eui(1, 2), UNKNOWN], sha256=digest))
    dist_id = sent["distribution"]["distribution_id"]
    read = await methods.read_distribution({"user_eui": S1, "distribution_id": dist_id})
    assert read["code"] == "I0"
    assert read["distribution"]["devices"] == sent["distribution"]["devices"]
    assert read["distribution"]["version"] == "00010200"
    other = await methods.read_distribution({"user_eui": S2, "distribution_id": dist_id})
    assert other["code"] == "E4"


async def test_when_every_device_is_refused_the_reply_carries_the_first_refusal(
    methods: FirmwareRequests,
) -> None:
    digest = (await methods.add(add_body()))["image"]["sha256"]
    reply = await methods.distribute(distribute_body([eui(1, 3), UNKNOWN], sha256=digest))
    assert reply["code"] == "E11"


async def test_distribute_takes_the_image_bytes_and_a_device_id_list_string(
    methods: FirmwareRequests,
) -> None:
    await methods.add(add_body())
    devices = f"{eui(1, 2)},{eui(3, 2)}".lower()
    reply = await methods.distribute(distribute_body(devices, image=IMAGE, version="00010200"))
    assert reply["code"] == "I0"
    assert [d["eui"] for d in reply["distribution"]["devices"]] == [eui(1, 2), eui(3, 2)]


@pytest.mark.parametrize(
    "fields",
    [
        {"image": b"never added"},
        {"sha256": "ab" * 32},
        {"image": IMAGE, "version": "00099999"},
        {"image": IMAGE, "device_ids": "not-an-eui"},
        {"image": IMAGE, "device_ids": []},
    ],
)
async def test_distribute_refuses_an_unknown_image_wrong_version_or_bad_list(
    methods: FirmwareRequests, fields: dict[str, object]
) -> None:
    await methods.add(add_body())
    assert (await methods.distribute(distribute_body([eui(1, 2)]) | fields))["code"] == "E13"


async def test_reference_update_firmware_request_maps_onto_distribute(
    methods: FirmwareRequests, reference_dir: Path
) -> None:
    path = reference_dir / "duis/templates/11.1_UPDATE_FIRMWARE_REQUEST_DUIS.XML"
    element = etree.parse(str(path)).find(f"{SR}Body/{SR}UpdateFirmware")
    assert element is not None
    image_b64 = element.findtext(f"{SR}FirmwareImage") or ""
    version = element.findtext(f"{SR}FirmwareVersion") or ""
    template_devices = element.findtext(f"{SR}DeviceIDList") or ""
    image = base64.b64decode(image_b64)
    added = await methods.add(add_body(image=image, version=version))
    assert added["image"]["size"] == len(image)
    reply = await methods.distribute(
        distribute_body(f"{template_devices},{eui(1, 2)}", image_b64=image_b64, version=version)
    )
    assert reply["code"] == "I0"
    outcomes = {d["eui"]: d["code"] for d in reply["distribution"]["devices"]}
    assert outcomes == {template_devices.upper(): "E19", eui(1, 2): None}
