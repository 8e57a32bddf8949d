"""The ESME's non-volatile state: a part of it restores that part alone (a host keeps only what
changed), a held future-dated command survives a power cycle with whom to tell, and restored
trust anchor cells decide whom the meter trusts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dccsim.gbcs.commands import (
    CREDIT_MODE,
    KEY_USAGE_DIGITAL_SIGNATURE,
    KEY_USAGE_KEY_AGREEMENT,
    PREPAYMENT_MODE,
    ROLE_SUPPLIER,
)
from emulators.device import RemoteParty
from emulators.esme import DEFAULT_TARIFF, SupplyState, TrustAnchor
from tests.unit.esme_site import START, SUPPLIER_EUI, Site, fresh_key

PREPAYMENT: dict[str, object] = {
    "disablement_threshold": 500,
    "suspend_debt_disabled": True,
    "suspend_debt_emergency": False,
}


def test_restoring_one_entry_leaves_the_others_as_built() -> None:
    site = Site()
    site.critical("ECS03", PREPAYMENT, signer=site.supplier_ds)
    account = site.esme.nonvolatile_state()["account"]
    fresh = Site()
    fresh.esme.supply = SupplyState.ARMED
    fresh.esme.restore_nonvolatile_state({"account": account})
    assert fresh.esme.account.payment_mode == PREPAYMENT_MODE
    assert fresh.esme.supply is SupplyState.ARMED  # not in the part restored: untouched
    assert fresh.esme.tariff == DEFAULT_TARIFF


def test_a_held_command_survives_a_power_cycle_and_still_raises_its_alert() -> None:
    site = Site()
    at = START + dt.timedelta(minutes=10)
    site.critical("ECS03", {**PREPAYMENT, "execution_date_time": at}, signer=site.supplier_ds)
    state = site.esme.nonvolatile_state()

    fresh = Site()
    assert fresh.esme.account.payment_mode == CREDIT_MODE
    fresh.esme.restore_nonvolatile_state(state)
    assert fresh.esme.next_due() == at
    fresh.esme.run_due(at)
    assert fresh.esme.account.payment_mode == PREPAYMENT_MODE
    alerts = fresh.esme.take_alerts()
    assert [a.alert_code for a in alerts] == [0x8F66, 0x8F66]
    assert {a.recipient for a in alerts} == {SUPPLIER_EUI}


def test_top_ups_applied_are_remembered_across_a_power_cycle() -> None:
    site = Site()
    site.esme.applied_utrns.append(b"73946144332040217315")
    fresh = Site()
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    assert fresh.esme.applied_utrns == [b"73946144332040217315"]


def _cells(subject: bytes, ds: Any, ka: Any) -> dict[Any, TrustAnchor]:
    anchors = (
        TrustAnchor(ROLE_SUPPLIER, KEY_USAGE_DIGITAL_SIGNATURE, subject, b"ds" * 4, ds),
        TrustAnchor(ROLE_SUPPLIER, KEY_USAGE_KEY_AGREEMENT, subject, b"ka" * 4, ka),
    )
    return {a.cell: a for a in anchors}


def test_restored_cells_name_the_parties_the_meter_trusts() -> None:
    """Cells restored after another Supplier took them over: the new one is trusted with the
    cells' keys, the one they held as built is not; a party that held no cell stays."""
    other = bytes.fromhex("90B3D51F30020000")
    new_ds, new_ka = fresh_key(), fresh_key()
    changed = Site()
    changed.esme.trust_anchors = _cells(other, new_ds.public_key(), new_ka.public_key())
    state = changed.esme.nonvolatile_state()

    built = Site()
    built.esme.trust_anchors = _cells(
        SUPPLIER_EUI, built.supplier_ds.public_key(), built.supplier_ka.public_key()
    )
    kept = bytes.fromhex("90B3D51F30030000")
    built.esme.remote_parties[kept] = RemoteParty(kept, fresh_key().public_key())
    built.esme.restore_nonvolatile_state(state)
    assert SUPPLIER_EUI not in built.esme.remote_parties
    assert kept in built.esme.remote_parties
    party = built.esme.remote_parties[other]
    assert party.ka_public_key.public_numbers() == new_ka.public_key().public_numbers()
