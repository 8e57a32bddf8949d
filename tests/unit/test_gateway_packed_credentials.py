"""The SM WAN gateway plays devices whose credentials `dccsim estate seed` put in packs: a
hosted GSME and GPF answer a gas read MAC'd and encrypted with their packed KA keys."""

from __future__ import annotations

from pathlib import Path

from dccsim.duis.requestid import parse_eui
from dccsim.estate import REGIONS, device_eui, format_eui
from dccsim.pki.devpki import init_pki, issue_device_estate, issue_party
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage, Role
from gateway.hosting import DeviceModels, EstateIndex
from gateway.network import NetworkModel
from gateway.server import GatewayServer
from services.inventory.seed import estate_premises
from tests.unit.test_gateway_estate import (
    GAS_NOW,
    GAS_SUPPLIER,
    _gas_premises,
    _gas_read,
    _summation,
)


async def test_hosted_gas_devices_answer_with_their_packed_credentials(tmp_path: Path) -> None:
    init_pki(tmp_path)
    issue_party(
        tmp_path, eui=GAS_SUPPLIER, role=Role.SUPPLIER, user_id="supplier", out_dir=tmp_path / "s"
    )
    euis = [parse_eui(device_eui(n, kind)) for n in (1, 2) for kind in range(4)]
    assert issue_device_estate(tmp_path, euis, workers=1).packs == 1
    keystore = KeyStore(tmp_path / "pki" / "keystore")
    assert not keystore.certificate_path(euis[3], KeyUsage.KA).exists()  # packed, not filed

    index = EstateIndex.from_premises([_gas_premises(1), estate_premises(2)])
    models = DeviceModels(index, keystore, lambda: GAS_NOW, capacity=100)
    server = GatewayServer(
        index, models, NetworkModel.from_config(list(REGIONS), seed=1), clock=lambda: GAS_NOW
    )
    readings = []
    for kind in (3, 1):  # GSME, then GPF
        eui = parse_eui(device_eui(1, kind))
        reply = await server.execute(
            {"device": format_eui(eui), "frame": _gas_read(keystore, eui, 1000)}
        )
        assert reply is not None and reply["t"] == "rsp"
        readings.append(_summation(keystore, reply["frame"]))  # MAC verified, content decrypted
    assert readings[0] == readings[1] > 0
