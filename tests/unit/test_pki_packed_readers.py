"""Device credentials issued in bulk (packs) are served like any others: the SMKI Repository
finds and returns them, and ``dccsim pki show`` lists them."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from lxml import etree

from dccsim.cli import main
from dccsim.config import CommonSettings
from dccsim.pki.devpki import PkiLayout, init_pki, issue_device_estate
from dccsim.pki.smki import KeyUsage
from services.smki_repository.app import build_app

DEVICES = [(0x00DCC500_00000100 + kind).to_bytes(8, "big") for kind in range(4)]
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def layout(tmp_path: Path) -> PkiLayout:
    layout = init_pki(tmp_path)
    report = issue_device_estate(tmp_path, DEVICES, workers=1)
    assert report.packs == 1
    return layout


@pytest.fixture
async def client(layout: PkiLayout) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = build_app(CommonSettings(home=layout.home), layout.keystore())
    async with TestClient(TestServer(app)) as client:
        yield client


def _request(root: str, **fields: str) -> str:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="utf-8"?><{root}>{inner}</{root}>'


async def test_the_repository_finds_and_returns_a_packed_device_certificate(
    client: TestClient,  # type: ignore[type-arg]
    layout: PkiLayout,
) -> None:
    response = await client.post(
        "/services/certificatesearch",
        data=_request(
            "CertificateSearchRequest", CertificateSubjectAltName="00-DC-C5-00-00-00-01-02"
        ),
        headers=XML,
    )
    assert response.status == 200
    results = etree.fromstring(await response.read()).findall("Result")
    found = {r.findtext("CertificateUsage"): r.findtext("CertificateSerial") for r in results}
    store = layout.keystore()
    packed = store.packed(DEVICES[2], KeyUsage.KA)
    assert packed is not None
    ka = x509.load_der_x509_certificate(packed[1])
    assert found == {
        "DS": format(store.certificate(DEVICES[2], KeyUsage.DS).serial_number, "X"),
        "KA": format(ka.serial_number, "X"),
    }

    response = await client.post(
        "/services/retrievecertificate",
        data=_request("CertificateDataRequest", CertificateSerial=found["KA"] or ""),
        headers=XML,
    )
    assert response.status == 200
    body = etree.fromstring(await response.read()).findtext("CertificateResponse/CertificateBody")
    assert body is not None and base64.b64decode(body) == packed[1]  # the pack's DER, as issued


def test_pki_show_lists_packed_device_credentials(
    layout: PkiLayout, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DCCSIM_HOME", str(layout.home))
    assert main(["pki", "show", "--eui", "00-DC-C5-00-00-00-01-03"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "00-DC-C5" in line]
    assert [line.split()[1] for line in lines] == ["ds", "ka"]
    serial = layout.keystore().certificate(DEVICES[3], KeyUsage.DS).serial_number
    assert main(["pki", "show", "--serial", hex(serial)]) == 0
    assert "00-DC-C5-00-00-00-01-03" in capsys.readouterr().out
