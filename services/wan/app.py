"""services/wan: the CSP adapter. Routes each GBCS command to the gateway that hosts the target's
hub, holds its deadline, and publishes the device's response, a timeout (E21) or an unreachable
device (E20). The command is acked only after its outcome is published, so a crash mid-flight
leaves it to be redelivered (the gateway answers a repeated command from its replay cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from dccsim.bus import Envelope
from dccsim.bus.topology import GBCS_ALERT, GBCS_RESPONSE, WAN_COMMANDS
from dccsim.config import WanSettings
from dccsim.pki.dccki import client_ssl_context
from dccsim.pki.devpki import PkiLayout
from dccsim.runtime import ServiceRuntime, run_service
from dccsim.wanlink import LinkError, encode_frame, read_frame

log = logging.getLogger(__name__)


class GatewayUnreachable(ConnectionError):
    pass


class GatewayLink:
    """One multiplexed TLS connection to a gateway emulator, re-opened on demand."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        connect_timeout: float,
        on_alert: Any,
    ) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.on_alert = on_alert
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.connected = False

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, ssl=self.ssl_context),
                    self.connect_timeout,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                raise GatewayUnreachable(
                    f"gateway {self.host}:{self.port} unreachable: {exc}"
                ) from exc
            self._writer = writer
            self.connected = True
            self._reader_task = asyncio.create_task(self._read(reader, writer))
            log.info("connected to gateway", extra={"gateway": f"{self.host}:{self.port}"})
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                message = await read_frame(reader)
                if message.get("t") == "alert":
                    await self.on_alert(message)
                    continue
                future = self._pending.pop(int(message.get("id", -1)), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (LinkError, OSError) as exc:
            log.warning("gateway link lost", extra={"error": str(exc)})
        finally:
            self.connected = False
            if self._writer is writer:
                self._writer = None
            writer.close()
            for future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(GatewayUnreachable("gateway link lost"))
            self._pending.clear()

    async def send(self, command: dict[str, Any], deadline_s: float) -> dict[str, Any]:
        """Send one command and wait for its answer; the deadline covers reconnecting too."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline_s
        while True:
            try:
                writer = await self._connect()
                break
            except GatewayUnreachable:
                if loop.time() + 0.5 >= give_up:
                    raise
                await asyncio.sleep(0.5)
        deadline_s = max(0.001, give_up - loop.time())
        cid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[cid] = future
        try:
            writer.write(encode_frame({**command, "t": "cmd", "id": cid, "deadline_s": deadline_s}))
            await writer.drain()
            return await asyncio.wait_for(future, deadline_s)
        finally:
            self._pending.pop(cid, None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task


class WanMetrics:
    def __init__(self, rt: ServiceRuntime, link: GatewayLink) -> None:
        r = rt.metrics.registry
        self.outcomes = Counter(
            "dccsim_wan_commands", "Commands sent to devices, by outcome", ["outcome"], registry=r
        )
        self.round_trip = Histogram(
            "dccsim_wan_round_trip_seconds",
            "Command to device response",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 25),
            registry=r,
        )
        connected = Gauge(
            "dccsim_wan_gateway_connected", "1 while the gateway link is up", registry=r
        )
        connected.set_function(lambda: 1.0 if link.connected else 0.0)


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, WanSettings)
    pki = PkiLayout.of(settings.home)
    ctx = client_ssl_context(pki.wan_client_cert, pki.wan_client_key, pki.tls_ca)

    async def on_alert(message: dict[str, Any]) -> None:
        await rt.bus.publish(
            GBCS_ALERT,
            Envelope(
                "gbcs.alert",
                str(message.get("rid", "")),
                {"device_eui": message.get("device"), "frame": message.get("frame")},
            ),
        )

    link = GatewayLink(
        settings.wan_gateway_host,
        settings.wan_gateway_port,
        ctx,
        settings.wan_connect_timeout_s,
        on_alert,
    )
    rt.cleanups.append(link.close)
    metrics = WanMetrics(rt, link)

    async def on_command(env: Envelope) -> None:
        body = env.body
        passthrough = {
            k: body.get(k)
            for k in ("srv", "user_id", "user_eui", "received_at", "use_case", "device_eui")
        }
        deadline = settings.wan_deadline_s
        start = time.perf_counter()
        outcome: dict[str, Any]
        try:
            reply = await link.send(
                {
                    "hub": body.get("hub_eui"),
                    "device": body.get("device_eui"),
                    "frame": body["frame"],
                    "rid": env.request_id,
                },
                deadline,
            )
            if reply.get("t") == "rsp":
                outcome = {"frame": reply["frame"]}
                metrics.outcomes.labels("response").inc()
            else:
                outcome = {
                    "error": str(reply.get("code", "E20")),
                    "reason": str(reply.get("reason", "")),
                }
                metrics.outcomes.labels(outcome["error"]).inc()
        except TimeoutError:
            outcome = {"error": "E21", "reason": f"no response within {deadline:g} s"}
            metrics.outcomes.labels("E21").inc()
        except GatewayUnreachable as exc:
            outcome = {"error": "E20", "reason": str(exc)}
            metrics.outcomes.labels("E20").inc()
        metrics.round_trip.observe(time.perf_counter() - start)
        await rt.bus.publish(
            GBCS_RESPONSE, Envelope("gbcs.response", env.request_id, {**passthrough, **outcome})
        )

    rt.bus.consume(WAN_COMMANDS, on_command)


def run(settings: WanSettings | None = None) -> None:
    settings = settings or WanSettings()
    asyncio.run(run_service("wan", settings, settings.wan_metrics_port, _setup))
