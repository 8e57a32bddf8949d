"""Gas tariff and prepayment end to end: 2.2 Top Up Device to the demo Supplier's GSME credits it
(CS01b) and 4.18 Read Meter Balance (GCS60a) then reports the new credit; a repeated UTRN is
rejected; 1.1.1 Update Import Tariff (GCS01a, critical: CV 4 then CV 5) is taken by the GSME."""

from __future__ import annotations

import secrets

import aiohttp
import pytest

from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.zigbee import PREPAYMENT, decode_gbz
from dccsim.testuser import ResponseReceiver, TestUser
from emulators.gsme import (
    PREPAYMENT_CREDIT_REMAINING,
    RTDS_TOP_UP_VALUE,
    TOP_UP_ACCEPTED,
    TOP_UP_REJECTED_DUPLICATE,
    UTRN_FLOOR,
)
from tests.broker import rabbitmqctl_available
from tests.e2e.test_gas import SR, GasExchange, _critical, gas_meters
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]


@pytest.fixture
def gas(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> GasExchange:
    return GasExchange(system, user, receiver, session)


def _credit(frame: GeneralCiphering) -> int:
    """The prepayment credit remaining a GCS60a response reports (in clear)."""
    values = {
        int(r["attribute_id"]): int(r["value"])
        for c in decode_gbz(frame.general_signing.payload).components
        if c.cluster == PREPAYMENT
        for r in c.payload.records
    }
    return values[PREPAYMENT_CREDIT_REMAINING]


def _top_up_body(utrn: str) -> bytes:
    return f"<sr:TopUpDevice {SR}><sr:UTRN>{utrn}</sr:UTRN></sr:TopUpDevice>".encode()


async def test_top_up_credits_the_gsme_and_the_meter_balance_read_reports_it(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    gsme = gas_meters(system, user.eui)[0].gsme
    before = _credit(gas.frame(await gas.send("4.18", gsme), gsme, "GCS60a"))
    utrn = str(UTRN_FLOOR + secrets.randbelow(10**19))  # a new, well-formed UTRN each run
    frame = gas.frame(await gas.send("2.2", gsme, _top_up_body(utrn)), gsme, "CS01b")
    (component,) = decode_gbz(frame.general_signing.payload).components
    assert component.payload.layout == "consumer-top-up-response"
    assert component.payload.values["result_type"] == TOP_UP_ACCEPTED
    assert component.payload.values["credit_remaining"] == before + RTDS_TOP_UP_VALUE
    after = _credit(gas.frame(await gas.send("4.18", gsme), gsme, "GCS60a"))
    assert after == before + RTDS_TOP_UP_VALUE
    again = gas.frame(await gas.send("2.2", gsme, _top_up_body(utrn)), gsme, "CS01b")
    (component,) = decode_gbz(again.general_signing.payload).components
    assert component.payload.values["result_type"] == TOP_UP_REJECTED_DUPLICATE


async def test_update_import_tariff_is_taken_by_the_gsme(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    gsme = gas_meters(system, user.eui)[0].gsme
    week = "".join(
        f'<sr:ReferencedDayName index="{n}">{1 if n <= 5 else 2}</sr:ReferencedDayName>'
        for n in range(1, 8)
    )
    any_date = "".join(
        f"<sr:Gas{f}WithWildcards><sr:NonSpecified{f}/></sr:Gas{f}WithWildcards>"
        for f in ("Year", "Month", "DayOfMonth", "DayOfWeek")
    )
    days = "".join(
        f"<sr:DayProfile><sr:DayName>{d}</sr:DayName>"
        f"<sr:TOUTariffAction>{d}</sr:TOUTariffAction></sr:DayProfile>"
        for d in (1, 2)
    )
    body = (
        f"<sr:UpdateImportTariffPrimaryElement {SR}><sr:GasTariffElements><sr:SwitchingTable>"
        f"<sr:DayProfiles>{days}</sr:DayProfiles><sr:WeekProfiles><sr:WeekProfile>"
        f"<sr:WeekName>1</sr:WeekName>{week}</sr:WeekProfile></sr:WeekProfiles>"
        f"<sr:Seasons><sr:Season><sr:SeasonStartDate>{any_date}</sr:SeasonStartDate>"
        "<sr:ReferencedWeekName>1</sr:ReferencedWeekName></sr:Season></sr:Seasons>"
        "</sr:SwitchingTable><sr:SpecialDays/><sr:ThresholdMatrix>"
        '<sr:BlockThreshold index="1">1</sr:BlockThreshold></sr:ThresholdMatrix>'
        "</sr:GasTariffElements><sr:PriceElements><sr:GasPriceElements>"
        "<sr:CurrencyUnits>GBP</sr:CurrencyUnits><sr:StandingCharge>22465</sr:StandingCharge>"
        '<sr:TOUTariff><sr:TOUPrice index="1">9600</sr:TOUPrice>'
        '<sr:TOUPrice index="2">10200</sr:TOUPrice></sr:TOUTariff>'
        "</sr:GasPriceElements></sr:PriceElements></sr:UpdateImportTariffPrimaryElement>"
    ).encode()
    frame = await _critical(gas, "1.1.1", gsme, body)
    assert frame.date_time is not None
    components = decode_gbz(frame.payload).components
    # calendar, 2 day profiles, week, seasons, special days, tariff information, price matrix
    assert len(components) == 8
    assert all(c.payload.layout == "default-response" for c in components)
    assert {c.payload.values["status"] for c in components} == {0}
