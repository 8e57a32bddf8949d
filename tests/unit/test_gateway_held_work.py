"""What hosted ESMEs do with what they hold: future-dated commands carried out when the
gateway's clock reaches them, with their outcome alerts (0x8F66), also after a restart; and
6.15.1 credentials updates checked against the dev PKI's SMKI Root, as installed meters hold."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.estate import REGIONS, device_eui, format_eui
from dccsim.gbcs import der
from dccsim.gbcs.alerts import describe_alert
from dccsim.gbcs.commands import (
    CREDIT_MODE,
    PREPAYMENT_MODE,
    REPLACEMENT_OUTCOME,
    CommandContext,
    command_payload,
)
from dccsim.gbcs.critical import build_pre_command, wrap_command
from dccsim.gbcs.crypto import ecdsa_sign_raw, verify_frame_signature
from dccsim.gbcs.frames import GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.pki.devpki import PkiLayout, init_pki, issue_devices, issue_party
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import CertificateAuthority, KeyUsage, Role, issue_organisation_certificate
from dccsim.seed import supplier_eui
from emulators.esme import STATUS_SUCCESS, Esme
from gateway.hosting import DeviceModels, DeviceRecord, EstateIndex
from gateway.network import NetworkModel
from gateway.nonvolatile import DeviceStateFile
from gateway.server import GatewayServer, smki_root_key
from services.inventory.seed import estate_premises

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ESME = parse_eui(device_eui(1, 2))
SUPPLIER = parse_eui(supplier_eui(0))
PREPAYMENT: dict[str, object] = {
    "disablement_threshold": 500,
    "suspend_debt_disabled": True,
    "suspend_debt_emergency": False,
}


@dataclass
class Home:
    pki: Path
    path: Path
    keystore: KeyStore
    now: dt.datetime = START
    counter: int = 100
    servers: list[GatewayServer] = field(default_factory=list)

    def gateway(self) -> GatewayServer:
        """A gateway over the estate and the state file (a new one: a restart), whose clock
        is ``self.now``, its meters holding the dev PKI's Root key."""
        index = EstateIndex.from_premises([estate_premises(1)])
        models = DeviceModels(
            index,
            self.keystore,
            lambda: self.now,
            memory=DeviceStateFile(self.path / "gateway.sqlite3"),
            root_public_key=smki_root_key(self.pki),
        )
        server = GatewayServer(
            index, models, NetworkModel.from_config(list(REGIONS), seed=1), clock=lambda: self.now
        )
        self.servers.append(server)
        return server

    def private(self, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePrivateKey:
        key = self.keystore.private_key(eui, usage)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def public(self, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePublicKey:
        key = self.keystore.certificate(eui, usage).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def critical(self, use_case: str, parameters: dict[str, object]) -> bytes:
        """The Supplier's Signed Pre-Command for ``use_case`` to the ESME, wrapped by the ACB."""
        self.counter += 1
        pre = build_pre_command(
            USE_CASES_BY_NAME[use_case],
            originator_title=SUPPLIER,
            device_title=ESME,
            counter=self.counter,
            payload=command_payload(
                use_case, CommandContext(self.counter, SUPPLIER, ESME, parameters)
            ),
        )
        signer = self.private(SUPPLIER, KeyUsage.DS)
        signed = decode_message(pre + b"\x40" + ecdsa_sign_raw(signer, pre[1:]))
        assert isinstance(signed, GeneralSigning)
        return wrap_command(
            signed,
            acb_ka_private=self.private(DCC_EUI, KeyUsage.KA),
            device_ka_public=self.public(ESME, KeyUsage.KA),
        )


@pytest.fixture(scope="module")
def pki_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("held-work-home")
    init_pki(home)
    issue_party(home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="supplier", out_dir=home / "sup")
    issue_devices(home, [ESME])
    yield home


@pytest.fixture
def home(pki_home: Path, tmp_path: Path) -> Iterator[Home]:
    h = Home(pki_home, tmp_path, KeyStore(pki_home / "pki" / "keystore"))
    yield h
    for server in h.servers:
        server.models.close()


async def _send(server: GatewayServer, frame: bytes) -> dict[str, Any]:
    reply = await server.execute({"device": format_eui(ESME), "frame": frame})
    assert reply is not None and reply["t"] == "rsp", reply
    return reply


def _esme(server: GatewayServer) -> tuple[DeviceRecord, Esme]:
    record = server.index.record(server.index.find(ESME) or 0)
    model = server.models.get(record)
    assert isinstance(model, Esme)
    return record, model


def _alerts(server: GatewayServer) -> list[dict[str, Any]]:
    """The alerts the gateway sent (no WAN link is connected: they wait in the outbox)."""
    return list(server.alert_outbox)


async def _settle() -> None:
    """Let the tasks sending the raised alerts run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_future_dated_payment_mode_runs_on_time_and_raises_its_outcome_alert(
    home: Home,
) -> None:
    server = home.gateway()
    at = START + dt.timedelta(seconds=30)
    await _send(server, home.critical("ECS03", {**PREPAYMENT, "execution_date_time": at}))
    command_counter = home.counter
    assert await server.run_due_work() == 0  # not yet
    _, esme = _esme(server)
    assert esme.account.payment_mode == CREDIT_MODE
    assert server.due and _alerts(server) == []

    home.now = at + dt.timedelta(seconds=1)  # no command comes: the meter's clock does it
    assert await server.run_due_work() == 1
    await _settle()
    assert esme.account.payment_mode == PREPAYMENT_MODE
    alerts = _alerts(server)
    assert [a["alert_code"] for a in alerts] == [0x8F66, 0x8F66]  # threshold, payment mode
    assert {a["device"] for a in alerts} == {format_eui(ESME)}
    frames: list[GeneralSigning] = []
    for a in alerts:
        frame = decode_message(a["frame"])
        assert isinstance(frame, GeneralSigning)
        frames.append(frame)
        assert frame.recipient_title == SUPPLIER
        assert verify_frame_signature(frame, home.public(ESME, KeyUsage.DS))
    assert frames[0].originator_counter < frames[1].originator_counter
    described = describe_alert(alerts[1]["frame"])
    assert described["future_dated"]["outcome"] == "executed"
    assert described["future_dated"]["message_code"] == "0x001b"  # ECS03
    assert described["future_dated"]["originator_counter"] == command_counter
    assert described["future_dated"]["class_id"] == 111
    assert server.due == {}
    assert await server.run_due_work() == 0  # done once


async def test_held_work_survives_a_gateway_restart(home: Home) -> None:
    first = home.gateway()
    at = START + dt.timedelta(minutes=5)
    await _send(first, home.critical("ECS03", {**PREPAYMENT, "execution_date_time": at}))
    first.models.close()  # the gateway stops with the command held

    restarted = home.gateway()
    assert list(restarted.due.values()) == [at]
    home.now = at
    assert await restarted.run_due_work() == 1
    await _settle()
    assert [a["alert_code"] for a in _alerts(restarted)] == [0x8F66, 0x8F66]
    assert _esme(restarted)[1].account.payment_mode == PREPAYMENT_MODE
    restarted.models.close()
    assert home.gateway().due == {}  # carried out: nothing held any more


async def test_a_cancelled_future_dated_command_raises_nothing(home: Home) -> None:
    server = home.gateway()
    at = START + dt.timedelta(seconds=30)
    await _send(server, home.critical("ECS03", {**PREPAYMENT, "execution_date_time": at}))
    cancel = dt.datetime(3000, 12, 31, tzinfo=dt.UTC)
    await _send(server, home.critical("ECS03", {**PREPAYMENT, "execution_date_time": cancel}))
    home.now = at + dt.timedelta(hours=1)
    assert await server.run_due_work() == 0
    assert _alerts(server) == [] and server.due == {}


def _der(certificate: Any) -> bytes:
    data: bytes = certificate.public_bytes(Encoding.DER)
    return data


async def test_a_credentials_update_from_the_dev_pki_is_taken_and_kept(home: Home) -> None:
    """6.15.1 (CS02b) with new Supplier certificates issued by the dev PKI's organisation CA:
    the hosted meter's path check reaches its Root cell, it trusts the new keys, and after a
    restart it still does."""
    layout = PkiLayout.of(home.pki)
    issuing = CertificateAuthority.load(layout.smki_issuing_cert, layout.smki_issuing_key)
    new_ds, new_ka = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))

    def certificate(key: ec.EllipticCurvePrivateKey, usage: KeyUsage) -> bytes:
        return _der(
            issue_organisation_certificate(
                issuing,
                eui=SUPPLIER,
                role=Role.SUPPLIER,
                usage=usage,
                public_key=key.public_key(),
                not_before=START - dt.timedelta(days=1),
                not_after=START + dt.timedelta(days=365),
            )
        )

    server = home.gateway()
    reply = await _send(
        server,
        home.critical(
            "CS02bSupplierBySupplier",
            {
                "digital_signing_certificate": certificate(new_ds, KeyUsage.DS),
                "key_agreement_certificate": certificate(new_ka, KeyUsage.KA),
                "certification_path_certificates": [_der(issuing.certificate)],
                "floor_seq_number": 0,
                "apply_time_based_cpv_checks": True,
            },
        ),
    )
    frame = decode_message(reply["frame"])
    assert isinstance(frame, GeneralSigning)
    answer: Any = der.decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=2).fields
    results = answer["credentials_replacement_report"]["replacement_results"]
    outcomes: list[Any] = [der.decode_with(REPLACEMENT_OUTCOME, r) for r in results]
    assert [o["status"] for o in outcomes] == [STATUS_SUCCESS] * 2
    server.models.close()

    _, esme = _esme(home.gateway())  # restarted: the cells and the party they name are kept
    party = esme.remote_parties[SUPPLIER]
    assert party.ka_public_key.public_numbers() == new_ka.public_key().public_numbers()
    assert party.ds_public_key is not None
    assert party.ds_public_key.public_numbers() == new_ds.public_key().public_numbers()
