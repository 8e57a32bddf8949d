"""The ESME's account: 1.6 Update Payment Mode (ECS02 credit, ECS03 prepayment; immediate,
future-dated, cancelled) from Signed Pre-Commands with fresh keys, read back by 6.2.9 (ECS26j),
and the response layouts against the RTDS vectors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.commands import CREDIT_MODE, PREPAYMENT_MODE
from dccsim.gbcs.dlms import AccessRequest, AccessResponse, decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import ACTION_OTHER_REASON, ACTION_SUCCESS
from emulators.device import DeviceRefusal, RemoteParty
from emulators.esme import OBJECT_UNDEFINED, Account
from tests.unit.esme_site import START, SUPPLIER_EUI, Site, fresh_key
from tests.unit.gbcs_site import rtds_esme_stand_in

PREPAYMENT: dict[str, object] = {
    "disablement_threshold": 556677,
    "suspend_debt_disabled": True,
    "suspend_debt_emergency": False,
}


class PaymentSite(Site):
    def update_payment_mode(
        self, use_case: str, parameters: dict[str, object], *, signer: ec.EllipticCurvePrivateKey
    ) -> AccessResponse:
        return self.critical_access_response(use_case, parameters, signer=signer)

    def set_mode(self, use_case: str, parameters: dict[str, object]) -> list[int]:
        response = self.update_payment_mode(use_case, parameters, signer=self.supplier_ds)
        return [r.result for r in response.results]

    def read_mode(self) -> tuple[int, int]:
        """6.2.9 (ECS26j): (payment mode, account status) of the account in force."""
        mode, status = self.read("ECS26j").items
        return mode.integer, status.integer


@pytest.fixture
def site() -> PaymentSite:
    return PaymentSite()


def test_a_new_esme_is_in_credit_mode(site: PaymentSite) -> None:
    assert site.read_mode() == (CREDIT_MODE, 2)


def test_immediate_prepayment_then_credit_is_read_back(site: PaymentSite) -> None:
    assert site.set_mode("ECS03", PREPAYMENT) == [ACTION_SUCCESS] * 5
    assert site.read_mode() == (PREPAYMENT_MODE, 2)
    assert site.esme.account.disablement_threshold == 556677
    assert site.set_mode("ECS02", {}) == [ACTION_SUCCESS] * 3
    assert site.read_mode() == (CREDIT_MODE, 2)
    assert site.esme.account.disablement_threshold is None


def test_future_dated_prepayment_takes_effect_at_its_execution_time(site: PaymentSite) -> None:
    at = START + timedelta(hours=1)
    assert site.set_mode("ECS03", {**PREPAYMENT, "execution_date_time": at}) == [0] * 5
    assert site.read_mode() == (CREDIT_MODE, 2)
    site.now = at
    assert site.read_mode() == (PREPAYMENT_MODE, 2)


def test_cancellation_drops_the_pending_change(site: PaymentSite) -> None:
    site.set_mode("ECS03", {**PREPAYMENT, "execution_date_time": START + timedelta(hours=1)})
    cancel = {**PREPAYMENT, "execution_date_time": datetime(3000, 12, 31, tzinfo=UTC)}
    assert site.set_mode("ECS03", cancel) == [ACTION_SUCCESS] * 5
    site.now = START + timedelta(days=1)
    assert site.read_mode() == (CREDIT_MODE, 2)


def test_twin_credit_references_on_a_single_element_esme_change_nothing(site: PaymentSite) -> None:
    before = site.esme.account
    assert site.set_mode("ECS03", {**PREPAYMENT, "twin": True}) == [
        ACTION_SUCCESS,
        ACTION_SUCCESS,
        OBJECT_UNDEFINED,
        ACTION_OTHER_REASON,
        ACTION_OTHER_REASON,
    ]
    assert site.esme.account == before
    assert site.read_mode() == (CREDIT_MODE, 2)


def test_a_twin_element_esme_takes_its_second_elements_charge() -> None:
    site = PaymentSite(twin=True)
    assert site.set_mode("ECS03", {**PREPAYMENT, "twin": True}) == [ACTION_SUCCESS] * 5
    assert site.read_mode() == (PREPAYMENT_MODE, 2)


def test_payment_mode_signed_by_someone_else_is_refused(site: PaymentSite) -> None:
    with pytest.raises(DeviceRefusal):
        site.update_payment_mode("ECS03", PREPAYMENT, signer=fresh_key())
    assert site.read_mode() == (CREDIT_MODE, 2)


def test_the_account_survives_a_power_cycle(site: PaymentSite) -> None:
    site.set_mode("ECS03", {**PREPAYMENT, "execution_date_time": START + timedelta(hours=1)})
    state = site.esme.nonvolatile_state()
    fresh = site.with_same_keys()
    fresh.esme.restore_nonvolatile_state(state)
    fresh.now = START + timedelta(hours=2)
    assert fresh.read_mode() == (PREPAYMENT_MODE, 2)


def test_account_state_round_trips() -> None:
    account = Site().esme.account
    assert Account.from_state(account.to_state()) == account


# -- response layouts against the RTDS vectors -------------------------------------------------


def _vector(reference_dir: Path, folder: str, name: str) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / folder / name).read_text())


@pytest.mark.parametrize(
    "prefix",
    [
        "ECS02_1.6_IMMEDIATE_SINGLE_SUCCESS",
        "ECS02_1.6_FUTURE_DATED_TWIN_SUCCESS",
        "ECS02_1.6_CANCELLATION_TWIN_SUCCESS",
        "ECS03_1.6_IMMEDIATE_SINGLE_SUCCESS",
        "ECS03_1.6_FUTURE_DATED_TWIN_SUCCESS",
        "ECS03_1.6_CANCELLATION_TWIN_SUCCESS",
    ],
)
def test_payment_mode_response_matches_the_rtds_vector_but_for_the_signature(
    reference_dir: Path, prefix: str
) -> None:
    """The ESME's handler, given the RTDS command (its MAC is the device's to check and the
    device's key is not published), answers with the RTDS response's signed bytes."""
    folder = f"1.6_{prefix[:5]}"
    command = decode_message(_vector(reference_dir, folder, f"{prefix}_COMMAND_GBCS.HEX"))
    assert isinstance(command, GeneralCiphering)
    request = decode_apdu(command.general_signing.payload)
    assert isinstance(request, AccessRequest)
    reference = decode_message(_vector(reference_dir, folder, f"{prefix}_RESPONSE_GBCS.HEX"))
    assert isinstance(reference, GeneralSigning)
    site = Site(twin="TWIN" in prefix, now=datetime(2015, 1, 1, tzinfo=UTC))
    built = decode_message(
        site.esme.update_payment_mode(command=command, request=request, now=site.now)
    )
    assert isinstance(built, GeneralSigning)
    assert built.signed_bytes() == reference.signed_bytes()


def test_payment_mode_read_response_reproduces_the_rtds_vector(reference_dir: Path) -> None:
    """Static ECDH is symmetric: the supplier's KA key and the ESME's certificate stand in
    for the ESME's unpublished KA key pair."""
    supplier, device = rtds_esme_stand_in(reference_dir)
    folder = "6.2.9_ECS26j"
    command = decode_message(
        _vector(reference_dir, folder, "ECS26j_6.2.9_SUCCESS_COMMAND_GBCS.HEX")
    )
    assert isinstance(command, GeneralCiphering)
    site = Site(device_ka=supplier)
    site.esme.account = Account(PREPAYMENT_MODE)
    built = site.esme.read_payment_mode(
        command=command, remote_party=RemoteParty(SUPPLIER_EUI, device), now=START
    )
    assert built == _vector(reference_dir, folder, "ECS26j_6.2.9_SUCCESS_RESPONSE_GBCS.HEX")
