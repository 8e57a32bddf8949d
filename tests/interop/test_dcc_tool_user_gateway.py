"""End to end: a request signed by DCC's signing tool goes through the real User Gateway, and the
signed answer it gets back passes the tool's validation.

A whole installation (tests/system.py) with the ZAZ1 set imported into its key store and ZAZ1's
supplier (90-B3-D5-1F-30-01-00-00) registered as a User with its own DCCKI client certificate;
the tool signs with its own ZAZ1 key for that EUI and picks the RequestID counter itself (the
time in ms), as a User System using it would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from dccsim.duis.catalogue import UserRole
from dccsim.duis.requestid import DCC_EUI
from dccsim.duis.xml import SR_NS, parse_response, parse_safely, to_bytes
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.external import import_zaz1
from dccsim.pki.smki import KeyUsage
from dccsim.seed import seed_participant
from dccsim.testuser import TestUser
from tests.interop.signing_tool import SUCCESS, SigningTool
from tests.system import System

pytestmark = [pytest.mark.interop, pytest.mark.e2e, pytest.mark.rabbitmq]

ZAZ1_SUPPLIER = "90-B3-D5-1F-30-01-00-00"
READ_INVENTORY = "8.2_READ_INVENTORY_REQUEST_DUIS.XML"


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, reference_dir: Path, signing_tool: SigningTool
) -> Iterator[System]:
    sys_ = System(tmp_path_factory.mktemp("dccsim-home"))
    try:
        sys_.start()
        seed_participant(
            sys_.home,
            eui=ZAZ1_SUPPLIER,
            user_id="zaz1-supplier",
            roles=frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER}),
        )
        smki = reference_dir / "smki"
        # As `dccsim pki import-zaz1` does: dccsim's own identities stay primary.
        import_zaz1(PkiLayout.of(sys_.home).keystore(), smki / "zaz1", smki / "zaz1-keystore.json")
        yield sys_
    finally:
        sys_.stop()


def _read_inventory_request(reference_dir: Path, device: str) -> bytes:
    """DCC's 8.2 template, asking about one of the installation's devices."""
    root = parse_safely((reference_dir / "duis" / "templates" / READ_INVENTORY).read_bytes())
    device_id = root.find(f".//{{{SR_NS}}}ReadInventory/{{{SR_NS}}}DeviceID")
    assert device_id is not None
    device_id.text = device
    return to_bytes(root)


async def test_a_request_signed_by_dccs_tool_is_answered_and_the_answer_passes_the_tool(
    system: System, reference_dir: Path, signing_tool: SigningTool, tmp_path: Path
) -> None:
    (signed,) = signing_tool.sign(
        [_read_inventory_request(reference_dir, system.esmes()[0])], preserve_counter=False
    )
    assert signed.exit_code == SUCCESS, signed.describe()
    counter = int(_request_counter(signed.output))
    assert counter > 1000  # the tool chose the counter (the time in ms)

    # The same request altered after the tool signed it: refused for its signature (E1).
    altered = parse_safely(signed.output)
    device_id = altered.find(f".//{{{SR_NS}}}DeviceID")
    assert device_id is not None
    device_id.text = "00-DB-12-34-56-78-90-A2"  # the template's own, not the one signed

    user = TestUser.load(system.home / "participants" / ZAZ1_SUPPLIER.replace("-", ""))
    connector = aiohttp.TCPConnector(ssl=user.client_ssl())
    async with aiohttp.ClientSession(connector=connector) as session:
        refused = parse_response(await _post(session, system.url("serviceD"), to_bytes(altered)))
        body = await _post(session, system.url("serviceD"), signed.output)
    assert refused.response_code == "E1"
    response = parse_response(body)
    assert response.response_code == "I0", body.decode()
    assert response.request_id is not None and response.request_id.counter == counter
    assert response.body_name == "ResponseMessage"

    # The answer is signed with the installation's own DSP XML-signing key, which the tool's
    # library does not hold: it is given the certificate, as a User is given the DSP's.
    dsp = PkiLayout.of(system.home).keystore().get(DCC_EUI, KeyUsage.XML_SIGN)
    certificate = tmp_path / "dsp-xml-sign.pem"
    certificate.write_bytes(dsp.certificate_path.read_bytes())
    (validated,) = signing_tool.validate([body], certificate=certificate)
    assert validated.signature_ok, validated.describe()


async def _post(session: aiohttp.ClientSession, url: str, data: bytes) -> bytes:
    headers = {"Content-Type": "application/xml"}
    async with session.post(url, data=data, headers=headers) as answer:
        return await answer.read()


def _request_counter(request: bytes) -> str:
    found = parse_safely(request).find(f".//{{{SR_NS}}}Header/{{{SR_NS}}}RequestID")
    assert isinstance(found, etree._Element) and found.text is not None
    return found.text.rsplit(":", 1)[1]
