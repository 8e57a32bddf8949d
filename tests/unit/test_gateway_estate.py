"""The gateway's compact estate, model eviction and network model, without sockets."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.estate import REGIONS, EstateDevice, Premises, device_eui, format_eui
from dccsim.gbcs.crypto import content_context, decrypt_content, verify_mac
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from dccsim.gbcs.zigbee import (
    CONTROL_LAST,
    METERING,
    GbzComponent,
    GbzPayload,
    ZclHeader,
    ZclPayload,
    decode_gbz,
    decode_zcl_payload,
)
from dccsim.pki.devpki import init_pki, issue_devices, issue_party
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage, Role
from dccsim.seed import supplier_eui
from dccsim.smi import DeviceType
from emulators.alerts import restoration_alert_code as restoration_code
from emulators.device import (
    ALERT_FAILED_AUTHENTICATION_OTHER,
    ALERT_SOURCE_NOT_AUTHORISED,
    DeviceRefusal,
)
from emulators.gpf import Gpf
from emulators.gsme import Gsme
from emulators.han import CS08
from emulators.ppmid import Ppmid
from gateway.hosting import ALERT_NO_EMULATOR, DeviceModels, DeviceRecord, EstateIndex, HubLocks
from gateway.network import Fate, ForcedError, NetworkModel, OfflineMode
from gateway.nonvolatile import DeviceStateFile
from gateway.server import GatewayServer
from services.inventory.seed import estate_premises


def _index(n: int = 50) -> EstateIndex:
    return EstateIndex.from_premises(estate_premises(i) for i in range(1, n + 1))


def test_index_finds_every_device_and_its_premises() -> None:
    index = _index()
    assert len(index) == 250 and index.premises_count == 50
    found = index.find(parse_eui(device_eui(17, 2)))
    assert found is not None
    record = index.record(found)
    assert record.premises_id == "P0000017"
    assert record.hub_eui == parse_eui(device_eui(17, 0))
    assert record.device_type.value == "ESME"
    assert index.find(parse_eui("00-DC-C5-FF-FF-FF-FF-02")) is None
    assert index.premises_number("P0000017") == record.premises
    assert index.premises_number(device_eui(17, 4)) == record.premises


def test_index_can_host_only_some_regions() -> None:
    index = EstateIndex.from_premises((estate_premises(i) for i in range(1, 31)), regions=["North"])
    assert index.premises_count == 10
    assert {index.record(i).region for i in range(len(index))} == {"North"}


def _network() -> NetworkModel:
    return NetworkModel.from_config(["North", "Central", "South"], seed=1)


def _route(network: NetworkModel, eui: bytes = b"\x01" * 8) -> Fate:
    return network.route(eui=eui, hub=b"\x02" * 8, region="North", premises=0).fate


def test_offline_modes_and_outages() -> None:
    network = _network()
    assert _route(network) is Fate.DELIVER
    network.device(b"\x01" * 8).offline = OfflineMode.UNREACHABLE
    assert _route(network) is Fate.UNREACHABLE
    network.device(b"\x01" * 8).offline = OfflineMode.SILENT
    assert _route(network) is Fate.LOST_DOWN
    network.reset()
    network.offline_hubs.add(b"\x02" * 8)
    assert _route(network) is Fate.UNREACHABLE
    network.reset()
    network.region("North").outage = True
    assert _route(network) is Fate.UNREACHABLE
    network.reset()
    network.premises_outages.add(0)
    assert _route(network) is Fate.UNREACHABLE


def test_loss_rate_is_roughly_the_configured_one() -> None:
    network = _network()
    network.region("North").update({"loss": 0.3})
    lost = sum(_route(network) in (Fate.LOST_DOWN, Fate.LOST_UP) for _ in range(4000))
    assert 0.25 < lost / 4000 < 0.35


def test_forced_error_applies_the_given_number_of_times() -> None:
    network = _network()
    network.device(b"\x01" * 8).error = ForcedError(code="E21", times=2)
    assert [_route(network) for _ in range(3)] == [Fate.WAN_ERROR, Fate.WAN_ERROR, Fate.DELIVER]
    assert not network.devices  # nothing left behind for the device


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        _network().region("North").update({"loss": 1.5})
    with pytest.raises(ValueError):
        ForcedError(code="E99")


def test_realistic_latency_stays_inside_the_csp_target() -> None:
    from gateway.network import LatencyProfile, sample_latency

    rng = random.Random(3)
    samples = sorted(sample_latency(LatencyProfile.REALISTIC, rng) for _ in range(2000))
    assert 1.0 < samples[1000] < 3.5 and samples[-1] <= 20.0


def test_restoration_code_by_outage_length() -> None:
    assert restoration_code(60) == 0x8F35
    assert restoration_code(180) == 0x8F36


async def test_hub_locks_vanish_when_idle() -> None:
    locks = HubLocks()
    async with locks.hold(b"\x03" * 8):
        assert len(locks) == 1
    assert len(locks) == 0


# -- the gas side and the HAN devices, hosted -------------------------------------------------

GAS_SUPPLIER = parse_eui(supplier_eui(0))
GAS_NOW = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)  # a half hour: the GPF mirror is fresh


PPMID_KIND = 5  # estate_premises has none: premises 1 gets one at this EUI suffix


def _gas_premises(n: int) -> Premises:
    """Premises ``n`` with the supplier registered as Gas Supplier too (a dual-fuel home) and,
    for premises 1, a PPMID."""
    premises = estate_premises(n)
    devices = premises.devices
    if n == 1:
        devices += (EstateDevice(device_eui(n, PPMID_KIND), DeviceType.PPMID),)
    return replace(
        premises,
        devices=devices,
        registrations={**premises.registrations, "GS": supplier_eui(0)},
    )


def _import_supplier_only(n: int) -> Premises:
    """Premises ``n`` where the supplier is the Import Supplier and nobody the Gas Supplier."""
    premises = estate_premises(n)
    return replace(premises, registrations={"IS": premises.registrations["IS"]})


@pytest.fixture(scope="module")
def gas_keystore(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    home = tmp_path_factory.mktemp("gas-home")
    init_pki(home)
    issue_party(home, eui=GAS_SUPPLIER, role=Role.SUPPLIER, user_id="supplier", out_dir=home / "s")
    issue_devices(home, [parse_eui(device_eui(n, kind)) for n in (1, 2) for kind in (1, 3)])
    issue_devices(home, [parse_eui(device_eui(1, PPMID_KIND))])
    return KeyStore(home / "pki" / "keystore")


def _gas_models(keystore: KeyStore, capacity: int = 100) -> DeviceModels:
    index = EstateIndex.from_premises([_gas_premises(1), _import_supplier_only(2)])
    return DeviceModels(index, keystore, lambda: GAS_NOW, capacity=capacity)


def _record(models: DeviceModels, premises: int, kind: int) -> DeviceRecord:
    found = models.index.find(parse_eui(device_eui(premises, kind)))
    assert found is not None
    return models.index.record(found)


def _gas_read(keystore: KeyStore, device: bytes, counter: int) -> bytes:
    acb = keystore.private_key(DCC_EUI, KeyUsage.KA)
    device_ka = keystore.certificate(device, KeyUsage.KA).public_key()
    assert isinstance(acb, ec.EllipticCurvePrivateKey)
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    read = GbzPayload(
        1,
        (
            GbzComponent(
                CONTROL_LAST,
                METERING,
                ZclHeader(0x00, 0, 0x00),
                ZclPayload(
                    "read-attributes",
                    records=tuple({"attribute_id": a} for a in (0x0302, 0x0301, 0x0300, 0x0000)),
                ),
            ),
        ),
    )
    return build_command(
        USE_CASES_BY_NAME["GCS13a"],
        originator_title=GAS_SUPPLIER,
        device_title=device,
        counter=counter,
        payload=read.encode(),
        acb_ka_private=acb,
        device_ka_public=device_ka,
    )


def _summation(keystore: KeyStore, response: bytes) -> int:
    message = decode_message(response)
    assert isinstance(message, GeneralCiphering)
    frame = message.general_signing
    supplier_ka = keystore.private_key(GAS_SUPPLIER, KeyUsage.KA)
    device_ka = keystore.certificate(frame.originator_title, KeyUsage.KA).public_key()
    assert isinstance(supplier_ka, ec.EllipticCurvePrivateKey)
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    assert verify_mac(message, private_key=supplier_ka, peer_public_key=device_ka)
    (component,) = decode_gbz(frame.payload).components
    assert component.encrypted_content is not None
    context = content_context(frame)
    plaintext = decrypt_content(
        component.encrypted_content,
        device_title=context.device_title,
        counter=context.counter,
        recipient_title=context.recipient_title,
        private_key=supplier_ka,
        peer_public_key=device_ka,
    )
    records = decode_zcl_payload(METERING, ZclHeader(0x18, 0, 0x01), plaintext).records
    (summation,) = [r["value"] for r in records if r["attribute_id"] == 0x0000]
    assert isinstance(summation, int)
    return summation


async def test_a_hosted_gsme_and_its_gpf_answer_a_gas_register_read(
    gas_keystore: KeyStore,
) -> None:
    models = _gas_models(gas_keystore)
    server = GatewayServer(
        models.index, models, NetworkModel.from_config(list(REGIONS), seed=1), clock=lambda: GAS_NOW
    )
    readings = []
    for kind in (3, 1):  # GSME, then GPF
        eui = parse_eui(device_eui(1, kind))
        reply = await server.execute(
            {"device": format_eui(eui), "frame": _gas_read(gas_keystore, eui, 1000)}
        )
        assert reply is not None and reply["t"] == "rsp"
        readings.append(_summation(gas_keystore, reply["frame"]))
    assert isinstance(models.peek(_record(models, 1, 3).index), Gsme)
    assert isinstance(models.peek(_record(models, 1, 1).index), Gpf)
    # at a half hour the GPF's mirror holds the GSME's register: one gas profile per premises
    assert readings[0] == readings[1]
    # the register has grown since the estate's register epoch
    gsme = models.peek(_record(models, 1, 3).index)
    assert isinstance(gsme, Gsme)
    assert readings[0] == gsme.registers.litres(GAS_NOW) > gsme.registers.profile.start_litres


def test_gas_residue_survives_eviction(gas_keystore: KeyStore) -> None:
    models = _gas_models(gas_keystore, capacity=1)
    gsme, gpf = _record(models, 1, 3), _record(models, 1, 1)
    command = _gas_read(gas_keystore, gsme.eui, 1000)
    models.get(gsme).handle(command)
    models.get(gpf).handle(_gas_read(gas_keystore, gpf.eui, 1000))  # evicts the GSME
    assert models.peek(gsme.index) is None and models.evicted == 1
    with pytest.raises(DeviceRefusal) as replayed:
        models.get(gsme).handle(command)
    assert replayed.value.alert_code == ALERT_FAILED_AUTHENTICATION_OTHER
    models.get(gsme).handle(_gas_read(gas_keystore, gsme.eui, 1001))


def test_a_gas_meter_trusts_only_its_gas_supplier(gas_keystore: KeyStore) -> None:
    models = _gas_models(gas_keystore)
    gsme = _record(models, 2, 3)  # premises 2: the supplier is only the Import Supplier
    with pytest.raises(DeviceRefusal) as refused:
        models.get(gsme).handle(_gas_read(gas_keystore, gsme.eui, 1000))
    assert refused.value.alert_code == ALERT_SOURCE_NOT_AUTHORISED


async def test_an_ihd_is_not_addressable_over_the_wan(gas_keystore: KeyStore) -> None:
    models = _gas_models(gas_keystore)
    with pytest.raises(DeviceRefusal) as refused:
        models.get(_record(models, 1, 4))
    assert refused.value.alert_code == ALERT_NO_EMULATOR
    assert "Type 2" in refused.value.reason
    assert len(models) == 0
    # through the gateway: answered at once (E21) with the alert, not left to time out
    server = GatewayServer(
        models.index, models, NetworkModel.from_config(list(REGIONS), seed=1), clock=lambda: GAS_NOW
    )
    ihd = parse_eui(device_eui(1, 4))
    command = _gas_read(gas_keystore, parse_eui(device_eui(1, 3)), 1000)  # any GBCS frame
    reply = await server.execute({"device": format_eui(ihd), "frame": command})
    assert reply is not None and reply["t"] == "err" and reply["code"] == "E21"
    assert reply["alert"] == ALERT_NO_EMULATOR


def test_gas_counters_and_device_log_survive_a_gateway_restart(
    gas_keystore: KeyStore, tmp_path: Path
) -> None:
    index = EstateIndex.from_premises([_gas_premises(1), _import_supplier_only(2)])
    state_file = tmp_path / "gateway-all.sqlite3"

    def gateway() -> DeviceModels:
        memory = DeviceStateFile(state_file)
        return DeviceModels(index, gas_keystore, lambda: GAS_NOW, memory=memory)

    first = gateway()
    gsme_record, gpf_record = _record(first, 1, 3), _record(first, 1, 1)
    command = _gas_read(gas_keystore, gsme_record.eui, 1000)
    gsme = first.get(gsme_record)
    gsme.handle(command)
    first.commit(gsme_record, gsme)
    gpf = first.get(gpf_record)
    assert isinstance(gpf, Gpf)
    gpf.device_log[gsme_record.eui] = 1  # as a GCS59 restore leaves it
    first.commit(gpf_record, gpf)
    first.close()  # the gateway stops; what it committed is on disk

    restarted = gateway()
    with pytest.raises(DeviceRefusal) as replayed:
        restarted.get(gsme_record).handle(command)
    assert replayed.value.alert_code == ALERT_FAILED_AUTHENTICATION_OTHER
    rebuilt = restarted.get(gpf_record)
    assert isinstance(rebuilt, Gpf) and rebuilt.device_log == {gsme_record.eui: 1}
    restarted.close()


def test_a_hosted_ppmid_answers_the_acbs_firmware_version_read(gas_keystore: KeyStore) -> None:
    models = _gas_models(gas_keystore)
    record = _record(models, 1, PPMID_KIND)
    acb = gas_keystore.private_key(DCC_EUI, KeyUsage.KA)
    device_ka = gas_keystore.certificate(record.eui, KeyUsage.KA).public_key()
    assert isinstance(acb, ec.EllipticCurvePrivateKey)
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    command = build_command(
        CS08,
        originator_title=DCC_EUI,
        device_title=record.eui,
        counter=1300,
        payload=bytes.fromhex("0500"),  # as the RTDS CS08 command
        acb_ka_private=acb,
        device_ka_public=device_ka,
        other_info_extras=GAS_SUPPLIER + (1000).to_bytes(8, "big"),
    )
    model = models.get(record)
    assert isinstance(model, Ppmid)
    reply = decode_message(model.handle(command))
    assert isinstance(reply, GeneralCiphering)
    assert verify_mac(reply, private_key=acb, peer_public_key=device_ka)
    assert reply.general_signing.payload == bytes.fromhex("300904040123abcd020100")
