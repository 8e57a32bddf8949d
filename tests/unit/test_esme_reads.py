"""The ESME's non-critical reads and commands built from the command layouts: ECS52, ECS10,
CS01a, ECS35a/b/e — command from dccsim.gbcs.commands, response checked as the transform would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.dlms import AccessResponse, CompactArray, decode_apdu
from dccsim.gbcs.usecases import (
    ACTION_OTHER_REASON,
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
)
from emulators.device import RemoteParty
from emulators.esme import EVENT_LOG, SECURITY_LOG, Esme, LogEntry
from tests.unit.gbcs_site import SUPPLIER_EUI, ReadKeys, mac_exchange

ESME_EUI = bytes.fromhex("00DB1234567890A0")
NOW = datetime(2015, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def keys() -> ReadKeys:
    return ReadKeys()


@pytest.fixture
def esme(keys: ReadKeys) -> Esme:
    return Esme(
        eui=ESME_EUI,
        ka_private_key=keys.device,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties={SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, keys.supplier.public_key())},
        clock=lambda: NOW,
    )


def _send(
    esme: Esme, keys: ReadKeys, use_case: str, counter: int, **parameters: object
) -> AccessResponse:
    context = CommandContext(counter, SUPPLIER_EUI, ESME_EUI, parameters)
    payload = command_payload(use_case, context)
    message = mac_exchange(
        esme, keys, USE_CASES_BY_NAME[use_case], payload, device_title=ESME_EUI, counter=counter
    )
    response = decode_apdu(message.general_signing.payload)
    assert isinstance(response, AccessResponse)
    return response


def test_ecs52_returns_the_firmware_version(esme: Esme, keys: ReadKeys) -> None:
    esme.firmware_version = b"\x01\x02\x03\x04"
    response = _send(esme, keys, "ECS52", 1000)
    assert response.results[0].result == ACTION_SUCCESS
    assert response.data[0].octets == b"\x01\x02\x03\x04"


def test_ecs10_puts_the_message_on_the_display(esme: Esme, keys: ReadKeys) -> None:
    response = _send(esme, keys, "ECS10", 1000, supplier_message="Reset")
    assert response.results[0].result == ACTION_SUCCESS
    assert esme.supplier_message == b"Reset"


def test_cs01a_accepts_a_utrn_once(esme: Esme, keys: ReadKeys) -> None:
    utrn = "73946144332040217315"
    assert _send(esme, keys, "CS01a", 1000, utrn=utrn).results[0].result == ACTION_SUCCESS
    assert _send(esme, keys, "CS01a", 1001, utrn=utrn).results[0].result == ACTION_OTHER_REASON
    assert esme.applied_utrns == [utrn.encode()]


@pytest.mark.parametrize(("use_case", "log"), [("ECS35a", EVENT_LOG), ("ECS35b", SECURITY_LOG)])
def test_ecs35_returns_the_entries_in_range(
    esme: Esme, keys: ReadKeys, use_case: str, log: bytes
) -> None:
    inside = LogEntry(NOW - timedelta(hours=1), 0x8F01)
    esme.logs[log] += [LogEntry(NOW - timedelta(days=3), 0x8F02), inside]
    response = _send(
        esme,
        keys,
        use_case,
        1000,
        start_date_time=NOW - timedelta(days=1),
        end_date_time=NOW,
    )
    compact = response.data[0].value
    assert isinstance(compact, CompactArray)
    (entry,) = compact.elements()
    assert [item.integer for item in entry.items[:2]] == [
        int((inside.at - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds()),
        0x8F01,
    ]
