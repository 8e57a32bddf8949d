"""``dccsim estate seed``: the inventory, the estate file and, by default, device credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccsim import estate
from dccsim.cli import main
from dccsim.duis.requestid import parse_eui
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import CertificateAuthority, KeyUsage, profile_problems, verify_issued_by
from dccsim.smi import DeviceType


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DCCSIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DCCSIM_DEBUG", "1")
    return tmp_path / "home"


def test_seed_issues_every_credential_bearing_device_its_ds_and_ka(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["estate", "seed", "--premises", "6", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "24 devices, 48 issued, 0 already held" in out
    layout = PkiLayout.of(home)
    ca = CertificateAuthority.load(layout.smki_device_ca_cert, layout.smki_device_ca_key)
    store = KeyStore(layout.keystore_dir)
    premises = estate.load(home)
    assert len(premises) == 6
    for device in (d for p in premises for d in p.devices):
        eui = parse_eui(device.eui)
        for usage in (KeyUsage.DS, KeyUsage.KA):
            if device.device_type is DeviceType.IHD:
                assert (eui, usage) not in store  # a Type 2 device holds no credentials
                continue
            entry = store.get(eui, usage)
            assert entry.private_key is not None
            assert profile_problems(entry.certificate) == []
            assert verify_issued_by(entry.certificate, ca.certificate)

    assert main(["estate", "seed", "--premises", "6"]) == 0
    assert "24 devices, 0 issued, 48 already held" in capsys.readouterr().out


def test_seed_without_certificates_issues_none(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["estate", "seed", "--premises", "2", "--no-certificates"]) == 0
    assert "device credentials" not in capsys.readouterr().out
    assert not (PkiLayout.of(home).keystore_dir / "packs").exists()
