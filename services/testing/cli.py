"""``dccsim gfi`` and ``dccsim ssi``: GFI and SSI logins from the command line.

    dccsim gfi generate --device EUI --recipient EUI [--use-case ECS17b|alert] [--counter N]
                        [--active-import WH] [--reactive-import VARH] [--result N]
                        [--alert-code 0x8F66] [--date-time ISO]      prints the message (hex)
    dccsim gfi check MESSAGE|--file PATH [--command HEX] [--use-case NAME] [--last-counter N]
                                                                     prints the JSON report
    dccsim ssi link --user-id ID [--ttl-minutes 15]                  prints a one-time login URL

Keys come from the key store under ``$DCCSIM_HOME/pki/keystore``; ``gfi check`` exits 0 when
the message is conformant and 1 when it is not.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from dccsim import config


def _settings() -> config.TestingSettings:
    return config.TestingSettings()


def cmd_gfi_generate(args: argparse.Namespace) -> int:
    from dccsim.pki.keystore import KeyStore
    from services.testing import gfi

    settings = _settings()
    body: dict[str, Any] = {
        "use_case": args.use_case,
        "device": args.device,
        "recipient": args.recipient,
        "counter": args.counter,
        "active_import": args.active_import,
        "reactive_import": args.reactive_import,
        "secondary_active_import": args.secondary_active_import,
        "result": args.result,
        "alert_code": args.alert_code,
        "alert_data": args.alert_data,
        "date_time": args.date_time,
    }
    data = gfi.generate_from_json(
        KeyStore(settings.keystore_dir), body, now=dt.datetime.now(dt.UTC)
    )
    if args.base64:
        print(gfi.message_text(data)["base64"])
    else:
        print(data.hex().upper())
    return 0


def cmd_gfi_check(args: argparse.Namespace) -> int:
    from dccsim.pki.keystore import KeyStore
    from services.testing import gfi

    if args.file:
        message = Path(args.file).read_text()
    elif args.message == "-":
        message = sys.stdin.read()
    elif args.message:
        message = args.message
    else:
        print("dccsim gfi check: give a MESSAGE, '-' for stdin, or --file", file=sys.stderr)
        return 2
    body = {
        "message": message,
        "command": Path(args.command_file).read_text() if args.command_file else args.command,
        "use_case": args.use_case,
        "last_counter": args.last_counter,
    }
    report = gfi.check_from_json(KeyStore(_settings().keystore_dir), body)
    print(json.dumps(report.to_json(), indent=2))
    return 0 if report.conformant else 1


def cmd_ssi_link(args: argparse.Namespace) -> int:
    from dccsim import participants
    from dccsim.storage import create_engine
    from services.testing import store
    from services.testing.logins import Logins

    settings = _settings()
    if args.user_id not in participants.load(settings.home):
        print(f"dccsim ssi link: no participant {args.user_id!r} is registered", file=sys.stderr)
        return 2

    async def go() -> str:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.sqlite_url("testing"))
        try:
            await store.create_schema(engine)
            return await Logins(engine).create_link(
                args.user_id, ttl=dt.timedelta(minutes=args.ttl_minutes)
            )
        finally:
            await engine.dispose()

    token = asyncio.run(go())
    base = args.base_url or f"http://{settings.testing_host}:{settings.testing_port}"
    print(f"{base.rstrip('/')}/ssi/login?token={token}")
    return 0


def register(sub: Any) -> None:
    """Add the ``gfi`` and ``ssi`` command groups to the dccsim CLI."""
    gfi_parser = sub.add_parser("gfi", help="GBCS Interface Testing for Industry")
    gfi_sub = gfi_parser.add_subparsers(dest="gfi_command", required=True)

    gen = gfi_sub.add_parser("generate", help="generate a device response or alert")
    gen.add_argument("--use-case", choices=["ECS17b", "alert"], default="ECS17b")
    gen.add_argument("--device", required=True, help="device EUI-64 (its keys must be held)")
    gen.add_argument("--recipient", required=True, help="remote party EUI-64 (its KA cert)")
    gen.add_argument("--counter", default="1", help="originator counter (decimal or 0x..)")
    gen.add_argument("--active-import", default="0", help="ECS17b active import register")
    gen.add_argument("--reactive-import", default="0", help="ECS17b reactive import register")
    gen.add_argument("--secondary-active-import", help="ECS17b twin-element register")
    gen.add_argument("--result", default="0", help="ECS17b DLMS result (0 success)")
    gen.add_argument("--alert-code", default="0x8F66", help="alert code for --use-case alert")
    gen.add_argument("--alert-data", default="", help="alert data octets, hex")
    gen.add_argument("--date-time", help="device date-time, ISO 8601 (default now, UTC)")
    gen.add_argument("--base64", action="store_true", help="print base64 instead of hex")
    gen.set_defaults(func=cmd_gfi_generate)

    check = gfi_sub.add_parser("check", help="check a device-originated GBCS message")
    check.add_argument("message", nargs="?", help="the message, hex or base64, or '-' for stdin")
    check.add_argument("--file", help="read the message from a file (e.g. an RTDS .HEX)")
    check.add_argument("--command", help="the command it answers, hex or base64")
    check.add_argument("--command-file", help="read the command from a file")
    check.add_argument("--use-case", help="the use case it must be, e.g. ECS17b")
    check.add_argument("--last-counter", help="the last counter seen from this device")
    check.set_defaults(func=cmd_gfi_check)

    ssi = sub.add_parser("ssi", help="the Self-Service Interface portal")
    ssi_sub = ssi.add_subparsers(dest="ssi_command", required=True)
    link = ssi_sub.add_parser("link", help="print a one-time login link for a participant")
    link.add_argument("--user-id", required=True, help="the participant's DCC User ID")
    link.add_argument("--ttl-minutes", type=float, default=15.0)
    link.add_argument("--base-url", help="the portal's base URL (default: this installation's)")
    link.set_defaults(func=cmd_ssi_link)
