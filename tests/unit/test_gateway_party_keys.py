"""The gateway looks a remote party's certificates up again when the key store lacked them: a
User onboarded after the gateway started is trusted once its certificates are stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import gateway.hosting as hosting
from dccsim.pki.devpki import init_pki, issue_party
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import Role
from gateway.hosting import DeviceModels, EstateIndex
from services.inventory.seed import estate_premises
from tests.unit.test_gateway_estate import GAS_NOW, GAS_SUPPLIER


def _models(home: Path) -> DeviceModels:
    index = EstateIndex.from_premises([estate_premises(1)])
    return DeviceModels(index, KeyStore(home / "pki" / "keystore"), lambda: GAS_NOW, capacity=10)


def test_a_party_whose_certificates_arrive_later_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_pki(tmp_path)
    models = _models(tmp_path)
    eui = GAS_SUPPLIER
    assert models._party(eui) is None and models._party_ds(eui) is None
    issue_party(tmp_path, eui=GAS_SUPPLIER, role=Role.SUPPLIER, user_id="s", out_dir=tmp_path / "s")
    # within the miss window the answer is the remembered miss (no key-store read per model)
    assert models._party(eui) is None
    monkeypatch.setattr(hosting, "PARTY_MISS_S", 0.0)
    ka, ds = models._party(eui), models._party_ds(eui)
    assert isinstance(ka, ec.EllipticCurvePublicKey) and isinstance(ds, ec.EllipticCurvePublicKey)
    assert ka != ds
    # a key once found is kept
    monkeypatch.setattr(hosting, "PARTY_MISS_S", 3600.0)
    assert models._party(eui) is ka
