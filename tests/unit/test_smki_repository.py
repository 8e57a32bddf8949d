"""The SMKI Repository service: DCC Boxed's certificatesearch / retrievecertificate interface."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from lxml import etree

from dccsim.config import CommonSettings
from dccsim.pki.devpki import DCC_EUI, PkiLayout, init_pki, issue_device, issue_party
from dccsim.pki.revocation import revoke
from dccsim.pki.smki import KeyUsage, Role
from services.smki_repository.app import SmkiRepositorySettings, build_app

SUPPLIER = bytes.fromhex("90B3D51F30010000")
DEVICE = bytes.fromhex("00DCC50000000102")
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def layout(tmp_path: Path) -> PkiLayout:
    layout = init_pki(tmp_path)
    issue_party(
        tmp_path, eui=SUPPLIER, role=Role.SUPPLIER, user_id="SUPPLIER1", out_dir=tmp_path / "b"
    )
    issue_device(tmp_path, eui=DEVICE)
    return layout


@pytest.fixture
async def client(layout: PkiLayout) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = build_app(CommonSettings(home=layout.home), layout.keystore())
    async with TestClient(TestServer(app)) as client:
        yield client


def _request(root: str, **fields: str) -> str:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="utf-8"?><{root}>{inner}</{root}>'


def _results(body: bytes) -> list[dict[str, str]]:
    root = etree.fromstring(body)
    assert root.tag == "CertificateSearchResponse"
    return [
        {etree.QName(c).localname: c.text or "" for c in result}
        for result in root.findall("Result")
    ]


async def _search(client: TestClient, **fields: str) -> tuple[int, bytes]:  # type: ignore[type-arg]
    response = await client.post(
        "/services/certificatesearch?apikey=x",
        data=_request("CertificateSearchRequest", **fields),
        headers=XML,
    )
    return response.status, await response.read()


async def test_search_by_organisation_eui_lists_ds_ka_and_xml_sign_with_roles(
    client: TestClient,
    layout: PkiLayout,  # type: ignore[type-arg]
) -> None:
    status, body = await _search(client, CertificateSubjectName="90-B3-D5-1F-30-01-00-00")
    assert status == 200
    results = _results(body)
    store = layout.keystore()
    by_usage = {(r["CertificateUsage"], r["CertificateRole"]): r for r in results}
    assert set(by_usage) == {("DS", "2"), ("KA", "2"), ("DS", "135")}
    ds = store.get(SUPPLIER, KeyUsage.DS)
    assert by_usage[("DS", "2")]["CertificateSerial"] == format(ds.serial, "X")
    assert all(r["CertificateStatus"] == "I" for r in results)
    assert all(r["CertificateSubjectName"] == "90-B3-D5-1F-30-01-00-00" for r in results)


async def test_search_by_device_eui_in_subject_alt_name_has_no_role(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    status, body = await _search(client, CertificateSubjectAltName="00-DC-C5-00-00-00-01-02")
    assert status == 200
    results = _results(body)
    assert sorted(r["CertificateUsage"] for r in results) == ["DS", "KA"]
    assert all("CertificateRole" not in r for r in results)
    assert all(r["CertificateSubjectAltName"] == "00-DC-C5-00-00-00-01-02" for r in results)


async def test_a_device_eui_asked_as_subject_name_finds_nothing(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    status, _ = await _search(client, CertificateSubjectName="00-DC-C5-00-00-00-01-02")
    assert status == 402


async def test_retrieve_returns_the_der_certificate_as_base64(
    client: TestClient,
    layout: PkiLayout,  # type: ignore[type-arg]
) -> None:
    entry = layout.keystore().get(DCC_EUI, KeyUsage.XML_SIGN)
    response = await client.post(
        "/services/retrievecertificate",
        data=_request("CertificateDataRequest", CertificateSerial=format(entry.serial, "X")),
        headers=XML,
    )
    assert response.status == 200
    assert response.content_type == "application/xml"
    root = etree.fromstring(await response.read())
    assert root.findtext("ResponseCode") == "200"
    body = root.findtext("CertificateResponse/CertificateBody")
    assert body is not None
    assert x509.load_der_x509_certificate(base64.b64decode(body)) == entry.certificate
    assert root.findtext("CertificateResponse/CertificateRole") == "137"


async def test_revocation_changes_the_reported_status(
    client: TestClient,
    layout: PkiLayout,  # type: ignore[type-arg]
) -> None:
    ka = layout.keystore().get(SUPPLIER, KeyUsage.KA)
    revoke(layout.home, ka.serial, x509.ReasonFlags.key_compromise)
    _, body = await _search(client, CertificateSubjectName="90-B3-D5-1F-30-01-00-00")
    statuses = {
        r["CertificateUsage"] + r["CertificateRole"]: r["CertificateStatus"] for r in _results(body)
    }
    assert statuses == {"KA2": "R", "DS2": "I", "DS135": "I"}
    status, body = await _search(
        client, CertificateSubjectName="90-B3-D5-1F-30-01-00-00", CertificateStatus="R"
    )
    assert status == 200 and [r["CertificateUsage"] for r in _results(body)] == ["KA"]


async def test_filters_by_usage_and_role(client: TestClient) -> None:  # type: ignore[type-arg]
    status, body = await _search(
        client,
        CertificateSubjectName="90-B3-D5-1F-30-01-00-00",
        CertificateUsage="DS",
        CertificateRole="135",
    )
    assert status == 200 and len(_results(body)) == 1


async def test_json_bodies_get_json_answers(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.post(
        "/services/certificatesearch",
        json={"CertificateSearchRequest": {"CertificateSubjectAltName": "00-DC-C5-00-00-00-01-02"}},
    )
    assert response.status == 200
    body = await response.json()
    results = body["CertificateSearchResponse"]["Result"]
    assert sorted(r["CertificateUsage"] for r in results) == ["DS", "KA"]
    serial = results[0]["CertificateSerial"]
    response = await client.post(
        "/services/retrievecertificate", json={"CertificateSerial": serial}
    )
    data = (await response.json())["CertificateDataResponse"]["CertificateResponse"]
    assert (
        format(
            x509.load_der_x509_certificate(base64.b64decode(data["CertificateBody"])).serial_number,
            "X",
        )
        == serial
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of CertificateSubjectName or CertificateSubjectAltName"),
        ({"CertificateSubjectName": "90B3D51F30010000"}, "not an EUI-64"),
        (
            {"CertificateSubjectName": "90-B3-D5-1F-30-01-00-00", "CertificateUsage": "XX"},
            "CertificateUsage 'XX' is not valid",
        ),
    ],
)
async def test_invalid_searches_are_401_naming_the_problem(
    client: TestClient,
    fields: dict[str, str],
    message: str,  # type: ignore[type-arg]
) -> None:
    status, body = await _search(client, **fields)
    assert status == 401
    assert message in (etree.fromstring(body).findtext("ResponseMessage") or "")


async def test_an_unknown_serial_is_402_and_a_bad_one_401(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    for serial, code in (("ABCDEF", 402), ("not-hex", 401)):
        response = await client.post(
            "/services/retrievecertificate",
            data=_request("CertificateDataRequest", CertificateSerial=serial),
            headers=XML,
        )
        assert response.status == code


async def test_a_doctype_is_refused(client: TestClient) -> None:  # type: ignore[type-arg]
    body = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><CertificateSearchRequest/>'
    response = await client.post("/services/certificatesearch", data=body, headers=XML)
    assert response.status == 401


def test_settings_have_their_own_section_and_dcc_boxeds_port() -> None:
    settings = SmkiRepositorySettings()
    assert settings.section == "smki_repository"
    assert settings.smki_repository_port == 8083
