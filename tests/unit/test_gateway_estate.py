"""The gateway's compact estate, model eviction and network model, without sockets."""

from __future__ import annotations

import random

import pytest

from dccsim.duis.requestid import parse_eui
from dccsim.estate import device_eui
from emulators.alerts import restoration_alert_code as restoration_code
from gateway.hosting import EstateIndex, HubLocks
from gateway.network import Fate, ForcedError, NetworkModel, OfflineMode
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
