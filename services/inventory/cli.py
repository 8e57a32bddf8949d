"""``dccsim estate``: the test estate in the Smart Metering Inventory from the command line.

``dccsim estate seed --premises N [--suppliers K] [--fresh] [--no-estate-file] [--certificates]``
creates premises 1..N (hub CHF + GPF, ESME, GSME, IHD, MPAN, MPRN, registrations to the demo
Suppliers) in the inventory database (``inventory_db_url`` or ``$DCCSIM_HOME/data/inventory.db``),
writes the same estate to ``$DCCSIM_HOME/estate.json`` for the gateway emulator, and with
``--certificates`` issues every device's SMKI certificates (much slower).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from dccsim import config


async def _seed(args: argparse.Namespace, settings: config.InventorySettings) -> int:
    from services.inventory.app import inventory_url
    from services.inventory.seed import seed_estate
    from services.inventory.store import SmartMeteringInventory

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    inventory = SmartMeteringInventory(inventory_url(settings))
    try:
        if args.fresh:
            await inventory.drop_schema()
        await inventory.create_schema()
        report = await seed_estate(inventory, premises=args.premises, suppliers=args.suppliers)
    finally:
        await inventory.close()
    print(
        f"inventory: {report.premises} premises, {report.devices} devices, "
        f"{report.registrations} registrations in {report.seconds:.1f} s "
        f"({report.premises_per_second:,.0f} premises/s)"
    )
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from dccsim import estate
    from dccsim.duis.requestid import parse_eui
    from services.inventory.seed import estate_premises

    settings = config.InventorySettings()
    code = asyncio.run(_seed(args, settings))
    premises = [estate_premises(n, suppliers=args.suppliers) for n in range(1, args.premises + 1)]
    if not args.no_estate_file:
        start = time.perf_counter()
        estate.save(settings.home, premises)
        elapsed = time.perf_counter() - start
        print(f"estate file: {estate.estate_path(settings.home)} ({elapsed:.1f} s)")
    if args.certificates:
        from dccsim.pki.devpki import init_pki, issue_devices

        start = time.perf_counter()
        init_pki(settings.home)
        euis = [parse_eui(d.eui) for p in premises for d in p.devices]
        issue_devices(settings.home, euis)
        elapsed = time.perf_counter() - start
        print(f"device certificates: {len(euis)} devices in {elapsed:.1f} s")
    return code


def register(sub: Any) -> None:
    """Add the ``estate`` command group to the dccsim CLI."""
    group = sub.add_parser("estate", help="the test estate in the Smart Metering Inventory")
    group_sub = group.add_subparsers(dest="estate_command", required=True)
    seed = group_sub.add_parser("seed", help="create premises with their devices, fast")
    seed.add_argument("--premises", type=int, required=True, help="number of premises")
    seed.add_argument("--suppliers", type=int, default=1, help="demo Suppliers, round robin")
    seed.add_argument("--fresh", action="store_true", help="drop the inventory first")
    seed.add_argument(
        "--no-estate-file", action="store_true", help="do not write estate.json for the gateway"
    )
    seed.add_argument(
        "--certificates", action="store_true", help="also issue device certificates (slow)"
    )
    seed.set_defaults(func=cmd_seed)
