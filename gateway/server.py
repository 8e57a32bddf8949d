"""gateway/: the SM WAN gateway emulator. A TLS server standing in for a CSP network and every hub
behind it, hosting the estate's emulated devices (emulators/) in one process.

Per hub, one command at a time (a real Communications Hub serialises). Device models are built
lazily on their first command, from the estate file and the key store, so an idle device costs
only its estate entry. A device that discards a command (bad MAC, replay, untrusted party) raises
its GBCS alert to the DCC side and the command is answered ``E21`` at once (a real CSP would let
the deadline pass; the outcome the User sees is the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import Counter, Gauge

from dccsim import estate
from dccsim.config import GatewaySettings
from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.pki.dccki import server_ssl_context
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.keystore import KeyStore, KeyStoreError
from dccsim.pki.smki import KeyUsage
from dccsim.runtime import ServiceRuntime, run_service
from dccsim.smi import DeviceType
from dccsim.wanlink import LinkError, encode_frame, read_frame
from emulators.device import DeviceRefusal, GbcsDevice, RemoteParty
from emulators.esme import Esme, LoadProfile

log = logging.getLogger(__name__)

# Registers are derived from the clock since this instant, so they agree across restarts.
REGISTER_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
REPLAY_CACHE_SIZE = 64


@dataclass
class HostedDevice:
    eui: bytes
    device_type: DeviceType
    hub_eui: bytes
    registrations: dict[str, str]
    model: GbcsDevice | None = None
    # command digest -> response: a repeated command (WAN redelivery) gets the same answer
    replies: OrderedDict[bytes, bytes] | None = None


class Estate:
    """The devices this gateway hosts, their hubs' locks and their models."""

    def __init__(self, keystore: KeyStore, clock: Callable[[], dt.datetime]) -> None:
        self.keystore = keystore
        self.clock = clock
        self.devices: dict[bytes, HostedDevice] = {}
        self.hub_locks: dict[bytes, asyncio.Lock] = {}
        self._acb_ka: ec.EllipticCurvePublicKey | None = None

    def load(self, premises: list[estate.Premises]) -> None:
        for p in premises:
            hub = parse_eui(p.hub_eui)
            for d in p.devices:
                eui = parse_eui(d.eui)
                self.devices[eui] = HostedDevice(eui, d.device_type, hub, dict(p.registrations))

    def _public_ka(self, eui: bytes) -> ec.EllipticCurvePublicKey:
        key = self.keystore.certificate(eui, KeyUsage.KA).public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyStoreError(f"{eui.hex()} KA key is not EC")
        return key

    def _private(self, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePrivateKey:
        key = self.keystore.private_key(eui, usage)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyStoreError(f"{eui.hex()} {usage} private key is not EC")
        return key

    def model(self, device: HostedDevice) -> GbcsDevice:
        if device.model is not None:
            return device.model
        if self._acb_ka is None:
            self._acb_ka = self._public_ka(DCC_EUI)
        parties = {}
        for user in set(device.registrations.values()):
            user_eui = parse_eui(user)
            with contextlib.suppress(KeyStoreError):
                parties[user_eui] = RemoteParty(user_eui, self._public_ka(user_eui))
        if device.device_type is not DeviceType.ESME:
            raise DeviceRefusal(0x8F1E, f"no emulator for {device.device_type.value} yet")
        device.model = Esme(
            eui=device.eui,
            ka_private_key=self._private(device.eui, KeyUsage.KA),
            ds_private_key=self._private(device.eui, KeyUsage.DS),
            acb_ka_public=self._acb_ka,
            remote_parties=parties,
            clock=self.clock,
            load_profile=LoadProfile.from_seed(zlib.crc32(device.eui)),
            epoch=REGISTER_EPOCH,
        )
        device.replies = OrderedDict()
        return device.model


class GatewayMetrics:
    def __init__(self, rt: ServiceRuntime, hosted: Estate) -> None:
        r = rt.metrics.registry
        self.commands = Counter(
            "dccsim_gateway_commands", "Commands handled, by outcome", ["outcome"], registry=r
        )
        self.connections = Gauge("dccsim_gateway_connections", "Open WAN connections", registry=r)
        devices = Gauge(
            "dccsim_gateway_devices_hosted", "Devices in this gateway's estate", registry=r
        )
        devices.set_function(lambda: float(len(hosted.devices)))


class GatewayServer:
    def __init__(self, hosted: Estate, metrics: GatewayMetrics, latency_s: float) -> None:
        self.estate = hosted
        self.metrics = metrics
        self.latency_s = latency_s

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.metrics.connections.inc()
        tasks: set[asyncio.Task[None]] = set()
        write_lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with write_lock:
                writer.write(encode_frame(message))
                await writer.drain()

        try:
            while True:
                message = await read_frame(reader)
                if message.get("t") != "cmd":
                    continue
                task = asyncio.create_task(self._command(message, send))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (LinkError, OSError) as exc:
            log.info("WAN connection closed", extra={"reason": str(exc)})
        except asyncio.CancelledError:
            pass  # the server is shutting down
        finally:
            self.metrics.connections.dec()
            for task in tasks:
                task.cancel()
            writer.close()

    async def _command(self, message: dict[str, Any], send: Any) -> None:
        cid = message.get("id")
        try:
            reply = await self.execute(message)
        except Exception as exc:  # a bug in a model must not kill the connection
            log.exception("device model failed")
            reply = {"t": "err", "code": "E21", "reason": f"device model error: {exc}"}
        reply["id"] = cid
        with contextlib.suppress(OSError, LinkError):
            await send(reply)
        if "alert" in reply:
            with contextlib.suppress(OSError, LinkError):
                await send(
                    {
                        "t": "alert",
                        "device": message.get("device"),
                        "rid": message.get("rid"),
                        "alert_code": reply.pop("alert"),
                    }
                )

    async def execute(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            eui = parse_eui(str(message.get("device")))
        except Exception:
            self.metrics.commands.labels("unknown_device").inc()
            return {"t": "err", "code": "E20", "reason": "no device EUI in the command"}
        device = self.estate.devices.get(eui)
        if device is None:
            self.metrics.commands.labels("unknown_device").inc()
            return {"t": "err", "code": "E20", "reason": "device not on this network"}
        frame = message.get("frame")
        if not isinstance(frame, bytes):
            return {"t": "err", "code": "E21", "reason": "command carried no frame"}
        lock = self.estate.hub_locks.setdefault(device.hub_eui, asyncio.Lock())
        async with lock:  # one command at a time per Communications Hub
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            digest = hashlib.sha256(frame).digest()
            try:
                model = self.estate.model(device)
                assert device.replies is not None
                cached = device.replies.get(digest)
                if cached is not None:
                    self.metrics.commands.labels("replayed_reply").inc()
                    return {"t": "rsp", "frame": cached}
                response = model.handle(frame)
            except DeviceRefusal as refusal:
                self.metrics.commands.labels("refused").inc()
                return {
                    "t": "err",
                    "code": "E21",
                    "alert": refusal.alert_code,
                    "reason": f"device discarded the command: {refusal.reason}",
                }
            device.replies[digest] = response
            while len(device.replies) > REPLAY_CACHE_SIZE:
                device.replies.popitem(last=False)
        self.metrics.commands.labels("response").inc()
        return {"t": "rsp", "frame": response}


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, GatewaySettings)
    start = time.perf_counter()
    hosted = Estate(KeyStore(settings.keystore_dir), lambda: dt.datetime.now(dt.UTC))
    hosted.load(estate.load(settings.home))
    metrics = GatewayMetrics(rt, hosted)
    server = GatewayServer(hosted, metrics, settings.gateway_latency_ms / 1000.0)
    pki = PkiLayout.of(settings.home)
    ctx = server_ssl_context(
        pki.gateway_server_cert, pki.gateway_server_key, pki.tls_ca, require_client_cert=True
    )
    srv = await asyncio.start_server(
        server.handle_connection, settings.gateway_host, settings.gateway_port, ssl=ctx, backlog=256
    )

    async def close() -> None:
        srv.close()
        await srv.wait_closed()

    rt.cleanups.append(close)
    log.info(
        "SM WAN gateway listening",
        extra={
            "address": f"{settings.gateway_host}:{settings.gateway_port}",
            "devices": len(hosted.devices),
            "startup_s": round(time.perf_counter() - start, 3),
        },
    )


def run(settings: GatewaySettings | None = None) -> None:
    settings = settings or GatewaySettings()
    asyncio.run(
        run_service("gateway", settings, settings.gateway_metrics_port, _setup, use_bus=False)
    )
