"""The SMKI Repository: look certificates up in the key store the way DCC Boxed serves them.

Two endpoints, as on DCC Boxed (port 8083, ``?apikey=`` accepted and ignored), so DCC's own
tooling (dccboxed-keystore) can query dccsim:

- ``POST /services/certificatesearch``: ``CertificateSearchRequest`` with
  ``CertificateSubjectName`` (an organisation's EUI-64, ``90-B3-D5-1F-30-01-00-00``) or
  ``CertificateSubjectAltName`` (a device's EUI-64), optionally narrowed by ``CertificateUsage``
  (DS|KA), ``CertificateRole`` (decimal) and ``CertificateStatus`` (P|I|N|E|R). Answers a
  ``CertificateSearchResponse`` with a ``Result`` per certificate: ``CertificateSerial`` (upper-case
  hex), the subject (alt) name, ``CertificateStatus``, ``CertificateRole`` (organisations only),
  ``CertificateUsage`` and ``ManufacturingFlag``.
- ``POST /services/retrievecertificate``: ``CertificateDataRequest`` with ``CertificateSerial``
  (hex) answers a ``CertificateDataResponse`` whose ``CertificateResponse`` adds
  ``CertificateBody``, the DER certificate as base64.

Bodies are XML (``application/xml``, DCC Boxed's form) or JSON (``application/json``, an object of
the same field names); the answer comes in the form asked. As on DCC Boxed, nothing found is
HTTP 402 and invalid parameters are HTTP 401, with a ``ResponseMessage`` naming the problem.
Status comes from the revocation register, read afresh when it changes, so a ``dccsim pki revoke``
shows at once. XML-signing certificates are reported with usage DS (they are digital-signing).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from dccsim.config import CommonSettings, SmkiRepositorySettings
from dccsim.duis.codes import DuisError
from dccsim.duis.xml import parse_safely
from dccsim.pki.crl import RevocationRegister
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.keystore import Entry, KeyStore
from dccsim.pki.revocation import CertificateStatus, status_of
from dccsim.pki.smki import KeyUsage, is_device_certificate
from dccsim.runtime import ServiceRuntime, run_service, run_until_complete

STORE: web.AppKey[KeyStore] = web.AppKey("store", KeyStore)
REGISTER: web.AppKey[RevocationRegister] = web.AppKey("register", RevocationRegister)

_MAX_BODY = 64 * 1024
_SUBJECT = "CertificateSubjectName"
_ALT_NAME = "CertificateSubjectAltName"


class RepositoryError(Exception):
    """An answer other than success: HTTP status (DCC Boxed's 401 or 402) and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _invalid(message: str) -> RepositoryError:
    return RepositoryError(401, message)


@dataclass(frozen=True)
class _Request:
    fields: dict[str, str]
    json: bool


async def _read(request: web.Request, root_name: str) -> _Request:
    body = await request.content.read(_MAX_BODY + 1)
    if len(body) > _MAX_BODY:
        raise _invalid(f"request body over {_MAX_BODY} bytes")
    if request.content_type == "application/json":
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _invalid("body is not JSON") from None
        if isinstance(data, dict) and isinstance(data.get(root_name), dict):
            data = data[root_name]
        if not isinstance(data, dict):
            raise _invalid(f"body is not a {root_name} object")
        return _Request({str(k): str(v) for k, v in data.items() if v is not None}, json=True)
    try:
        root = parse_safely(body)
    except DuisError as error:
        raise _invalid(f"body is not safe, well-formed XML: {error}") from None
    if etree.QName(root).localname != root_name:
        raise _invalid(f"root element is {etree.QName(root).localname}, not {root_name}")
    fields = {
        etree.QName(child).localname: (child.text or "").strip()
        for child in root
        if isinstance(child.tag, str)
    }
    return _Request(fields, json=False)


def _eui(text: str, field: str) -> bytes:
    octets = text.split("-")
    try:
        eui = bytes(int(octet, 16) for octet in octets) if len(octets) == 8 else b""
    except ValueError:
        eui = b""
    if len(eui) != 8 or any(len(octet) != 2 for octet in octets):
        raise _invalid(f"{field} {text!r} is not an EUI-64 written as 8 hex octets joined by '-'")
    return eui


def _wire_usage(entry: Entry) -> str:
    return "KA" if entry.usage is KeyUsage.KA else "DS"


def _describe(entry: Entry, status: CertificateStatus) -> dict[str, str]:
    device = is_device_certificate(entry.certificate)
    result = {
        "CertificateSerial": format(entry.serial, "X"),
        _ALT_NAME if device else _SUBJECT: entry.eui.hex("-").upper(),
        "CertificateStatus": status.value,
    }
    if not device and entry.role is not None:
        result["CertificateRole"] = str(entry.role)
    result["CertificateUsage"] = _wire_usage(entry)
    result["ManufacturingFlag"] = "false"
    return result


def _filter(fields: dict[str, str], name: str, allowed: Callable[[str], bool]) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not allowed(value):
        raise _invalid(f"{name} {value!r} is not valid")
    return value


def search(
    store: KeyStore, register: RevocationRegister, fields: dict[str, str]
) -> list[dict[str, str]]:
    """The Results for a CertificateSearchRequest's fields; RepositoryError 401 or 402."""
    subject, alt_name = fields.get(_SUBJECT), fields.get(_ALT_NAME)
    if (subject is None) == (alt_name is None):
        raise _invalid(f"give exactly one of {_SUBJECT} or {_ALT_NAME}")
    device = alt_name is not None
    eui = _eui(alt_name or "", _ALT_NAME) if device else _eui(subject or "", _SUBJECT)
    usage = _filter(fields, "CertificateUsage", lambda v: v in ("DS", "KA"))
    role = _filter(fields, "CertificateRole", lambda v: v.isdigit() and int(v) <= 0xFF)
    wanted_status = _filter(
        fields, "CertificateStatus", lambda v: v in {s.value for s in CertificateStatus}
    )
    results = []
    for entry in store.find(eui):
        if is_device_certificate(entry.certificate) != device:
            continue
        result = _describe(entry, status_of(entry, register))
        if usage is not None and result["CertificateUsage"] != usage:
            continue
        if role is not None and result.get("CertificateRole") != str(int(role)):
            continue
        if wanted_status is not None and result["CertificateStatus"] != wanted_status:
            continue
        results.append(result)
    if not results:
        raise RepositoryError(402, f"no certificate matches {eui.hex('-').upper()}")
    return results


def retrieve(
    store: KeyStore, register: RevocationRegister, fields: dict[str, str]
) -> dict[str, str]:
    """The CertificateResponse for a CertificateDataRequest's fields; RepositoryError 401 or 402."""
    text = fields.get("CertificateSerial", "").strip()
    try:
        serial = int(text.removeprefix("0x").removeprefix("0X"), 16)
    except ValueError:
        raise _invalid(f"CertificateSerial {text!r} is not a hexadecimal serial") from None
    entry = store.by_serial(serial)
    if entry is None:
        raise RepositoryError(402, f"no certificate with serial {text}")
    result = _describe(entry, status_of(entry, register))
    der = entry.certificate.public_bytes(Encoding.DER)
    result["CertificateBody"] = base64.b64encode(der).decode()
    return result


def _header(code: int, message: str) -> dict[str, str]:
    return {
        "ResponseCode": str(code),
        "ResponseMessage": message,
        "AuditReference": uuid.uuid4().hex,
    }


def _xml(root_name: str, header: dict[str, str], items: list[tuple[str, dict[str, str]]]) -> bytes:
    root = etree.Element(root_name)
    for name, value in header.items():
        etree.SubElement(root, name).text = value
    for name, fields in items:
        element = etree.SubElement(root, name)
        for key, value in fields.items():
            etree.SubElement(element, key).text = value
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True))


def _answer(
    asked: _Request | None,
    root_name: str,
    status: int,
    message: str,
    items: list[tuple[str, dict[str, str]]],
) -> web.Response:
    header = _header(status, message)
    if asked is not None and asked.json:
        body: dict[str, Any] = dict(header)
        for name, fields in items:
            if name == "Result":
                body.setdefault("Result", []).append(fields)
            else:
                body[name] = fields
        return web.json_response({root_name: body}, status=status)
    return web.Response(
        body=_xml(root_name, header, items),
        status=status,
        content_type="application/xml",
        charset="utf-8",
    )


def _handler(
    request_root: str,
    response_root: str,
    work: Callable[
        [KeyStore, RevocationRegister, dict[str, str]], list[tuple[str, dict[str, str]]]
    ],
) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        asked: _Request | None = None
        try:
            asked = await _read(request, request_root)
            fields = asked.fields
            # Reading certificates is file I/O: keep it off the event loop.
            items = await asyncio.to_thread(work, request.app[STORE], request.app[REGISTER], fields)
        except RepositoryError as error:
            if asked is None and request.content_type == "application/json":
                asked = _Request({}, json=True)
            return _answer(asked, response_root, error.status, error.message, [])
        return _answer(asked, response_root, 200, "Success", items)

    return handle


def build_app(settings: CommonSettings, store: KeyStore) -> web.Application:
    """The SMKI Repository over store, with statuses from the revocation register under
    settings.home (``pki/revocations.jsonl``)."""
    app = web.Application(client_max_size=_MAX_BODY)
    app[STORE] = store
    app[REGISTER] = RevocationRegister(PkiLayout.of(settings.home).revocations)
    app.router.add_post(
        "/services/certificatesearch",
        _handler(
            "CertificateSearchRequest",
            "CertificateSearchResponse",
            lambda s, r, f: [("Result", result) for result in search(s, r, f)],
        ),
    )
    app.router.add_post(
        "/services/retrievecertificate",
        _handler(
            "CertificateDataRequest",
            "CertificateDataResponse",
            lambda s, r, f: [("CertificateResponse", retrieve(s, r, f))],
        ),
    )
    return app


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, SmkiRepositorySettings)
    store = KeyStore(settings.keystore_dir)
    runner = web.AppRunner(build_app(settings, store), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.smki_repository_host, settings.smki_repository_port).start()
    rt.cleanups.append(runner.cleanup)


def run(settings: SmkiRepositorySettings | None = None) -> None:
    settings = settings or SmkiRepositorySettings()
    run_until_complete(
        run_service(
            "smki_repository",
            settings,
            settings.smki_repository_metrics_port,
            _setup,
            use_bus=False,
        ),
        settings,
    )
