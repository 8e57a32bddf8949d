"""The ESME's tariff: 1.1.1 Update Import Tariff (ECS01a; immediate, future-dated, cancelled)
kept by the model and read back by 4.11.1 (ECS24), and the responses against the RTDS
vectors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dccsim.gbcs.commands import DayProfile, Tariff, TariffDate
from dccsim.gbcs.dlms import AccessRequest, AccessResponse, decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import (
    ACTION_OTHER_REASON,
    ACTION_SUCCESS,
)
from emulators.device import RemoteParty
from emulators.esme import DEFAULT_TARIFF, tariff_from_data
from tests.unit.esme_site import START, SUPPLIER_EUI, Site
from tests.unit.gbcs_site import rtds_esme_stand_in

NO_THRESHOLD = 0xFFFFFFFF
TARIFF = Tariff(
    seasons=((b"winter", TariffDate(2014, 10, 27), 1), (b"summer", TariffDate(2015, 3, 29), 2)),
    weeks=((1, (1, 1, 1, 1, 1, 3, 3)), (2, (2, 2, 2, 2, 2, 3, 3))),
    days=(
        DayProfile(1, (((0, 0, 0), 2), ((7, 0, 0), 3))),
        DayProfile(2, (((6, 0, 0), 3), ((23, 0, 0), 2))),
        DayProfile(3, (((0, 0, 0), 101),)),
    ),
    special_days=((TariffDate(None, 12, 25), 3),),
    thresholds=((10000, NO_THRESHOLD), *((NO_THRESHOLD,),) * 7),
    standing_charge=20000,
    standing_charge_scale=-5,
    price_scale=-5,
    tou_prices=(2121, 3127, 4744),
    block_prices=(((1, 1), 2289), ((1, 2), 3546)),
)


def set_tariff(site: Site, tariff: Tariff, when: datetime | None = None) -> list[int]:
    parameters: dict[str, object] = {"tariff": tariff}
    if when is not None:
        parameters["execution_date_time"] = when
    response = site.critical_access_response("ECS01a", parameters, signer=site.supplier_ds)
    return [r.result for r in response.results]


def read_tariff(site: Site) -> Tariff:
    """4.11.1 (ECS24): the tariff in force, as the ESME reports it (the MAC checked)."""
    apdu = site.read_response("ECS24")
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS] * 17
    return tariff_from_data(apdu.data[2:])


def padded(tariff: Tariff) -> Tariff:
    """``tariff`` as the ESME reports it: each rate's thresholds padded to three."""
    rates = tuple((*r, *(NO_THRESHOLD,) * (3 - len(r))) for r in tariff.thresholds)
    return dataclasses.replace(tariff, thresholds=rates)


def test_a_new_esme_reads_its_default_tariff() -> None:
    assert read_tariff(Site()) == padded(DEFAULT_TARIFF)


def test_an_immediate_tariff_is_in_force_and_read_back() -> None:
    site = Site()
    assert set_tariff(site, TARIFF) == [ACTION_SUCCESS] * 21
    assert read_tariff(site) == padded(TARIFF)


def test_a_future_dated_tariff_takes_effect_at_its_execution_time() -> None:
    site = Site()
    at = START + timedelta(days=1)
    assert set_tariff(site, TARIFF, at) == [ACTION_SUCCESS] * 21
    assert read_tariff(site) == padded(DEFAULT_TARIFF)
    site.now = at
    assert read_tariff(site) == padded(TARIFF)


def test_a_cancellation_drops_the_pending_tariff() -> None:
    site = Site()
    set_tariff(site, TARIFF, START + timedelta(days=1))
    set_tariff(site, TARIFF, datetime(3000, 12, 31, tzinfo=UTC))
    site.now = START + timedelta(days=2)
    assert read_tariff(site) == padded(DEFAULT_TARIFF)


def test_a_tariff_naming_a_day_it_does_not_define_changes_nothing() -> None:
    site = Site()
    broken = dataclasses.replace(TARIFF, weeks=((1, (1, 1, 1, 1, 1, 9, 9)), TARIFF.weeks[1]))
    assert set_tariff(site, broken) == [ACTION_OTHER_REASON] * 21
    assert read_tariff(site) == padded(DEFAULT_TARIFF)


def test_the_tariff_survives_a_power_cycle() -> None:
    site = Site()
    set_tariff(site, TARIFF)
    set_tariff(site, DEFAULT_TARIFF, START + timedelta(days=1))
    fresh = site.with_same_keys()
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    assert read_tariff(fresh) == padded(TARIFF)
    fresh.now = START + timedelta(days=1)
    assert read_tariff(fresh) == padded(DEFAULT_TARIFF)


# -- responses against the RTDS vectors ----------------------------------------------------------


def _vector(reference_dir: Path, folder: str, name: str) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / folder / name).read_text())


@pytest.mark.parametrize(
    "prefix",
    [
        f"ECS01a_1.1.1_{kind}_SUCCESS"
        for kind in ("IMMEDIATE_TOU", "IMMEDIATE_BLOCK", "FUTURE_DATED_TOU_BLOCK")
    ]
    + ["ECS01a_1.1.1_CANCELLATION_TOU_BLOCK_SUCCESS"],
)
def test_tariff_response_matches_the_rtds_vector_but_for_the_signature(
    reference_dir: Path, prefix: str
) -> None:
    folder = "1.1.1_ECS01a"
    command = decode_message(_vector(reference_dir, folder, f"{prefix}_COMMAND_GBCS.HEX"))
    assert isinstance(command, GeneralCiphering)
    request = decode_apdu(command.general_signing.payload)
    assert isinstance(request, AccessRequest)
    reference = decode_message(_vector(reference_dir, folder, f"{prefix}_RESPONSE_GBCS.HEX"))
    assert isinstance(reference, GeneralSigning)
    site = Site(now=datetime(2015, 1, 1, tzinfo=UTC))
    built = decode_message(
        site.esme.update_import_tariff(command=command, request=request, now=site.now)
    )
    assert isinstance(built, GeneralSigning)
    assert built.signed_bytes() == reference.signed_bytes()


def test_tariff_read_response_reproduces_the_rtds_vector(reference_dir: Path) -> None:
    """The RTDS meter's tariff is taken from its ECS24 response; the ESME then answers the
    RTDS command with those bytes (the supplier's KA key standing in for the ESME's)."""
    supplier, device = rtds_esme_stand_in(reference_dir)
    folder = "4.11.1_ECS24"
    command = decode_message(
        _vector(reference_dir, folder, "ECS24_4.11.1_SUCCESS_COMMAND_GBCS.HEX")
    )
    assert isinstance(command, GeneralCiphering)
    expected = _vector(reference_dir, folder, "ECS24_4.11.1_SUCCESS_RESPONSE_GBCS.HEX")
    response = decode_message(expected)
    assert isinstance(response, GeneralCiphering)
    apdu = decode_apdu(response.general_signing.payload)
    assert isinstance(apdu, AccessResponse)
    site = Site(device_ka=supplier)
    site.esme.tariff = tariff_from_data(apdu.data[2:])
    built = site.esme.read_tariff(command=command, remote_party=RemoteParty(SUPPLIER_EUI, device))
    assert built == expected
