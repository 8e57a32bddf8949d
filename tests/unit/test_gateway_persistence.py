"""Device non-volatile state across a gateway restart: anti-replay counters, supply state and
a CHF's device log written before the reply leaves and read back by a new hosting object."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.estate import REGIONS, device_eui, format_eui
from dccsim.gbcs.commands import (
    KEY_USAGE_DIGITAL_SIGNATURE,
    KEY_USAGE_KEY_AGREEMENT,
    PREPAYMENT_MODE,
    CommandContext,
    command_payload,
)
from dccsim.gbcs.critical import build_pre_command, wrap_command
from dccsim.gbcs.crypto import ecdsa_sign_raw
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command, build_ecs17b_command
from dccsim.pki.devpki import init_pki, issue_devices, issue_party
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage, Role
from dccsim.seed import supplier_eui
from emulators.chf import CCS01, Chf
from emulators.device import ALERT_FAILED_AUTHENTICATION_OTHER
from emulators.esme import DEFAULT_TARIFF, Esme, SupplyState
from gateway.hosting import DeviceModels, DeviceRecord, EstateIndex, eui_int
from gateway.network import NetworkModel
from gateway.nonvolatile import DeviceStateFile, Residue
from gateway.server import GatewayServer
from services.inventory.seed import estate_premises

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ESME = parse_eui(device_eui(1, 2))
CHF = parse_eui(device_eui(1, 0))
SUPPLIER = parse_eui(supplier_eui(0))


@dataclass
class Home:
    path: Path
    keystore: KeyStore

    def gateway(self) -> GatewayServer:
        """A new hosting object over the same estate and state file: a restarted gateway."""
        index = EstateIndex.from_premises([estate_premises(1)])
        memory = DeviceStateFile(self.path / "data" / "gateway-all.sqlite3")
        models = DeviceModels(index, self.keystore, lambda: NOW, memory=memory)
        network = NetworkModel.from_config(list(REGIONS), seed=1)
        return GatewayServer(index, models, network, clock=lambda: NOW)

    def ka_public(self, eui: bytes) -> ec.EllipticCurvePublicKey:
        key = self.keystore.certificate(eui, KeyUsage.KA).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def acb_ka(self) -> ec.EllipticCurvePrivateKey:
        key = self.keystore.private_key(DCC_EUI, KeyUsage.KA)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def read_registers(self, counter: int) -> bytes:
        return build_ecs17b_command(
            originator_title=SUPPLIER,
            device_title=ESME,
            counter=counter,
            acb_ka_private=self.acb_ka(),
            device_ka_public=self.ka_public(ESME),
        )


@pytest.fixture(scope="module")
def pki_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("gateway-home")
    init_pki(home)
    issue_party(home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="supplier", out_dir=home / "sup")
    issue_devices(home, [ESME, CHF])
    yield home


@pytest.fixture
def home(pki_home: Path, tmp_path: Path) -> Home:
    # a fresh state file per test, the PKI shared
    return Home(tmp_path, KeyStore(pki_home / "pki" / "keystore"))


async def _send(server: GatewayServer, eui: bytes, frame: bytes) -> dict[str, Any]:
    reply = await server.execute({"device": format_eui(eui), "frame": frame})
    assert reply is not None
    return reply


async def test_a_command_replayed_after_a_restart_is_refused(home: Home) -> None:
    first = home.gateway()
    command = home.read_registers(counter=1000)
    assert (await _send(first, ESME, command))["t"] == "rsp"
    first.models.close()  # the gateway stops (a SIGKILL leaves the same committed rows)

    restarted = home.gateway()
    replayed = await _send(restarted, ESME, command)
    assert replayed["t"] == "err" and replayed["code"] == "E21"
    assert replayed["alert"] == ALERT_FAILED_AUTHENTICATION_OTHER
    assert (await _send(restarted, ESME, home.read_registers(counter=1001)))["t"] == "rsp"


async def test_supply_state_survives_a_restart(home: Home) -> None:
    first = home.gateway()
    assert (await _send(first, ESME, home.read_registers(counter=5)))["t"] == "rsp"
    record = first.index.record(first.index.find(ESME) or 0)
    model = first.models.get(record)
    assert isinstance(model, Esme)
    model.supply = SupplyState.ARMED
    model.clock_offset = dt.timedelta(seconds=-42)
    first.models.commit(record, model)
    first.models.close()

    rebuilt = home.gateway().models.get(record)
    assert isinstance(rebuilt, Esme)
    assert rebuilt.supply is SupplyState.ARMED
    assert rebuilt.clock_offset == dt.timedelta(seconds=-42)
    assert rebuilt.last_counters == {SUPPLIER: 5}


async def test_the_chf_device_log_survives_a_restart(home: Home, reference_dir: Path) -> None:
    vector = reference_dir / "gbcs/rtds/8.11_CCS01/CCS01_8.11_SUCCESS_COMMAND_GBCS.HEX"
    payload = decode_message(bytes.fromhex(vector.read_text().strip()))
    assert isinstance(payload, GeneralCiphering)
    add = build_command(
        CCS01,
        originator_title=DCC_EUI,
        device_title=CHF,
        counter=77,
        payload=payload.general_signing.payload,
        acb_ka_private=home.acb_ka(),
        device_ka_public=home.ka_public(CHF),
    )
    first = home.gateway()
    assert (await _send(first, CHF, add))["t"] == "rsp"
    first.models.close()

    restarted = home.gateway()
    record = restarted.index.record(restarted.index.find(CHF) or 0)
    chf = restarted.models.get(record)
    assert isinstance(chf, Chf)
    assert parse_eui("00-DB-12-34-56-78-90-A0") in chf.device_log
    assert (await _send(restarted, CHF, add))["alert"] == ALERT_FAILED_AUTHENTICATION_OTHER


async def test_a_reset_premises_forgets_the_persisted_state(home: Home) -> None:
    first = home.gateway()
    command = home.read_registers(counter=9)
    assert (await _send(first, ESME, command))["t"] == "rsp"
    first.reset_premises(first.index.premises_number("P0000001") or 0)
    first.models.close()
    assert (await _send(home.gateway(), ESME, command))["t"] == "rsp"


# -- the whole of an ESME's non-volatile state, kept compactly --------------------------------

PREPAYMENT: dict[str, object] = {
    "disablement_threshold": 500,
    "suspend_debt_disabled": True,
    "suspend_debt_emergency": False,
}


def critical_command(
    home: Home, use_case: str, counter: int, parameters: dict[str, object]
) -> bytes:
    """The Supplier's Signed Pre-Command for ``use_case`` to the ESME, wrapped by the ACB."""
    pre = build_pre_command(
        USE_CASES_BY_NAME[use_case],
        originator_title=SUPPLIER,
        device_title=ESME,
        counter=counter,
        payload=command_payload(use_case, CommandContext(counter, SUPPLIER, ESME, parameters)),
    )
    supplier_ds = home.keystore.private_key(SUPPLIER, KeyUsage.DS)
    assert isinstance(supplier_ds, ec.EllipticCurvePrivateKey)
    signed = decode_message(pre + b"\x40" + ecdsa_sign_raw(supplier_ds, pre[1:]))
    assert isinstance(signed, GeneralSigning)
    return wrap_command(signed, acb_ka_private=home.acb_ka(), device_ka_public=home.ka_public(ESME))


def evicting_models(home: Home) -> DeviceModels:
    """Hosting with room for one model and in-process residues: the ESME is evicted as soon
    as another device's model is built."""
    index = EstateIndex.from_premises([estate_premises(1)])
    return DeviceModels(index, home.keystore, lambda: NOW, capacity=1)


def esme_record(models: DeviceModels) -> DeviceRecord:
    return models.index.record(models.index.find(ESME) or 0)


def evict_esme(models: DeviceModels) -> None:
    chf = models.index.record(models.index.find(CHF) or 0)
    models.get(chf)
    assert models.peek(esme_record(models).index) is None


def test_payment_mode_set_by_a_command_survives_eviction(home: Home) -> None:
    models = evicting_models(home)
    record = esme_record(models)
    esme = models.get(record)
    esme.handle(critical_command(home, "ECS03", 10, PREPAYMENT))
    assert isinstance(esme, Esme) and esme.account.payment_mode == PREPAYMENT_MODE
    evict_esme(models)
    rebuilt = models.get(record)
    assert isinstance(rebuilt, Esme) and rebuilt is not esme
    assert rebuilt.account.payment_mode == PREPAYMENT_MODE
    assert rebuilt.account.disablement_threshold == 500
    assert rebuilt.last_counters == {SUPPLIER: 10}


def test_a_residue_holds_only_what_changed(home: Home) -> None:
    models = evicting_models(home)
    record = esme_record(models)
    esme = models.get(record)
    esme.handle(home.read_registers(counter=3))
    read_only = models.residue(record)
    assert read_only is not None and read_only.extra == {}  # counters, no model state
    esme.handle(critical_command(home, "ECS03", 4, PREPAYMENT))
    residue = models.residue(record)
    assert residue is not None and set(residue.extra) == {"account"}
    whole = Residue(residue.last_counters, 0, esme.nonvolatile_state()).pack()
    assert len(residue.pack()) * 4 < len(whole)  # not the tariff, trust anchors ...
    # a device built but never commanded leaves nothing behind
    evict_esme(models)
    chf = models.index.record(models.index.find(CHF) or 0)
    models.get(esme_record(models))
    assert models.memory.load(eui_int(chf.eui)) is None


async def test_tariff_and_payment_mode_survive_a_restart(home: Home) -> None:
    first = home.gateway()
    tariff = dataclasses.replace(DEFAULT_TARIFF, standing_charge=12345, tou_prices=(2500, 1800))
    assert (await _send(first, ESME, critical_command(home, "ECS01a", 20, {"tariff": tariff})))[
        "t"
    ] == "rsp"
    assert (await _send(first, ESME, critical_command(home, "ECS03", 21, PREPAYMENT)))["t"] == "rsp"
    first.models.close()

    rebuilt = home.gateway().models.get(esme_record(first.models))
    assert isinstance(rebuilt, Esme)
    assert rebuilt.tariff.standing_charge == 12345
    assert rebuilt.tariff.tou_prices == (2500, 1800)
    assert rebuilt.account.payment_mode == PREPAYMENT_MODE
    assert rebuilt.last_counters == {SUPPLIER: 21}


def test_a_hosted_esme_holds_its_users_trust_anchors_and_the_root(home: Home) -> None:
    models = evicting_models(home)
    esme = models.get(esme_record(models))
    assert isinstance(esme, Esme)
    cells = {(a.role, a.key_usage, a.cell_usage): a for a in esme.trust_anchors.values()}
    supplier_ds = cells[(Role.SUPPLIER, KEY_USAGE_DIGITAL_SIGNATURE, 0)]
    supplier_ka = cells[(Role.SUPPLIER, KEY_USAGE_KEY_AGREEMENT, 0)]
    assert supplier_ds.subject_id == supplier_ka.subject_id == SUPPLIER
    assert supplier_ka.public_key.public_numbers() == home.ka_public(SUPPLIER).public_numbers()
    assert models.root_public_key is None  # this hosting was given no Root key
    assert esme.root_public_key is None
