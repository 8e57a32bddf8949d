"""``dccsim pki``: the development PKI from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from dccsim import config


def _home() -> Any:
    return config.CommonSettings().home


def _serial(text: str) -> int:
    """A certificate serial in decimal, or hex with 0x (as ``pki show`` prints it)."""
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a serial (decimal, or 0x hex)") from None


def _eui(text: str) -> bytes:
    cleaned = text.replace("-", "").replace(":", "")
    try:
        eui = bytes.fromhex(cleaned)
    except ValueError:
        eui = b""
    if len(eui) != 8:
        raise argparse.ArgumentTypeError(f"{text!r} is not an EUI-64 (8 hex octets)")
    return eui


def _print_report(report: Any) -> None:
    # The report's warnings are printed below; the importer's log lines would repeat them.
    logging.getLogger("dccsim.pki.external").setLevel(logging.ERROR)
    for credential in report.imported:
        mark = "*" if credential.primary else " "
        key = "key" if credential.has_private_key else "   "
        print(
            f" {mark} {credential.eui.hex('-').upper()}  {credential.usage.value:<8} {key}  "
            f"{credential.serial:#034x}  {credential.name}"
        )
    for item, reason in report.skipped:
        print(f"   skipped {item}: {reason}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(report.summary() + " (* = the credential the key store answers with)")


def cmd_import_zaz1(args: argparse.Namespace) -> int:
    from dccsim.pki.devpki import PkiLayout
    from dccsim.pki.external import import_zaz1

    folder = Path(args.dir)
    json_path = Path(args.json) if args.json else None
    if json_path is None and (folder.parent / "zaz1-keystore.json").is_file():
        json_path = folder.parent / "zaz1-keystore.json"
    store = PkiLayout.of(_home()).keystore()
    _print_report(import_zaz1(store, folder, json_path, make_primary=args.primary))
    print(f"legacy test set (expiry not enforced) imported into {store.root}")
    return 0


def cmd_import_rtds(args: argparse.Namespace) -> int:
    from dccsim.pki.devpki import PkiLayout
    from dccsim.pki.external import import_rtds_keystore

    store = PkiLayout.of(_home()).keystore()
    _print_report(import_rtds_keystore(store, Path(args.dir), make_primary=args.primary))
    print(f"legacy test set (expiry not enforced) imported into {store.root}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from dccsim.pki.crl import RevocationError, reason_from
    from dccsim.pki.revocation import revoke

    try:
        result = revoke(_home(), args.serial, reason_from(args.reason))
    except RevocationError as error:
        print(f"dccsim pki revoke: {error}", file=sys.stderr)
        return 2
    revocation = result.revocation
    state = "already revoked" if result.already else "revoked"
    print(
        f"{revocation.kind.upper()} certificate {revocation.serial} ({revocation.serial:#x}) "
        f"{state} at {revocation.revoked_at:%Y-%m-%dT%H:%M:%SZ}, reason {revocation.reason.value}"
    )
    if result.crl_path is not None:
        print(f"CRL published: {result.crl_path}")
    else:
        print(f"no CRL published: dccsim does not hold the key of its CA ({revocation.authority})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from dccsim.pki.crl import RevocationRegister
    from dccsim.pki.devpki import PkiLayout
    from dccsim.pki.revocation import status_of

    layout = PkiLayout.of(_home())
    store = layout.keystore()
    register = RevocationRegister(layout.revocations)
    if args.serial is not None:
        found = store.by_serial(args.serial)
        entries = (
            [found] if found is not None and (args.eui is None or found.eui == args.eui) else []
        )
    else:
        entries = store.find(args.eui)
    if not entries:
        print("no matching certificates in " + str(store.root), file=sys.stderr)
        return 1
    header = f"{'EUI':<24}{'usage':<10}{'role':<6}{'serial':<36}{'notAfter':<12}{'status':<10}name"
    print(header)
    for entry in entries:
        status = status_of(entry, register)
        role = "" if entry.role is None else f"{entry.role:02X}"
        flags = status.name.lower().replace("_", "-") + ("*" if entry.legacy else "")
        print(
            f"{entry.eui.hex('-').upper():<24}{entry.usage.value:<10}{role:<6}"
            f"{entry.serial:#034x}  {entry.certificate.not_valid_after_utc:%Y-%m-%d}  "
            f"{flags:<10}{entry.name or entry.label or ''}"
        )
    if any(entry.legacy for entry in entries):
        print("* legacy test set: expiry not enforced")
    return 0


def cmd_issue_devices(args: argparse.Namespace) -> int:
    from dccsim import estate
    from dccsim.pki.devpki import PkiError, issue_devices

    home = _home()
    premises = estate.load(home)
    euis = [_eui(device.eui) for p in premises for device in p.devices]
    if not euis:
        print(f"no devices in {estate.estate_path(home)} (run `dccsim seed`)", file=sys.stderr)
        return 1
    start = time.perf_counter()
    done = 0
    try:
        for offset in range(0, len(euis), args.chunk):
            chunk = euis[offset : offset + args.chunk]
            issue_devices(home, chunk)
            done += len(chunk)
            if len(euis) > args.chunk:
                rate = done / max(time.perf_counter() - start, 1e-9)
                print(f"  {done}/{len(euis)} devices ({rate:.0f}/s)", file=sys.stderr)
    except PkiError as error:
        print(f"dccsim pki issue-devices: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"device credentials (DS + KA) ready for {len(euis)} devices in {elapsed:.1f} s")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from dccsim.pki.cos import ensure_transitional_cos
    from dccsim.pki.devpki import init_pki

    layout = init_pki(_home(), hostnames=args.hostname, ips=args.ip)
    ensure_transitional_cos(_home())  # the DCC's Transitional CoS Party (6.23)
    print(f"development PKI ready under {layout.pki_dir}")
    print(f"  DCCKI CA      {layout.dccki_ca_cert}")
    print(f"  SMKI CAs      {layout.smki_ca_bundle}")
    print(f"  key store     {layout.keystore_dir}")
    return 0


def cmd_issue_party(args: argparse.Namespace) -> int:
    from dccsim.duis.catalogue import UserRole
    from dccsim.pki.smki import Role
    from dccsim.seed import seed_participant

    role = {
        "supplier": Role.SUPPLIER,
        "network-operator": Role.NETWORK_OPERATOR,
        "other": Role.OTHER,
    }[args.role]
    user_roles = {
        "supplier": {UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER},
        "network-operator": {UserRole.ELECTRICITY_DISTRIBUTOR, UserRole.GAS_TRANSPORTER},
        "other": {UserRole.OTHER_USER},
    }[args.role]
    out = seed_participant(
        _home(),
        eui=args.eui,
        user_id=args.user_id,
        roles=frozenset(user_roles),
        role=role,
        response_url=args.response_url,
    )
    print(f"participant {args.user_id} ({args.eui}) bundle: {out} (see its README.md)")
    return 0


def register(sub: Any) -> None:
    """Add the ``pki`` command group to the dccsim CLI."""
    pki = sub.add_parser("pki", help="the development PKI (SMKI and DCCKI)")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    init = pki_sub.add_parser("init", help="create the development PKI (idempotent)")
    init.add_argument("--hostname", action="append", help="server certificate DNS name")
    init.add_argument("--ip", action="append", help="server certificate IP address")
    init.set_defaults(func=cmd_init)
    party = pki_sub.add_parser("issue-party", help="issue a participant's credentials bundle")
    party.add_argument("--eui", required=True, help="EUI-64, e.g. 90-B3-D5-1F-30-01-00-00")
    party.add_argument(
        "--role", choices=["supplier", "network-operator", "other"], default="supplier"
    )
    party.add_argument("--user-id", required=True, help="DCC User ID (the TLS identity)")
    party.add_argument("--response-url", help="the participant's Receive Response Service")
    party.set_defaults(func=cmd_issue_party)

    from dccsim.pki.crl import REASONS

    zaz1 = pki_sub.add_parser("import-zaz1", help="import DCC's ZAZ1 test SMKI set (legacy)")
    zaz1.add_argument("dir", help="the ZAZ1 folder (<name>.pem + <name>.key)")
    zaz1.add_argument(
        "--json",
        help="DCC Boxed's key store JSON (default: zaz1-keystore.json "
        "beside the folder, when there)",
    )
    zaz1.add_argument(
        "--primary",
        action="store_true",
        help="make ZAZ1's credentials replace dccsim's own for the same EUI",
    )
    zaz1.set_defaults(func=cmd_import_zaz1)
    rtds = pki_sub.add_parser("import-rtds", help="import the RTDS device key store (legacy)")
    rtds.add_argument("dir", help="the RTDS keystore folder (<eui>-ds.pem, <eui>-ka.key...)")
    rtds.add_argument(
        "--primary",
        action="store_true",
        help="make RTDS's credentials replace dccsim's own for the same EUI",
    )
    rtds.set_defaults(func=cmd_import_rtds)
    revoke = pki_sub.add_parser("revoke", help="revoke an SMKI or DCCKI certificate; publish CRL")
    revoke.add_argument("--serial", type=_serial, required=True, help="decimal, or 0x hex")
    revoke.add_argument("--reason", default="unspecified", help=f"one of {', '.join(REASONS)}")
    revoke.set_defaults(func=cmd_revoke)
    show = pki_sub.add_parser("show", help="what the key store holds")
    show.add_argument("--eui", type=_eui, help="only this EUI-64")
    show.add_argument("--serial", type=_serial, help="only this serial (decimal, or 0x hex)")
    show.set_defaults(func=cmd_show)
    devices = pki_sub.add_parser(
        "issue-devices", help="issue DS + KA credentials for every device in the test estate"
    )
    source = devices.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-estate", action="store_true", help="the devices of $DCCSIM_HOME/estate.json"
    )
    source.add_argument(
        "--from-inventory",
        action="store_true",
        help="the same estate file the inventory imports (alias)",
    )
    devices.add_argument("--chunk", type=int, default=2000, help="devices per progress line")
    devices.set_defaults(func=cmd_issue_devices)
