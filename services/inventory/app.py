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

Every change publishes ``inventory.changed {eui}`` for each device whose record changed, so the
gateways' caches drop stale entries.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dccsim import estate
from dccsim.bus import Envelope
from dccsim.bus.topology import INVENTORY_CHANGED, INVENTORY_REQUESTS
from dccsim.config import InventorySettings
from dccsim.runtime import ServiceRuntime, run_service
from dccsim.smi import DeviceStatus
from services.inventory.requests import InventoryRequests
from services.inventory.store import SmartMeteringInventory

log = logging.getLogger(__name__)


def inventory_url(settings: InventorySettings) -> str:
    return settings.inventory_db_url or settings.sqlite_url("inventory")


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, InventorySettings)
    store = SmartMeteringInventory(inventory_url(settings))
    await store.create_schema()
    added = await store.import_estate(estate.load(settings.home))
    log.info("inventory open", extra={"devices": await store.count(), "imported": added})
    rt.cleanups.append(store.close)

    async def publish_changes(euis: list[str]) -> None:
        for eui in euis:
            await rt.bus.publish_event(
                INVENTORY_CHANGED, Envelope("inventory.changed", "", {"eui": eui})
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

    def over_bus(method: Any) -> Any:
        async def handler(env: Envelope) -> dict[str, Any]:
            result: dict[str, Any] = await method(env.body)
            return result

        return handler

    handlers = {name: over_bus(m) for name, m in requests.methods().items()}
    handlers |= {"device.lookup": lookup, "device.set_status": set_status}
    rt.bus.serve_rpc(INVENTORY_REQUESTS, handlers)


def run(settings: InventorySettings | None = None) -> None:
    settings = settings or InventorySettings()
    asyncio.run(run_service("inventory", settings, settings.inventory_metrics_port, _setup))
