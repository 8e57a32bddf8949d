"""The ESME's prepayment state and the SRVs that drive it: 2.3 Update Debt (ECS07), 2.1 Update
Prepay Configuration (ECS08a; immediate, future-dated, cancelled), 2.5 Activate Emergency
Credit (ECS09), read back by 4.13 Read Prepayment Configuration (ECS26a). The transform's
commands are compared byte for byte with the RTDS vectors, the ESME's responses with theirs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from lxml import etree

from dccsim.duis.xml import parse_service_request
from dccsim.gbcs import dlms
from dccsim.gbcs.alerts import describe_alert
from dccsim.gbcs.commands import (
    ECS08A_SPECS,
    EMERGENCY_CREDIT_LIMIT,
    PREPAYMENT_MODE,
    CommandContext,
    NonDisablementEntry,
    TariffDate,
    command_payload,
)
from dccsim.gbcs.dlms import (
    AccessRequest,
    AccessResponse,
    BitString,
    CompactArray,
    Data,
    decode_apdu,
)
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import (
    ACTION_OTHER_REASON,
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
    build_command,
    read_protected_content,
)
from emulators.device import RemoteParty
from emulators.esme import (
    FUTURE_DATED_TARGETS,
    GBCS_EPOCH,
    Account,
    Prepayment,
    PrepaymentConfiguration,
    TimeDebt,
)
from services.transform.srvs import (
    SR_NS,
    ServiceRequestBodyError,
    build_pre_command,
    lookup,
)
from services.transform.srvs import build_command as build_srv_command
from tests.unit.esme_site import ESME_EUI, START, SUPPLIER_EUI, Site
from tests.unit.gbcs_site import (
    assert_rtds_command_wraps,
    build_rtds_command,
    checked_transformation,
    duis_template,
    keystore_private,
    keystore_public,
)

RTDS_NOW = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)  # the RTDS ESME's clock (its responses)
DEBT: dict[str, object] = {
    "time_debt_register_1": 30000,
    "time_debt_register_2": 15000,
    "payment_debt_register": 50000,
    "debt_recovery_per_payment": 1000,
    "debt_recovery_rate_1": 3,
    "debt_recovery_price_scale_1": -1,
    "debt_recovery_period_1": 86400,
    "debt_recovery_rate_2": 15,
    "debt_recovery_price_scale_2": -1,
    "debt_recovery_period_2": 3600,
}
WEEKEND = (5, 6)
CONFIGURATION: dict[str, object] = {
    "debt_recovery_rate_cap": 30,
    "emergency_credit_limit": 300000,
    "emergency_credit_threshold": 100000,
    "low_credit_threshold": 200000,
    "max_meter_balance": 5000000,
    "max_credit_threshold": 1000000,
    "non_disablement_special_days": (TariffDate(None, 12, 25), TariffDate(None, 12, 26)),
    "non_disablement_schedule": (
        NonDisablementEntry(
            "START", (0, 0, 0), TariffDate(None, 1, 1), TariffDate(None, 12, 31), WEEKEND
        ),
        NonDisablementEntry(
            "STOP", (9, 30, 0), TariffDate(None, 1, 1), TariffDate(None, 12, 31), WEEKEND
        ),
        NonDisablementEntry(
            "START", (0, 0, 0), TariffDate(None, 1, 1), TariffDate(None, 12, 31), (), (1, 2)
        ),
    ),
}
PREPAYMENT: dict[str, object] = {
    "disablement_threshold": -500,
    "suspend_debt_disabled": False,
    "suspend_debt_emergency": False,
}


class PrepaymentSite(Site):
    def critical_payload(self, use_case: str, payload: bytes) -> GeneralSigning:
        """Send ``payload`` as the critical ``use_case``, signed by the Supplier."""
        command = self.signed_command(use_case, payload)
        frame = decode_message(self.esme.handle(command))
        assert isinstance(frame, GeneralSigning)
        return frame

    def results(self, use_case: str, parameters: dict[str, object]) -> list[int]:
        response = self.critical_access_response(use_case, parameters, signer=self.supplier_ds)
        return [r.result for r in response.results]

    def read_configuration(self) -> list[Data]:
        """4.13 (ECS26a): every data item, MAC'd by the ESME for the Supplier."""
        apdu = self.read_response("ECS26a")
        assert [r.result for r in apdu.results] == [ACTION_SUCCESS] * 18
        return list(apdu.data)


@pytest.fixture
def site() -> PrepaymentSite:
    return PrepaymentSite()


def _prepayment_meter(site: PrepaymentSite) -> None:
    """The site's ESME in prepayment mode with the emergency credit configured."""
    assert site.results("ECS03", PREPAYMENT) == [ACTION_SUCCESS] * 5
    assert site.results("ECS08a", CONFIGURATION) == [ACTION_SUCCESS] * 18


# -- 2.3 Update Debt ---------------------------------------------------------------------------


def test_update_debt_sets_the_debt_registers_and_recovery_rates(site: PrepaymentSite) -> None:
    assert site.results("ECS07", DEBT) == [ACTION_SUCCESS] * 10
    prepayment = site.esme.prepayment
    assert prepayment.time_debts == (
        TimeDebt(remaining=30000, rate=3, price_scale=-1, period=86400),
        TimeDebt(remaining=15000, rate=15, price_scale=-1, period=3600),
    )
    assert prepayment.payment_debt == 50000 and prepayment.debt == 95000
    assert prepayment.debt_recovery_per_payment == 1000


def test_debt_adjustments_add_up_and_can_reduce_the_debt(site: PrepaymentSite) -> None:
    site.results("ECS07", DEBT)
    lower = {**DEBT, "time_debt_register_1": -10000, "payment_debt_register": 5000}
    assert site.results("ECS07", lower) == [ACTION_SUCCESS] * 10
    prepayment = site.esme.prepayment
    assert [d.remaining for d in prepayment.time_debts] == [20000, 30000]
    assert prepayment.payment_debt == 55000


def test_a_debt_adjustment_below_zero_fails_alone(site: PrepaymentSite) -> None:
    site.results("ECS07", DEBT)
    below = {**DEBT, "time_debt_register_2": -20000, "debt_recovery_rate_1": 7}
    results = site.results("ECS07", below)
    assert results == [ACTION_SUCCESS] * 9 + [ACTION_OTHER_REASON]
    debts = site.esme.prepayment.time_debts
    assert debts[1].remaining == 15000  # unchanged: 15000 - 20000 would be negative
    assert debts[0].remaining == 60000 and debts[0].rate == 7  # the other parts applied


def test_a_debt_share_above_100_percent_is_refused(site: PrepaymentSite) -> None:
    with pytest.raises(GbcsError, match="debt_recovery_per_payment"):  # the DCC refuses it
        command_payload(
            "ECS07",
            CommandContext(1, SUPPLIER_EUI, ESME_EUI, {**DEBT, "debt_recovery_per_payment": 10001}),
        )
    request = decode_apdu(
        command_payload("ECS07", CommandContext(site.counter + 1, SUPPLIER_EUI, ESME_EUI, DEBT))
    )
    assert isinstance(request, AccessRequest)
    data = list(request.data)
    data[2] = dlms.long_unsigned(10001)  # the meter refuses it too
    payload = dataclasses.replace(request, data=tuple(data)).encode()
    response = decode_apdu(site.critical_payload("ECS07", payload).payload)
    assert isinstance(response, AccessResponse)
    results = [r.result for r in response.results]
    assert results[2] == ACTION_OTHER_REASON and results.count(ACTION_OTHER_REASON) == 1
    assert site.esme.prepayment.debt_recovery_per_payment == 0
    assert site.esme.prepayment.payment_debt == 50000


def test_debt_rates_and_share_are_read_back_by_4_13(site: PrepaymentSite) -> None:
    site.results("ECS07", DEBT)
    data = site.read_configuration()
    rate_1, rate_2 = data[0].items[2].items[0].items[1], data[4].items[2].items[0].items[1]
    assert (rate_1.integer, rate_2.integer) == (3, 15)
    assert data[0].items[0].items[1].integer == -1  # price scale
    assert (data[2].integer, data[5].integer) == (86400, 3600)
    assert data[7].integer == 1000


# -- 2.1 Update Prepay Configuration ----------------------------------------------------------


def test_immediate_configuration_is_in_force_and_read_back(site: PrepaymentSite) -> None:
    assert site.results("ECS08a", CONFIGURATION) == [ACTION_SUCCESS] * 18
    configuration = site.esme.prepayment.configuration
    assert configuration.emergency_credit_limit == 300000
    assert configuration.emergency_credit_threshold == 100000
    data = site.read_configuration()
    assert [data[i].integer for i in (8, 10, 11, 12, 14, 15)] == [
        1000000,  # max credit threshold
        5000000,  # max meter balance
        200000,  # low credit threshold
        30,  # debt recovery rate cap
        300000,  # emergency credit limit
        100000,  # emergency credit threshold
    ]
    special_days = [d.items[1].octets for d in data[1].items]
    assert special_days == [TariffDate(None, 12, 25).encode(), TariffDate(None, 12, 26).encode()]
    schedule = data[16].items
    assert [e.items[3].integer for e in schedule] == [32, 33, 32]  # START, STOP, START
    assert schedule[2].items[7].value == BitString(2, b"\xc0")  # both special days


def test_future_dated_configuration_takes_effect_at_its_time_with_its_alerts(
    site: PrepaymentSite,
) -> None:
    at = START + dt.timedelta(hours=2)
    assert site.results("ECS08a", {**CONFIGURATION, "execution_date_time": at}) == [0] * 18
    counter = site.counter
    assert site.esme.prepayment.configuration == PrepaymentConfiguration()
    assert site.esme.next_due() == at
    site.now = at
    assert site.read_configuration()[14].integer == 300000
    alerts = site.esme.take_alerts()
    assert [a.alert_code for a in alerts] == [0x8F66] * 9
    named = []
    for alert in alerts:
        fd = describe_alert(alert.frame)["future_dated"]
        assert fd["originator_counter"] == counter and fd["message_code"] == "0x00de"
        named.append((fd["class_id"], bytes.fromhex(fd["instance_id"]), fd["member_id"]))
    assert named == list(FUTURE_DATED_TARGETS["ECS08a"])


def test_cancellation_drops_a_pending_configuration(site: PrepaymentSite) -> None:
    site.results("ECS08a", {**CONFIGURATION, "execution_date_time": START + dt.timedelta(hours=1)})
    cancel = {**CONFIGURATION, "execution_date_time": dt.datetime(3000, 12, 31, tzinfo=dt.UTC)}
    assert site.results("ECS08a", cancel) == [ACTION_SUCCESS] * 18
    site.esme.run_due(START + dt.timedelta(days=1))
    assert site.esme.prepayment.configuration == PrepaymentConfiguration()
    assert site.esme.take_alerts() == [] and site.esme.next_due() is None


def test_a_negative_emergency_credit_limit_changes_nothing(site: PrepaymentSite) -> None:
    results = site.results("ECS08a", {**CONFIGURATION, "emergency_credit_limit": -1})
    failed = [s.instance_id for s in ECS08A_SPECS].index(EMERGENCY_CREDIT_LIMIT)
    assert results == [ACTION_SUCCESS] * failed + [ACTION_OTHER_REASON] * (18 - failed)
    assert site.esme.prepayment.configuration == PrepaymentConfiguration()


# -- 2.5 Activate Emergency Credit --------------------------------------------------------------


def test_emergency_credit_activates_on_a_prepayment_meter_below_the_threshold(
    site: PrepaymentSite,
) -> None:
    _prepayment_meter(site)
    assert site.results("ECS09", {}) == [ACTION_SUCCESS]
    prepayment = site.esme.prepayment
    assert prepayment.emergency_credit_active and prepayment.emergency_credit == 300000
    assert site.results("ECS09", {}) == [ACTION_SUCCESS]  # already in use: still success


def test_emergency_credit_is_refused_in_credit_mode(site: PrepaymentSite) -> None:
    site.results("ECS08a", CONFIGURATION)
    assert site.results("ECS09", {}) == [ACTION_OTHER_REASON]
    assert not site.esme.prepayment.emergency_credit_active


def test_emergency_credit_is_refused_without_a_limit(site: PrepaymentSite) -> None:
    site.results("ECS03", PREPAYMENT)
    assert site.results("ECS09", {}) == [ACTION_OTHER_REASON]
    assert site.esme.prepayment == Prepayment()


def test_emergency_credit_is_refused_above_its_threshold(site: PrepaymentSite) -> None:
    _prepayment_meter(site)
    site.esme.add_credit(100001)
    assert site.results("ECS09", {}) == [ACTION_OTHER_REASON]
    assert not site.esme.prepayment.emergency_credit_active


def test_a_payment_repays_emergency_credit_then_recovers_its_debt_share(
    site: PrepaymentSite,
) -> None:
    _prepayment_meter(site)
    site.results("ECS07", DEBT)  # payment debt 50000, 10 % of each payment
    site.results("ECS09", {})
    site.esme.prepayment = dataclasses.replace(
        site.esme.prepayment, emergency_credit=250000
    )  # 50000 of the 300000 used
    site.esme.add_credit(100000)
    prepayment = site.esme.prepayment
    assert prepayment.payment_debt == 40000  # 10 % of 100000 recovered
    assert prepayment.meter_balance == 100000 - 10000 - 50000
    assert not prepayment.emergency_credit_active


def test_prepayment_state_survives_a_power_cycle(site: PrepaymentSite) -> None:
    _prepayment_meter(site)
    site.results("ECS07", DEBT)
    site.results("ECS09", {})
    at = START + dt.timedelta(hours=3)
    site.results("ECS08a", {**CONFIGURATION, "low_credit_threshold": 7, "execution_date_time": at})
    fresh = site.with_same_keys()
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    assert fresh.esme.prepayment == site.esme.prepayment
    fresh.now = at
    assert fresh.read_configuration()[11].integer == 7


# -- the transform: DUIS in, the RTDS vectors' GBCS out ----------------------------------------


def _rtds(reference_dir: Path, folder: str, name: str) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / folder / name).read_text())


def _body(element: str, inner: str) -> etree._Element:
    return etree.fromstring(f'<sr:{element} xmlns:sr="{SR_NS}">{inner}</sr:{element}>'.encode())


# ECS07 and ECS09 have no electricity DUIS template: a body as the DUIS XSD lays it out, with the
# values the RTDS command carries
UPDATE_DEBT = (
    "<sr:TimeDebtRegister1>30000</sr:TimeDebtRegister1>"
    "<sr:TimeDebtRegister2>15000</sr:TimeDebtRegister2>"
    "<sr:PaymentDebtRegister>50000</sr:PaymentDebtRegister>"
    "<sr:DebtRecoveryPerPayment>1000</sr:DebtRecoveryPerPayment>"
    + "".join(
        f"<sr:ElecDebtRecovery{n}><sr:DebtRecoveryRate>{rate}</sr:DebtRecoveryRate>"
        "<sr:DebtRecoveryRatePriceScale>-1</sr:DebtRecoveryRatePriceScale>"
        f"<sr:DebtRecoveryRatePeriod>DAILY</sr:DebtRecoveryRatePeriod></sr:ElecDebtRecovery{n}>"
        for n, rate in ((1, 3), (2, 15))
    )
)
BUILT_BODIES = [
    ("2.3", "UpdateDebt", UPDATE_DEBT, "2.3_ECS07", "ECS07_2.3_SUCCESS"),
    ("2.5", "ActivateEmergencyCredit", "", "2.5_ECS09", "ECS09_2.5_SUCCESS"),
]


def _pre_and_command(
    reference_dir: Path, srv: str, body: etree._Element, counter: int, folder: str, prefix: str
) -> None:
    """The SRV's Pre-Command is the RTDS PRECOMMAND; signed, the ACB's command the COMMAND."""
    transformation = lookup(srv, "ESME")
    assert transformation is not None and transformation.critical
    pre = build_pre_command(
        transformation,
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=counter,
        body=body,
    )
    assert pre == _rtds(reference_dir, folder, f"{prefix}_PRECOMMAND_GBCS.HEX")
    assert_rtds_command_wraps(
        reference_dir,
        _rtds(reference_dir, folder, f"{prefix}_COMMAND_GBCS.HEX"),
        pre,
        originator=SUPPLIER_EUI,
        target=ESME_EUI,
    )


@pytest.mark.parametrize(("srv", "element", "inner", "folder", "prefix"), BUILT_BODIES)
def test_debt_and_emergency_credit_requests_become_the_rtds_commands(
    reference_dir: Path, srv: str, element: str, inner: str, folder: str, prefix: str
) -> None:
    vector = decode_message(_rtds(reference_dir, folder, f"{prefix}_PRECOMMAND_GBCS.HEX"))
    assert isinstance(vector, GeneralSigning)
    body = _body(element, inner)
    _pre_and_command(reference_dir, srv, body, vector.originator_counter, folder, prefix)


@pytest.mark.parametrize(
    ("template", "prefix"),
    [
        ("ECS08_2.1_IMMEDIATE_SUCCESS", "ECS08a_2.1_IMMEDIATE_SUCCESS"),
        ("ECS08_2.1_FUTURE_DATED_SUCCESS", "ECS08a_2.1_FUTURE_DATED_SUCCESS"),
        ("ECS08a_2.1_CANCELLATION_SUCCESS", "ECS08a_2.1_CANCELLATION_SUCCESS"),
    ],
)
def test_prepay_configuration_template_becomes_the_rtds_command(
    reference_dir: Path, template: str, prefix: str
) -> None:
    request = duis_template(reference_dir, f"{template}_REQUEST_DUIS.XML")
    assert request.body_name == "UpdatePrepayConfiguration"
    rid = request.request_id
    assert (rid.originator, rid.target) == (SUPPLIER_EUI, ESME_EUI)
    _pre_and_command(reference_dir, "2.1", request.body, rid.counter, "2.1_ECS08a", prefix)


def test_read_prepayment_configuration_template_becomes_the_rtds_command(
    reference_dir: Path,
) -> None:
    request = duis_template(reference_dir, "ECS26a_4.13_SINGLE_SUCCESS_REQUEST_DUIS.XML")
    assert request.request_id.target == ESME_EUI
    transformation = checked_transformation(request, "ESME", critical=False)
    built = build_rtds_command(reference_dir, transformation, request)
    assert built == _rtds(
        reference_dir, "4.13_ECS26a", "ECS26a_4.13_SINGLE_SUCCESS_COMMAND_GBCS.HEX"
    )


def test_gas_debt_recovery_is_not_for_an_esme() -> None:
    transformation = lookup("2.3", "ESME")
    assert transformation is not None
    gas = UPDATE_DEBT.replace("ElecDebtRecovery", "GasDebtRecovery")
    with pytest.raises(ServiceRequestBodyError, match="GasDebtRecovery"):
        transformation.parameters(_body("UpdateDebt", gas))


# -- the ESME's responses against the RTDS vectors ---------------------------------------------


def _handled(site: Site, handler: str, command: GeneralCiphering) -> GeneralSigning:
    request = decode_apdu(command.general_signing.payload)
    assert isinstance(request, AccessRequest)
    built = decode_message(
        getattr(site.esme, handler)(command=command, request=request, now=site.now)
    )
    assert isinstance(built, GeneralSigning)
    return built


def _command(reference_dir: Path, folder: str, prefix: str) -> GeneralCiphering:
    command = decode_message(_rtds(reference_dir, folder, f"{prefix}_COMMAND_GBCS.HEX"))
    assert isinstance(command, GeneralCiphering)
    return command


def _response(reference_dir: Path, folder: str, prefix: str) -> GeneralSigning:
    response = decode_message(_rtds(reference_dir, folder, f"{prefix}_RESPONSE_GBCS.HEX"))
    assert isinstance(response, GeneralSigning)
    return response


def _emergency_credit_meter(site: Site) -> None:
    site.esme.account = Account(PREPAYMENT_MODE)
    site.esme.prepayment = Prepayment(
        configuration=PrepaymentConfiguration(
            emergency_credit_limit=300000, emergency_credit_threshold=100000
        )
    )


@pytest.mark.parametrize(
    ("folder", "prefix", "handler"),
    [
        ("2.3_ECS07", "ECS07_2.3_SUCCESS", "manage_debt"),
        ("2.5_ECS09", "ECS09_2.5_SUCCESS", "activate_emergency_credit"),
        ("2.1_ECS08a", "ECS08a_2.1_IMMEDIATE_SUCCESS", "update_prepayment_configuration"),
        ("2.1_ECS08a", "ECS08a_2.1_FUTURE_DATED_SUCCESS", "update_prepayment_configuration"),
        ("2.1_ECS08a", "ECS08a_2.1_CANCELLATION_SUCCESS", "update_prepayment_configuration"),
    ],
)
def test_prepayment_response_matches_the_rtds_vector_but_for_the_signature(
    reference_dir: Path, folder: str, prefix: str, handler: str
) -> None:
    """The ESME's handler, given the RTDS command, answers with the RTDS response's signed
    bytes (the ESME's DS key is not published)."""
    site = Site(now=RTDS_NOW)
    _emergency_credit_meter(site)
    built = _handled(site, handler, _command(reference_dir, folder, prefix))
    assert built.signed_bytes() == _response(reference_dir, folder, prefix).signed_bytes()


def _shape(frame: GeneralSigning) -> tuple[object, ...]:
    apdu = decode_apdu(frame.payload)
    assert isinstance(apdu, AccessResponse)
    return (
        frame.cra_flag,
        frame.message_code,
        frame.date_time is None,
        [d.type for d in apdu.data],
        [(r.kind, r.result == ACTION_SUCCESS) for r in apdu.results],
    )


def test_a_refused_debt_adjustment_answers_like_the_rtds_error_vector(reference_dir: Path) -> None:
    """The RTDS error response fails both time debt adjustments: so does a meter whose time
    debt registers those (positive) amounts would take past their range."""
    site = Site(now=RTDS_NOW)
    full = TimeDebt(remaining=(1 << 31) - 1)
    site.esme.prepayment = Prepayment(time_debts=(full, full))
    built = _handled(site, "manage_debt", _command(reference_dir, "2.3_ECS07", "ECS07_2.3_ERROR"))
    assert _shape(built) == _shape(_response(reference_dir, "2.3_ECS07", "ECS07_2.3_ERROR"))
    assert [d.remaining for d in site.esme.prepayment.time_debts] == [(1 << 31) - 1] * 2
    assert site.esme.prepayment.payment_debt == 50000


def test_unavailable_emergency_credit_answers_like_the_rtds_error_vector(
    reference_dir: Path, site: PrepaymentSite
) -> None:
    """A credit-mode meter has no emergency credit to give: ECS09 fails with other-reason
    (GBCS ECS09), in the RTDS error response's layout."""
    built = site.critical("ECS09", {}, signer=site.supplier_ds)
    assert _shape(built) == _shape(_response(reference_dir, "2.5_ECS09", "ECS09_2.5_ERROR"))
    apdu = decode_apdu(built.payload)
    assert isinstance(apdu, AccessResponse) and apdu.results[0].result == ACTION_OTHER_REASON


def test_read_prepayment_configuration_reproduces_the_rtds_vector(reference_dir: Path) -> None:
    """An ESME holding the RTDS meter's prepayment configuration answers ECS26a with the RTDS
    response byte for byte (the Supplier's KA key and the ESME's certificate stand in for
    the ESME's unpublished KA key pair: static ECDH is symmetric)."""
    folder, prefix = "4.13_ECS26a", "ECS26a_4.13_SINGLE_SUCCESS"
    reference = decode_message(_rtds(reference_dir, folder, f"{prefix}_RESPONSE_GBCS.HEX"))
    assert isinstance(reference, GeneralCiphering)
    held = decode_apdu(reference.general_signing.payload)
    assert isinstance(held, AccessResponse)
    data = held.data

    def rate(item: Data) -> tuple[int, int]:
        return item.items[0].items[1].integer, item.items[2].items[0].items[1].integer

    (scale_1, rate_1), (scale_2, rate_2) = rate(data[0]), rate(data[4])
    site = Site(device_ka=keystore_private(reference_dir, "90b3d51f30010000-ka"))
    references = tuple(
        (r.items[0].octets, r.items[1].octets, r.items[2].value.octets, r.items[2].value.bits)
        for r in data[17].items
        if isinstance(r.items[2].value, BitString)
    )
    site.esme.account = Account(PREPAYMENT_MODE, references, data[9].items[0].integer)
    site.esme.prepayment = Prepayment(
        time_debts=(
            TimeDebt(rate=rate_1, price_scale=scale_1, period=data[2].integer),
            TimeDebt(rate=rate_2, price_scale=scale_2, period=data[5].integer),
        ),
        debt_recovery_per_payment=data[7].integer,
        configuration=PrepaymentConfiguration(
            debt_recovery_rate_cap=data[12].integer,
            emergency_credit_limit=data[14].integer,
            emergency_credit_threshold=data[15].integer,
            low_credit_threshold=data[11].integer,
            max_meter_balance=data[10].integer,
            max_credit_threshold=data[8].integer,
            special_days=data[1].encode(),
            schedule=data[16].encode(),
        ),
    )
    device = keystore_public(reference_dir, "00db1234567890a0-ka")
    built = site.esme.read_prepayment_configuration(
        command=_command(reference_dir, folder, prefix),
        remote_party=RemoteParty(SUPPLIER_EUI, device),
        now=START,
    )
    assert built == reference.encode()


# -- 4.14 Read Prepayment Daily Read Log ---------------------------------------------------------


def _daily_log(site: PrepaymentSite, start: dt.datetime, end: dt.datetime) -> list[Data]:
    """4.14 (ECS21b) for the Supplier: the log's entries, decrypted."""
    site.counter += 1
    context = CommandContext(
        site.counter,
        SUPPLIER_EUI,
        ESME_EUI,
        {"start_date_time": start, "end_date_time": end},
    )
    command = build_command(
        USE_CASES_BY_NAME["ECS21b"],
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=site.counter,
        payload=command_payload("ECS21b", context),
        acb_ka_private=site.acb_ka,
        device_ka_public=site.device_ka.public_key(),
    )
    response = decode_message(site.esme.handle(command))
    assert isinstance(response, GeneralCiphering)
    content = read_protected_content(
        response,
        recipient_ka_private=site.supplier_ka,
        device_ka_public=site.device_ka.public_key(),
    )
    log = content.items[0].value
    assert isinstance(log, CompactArray)
    return list(log.elements())


def test_the_daily_read_log_keeps_each_midnights_balances_and_debts(site: PrepaymentSite) -> None:
    _prepayment_meter(site)
    site.now = START + dt.timedelta(hours=12)
    site.results("ECS07", DEBT)
    site.now = START + dt.timedelta(days=1, hours=12)
    site.results("ECS09", {})
    site.now = START + dt.timedelta(days=2, hours=1)
    entries = _daily_log(site, START, site.now)
    days = [e.items[0].integer for e in entries]
    assert days == [
        int((START + dt.timedelta(days=n) - GBCS_EPOCH).total_seconds()) for n in range(3)
    ]
    values = [[v.integer for v in e.items[1:]] for e in entries]
    assert values == [
        [0, 0, 0, 0, 0, 0],  # midnight before the debt
        [0, 0, 0, 50000, 30000, 15000],  # the debt, no emergency credit yet
        [0, 300000, 0, 50000, 30000, 15000],  # emergency credit in use
    ]


def test_a_payment_shows_as_debt_collected_in_the_daily_read_log(site: PrepaymentSite) -> None:
    _prepayment_meter(site)
    site.results("ECS07", DEBT)
    site.esme.add_credit(20000)  # 10 % recovers payment debt
    site.now = START + dt.timedelta(days=1)
    (entry,) = _daily_log(site, site.now, site.now)
    assert [v.integer for v in entry.items[1:]] == [18000, 0, 2000, 48000, 30000, 15000]


def test_read_prepayment_daily_read_log_template_becomes_the_rtds_command(
    reference_dir: Path,
) -> None:
    path = reference_dir / "duis" / "templates" / "ECS21b_4.14_KRP_SUCCESS_REQUEST_DUIS.XML"
    request = parse_service_request(path.read_bytes())
    transformation = lookup("4.14", "ESME")
    assert transformation is not None and request.body_name == transformation.body_element
    built = build_srv_command(
        transformation,
        originator_title=request.request_id.originator,
        device_title=request.request_id.target,
        counter=request.request_id.counter,
        acb_ka_private=keystore_private(reference_dir),
        device_ka_public=keystore_public(reference_dir, "00db1234567890a0-ka"),
        body=request.body,
    )
    assert built == _rtds(reference_dir, "4.14_ECS21b", "ECS21b_4.14_KRP_SUCCESS_COMMAND_GBCS.HEX")


def test_read_prepayment_daily_read_log_reproduces_the_rtds_vector(reference_dir: Path) -> None:
    """An ESME whose registers held the RTDS log's values at each midnight answers the RTDS
    command with the RTDS response byte for byte (entries, layout, encryption and MAC)."""
    folder, prefix = "4.14_ECS21b", "ECS21b_4.14_KRP_SUCCESS"
    reference = decode_message(_rtds(reference_dir, folder, f"{prefix}_RESPONSE_GBCS.HEX"))
    assert isinstance(reference, GeneralCiphering)
    supplier_ka = keystore_private(reference_dir, "90b3d51f30010000-ka")
    device = keystore_public(reference_dir, "00db1234567890a0-ka")
    log = read_protected_content(
        reference, recipient_ka_private=supplier_ka, device_ka_public=device
    ).items[0]
    assert isinstance(log.value, CompactArray)
    site = Site(device_ka=supplier_ka, now=RTDS_NOW)
    history = []
    for entry in log.value.elements():
        at, balance, emergency, collected, payment, first, second = (v.integer for v in entry.items)
        registers = Prepayment(
            meter_balance=balance,
            emergency_credit=emergency,
            accumulated_debt=collected,
            payment_debt=payment,
            time_debts=(TimeDebt(remaining=first), TimeDebt(remaining=second)),
        )
        history.append((GBCS_EPOCH + dt.timedelta(seconds=at), registers))
    site.esme.prepayment_history = history
    request = decode_apdu(_command(reference_dir, folder, prefix).general_signing.payload)
    assert isinstance(request, AccessRequest)
    built = site.esme.read_prepayment_daily_read_log(
        command=_command(reference_dir, folder, prefix),
        request=request,
        remote_party=RemoteParty(SUPPLIER_EUI, device),
        now=RTDS_NOW,
    )
    assert built == reference.encode()


def test_the_log_keeps_one_value_a_day_and_survives_a_power_cycle(site: PrepaymentSite) -> None:
    _prepayment_meter(site)
    for hour in range(1, 11):
        site.now = START + dt.timedelta(hours=hour)
        site.esme.add_credit(1)
    assert len(site.esme.prepayment_history) == 2  # the value at midnight, the day's last
    fresh = site.with_same_keys()
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    assert fresh.esme.prepayment_history == site.esme.prepayment_history
    fresh.now = START + dt.timedelta(days=1)
    entries = _daily_log(fresh, START, fresh.now)
    assert [e.items[1].integer for e in entries] == [0, 10]
