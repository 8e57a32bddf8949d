"""The SRVs a GSME now takes as an ESME does, end to end (critical: CV 4 then CV 5): 6.11
Synchronise Clock (GCS28; the catalogue used to refuse it to a GSME with E11) and 11.3 Activate
Firmware (CS06, the ESME's code, shared) of an image the GSME never received: result 1 and the
version it keeps running."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest

from dccsim.gbcs import der
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.zigbee import METERING
from dccsim.testuser import ResponseReceiver, TestUser
from emulators.firmware import ACTIVATION_FAILURE
from emulators.gsme import DEFAULT_ATTRIBUTES, FIRMWARE_VERSION, GCS28_RESPONSE
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


async def test_synchronise_clock_reaches_the_gsme_and_sets_its_clock(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    gsme = gas_meters(system, user.eui)[0].gsme
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = (
        f"<sr:SynchroniseClock {SR}><sr:CurrentDateTime>{now:%Y-%m-%dT%H:%M:%SZ}"
        "</sr:CurrentDateTime><sr:TolerancePeriod>600</sr:TolerancePeriod>"
        "</sr:SynchroniseClock>"
    ).encode()
    frame = await _critical(gas, "6.11", gsme, body)
    assert frame.message_code == USE_CASES_BY_NAME["GCS28"].message_code
    answer = der.decode_with(GCS28_RESPONSE, frame.payload)
    assert isinstance(answer, dict) and answer["result"] == 0  # the clock was set


async def test_activate_firmware_of_an_image_never_received_keeps_the_version(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    gsme = gas_meters(system, user.eui)[0].gsme
    body = (
        f"<sr:ActivateFirmware {SR}><sr:FirmwareHash>{'AB' * 32}</sr:FirmwareHash>"
        "</sr:ActivateFirmware>"
    ).encode()
    frame = await _critical(gas, "11.3", gsme, body)
    assert frame.message_code == USE_CASES_BY_NAME["CS06"].message_code
    answer = der.decode_with(der.ASN1_SCHEMAS[(frame.message_code, 2)], frame.payload)
    assert isinstance(answer, dict)
    assert answer["result"] == ACTIVATION_FAILURE
    assert answer["firmware_version"] == DEFAULT_ATTRIBUTES[(METERING, FIRMWARE_VERSION)][1]
