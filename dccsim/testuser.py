"""A test User System: what a participant's own system does, built from its dccsim bundle.

It signs DUIS requests with the participant's XML-signing key, sends them over mutual TLS with its
DCCKI client certificate, keeps its RequestID counter, and runs a Receive Response Service (an
HTTPS server) that collects the asynchronous Responses. Used by ``dccsim send``, ``dccsim
receive``, the end-to-end tests, the benchmark and the locust load tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis import xmldsig
from dccsim.duis.catalogue import lookup
from dccsim.duis.requestid import RequestId, format_eui, parse_eui
from dccsim.duis.xml import DuisResponse, build_service_request, parse_response, to_bytes
from dccsim.gbcs.crypto import ecdsa_sign_raw
from dccsim.pki.dccki import client_ssl_context, server_ssl_context
from dccsim.pki.files import load_certificate, load_private_key


def bundle_dir(home: Path, eui: str) -> Path:
    return home / "participants" / eui.replace("-", "").upper()


@dataclass
class TestUser:
    """A participant's credentials and its RequestID counter."""

    __test__ = False  # not a pytest class

    user_id: str
    eui: str
    bundle: Path
    xml_key: ec.EllipticCurvePrivateKey
    xml_cert: x509.Certificate
    counter: int = field(default_factory=lambda: time.time_ns() // 1000)

    @classmethod
    def load(cls, bundle: Path) -> TestUser:
        """Load a participant bundle written by ``dccsim seed`` / ``dccsim pki issue-party``."""
        meta = json.loads((bundle / "participant.json").read_text())
        key = load_private_key(bundle / "xml-sign.key")
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{bundle}/xml-sign.key is not an EC private key")
        return cls(
            user_id=meta["user_id"],
            eui=meta["eui"],
            bundle=bundle,
            xml_key=key,
            xml_cert=load_certificate(bundle / "xml-sign.pem"),
        )

    def ds_key(self) -> ec.EllipticCurvePrivateKey:
        """The participant's SMKI Digital Signing key (``ds.key``): it signs Pre-Commands."""
        key = load_private_key(self.bundle / "ds.key")
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.bundle}/ds.key is not an EC private key")
        return key

    def sign_pre_command(self, pre_command: bytes) -> bytes:
        """The Signed Pre-Command: ``pre_command`` + ``40`` + the DS signature (r‖s) over
        everything after its leading ``DF`` (GBCS General Signing)."""
        return pre_command + b"\x40" + ecdsa_sign_raw(self.ds_key(), pre_command[1:])

    def signed_pre_command_request(
        self,
        srv: str,
        request_id: RequestId,
        signed_pre_command: bytes,
        *,
        command_variant: int = 5,
    ) -> bytes:
        """The signed CV 5 (6, 7) request carrying ``signed_pre_command``, with the RequestID of
        the CV 4 request its Pre-Command answered."""
        payload = base64.b64encode(signed_pre_command).decode("ascii")
        body = (
            f'<sr:SignedPreCommand xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway">'
            f"<sr:GBCSPayload>{payload}</sr:GBCSPayload></sr:SignedPreCommand>"
        ).encode()
        _, document = self.service_request(
            srv,
            format_eui(request_id.target),
            command_variant=command_variant,
            body_xml=body,
            request_id=request_id,
        )
        return document

    def client_ssl(self) -> ssl.SSLContext:
        b = self.bundle
        return client_ssl_context(b / "tls-client.pem", b / "tls-client.key", b / "dccki-ca.pem")

    def receiver_ssl(self) -> ssl.SSLContext:
        b = self.bundle
        return server_ssl_context(
            b / "receiver.pem", b / "receiver.key", b / "dccki-ca.pem", require_client_cert=False
        )

    def next_request_id(self, target: str) -> RequestId:
        self.counter += 1
        return RequestId(parse_eui(self.eui), parse_eui(target), self.counter)

    def service_request(
        self,
        srv: str,
        target: str,
        *,
        command_variant: int = 1,
        body_xml: bytes | None = None,
        request_id: RequestId | None = None,
    ) -> tuple[RequestId, bytes]:
        """A signed DUIS request for ``srv`` to device ``target``."""
        row = lookup(srv)
        if row is None:
            raise ValueError(f"SRV {srv} is not in dccsim's catalogue")
        rid = request_id or self.next_request_id(target)
        body = body_xml or (
            f'<sr:{row.body_element} xmlns:sr="http://www.dccinterface.co.uk/'
            f'ServiceUserGateway"/>'.encode()
        )
        root = build_service_request(
            request_id=rid,
            command_variant=command_variant,
            service_reference=row.reference,
            service_reference_variant=row.variant,
            body_xml=body,
        )
        signed = xmldsig.sign(root, private_key=self.xml_key, certificate=self.xml_cert)
        return rid, to_bytes(signed)


async def post(session: aiohttp.ClientSession, url: str, document: bytes) -> DuisResponse:
    async with session.post(
        url, data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        text = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status} {resp.reason}: {text[:200]!r}")
        return parse_response(text)


@dataclass
class ReceivedResponse:
    at: float
    raw: bytes
    response: DuisResponse


class ResponseReceiver:
    """The User's Receive Response Service: an HTTPS server collecting what the DCC sends."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_receive: Callable[[ReceivedResponse], None] | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.host, self.port = host, port
        self.received: list[ReceivedResponse] = []
        self.by_request: dict[str, list[ReceivedResponse]] = {}
        self.on_receive = on_receive
        self.fail_with: int | None = None  # set to an HTTP status to refuse deliveries
        self._runner: web.AppRunner | None = None
        self._event = asyncio.Event()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}/receive"

    async def _receive(self, request: web.Request) -> web.Response:
        if self.fail_with is not None:
            return web.Response(status=self.fail_with, text="receiver refusing (test)")
        raw = await request.read()
        item = ReceivedResponse(time.perf_counter(), raw, parse_response(raw))
        self.received.append(item)
        rid = item.response.request_id
        self.by_request.setdefault(str(rid) if rid else "", []).append(item)
        if self.on_receive:
            self.on_receive(item)
        self._event.set()
        return web.Response(status=200)

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/receive", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, request_id: str, timeout: float = 30.0) -> ReceivedResponse:
        async with asyncio.timeout(timeout):
            while request_id not in self.by_request:
                self._event.clear()
                await self._event.wait()
        return self.by_request[request_id][0]
