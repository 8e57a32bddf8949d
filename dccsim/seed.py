"""Seeding a development installation: PKI, the demo Supplier participant and a small estate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dccsim import estate, participants
from dccsim.duis.catalogue import UserRole
from dccsim.duis.requestid import parse_eui
from dccsim.pki.cos import ensure_transitional_cos
from dccsim.pki.dccki import issue_server_certificate
from dccsim.pki.devpki import PkiLayout, init_pki, issue_devices, issue_party
from dccsim.pki.smki import CertificateAuthority, Role
from dccsim.testuser import bundle_dir

DEMO_SUPPLIER_EUI = "90-B3-D5-1F-30-01-D0-00"
DEMO_SUPPLIER_ID = "demo-supplier"

_BUNDLE_NOTE = """

## Added by `dccsim seed`

- `participant.json`: this participant's DCC User ID, EUI-64 and User Roles as dccsim
  registered them.
- `receiver.pem`, `receiver.key`: a DCCKI server certificate for your Receive Response Service
  on localhost / 127.0.0.1 (what `dccsim receive` serves with); dccsim's delivery verifies it
  against the DCCKI CA.
"""


@dataclass(frozen=True)
class SeedResult:
    layout: PkiLayout
    supplier_bundle: Path
    premises: int
    devices: int


def seed_participant(
    home: Path,
    *,
    eui: str,
    user_id: str,
    roles: frozenset[UserRole],
    role: Role = Role.SUPPLIER,
    response_url: str | None = None,
) -> Path:
    """Issue (idempotently) a participant's bundle, register it, and return the bundle folder."""
    layout = init_pki(home)
    out = bundle_dir(home, eui)
    issue_party(home, eui=parse_eui(eui), role=role, user_id=user_id, out_dir=out)
    meta = {"user_id": user_id, "eui": eui.upper(), "roles": sorted(r.value for r in roles)}
    (out / "participant.json").write_text(json.dumps(meta, indent=2) + "\n")
    if not (out / "receiver.pem").is_file():
        ca = CertificateAuthority.load(layout.dccki_ca_cert, layout.dccki_ca_key)
        identity = issue_server_certificate(ca, hostnames=["localhost"], ip_addresses=["127.0.0.1"])
        identity.write(out / "receiver.pem", out / "receiver.key")
        readme = out / "README.md"
        if readme.is_file() and "dccsim seed" not in readme.read_text():
            readme.write_text(readme.read_text() + _BUNDLE_NOTE)
    existing = participants.load(home).get(user_id)
    url = (
        response_url if response_url is not None else (existing.response_url if existing else None)
    )
    participants.upsert(home, participants.Participant(user_id, eui.upper(), roles, url))
    return out


def supplier_eui(index: int) -> str:
    """The EUI of demo Supplier ``index`` (0 is the demo Supplier itself)."""
    return DEMO_SUPPLIER_EUI[:-2] + f"{index:02X}"


def supplier_id(index: int) -> str:
    return DEMO_SUPPLIER_ID if index == 0 else f"{DEMO_SUPPLIER_ID}-{index}"


def seed_demo(
    home: Path, *, premises: int | None = 3, response_url: str | None = None, suppliers: int = 1
) -> SeedResult:
    """The demo installation: PKI, ``suppliers`` demo Suppliers (the first is "the" demo
    Supplier) and ``premises`` premises shared among them round robin, each Supplier the
    Import Supplier and Gas Supplier of its premises (an ESME on the MPAN, a GSME and its GPF
    on the MPRN). ``premises=None`` keeps whatever estate is already seeded (only making sure
    its device credentials exist)."""
    if not 1 <= suppliers <= 256:
        raise ValueError("suppliers must be 1..256")
    layout = init_pki(home)
    ensure_transitional_cos(home)  # the DCC's CoS Party signs 6.23 (change of supplier)
    bundles = [
        seed_participant(
            home,
            eui=supplier_eui(i),
            user_id=supplier_id(i),
            roles=frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER}),
            response_url=response_url,
        )
        for i in range(suppliers)
    ]
    bundle = bundles[0]
    euis = [supplier_eui(i) for i in range(suppliers)]
    with estate.locked(home):
        current = estate.load(home)
        if premises is not None:
            wanted = estate.demo_estate(premises, supplier_euis=euis, gas=True)
            if current != wanted:
                current = wanted
                estate.save(home, current)
    devices = [parse_eui(d.eui) for p in current for d in p.devices]
    issue_devices(home, devices)
    return SeedResult(layout, bundle, len(current), len(devices))
