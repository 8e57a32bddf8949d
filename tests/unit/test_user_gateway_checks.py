"""The User Gateway's check chain, link by link, with in-memory collaborators."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from dccsim.duis.catalogue import UserRole
from dccsim.duis.codes import DuisError
from dccsim.duis.requestid import RequestId, parse_eui
from dccsim.duis.xml import build_service_request, to_bytes
from dccsim.participants import Participant
from dccsim.smi import DeviceRecord, DeviceStatus, DeviceType
from services.testing.rules import TestingRules
from services.transform.srvs import TRANSFORMATIONS_BY_KEY
from services.user_gateway.checks import (
    CheckChain,
    DeviceCache,
    Route,
    TestingRulesGate,
    WebService,
)
from services.user_gateway.non_device import NON_DEVICE_SERVICES

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
USER = Participant(
    "supplier", "90-B3-D5-1F-30-01-D0-00", frozenset({UserRole.IMPORT_SUPPLIER}), None
)
ESME = "00-DC-C5-00-00-00-01-02"
DCC = "90-B3-D5-1F-30-00-00-02"


def esme_record() -> dict[str, Any]:
    return DeviceRecord(
        ESME, DeviceType.ESME, DeviceStatus.COMMISSIONED, registrations={"IS": USER.eui}
    ).to_wire()


class Counters:
    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    async def advance(self, originator: str, counter: int) -> None:
        if counter <= self.last.get(originator, -1):
            raise DuisError("E1", "counter does not increase")
        self.last[originator] = counter


NOW = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)


def chain(*, signature_off: bool = True, rules: TestingRulesGate | None = None) -> CheckChain:
    async def fetch(eui: str, _rid: str) -> dict[str, Any] | None:
        return esme_record() if eui == ESME else None

    return CheckChain(
        find_certificate=lambda _serial: None,
        advance_counter=Counters().advance,
        devices=DeviceCache(fetch),
        transformable=frozenset(TRANSFORMATIONS_BY_KEY),
        non_device_srvs=frozenset(NON_DEVICE_SERVICES),
        rules=rules,
        signature_off=frozenset({USER.user_id}) if signature_off else frozenset(),
        clock=lambda: NOW,
    )


def request(
    srv: str,
    ref: str,
    body: str,
    *,
    cv: int = 1,
    target: str = ESME,
    counter: int = 1,
    execution: str | None = None,
) -> bytes:
    inner = "" if execution is None else f"<sr:ExecutionDateTime>{execution}</sr:ExecutionDateTime>"
    root = build_service_request(
        request_id=RequestId(parse_eui(USER.eui), parse_eui(target), counter),
        command_variant=cv,
        service_reference=ref,
        service_reference_variant=srv,
        body_xml=f'<sr:{body} xmlns:sr="{SR_NS}">{inner}</sr:{body}>'.encode(),
    )
    return to_bytes(root)


async def code(
    document: bytes, web_service: WebService = WebService.SEND_COMMAND, **kw: Any
) -> str:
    try:
        await chain(**kw).check(document, web_service=web_service, participant=USER)
    except DuisError as exc:
        return exc.code
    return "accepted"


async def test_an_unsigned_request_is_e1_unless_validation_is_off_for_the_user() -> None:
    document = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters")
    assert await code(document, signature_off=False) == "E1"
    assert await code(document, signature_off=True) == "accepted"


async def test_a_critical_srv_as_cv1_is_e12() -> None:
    assert await code(request("7.2", "7.2", "DisableSupply")) == "E12"


async def test_a_critical_srv_as_cv4_routes_to_the_pre_command() -> None:
    accepted = await chain().check(
        request("7.2", "7.2", "DisableSupply", cv=4),
        web_service=WebService.TRANSFORM,
        participant=USER,
    )
    assert accepted.route is Route.PRE_COMMAND


async def test_cv5_may_reuse_the_request_id_its_pre_command_answered_once() -> None:
    gate = chain()
    cv4 = request("7.2", "7.2", "DisableSupply", cv=4, counter=7)
    cv5 = request("7.2", "7.2", "SignedPreCommand", cv=5, counter=7)
    accepted = await gate.check(cv4, web_service=WebService.TRANSFORM, participant=USER)
    gate.issued.add(str(accepted.request.request_id), "7.2")
    again = await gate.check(cv5, web_service=WebService.SEND_COMMAND, participant=USER)
    assert again.route is Route.DEVICE
    with pytest.raises(DuisError) as refused:
        await gate.check(cv5, web_service=WebService.SEND_COMMAND, participant=USER)
    assert refused.value.code == "E1"


async def test_an_srv_transform_does_not_carry_is_not_offered() -> None:
    assert await code(request("3.2", "3.2", "RestrictAccessForChangeOfTenancy")) == "E2"


async def test_a_role_the_user_lacks_is_e2() -> None:
    assert await code(request("6.5", "6.5", "UpdateDeviceConfigurationVoltage")) == "E2"


async def accept(document: bytes, web_service: WebService) -> Any:
    return await chain().check(document, web_service=web_service, participant=USER)


async def test_cv2_on_service_d_routes_to_a_local_command() -> None:
    document = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", cv=2)
    accepted = await accept(document, WebService.DCC_ONLY)
    assert accepted.route is Route.LOCAL
    assert accepted.execute_at is None


async def test_cv3_on_service_s_routes_to_both_local_and_the_wan() -> None:
    document = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", cv=3)
    assert (await accept(document, WebService.SEND_COMMAND)).route is Route.LOCAL_AND_DEVICE


async def test_local_cvs_on_the_wrong_web_service_are_e13() -> None:
    cv2 = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", cv=2)
    cv3 = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", cv=3)
    assert await code(cv2, WebService.SEND_COMMAND) == "E13"
    assert await code(cv3, WebService.DCC_ONLY) == "E13"


async def test_local_delivery_of_an_srv_that_does_not_allow_it_is_e17() -> None:
    document = request("8.11", "8.11", "UpdateHANDeviceLog", cv=2)
    assert await code(document, WebService.DCC_ONLY) == "E17"


async def test_a_critical_srv_as_cv2_is_e12_not_a_local_command() -> None:
    document = request("7.2", "7.2", "DisableSupply", cv=2)
    assert await code(document, WebService.DCC_ONLY) == "E12"


async def test_cv6_and_cv7_follow_their_cv4_as_local_commands() -> None:
    gate = chain()
    for counter, cv, web_service, route in (
        (8, 6, WebService.DCC_ONLY, Route.LOCAL),
        (9, 7, WebService.SEND_COMMAND, Route.LOCAL_AND_DEVICE),
    ):
        cv4 = request("7.2", "7.2", "DisableSupply", cv=4, counter=counter)
        accepted = await gate.check(cv4, web_service=WebService.TRANSFORM, participant=USER)
        gate.issued.add(str(accepted.request.request_id), "7.2")
        signed = request("7.2", "7.2", "SignedPreCommand", cv=cv, counter=counter)
        again = await gate.check(signed, web_service=web_service, participant=USER)
        assert again.route is route


async def test_a_future_dated_request_carries_its_execution_time() -> None:
    document = request(
        "4.1.1", "4.1", "ReadInstantaneousImportRegisters", execution="2026-12-02T03:00:05Z"
    )
    accepted = await accept(document, WebService.SEND_COMMAND)
    assert accepted.route is Route.DEVICE
    assert accepted.execute_at == NOW + dt.timedelta(seconds=5)


async def test_an_execution_time_without_a_zone_is_utc() -> None:
    document = request(
        "4.1.1", "4.1", "ReadInstantaneousImportRegisters", execution="2026-12-02T04:00:00"
    )
    accepted = await accept(document, WebService.SEND_COMMAND)
    assert accepted.execute_at == NOW + dt.timedelta(hours=1)


@pytest.mark.parametrize("when", ["2026-12-02T03:00:00Z", "2015-01-15T09:00:00.00Z", "soon"])
async def test_an_execution_time_not_in_the_future_is_refused(when: str) -> None:
    document = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", execution=when)
    assert await code(document) == "E13"


async def test_a_refused_execution_time_does_not_burn_the_counter() -> None:
    gate = chain()
    past = request(
        "4.1.1", "4.1", "ReadInstantaneousImportRegisters", counter=5, execution="2020-01-01T00:00Z"
    )
    with pytest.raises(DuisError):
        await gate.check(past, web_service=WebService.SEND_COMMAND, participant=USER)
    fresh = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", counter=5)
    await gate.check(fresh, web_service=WebService.SEND_COMMAND, participant=USER)


async def test_a_dsp_held_future_dated_request_cannot_be_a_local_command() -> None:
    document = request(
        "4.1.1", "4.1", "ReadInstantaneousImportRegisters", cv=2, execution="2027-01-01T00:00:00Z"
    )
    assert await code(document, WebService.DCC_ONLY) == "E17"


async def test_a_device_held_future_dated_request_goes_on_at_once() -> None:
    async def fetch(eui: str, _rid: str) -> dict[str, Any] | None:
        return esme_record() if eui == ESME else None

    gate = CheckChain(
        find_certificate=lambda _serial: None,
        advance_counter=Counters().advance,
        devices=DeviceCache(fetch),
        transformable=frozenset({("1.1.1", "ESME")}),
        signature_off=frozenset({USER.user_id}),
        clock=lambda: NOW,
    )
    document = request(
        "1.1.1", "1.1", "UpdateImportTariffPrimaryElement", cv=4, execution="2027-01-01T00:00Z"
    )
    accepted = await gate.check(document, web_service=WebService.TRANSFORM, participant=USER)
    # the Device holds it: the Pre-Command carries the date-time, the DSP holds nothing
    assert accepted.route is Route.PRE_COMMAND
    assert accepted.execute_at is None


async def test_a_non_device_srv_routes_to_the_inventory() -> None:
    document = request("8.2", "8.2", "ReadInventory", cv=8, target=DCC)
    accepted = await chain().check(document, web_service=WebService.DCC_ONLY, participant=USER)
    assert accepted.route is Route.NON_DEVICE


async def test_a_non_device_srv_not_offered_is_e2() -> None:
    document = request("11.4", "11.4", "UpdatePPMIDFirmware", cv=8, target=DCC)
    assert await code(document, WebService.DCC_ONLY) == "E2"


async def test_the_wrong_body_for_the_srv_is_e13() -> None:
    assert await code(request("4.1.1", "4.1", "DisableSupply")) == "E13"


async def test_an_unknown_device_is_e19() -> None:
    document = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", target=DCC)
    assert await code(document) == "E19"


async def test_the_participant_limit_of_the_testing_rules_is_e3() -> None:
    rules = TestingRules(default_sr_limit=1)
    gate = TestingRulesGate(lambda: rules, clock=lambda: dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC))
    first = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", counter=1)
    second = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters", counter=2)
    checks = chain(rules=gate)
    await checks.check(first, web_service=WebService.SEND_COMMAND, participant=USER)
    with pytest.raises(DuisError) as refused:
        await checks.check(second, web_service=WebService.SEND_COMMAND, participant=USER)
    assert refused.value.code == "E3"


async def test_an_srv_the_testing_rules_do_not_offer_is_e2() -> None:
    rules = TestingRules(allowed_srvs=frozenset({"8.2"}))
    document = request("4.1.1", "4.1", "ReadInstantaneousImportRegisters")
    assert await code(document, rules=TestingRulesGate(lambda: rules)) == "E2"
