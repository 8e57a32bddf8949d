"""The SMI status lifecycle table and the eligibility rule, as data checked against DUIS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dccsim.duis.catalogue import ServiceReferenceVariant, UserRole
from dccsim.smi import (
    EVENT_DEVICE_TYPES,
    PREVIOUS_STATUS,
    TRANSITIONS,
    DeviceRecord,
    DeviceStatus,
    DeviceType,
    StatusEvent,
    StatusTransitionError,
    check_eligibility,
    next_status,
)

S = DeviceStatus
USER, OTHER = "90-B3-D5-1F-30-01-D0-00", "90-B3-D5-1F-30-01-D0-01"


def test_every_event_has_a_row_and_every_target_is_a_status() -> None:
    assert set(TRANSITIONS) == set(StatusEvent)
    for rows in TRANSITIONS.values():
        for target in rows.values():
            assert target == PREVIOUS_STATUS or isinstance(target, DeviceStatus)


@pytest.mark.parametrize(
    ("event", "before", "after"),
    [
        (StatusEvent.PRE_NOTIFICATION, None, S.PENDING),
        (StatusEvent.WHITELIST, S.PENDING, S.WHITELISTED),
        (StatusEvent.JOIN, S.WHITELISTED, S.INSTALLED_NOT_COMMISSIONED),
        (StatusEvent.COMMISSION, S.INSTALLED_NOT_COMMISSIONED, S.COMMISSIONED),
        (StatusEvent.DECOMMISSION, S.COMMISSIONED, S.DECOMMISSIONED),
        (StatusEvent.SUSPEND, S.COMMISSIONED, S.SUSPENDED),
        (StatusEvent.RECOVERY, S.COMMISSIONED, S.RECOVERY),
        (StatusEvent.RECOVERED, S.RECOVERY, S.RECOVERED),
    ],
)
def test_meter_lifecycle_step(
    event: StatusEvent, before: DeviceStatus | None, after: DeviceStatus
) -> None:
    assert next_status(event, before, DeviceType.ESME) is after


@pytest.mark.parametrize(
    ("event", "before", "after"),
    [
        (StatusEvent.CH_DELIVERY, None, S.PENDING),
        (StatusEvent.CH_INSTALL_SM_WAN, S.PENDING, S.COMMISSIONED),
        (StatusEvent.CH_INSTALL_NO_SM_WAN, S.PENDING, S.INSTALLED_NOT_COMMISSIONED),
        (StatusEvent.CH_FAULT_RETURN, S.PENDING, S.WITHDRAWN),
        (StatusEvent.CH_FAULT_RETURN, S.COMMISSIONED, S.DECOMMISSIONED),
        (StatusEvent.CH_NO_FAULT_RETURN, S.COMMISSIONED, S.DECOMMISSIONED),
    ],
)
def test_hub_lifecycle_step(
    event: StatusEvent, before: DeviceStatus | None, after: DeviceStatus
) -> None:
    assert next_status(event, before, DeviceType.CHF) is after


def test_every_pair_outside_the_table_is_refused_with_e5() -> None:
    for event, rows in TRANSITIONS.items():
        device_type = next(iter(EVENT_DEVICE_TYPES.get(event, {DeviceType.ESME})))
        for status in DeviceStatus:
            if status in rows:
                continue
            with pytest.raises(StatusTransitionError) as err:
                next_status(event, status, device_type)
            assert err.value.code == "E5", (event, status)


def test_event_for_the_wrong_device_type_is_e11() -> None:
    with pytest.raises(StatusTransitionError) as err:
        next_status(StatusEvent.CH_INSTALL_SM_WAN, S.PENDING, DeviceType.ESME)
    assert err.value.code == "E11"


def test_transition_of_absent_device_is_e19() -> None:
    with pytest.raises(StatusTransitionError) as err:
        next_status(StatusEvent.COMMISSION, None, DeviceType.ESME)
    assert err.value.code == "E19"


def test_wire_form_round_trips_and_reads_the_old_form() -> None:
    record = DeviceRecord(
        "00-DC-C5-00-00-00-01-03",
        DeviceType.GSME,
        S.COMMISSIONED,
        hub_eui="00-DC-C5-00-00-00-01-00",
        mpxn="3000000001",
        registrations={"GS": USER},
        manufacturer="DCC5",
        gpf_eui="00-DC-C5-00-00-00-01-01",
        gbcs_version="3.2",
    )
    assert DeviceRecord.from_wire(record.to_wire()) == record
    old = {
        k: record.to_wire()[k]
        for k in ("eui", "device_type", "status", "hub_eui", "csp_region", "mpxn", "registrations")
    }
    assert DeviceRecord.from_wire(old).registrations == {"GS": USER}


def _matrix(reference_dir: Path) -> list[ServiceReferenceVariant]:
    rows = json.loads((reference_dir / "duis" / "request-matrix.json").read_text())
    return [
        ServiceReferenceVariant(
            variant=r["Service Reference Variant"],
            reference=r["Service Reference"],
            name=r["Service Request Name"],
            roles=frozenset(UserRole(x) for x in r["Eligible User Roles"]),
            critical=r["Critical"] == "Yes",
            non_device=r["Non-Device Request"] == "Yes",
            device_types=frozenset(t.value for t in DeviceType),
            body_element="",
        )
        for r in rows
    ]


def test_eligibility_matrix_against_dcc_roles(reference_dir: Path) -> None:
    """For each of the 129 SRVs and each User Role: a User registered in that role for the device
    passes exactly when DCC's matrix lists the role (E2 otherwise); the same role held by another
    User for the device is E4."""
    srvs = _matrix(reference_dir)
    assert len(srvs) == 129
    for srv in srvs:
        for role in UserRole:
            device = DeviceRecord(
                "00-DC-C5-00-00-00-01-02",
                DeviceType.ESME,
                S.COMMISSIONED,
                registrations={role.value: USER},
            )
            code = check_eligibility(
                srv, user_eui=USER, user_roles=frozenset({role}), device=device
            )
            assert code == (None if role in srv.roles else "E2"), (srv.variant, role)
            if role in srv.roles:
                other = check_eligibility(
                    srv, user_eui=OTHER, user_roles=frozenset({role}), device=device
                )
                assert other == "E4", (srv.variant, role)


def test_eligibility_refuses_a_decommissioned_device_with_e5(reference_dir: Path) -> None:
    srv = next(s for s in _matrix(reference_dir) if s.variant == "4.1.1")
    device = DeviceRecord(
        "00-DC-C5-00-00-00-01-02", DeviceType.ESME, S.DECOMMISSIONED, registrations={"IS": USER}
    )
    assert (
        check_eligibility(
            srv, user_eui=USER, user_roles=frozenset({UserRole.IMPORT_SUPPLIER}), device=device
        )
        == "E5"
    )
