"""transform's ``transform.local_command`` RPC (CV 2, 3, 6, 7): the command for local delivery is
the command the SM WAN would carry, byte for byte; E17 for a command the DCC originates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim import estate
from dccsim.bus import Envelope
from dccsim.bus.topology import GBCS_COMMAND
from dccsim.duis.requestid import DCC_EUI, RequestId, parse_eui
from dccsim.duis.xml import build_response, load_schema, local_command
from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.metrics import ServiceMetrics
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.seed import seed_demo
from dccsim.smi import DeviceRecord, DeviceStatus, DeviceType
from dccsim.testuser import TestUser
from services.transform.app import Keys, Transformer

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"


class FakeBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope]] = []

    async def publish(self, routing_key: str, envelope: Envelope) -> None:
        self.published.append((routing_key, envelope))


class Installation:
    def __init__(self, home: Path) -> None:
        seed_demo(home, premises=1)
        self.home = home
        self.keystore = KeyStore(home / "pki" / "keystore")
        self.user = TestUser.load(home / "participants" / "90B3D51F3001D000")
        devices = estate.load(home)[0].devices
        self.esme = next(d.eui for d in devices if d.device_type.value == "ESME")
        self.chf = next(d.eui for d in devices if d.device_type.value == "CHF")


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    return Installation(tmp_path_factory.mktemp("dccsim-home"))


@pytest.fixture
def transformer(installation: Installation) -> tuple[Transformer, FakeBus]:
    bus = FakeBus()
    rt = SimpleNamespace(
        metrics=ServiceMetrics("transform_test"),
        settings=SimpleNamespace(home=installation.home),
        bus=bus,
    )
    return Transformer(rt, Keys(installation.keystore)), bus  # type: ignore[arg-type]


def accepted(
    installation: Installation,
    srv: str,
    cv: int,
    counter: int,
    *,
    device: str | None = None,
    device_type: DeviceType = DeviceType.ESME,
    **extra: Any,
) -> tuple[str, dict[str, Any]]:
    """(RequestID, the ``sr.accepted`` body the User Gateway sends)."""
    target = device or installation.esme
    rid = RequestId(parse_eui(installation.user.eui), parse_eui(target), counter)
    record = DeviceRecord(target, device_type, DeviceStatus.COMMISSIONED)
    body = {
        "srv": srv,
        "cv": cv,
        "user_id": installation.user.user_id,
        "user_eui": installation.user.eui,
        "originator": rid.originator,
        "target": rid.target,
        "counter": counter,
        "device": record.to_wire(),
        **extra,
    }
    return str(rid), body


async def wan_frame(
    transformer: Transformer, bus: FakeBus, rid: str, body: dict[str, Any]
) -> bytes:
    await transformer.on_request(Envelope("sr.accepted", rid, body))
    [(key, env)] = [p for p in bus.published if p[1].request_id == rid]
    assert key == GBCS_COMMAND
    frame = env.body["frame"]
    assert isinstance(frame, bytes)
    return frame


async def test_the_local_command_is_the_wan_command(
    installation: Installation, transformer: tuple[Transformer, FakeBus]
) -> None:
    t, bus = transformer
    rid, body = accepted(installation, "4.1.1", 3, 4100)
    reply = await t.on_local_command(Envelope("transform.local_command", rid, body))
    assert reply["code"] == "I0"
    frame = reply["gbcs_payload"]
    assert frame == await wan_frame(t, bus, rid, body)

    message = decode_message(frame)
    assert isinstance(message, GeneralCiphering)
    gs = message.general_signing
    assert gs.message_code == USE_CASES_BY_NAME["ECS17b"].message_code
    assert gs.originator_counter == 4100
    acb = installation.keystore.private_key(DCC_EUI, KeyUsage.KA)
    device = installation.keystore.certificate(parse_eui(installation.esme), KeyUsage.KA)
    assert isinstance(acb, ec.EllipticCurvePrivateKey)
    public = device.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert verify_mac(message, private_key=acb, peer_public_key=public)


async def test_a_critical_local_command_is_the_checked_signed_pre_command(
    installation: Installation, transformer: tuple[Transformer, FakeBus]
) -> None:
    t, bus = transformer
    rid, cv4 = accepted(installation, "7.2", 4, 4200)
    pre = t.pre_command(rid, cv4)
    signed = installation.user.sign_pre_command(pre)
    _, cv7 = accepted(installation, "7.2", 7, 4200, signed_pre_command=signed)
    reply = await t.on_local_command(Envelope("transform.local_command", rid, cv7))
    assert reply["code"] == "I0"
    assert reply["gbcs_payload"] == await wan_frame(t, bus, rid, cv7)

    bad = bytearray(signed)
    bad[-1] ^= 1
    _, refused = accepted(installation, "7.2", 6, 4200, signed_pre_command=bytes(bad))
    answer = await t.on_local_command(Envelope("transform.local_command", rid, refused))
    assert answer["code"] == "E1"


async def test_a_command_the_dcc_originates_is_not_given_for_local_delivery(
    installation: Installation, transformer: tuple[Transformer, FakeBus]
) -> None:
    t, _ = transformer
    body_xml = (
        f'<sr:UpdateHANDeviceLog xmlns:sr="{SR_NS}"><sr:DeviceID>{installation.esme}'
        "</sr:DeviceID><sr:RequestType>Remove</sr:RequestType></sr:UpdateHANDeviceLog>"
    ).encode()
    rid, body = accepted(
        installation,
        "8.11",
        2,
        4300,
        device=installation.chf,
        device_type=DeviceType.CHF,
        body_xml=body_xml,
    )
    reply = await t.on_local_command(Envelope("transform.local_command", rid, body))
    assert reply["code"] == "E17"


async def test_a_body_that_cannot_be_transformed_is_e13(
    installation: Installation, transformer: tuple[Transformer, FakeBus]
) -> None:
    t, _ = transformer
    rid, body = accepted(
        installation, "3.1", 2, 4400, body_xml=f'<sr:DisplayMessage xmlns:sr="{SR_NS}"/>'.encode()
    )
    reply = await t.on_local_command(Envelope("transform.local_command", rid, body))
    assert reply["code"] == "E13"


@pytest.mark.parametrize("code", ["I0", "I99"])
async def test_the_local_command_answer_validates_against_the_duis_xsd(
    installation: Installation,
    transformer: tuple[Transformer, FakeBus],
    reference_dir: Path,
    code: str,
) -> None:
    t, _ = transformer
    rid, body = accepted(installation, "4.1.1", 2, 4500 + len(code))
    reply = await t.on_local_command(Envelope("transform.local_command", rid, body))
    answer = build_response(
        request_id=rid,
        response_id=None,
        response_code=code,
        response_datetime=dt.datetime.now(dt.UTC),
        service_reference="4.1",
        service_reference_variant="4.1.1",
        content=local_command(reply["gbcs_payload"]),
    )
    schema = load_schema(reference_dir / "duis" / "xsd")
    assert schema.validate(answer), schema.error_log
