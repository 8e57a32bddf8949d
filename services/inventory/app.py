"""services/inventory: the Smart Metering Inventory behind an RPC interface.

RPC methods (routing key ``rpc.inventory``), bodies and results msgpack maps:

``device.lookup {eui}`` -> ``{device: DeviceRecord.to_wire() | None}`` (the User Gateway's cache
fill; the record's wire form only gains keys).
``device.set_status {eui, status, [reason]}`` -> ``{ok: True}`` (administrative override).
The non-device SRVs, eligibility, registration data and the lifecycle: see
``services.inventory.requests`` for each method's request and reply
(``eligibility.check``, ``inventory.read`` 8.2, ``device.decommission`` 8.3, ``inventory.update``
8.4, ``hub.status_update`` 8.14.1-4, ``wan.matrix`` 12.1, ``device.prenotify`` 12.2,
``registration.set``, ``registration.history``, ``device.transition``, ``device.history``).
Communications Hub ordering (``ch.window``, ``ch.location.add``, ``ch.locations.list``,
``ch.forecast.submit``, ``ch.forecasts.list``, ``ch.order.submit``, ``ch.delivery.record``,
``ch.orders.list``): see ``services.inventory.ch_orders``. Roll-out reporting
(``rollout.milestone.set``, ``rollout.report``): see ``services.inventory.rollout``.
DSP schedules (``schedule.create`` 5.1, ``schedule.read`` 5.2, ``schedule.delete`` 5.3): see
``services.inventory.schedules``; each due run is sent as ``sr.accepted`` (once per run, across
restarts), checked every ``inventory_schedule_interval_s``.
Firmware (``firmware.add``, ``firmware.list``, ``firmware.distribute`` 11.1,
``firmware.distribution``): see ``services.inventory.firmware``; images live under
``$DCCSIM_HOME/data/firmware``.

Every change publishes ``inventory.changed {eui}`` for each device whose record changed, so the
gateways' caches drop stale entries.

estate.json is imported at start-up and again on each ``estate.changed`` event (premises added
while running): only what the inventory does not hold yet (``seed.import_new_premises``), each
new device announced with ``inventory.changed``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from dccsim import estate
from dccsim.bus import Envelope
from dccsim.bus.topology import INVENTORY_CHANGED, INVENTORY_REQUESTS, SR_ACCEPTED
from dccsim.config import InventorySettings
from dccsim.duis.catalogue import UserRole
from dccsim.logging import request_context
from dccsim.participants import ParticipantRegister
from dccsim.runtime import ServiceRuntime, run_service, run_until_complete
from dccsim.smi import DeviceStatus
from services.inventory.ch_orders import CommunicationsHubOrdering, HubOrderingRequests
from services.inventory.firmware import FirmwareRequests, FirmwareStore
from services.inventory.requests import InventoryRequests
from services.inventory.rollout import DEFAULT_TOLERANCE, RolloutReporting, RolloutRequests
from services.inventory.schedules import (
    DspSchedules,
    PipelineFirer,
    ScheduleRequests,
    ScheduleRunner,
    accelerated_clock,
    run_scheduler,
)
from services.inventory.seed import EstateImport, import_new_premises
from services.inventory.store import SmartMeteringInventory

log = logging.getLogger(__name__)
# Until InventorySettings carries ``inventory_initial_delivery_date``.
DEFAULT_INITIAL_DELIVERY_DATE = dt.date(2027, 1, 1)


def inventory_url(settings: InventorySettings) -> str:
    return settings.inventory_db_url or settings.sqlite_url("inventory")


def initial_delivery_date(settings: InventorySettings) -> dt.date:
    """The Initial Delivery Date: the first month hubs can be forecast and ordered for."""
    value = getattr(settings, "inventory_initial_delivery_date", DEFAULT_INITIAL_DELIVERY_DATE)
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def hub_ordering(
    store: SmartMeteringInventory, settings: InventorySettings
) -> CommunicationsHubOrdering:
    return CommunicationsHubOrdering(store, initial_delivery_date=initial_delivery_date(settings))


def rollout_reporting(
    store: SmartMeteringInventory, settings: InventorySettings
) -> RolloutReporting:
    tolerance = float(getattr(settings, "inventory_rollout_tolerance", DEFAULT_TOLERANCE))
    return RolloutReporting(store, default_tolerance=tolerance)


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, InventorySettings)
    store = SmartMeteringInventory(inventory_url(settings))
    await store.create_schema()
    rt.cleanups.append(store.close)

    async def publish_changes(euis: list[str]) -> None:
        for eui in euis:
            await rt.bus.publish_event(
                INVENTORY_CHANGED, Envelope("inventory.changed", "", {"eui": eui})
            )

    estate_lock = asyncio.Lock()  # one import of estate.json at a time

    async def import_estate_file(reason: str) -> EstateImport:
        async with estate_lock:
            premises = await asyncio.to_thread(estate.load, settings.home)
            return await import_new_premises(store, premises, reason=reason)

    async def on_estate_changed(env: Envelope) -> None:
        # premises were added to estate.json (services/testing onboarded a participant)
        added = await import_estate_file("estate changed")
        if added.devices:
            log.info(
                "new premises imported",
                extra={"premises": len(added.premises), "devices": len(added.devices)},
            )
        # the User Gateway may hold "no such device" for them
        await publish_changes(added.devices)

    # Subscribed before the start-up import, so premises added meanwhile are not missed.
    await rt.bus.subscribe_events(estate.CHANGED_EVENT, on_estate_changed)
    started = await import_estate_file("estate import")
    log.info(
        "inventory open",
        extra={"devices": await store.count(), "imported": len(started.devices)},
    )

    async def lookup(env: Envelope) -> dict[str, Any]:
        record = await store.device(str(env.body["eui"]))
        return {"device": record.to_wire() if record else None}

    async def set_status(env: Envelope) -> dict[str, Any]:
        eui = str(env.body["eui"])
        await store.set_status(
            eui, DeviceStatus(env.body["status"]), reason=str(env.body.get("reason", "rpc"))
        )
        await rt.bus.publish_event(
            INVENTORY_CHANGED, Envelope("inventory.changed", env.request_id, {"eui": eui})
        )
        return {"ok": True}

    requests = InventoryRequests(store, on_change=publish_changes)
    ordering = HubOrderingRequests(hub_ordering(store, settings), on_change=publish_changes)
    rollout = RolloutRequests(rollout_reporting(store, settings))
    schedules = DspSchedules(store)
    firmware = FirmwareRequests(FirmwareStore(store, settings.data_dir / "firmware"))

    # DSP schedules: each due run goes into the pipeline as the User Gateway sends a User's SR.
    register = ParticipantRegister(settings.home)

    def find_user(eui: str) -> tuple[str, frozenset[UserRole]] | None:
        found = next((p for p in register.all().values() if p.eui == eui.upper()), None)
        return (found.user_id, found.roles) if found else None

    async def publish_accepted(request_id: str, body: dict[str, Any]) -> None:
        with request_context(request_id):
            await rt.bus.publish(SR_ACCEPTED, Envelope("sr.accepted", request_id, body))
            log.info("scheduled service request sent", extra={"srv": body["srv"]})

    schedule_clock = accelerated_clock(
        settings.inventory_schedule_clock_speed,
        origin_file=settings.data_dir / "dsp-schedule-clock-origin",
    )
    runner = ScheduleRunner(
        schedules, PipelineFirer(store, find_user, publish_accepted), clock=schedule_clock
    )
    rt.spawn(
        run_scheduler(
            runner,
            stopping=rt.stopping,
            interval=settings.inventory_schedule_interval_s,
            on_error=lambda exc: log.error("DSP schedule tick failed", exc_info=exc),
        ),
        "dsp-schedules",
    )

    def over_bus(method: Any) -> Any:
        async def handler(env: Envelope) -> dict[str, Any]:
            result: dict[str, Any] = await method(env.body)
            return result

        return handler

    methods = (
        requests.methods()
        | ordering.methods()
        | rollout.methods()
        | ScheduleRequests(schedules, clock=schedule_clock).methods()
        | firmware.methods()
    )
    handlers = {name: over_bus(m) for name, m in methods.items()}
    handlers |= {"device.lookup": lookup, "device.set_status": set_status}
    rt.bus.serve_rpc(INVENTORY_REQUESTS, handlers)


def run(settings: InventorySettings | None = None) -> None:
    settings = settings or InventorySettings()
    run_until_complete(
        run_service("inventory", settings, settings.inventory_metrics_port, _setup), settings
    )
