"""services/inventory: the Smart Metering Inventory behind an RPC interface.

RPC methods (routing key ``rpc.inventory``): ``device.lookup {eui}`` -> ``{device: record|None}``.
Every change publishes ``inventory.changed {eui}`` so the gateways' caches drop stale entries.
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
from services.inventory.store import InventoryStore

log = logging.getLogger(__name__)


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, InventorySettings)
    store = InventoryStore(settings.inventory_db_url or settings.sqlite_url("inventory"))
    await store.create_schema()
    added = await store.import_estate(estate.load(settings.home))
    log.info("inventory open", extra={"devices": await store.count(), "imported": added})
    rt.cleanups.append(store.close)

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

    rt.bus.serve_rpc(INVENTORY_REQUESTS, {"device.lookup": lookup, "device.set_status": set_status})


def run(settings: InventorySettings | None = None) -> None:
    settings = settings or InventorySettings()
    asyncio.run(run_service("inventory", settings, settings.inventory_metrics_port, _setup))
