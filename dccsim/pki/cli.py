"""``dccsim pki``: the development PKI from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from dccsim import config


def _home() -> Any:
    return config.CommonSettings().home


def cmd_init(args: argparse.Namespace) -> int:
    from dccsim.pki.devpki import init_pki

    layout = init_pki(_home(), hostnames=args.hostname, ips=args.ip)
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
