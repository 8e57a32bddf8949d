"""``dccsim estate``: the test estate in the Smart Metering Inventory from the command line.

``dccsim estate seed --premises N [--suppliers K] [--fresh] [--no-estate-file]
[--no-certificates] [--workers W]`` creates premises 1..N (hub CHF + GPF, ESME, GSME, IHD, MPAN,
MPRN, registrations to the demo Suppliers) in the inventory database (``inventory_db_url`` or
``$DCCSIM_HOME/data/inventory.db``), writes the same estate to ``$DCCSIM_HOME/estate.json`` for
the gateway emulator, and issues the SMKI DS and KA credentials of every device that has them
(all but the IHDs) into the key store (``dccsim.pki.devpki.issue_device_estate``: W worker
processes, default one a CPU, running while this process fills the database and writes the
estate file). Credentials the key store already holds are kept, so a rerun only completes.

Communications Hub ordering and roll-out reporting run the same methods as the RPC interface
(``services.inventory.ch_orders``, ``services.inventory.rollout``) on the inventory database and
print the reply as JSON; a refusal prints its reason and window and exits 1::

    dccsim estate ch-window --month 2027-11
    dccsim estate ch-location --party EUI --id DEPOT1 --postcode "EH1 1AA" --region North
    dccsim estate ch-forecast --party EUI --month 2027-11 --quantity North=100 [--at ISO]
    dccsim estate ch-order --party EUI --month 2027-11 --location DEPOT1 --quantity 100
    dccsim estate ch-deliver --order 1 [--quantity 40]
    dccsim estate ch-orders [--party EUI] [--month 2027-11]
    dccsim estate rollout-milestone --supplier EUI --year 2027 --electricity N --gas N
    dccsim estate rollout-report --year 2027 [--supplier EUI] [--csv FILE | --csv -]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
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


def credential_euis(premises: list[Any]) -> list[bytes]:
    """The EUIs of the devices in premises that hold SMKI credentials: all but the IHDs (a GBCS
    Type 2 device has none, emulators/ihd.py)."""
    from dccsim.duis.requestid import parse_eui
    from dccsim.smi import DeviceType

    return [
        parse_eui(d.eui) for p in premises for d in p.devices if d.device_type is not DeviceType.IHD
    ]


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cmd_seed(args: argparse.Namespace) -> int:
    from dccsim import estate
    from services.inventory.seed import estate_premises

    settings = config.InventorySettings()
    start, cpu = time.perf_counter(), _cpu_seconds()
    premises = [estate_premises(n, suppliers=args.suppliers) for n in range(1, args.premises + 1)]
    issuing = None
    if not args.no_certificates:
        from dccsim.pki.devpki import DeviceEstateIssue, init_pki

        init_pki(settings.home)
        # Started first: its workers take the other CPU while this process fills the database.
        issuing = DeviceEstateIssue(settings.home, credential_euis(premises), workers=args.workers)
    try:
        code = asyncio.run(_seed(args, settings))
        if not args.no_estate_file:
            started = time.perf_counter()
            with estate.locked(settings.home):
                estate.save(settings.home, premises)
            elapsed = time.perf_counter() - started
            print(f"estate file: {estate.estate_path(settings.home)} ({elapsed:.1f} s)")
    except BaseException:
        if issuing is not None:
            issuing.cancel()  # rather than issue the lot before the error is shown
        raise
    if issuing is not None:
        report = issuing.wait()
        print(
            f"device credentials (DS + KA): {report.devices} devices, {report.issued} issued, "
            f"{report.held} already held, in {report.seconds:.1f} s "
            f"({report.cpu_seconds:.1f} CPU s, in {report.packs} packs)"
        )
    print(
        f"seeded in {time.perf_counter() - start:.1f} s ({_cpu_seconds() - cpu:.1f} CPU s "
        f"on {os.cpu_count()} CPUs)"
    )
    return code


async def _ordering_call(
    settings: config.InventorySettings, method: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Run one ``ch.*`` or ``rollout.*`` method on the inventory database."""
    from services.inventory.app import hub_ordering, inventory_url, rollout_reporting
    from services.inventory.ch_orders import HubOrderingRequests
    from services.inventory.rollout import RolloutRequests
    from services.inventory.store import SmartMeteringInventory

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    inventory = SmartMeteringInventory(inventory_url(settings))
    try:
        await inventory.create_schema()
        methods = (
            HubOrderingRequests(hub_ordering(inventory, settings)).methods()
            | RolloutRequests(rollout_reporting(inventory, settings)).methods()
        )
        return await methods[method](body)
    finally:
        await inventory.close()


def _run(method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = asyncio.run(_ordering_call(config.InventorySettings(), method, body))
    return (0 if reply.get("code") == "I0" else 1), reply


def _print(method: str, body: dict[str, Any]) -> int:
    code, reply = _run(method, body)
    print(json.dumps(reply, indent=2), file=sys.stdout if code == 0 else sys.stderr)
    return code


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def cmd_ch_window(args: argparse.Namespace) -> int:
    return _print("ch.window", {"delivery_month": args.month})


def cmd_ch_location(args: argparse.Namespace) -> int:
    body = _given(
        party=args.party,
        location_id=args.id,
        name=args.name,
        postcode=args.postcode,
        csp_region=args.region,
    )
    return _print("ch.location.add", body)


def _quantities(pairs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pair in pairs:
        region, sep, n = pair.partition("=")
        if not sep:
            raise SystemExit(f"--quantity takes REGION=N, not {pair!r}")
        out[region] = int(n)
    return out


def cmd_ch_forecast(args: argparse.Namespace) -> int:
    body = _given(
        party=args.party,
        delivery_month=args.month,
        quantities=_quantities(args.quantity),
        submitted_at=args.at,
    )
    return _print("ch.forecast.submit", body)


def cmd_ch_order(args: argparse.Namespace) -> int:
    body = _given(
        party=args.party,
        delivery_month=args.month,
        location_id=args.location,
        quantity=args.quantity,
        hub_variant=args.variant,
        submitted_at=args.at,
    )
    return _print("ch.order.submit", body)


def cmd_ch_deliver(args: argparse.Namespace) -> int:
    body = _given(order_id=args.order, quantity=args.quantity, delivered_at=args.at)
    return _print("ch.delivery.record", body)


def cmd_ch_orders(args: argparse.Namespace) -> int:
    return _print("ch.orders.list", _given(party=args.party, delivery_month=args.month))


def cmd_rollout_milestone(args: argparse.Namespace) -> int:
    body = _given(
        supplier=args.supplier,
        year=args.year,
        electricity=args.electricity,
        gas=args.gas,
        tolerance=args.tolerance,
    )
    return _print("rollout.milestone.set", body)


def cmd_rollout_report(args: argparse.Namespace) -> int:
    from services.inventory.rollout import csv_from_wire

    if args.csv is None:
        return _print("rollout.report", _given(year=args.year, supplier=args.supplier))
    code, reply = _run("rollout.report", _given(year=args.year, supplier=args.supplier))
    if code != 0:
        print(json.dumps(reply, indent=2), file=sys.stderr)
        return code
    text = csv_from_wire(reply["suppliers"])
    if args.csv == "-":
        sys.stdout.write(text)
    else:
        Path(args.csv).write_text(text, encoding="utf-8")
        print(f"roll-out report {args.year}: {len(reply['suppliers'])} suppliers -> {args.csv}")
    return 0


def _register_ordering(group_sub: Any) -> None:
    window = group_sub.add_parser("ch-window", help="the submission window for a delivery month")
    window.add_argument("--month", required=True, help="delivery month YYYY-MM")
    window.set_defaults(func=cmd_ch_window)

    location = group_sub.add_parser(
        "ch-location", help="add a Communications Hub delivery location"
    )
    location.add_argument("--party", required=True, help="the ordering Party's EUI")
    location.add_argument("--id", required=True, help="the location's identifier")
    location.add_argument("--name", help="a name (default: the identifier)")
    location.add_argument("--postcode", required=True)
    location.add_argument("--region", required=True, help="CSP region: North, Central, South")
    location.set_defaults(func=cmd_ch_location)

    forecast = group_sub.add_parser(
        "ch-forecast", help="submit a monthly Communications Hub forecast"
    )
    forecast.add_argument("--party", required=True)
    forecast.add_argument("--month", required=True, help="delivery month YYYY-MM")
    forecast.add_argument(
        "--quantity", action="append", required=True, help="REGION=N, once per CSP region"
    )
    forecast.add_argument("--at", help="submission time, ISO 8601 (default now)")
    forecast.set_defaults(func=cmd_ch_forecast)

    order = group_sub.add_parser("ch-order", help="order Communications Hubs for a delivery month")
    order.add_argument("--party", required=True)
    order.add_argument("--month", required=True, help="delivery month YYYY-MM")
    order.add_argument("--location", required=True, help="one of the Party's delivery locations")
    order.add_argument("--quantity", type=int, required=True)
    order.add_argument("--variant", help="hub variant (default standard)")
    order.add_argument("--at", help="submission time, ISO 8601 (default now)")
    order.set_defaults(func=cmd_ch_order)

    deliver = group_sub.add_parser("ch-deliver", help="deliver an order's hubs into the inventory")
    deliver.add_argument("--order", type=int, required=True, help="order id")
    deliver.add_argument("--quantity", type=int, help="hubs delivered (default: all outstanding)")
    deliver.add_argument("--at", help="delivery time, ISO 8601 (default now)")
    deliver.set_defaults(func=cmd_ch_deliver)

    orders = group_sub.add_parser("ch-orders", help="orders, deliveries and returns")
    orders.add_argument("--party")
    orders.add_argument("--month", help="delivery month YYYY-MM")
    orders.set_defaults(func=cmd_ch_orders)

    milestone = group_sub.add_parser("rollout-milestone", help="set a Supplier's annual milestone")
    milestone.add_argument("--supplier", required=True)
    milestone.add_argument("--year", type=int, required=True)
    milestone.add_argument("--electricity", type=int, required=True)
    milestone.add_argument("--gas", type=int, required=True)
    milestone.add_argument("--tolerance", type=float, help="fraction, e.g. 0.05 (default setting)")
    milestone.set_defaults(func=cmd_rollout_milestone)

    report = group_sub.add_parser("rollout-report", help="Relevant Meters installed per Supplier")
    report.add_argument("--year", type=int, required=True)
    report.add_argument("--supplier")
    report.add_argument("--csv", help="write CSV to FILE ('-' for stdout) instead of JSON")
    report.set_defaults(func=cmd_rollout_report)


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
        "--no-certificates",
        action="store_true",
        help="do not issue the devices' SMKI credentials (issued by default)",
    )
    seed.add_argument(
        "--certificates",
        action="store_true",
        help=argparse.SUPPRESS,  # the default now; kept so older scripts still run
    )
    seed.add_argument(
        "--workers", type=int, help="processes issuing device credentials (default: one a CPU)"
    )
    seed.set_defaults(func=cmd_seed)
    _register_ordering(group_sub)
