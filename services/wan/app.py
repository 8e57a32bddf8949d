"""services/wan: the CSP adapter. Routes each GBCS command to the gateway that hosts the target's
hub, holds its deadline, and publishes the device's response, a timeout (E21) or an unreachable
device (E20). The command is acked only after its outcome is published, so a crash mid-flight
leaves it to be redelivered (the gateway answers a repeated command from its replay cache).

Unsolicited alerts are at least once too: each alert a gateway sends carries its id, and the
link answers ``{"t": "alert_ack", "id": ...}`` only after the alert's ``gbcs.alert`` publish is
confirmed by the broker; until then the gateway keeps it (durably) and sends it again. A
repeated alert is the same device frame, so it collapses downstream (the same delivery key).
Alerts are published one at a time in the order they arrived, by a task of their own, so a slow
publish never holds up the command responses read from the same link.
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
from dccsim.runtime import ServiceRuntime, run_service, run_until_complete
from dccsim.wanlink import LinkError, encode_frame, read_frame

log = logging.getLogger(__name__)


RECONNECT_INTERVAL_S = 0.25


class GatewayUnreachable(ConnectionError):
    pass


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (or ``host``) as a pair."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host, int(port)


class GatewayPool:
    """One link per gateway emulator, and the route from a command to its gateway.

    ``routes`` maps a CSP region (``North``, ``Central``, ``South``) or a gateway name to
    ``host:port``. A command goes to the gateway its inventory record names (``gateway``, a
    name in ``routes`` or ``host:port``), else to its ``csp_region``'s, else to ``default``.
    """

    def __init__(
        self,
        default: tuple[str, int],
        routes: dict[str, str],
        make_link: Any,
    ) -> None:
        self.default = default
        self.routes = {name: parse_address(addr, default[1]) for name, addr in routes.items()}
        self._make_link = make_link
        self.links: dict[tuple[str, int], GatewayLink] = {}

    def address_for(self, body: dict[str, Any]) -> tuple[str, int]:
        gateway = body.get("gateway")
        if isinstance(gateway, str) and gateway:
            if gateway in self.routes:
                return self.routes[gateway]
            if ":" in gateway:
                return parse_address(gateway, self.default[1])
        region = body.get("csp_region")
        if isinstance(region, str) and region in self.routes:
            return self.routes[region]
        return self.default

    def link_for(self, body: dict[str, Any]) -> GatewayLink:
        address = self.address_for(body)
        link = self.links.get(address)
        if link is None:
            link = self.links[address] = self._make_link(*address)
        return link

    async def connect_all(self) -> None:
        """Open a link to every known gateway now (so their alerts flow before any command)."""
        for address in {self.default, *self.routes.values()}:
            link = self.links.get(address)
            if link is None:
                link = self.links[address] = self._make_link(*address)
            link.start_keepalive()

    @property
    def connected(self) -> int:
        return sum(1 for link in self.links.values() if link.connected)

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()


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
        self.resends = 0  # commands sent again after a lost link
        self.alerts_unpublished = 0  # alerts whose publish failed (left unacknowledged)
        self._keepalive: asyncio.Task[None] | None = None

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
            self._reader_task.add_done_callback(self._reader_done)
            log.info("connected to gateway", extra={"gateway": f"{self.host}:{self.port}"})
            return writer

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway link reader failed", exc_info=task.exception())

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        alerts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        waiting: set[Any] = set()  # ids of the alerts queued or being published
        publisher = asyncio.create_task(self._publish_alerts(alerts, waiting, writer))
        try:
            while True:
                message = await read_frame(reader)
                if message.get("t") == "alert":
                    alert_id = message.get("id")
                    if alert_id is not None:
                        if alert_id in waiting:
                            continue  # sent again while its publish is still pending here
                        waiting.add(alert_id)
                    alerts.put_nowait(message)
                    continue
                future = self._pending.pop(int(message.get("id", -1)), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (LinkError, OSError) as exc:
            log.warning("gateway link lost", extra={"error": str(exc)})
        finally:
            # alerts read but not yet acknowledged are the gateway's to send again
            publisher.cancel()
            with contextlib.suppress(BaseException):
                await publisher
            self.connected = False
            if self._writer is writer:
                self._writer = None
            writer.close()
            for future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(GatewayUnreachable("gateway link lost"))
            self._pending.clear()

    async def _publish_alerts(
        self,
        alerts: asyncio.Queue[dict[str, Any]],
        waiting: set[Any],
        writer: asyncio.StreamWriter,
    ) -> None:
        """Publish the alerts read from one connection in order; acknowledge each (by its id,
        on that connection) once its publish is confirmed. One whose publish fails is not
        acknowledged: the gateway sends it again. (``waiting``: the ids queued here, so one
        the gateway repeats while its publish is pending is not queued twice.)"""
        while True:
            message = await alerts.get()
            alert_id = message.get("id")
            try:
                await self.on_alert(message)
            except Exception as exc:  # PublishError, a broken bus: not acknowledged
                self.alerts_unpublished += 1
                log.warning(
                    "alert not published; the gateway will send it again",
                    extra={"error": str(exc), "device": message.get("device")},
                )
                continue
            finally:
                waiting.discard(alert_id)
            if alert_id is None or writer.is_closing():
                continue  # an alert without an id (an older gateway), or a link gone since
            try:
                writer.write(encode_frame({"t": "alert_ack", "id": alert_id}))
                await writer.drain()
            except (OSError, LinkError) as exc:
                log.info("alert acknowledgement not sent", extra={"error": str(exc)})

    async def send(self, command: dict[str, Any], deadline_s: float) -> dict[str, Any]:
        """Send one command and wait for its answer; the deadline covers reconnecting too.

        A link lost while the command is in flight (the gateway restarted, the network broke)
        does not end it: the same command is sent again on a new connection until the
        deadline, and the gateway answers a command it already executed from its replay cache.
        Raises GatewayUnreachable when no connection could be made before the deadline and
        TimeoutError when the gateway never answered.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline_s
        while True:
            try:
                writer = await self._connect()
            except GatewayUnreachable:
                if loop.time() + RECONNECT_INTERVAL_S >= give_up:
                    raise
                await asyncio.sleep(RECONNECT_INTERVAL_S)
                continue
            remaining = max(0.001, give_up - loop.time())
            cid = next(self._ids)
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pending[cid] = future
            try:
                writer.write(
                    encode_frame({**command, "t": "cmd", "id": cid, "deadline_s": remaining})
                )
                await writer.drain()
                return await asyncio.wait_for(future, remaining)
            except (GatewayUnreachable, ConnectionError, OSError) as exc:
                self.resends += 1
                if loop.time() + RECONNECT_INTERVAL_S >= give_up:
                    raise TimeoutError(f"gateway link lost and not back in time: {exc}") from exc
                await asyncio.sleep(RECONNECT_INTERVAL_S)
            finally:
                self._pending.pop(cid, None)

    def start_keepalive(self) -> None:
        """Keep a connection open, reconnecting when it drops, so unsolicited alerts arrive
        even while no command is in flight."""
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._keep_connected())

    async def _keep_connected(self) -> None:
        while True:
            try:
                await self._connect()
            except GatewayUnreachable:
                pass
            await asyncio.sleep(RECONNECT_INTERVAL_S * 4)

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(BaseException):
                await self._keepalive
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task


class WanMetrics:
    def __init__(self, rt: ServiceRuntime, pool: GatewayPool) -> None:
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
        self.alerts = Counter("dccsim_wan_alerts", "Unsolicited alerts published", registry=r)
        Gauge(
            "dccsim_wan_gateway_connected", "Gateway links currently up", registry=r
        ).set_function(lambda: float(pool.connected))
        Gauge(
            "dccsim_wan_resends", "Commands sent again after a lost gateway link", registry=r
        ).set_function(lambda: float(sum(link.resends for link in pool.links.values())))
        Gauge(
            "dccsim_wan_alerts_unpublished",
            "Alerts from a gateway whose publish failed (left unacknowledged, so sent again)",
            registry=r,
        ).set_function(lambda: float(sum(link.alerts_unpublished for link in pool.links.values())))


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, WanSettings)
    pki = PkiLayout.of(settings.home)
    ctx = client_ssl_context(pki.wan_client_cert, pki.wan_client_key, pki.tls_ca)
    metrics: WanMetrics | None = None

    async def on_alert(message: dict[str, Any]) -> None:
        await rt.bus.publish(
            GBCS_ALERT,
            Envelope(
                "gbcs.alert",
                str(message.get("rid") or ""),
                {
                    "device_eui": message.get("device"),
                    "hub_eui": message.get("hub"),
                    "csp_region": message.get("region"),
                    "alert_code": message.get("alert_code"),
                    "frame": message.get("frame"),
                },
            ),
        )
        if metrics is not None:
            metrics.alerts.inc()

    def make_link(host: str, port: int) -> GatewayLink:
        return GatewayLink(host, port, ctx, settings.wan_connect_timeout_s, on_alert)

    routes: dict[str, str] = dict(settings.wan_gateways)
    pool = GatewayPool((settings.wan_gateway_host, settings.wan_gateway_port), routes, make_link)
    rt.cleanups.append(pool.close)
    metrics = WanMetrics(rt, pool)
    await pool.connect_all()

    async def on_command(env: Envelope) -> None:
        assert metrics is not None
        body = env.body
        passthrough: dict[str, Any] = {
            k: body.get(k)
            for k in (
                "srv",
                "user_id",
                "user_eui",
                "received_at",
                "use_case",
                "device_eui",
                "dsp_schedule_id",
            )
            if k in body
        }
        deadline = settings.wan_deadline_s
        start = time.perf_counter()
        outcome: dict[str, Any]
        link = pool.link_for(body)
        rt.bus.emit_timeline(env.request_id, "command_sent", srv=body.get("srv"))
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
        except TimeoutError as exc:
            reason = str(exc) or f"no response within {deadline:g} s"
            outcome = {"error": "E21", "reason": reason}
            metrics.outcomes.labels("E21").inc()
        except GatewayUnreachable as exc:
            outcome = {"error": "E20", "reason": str(exc)}
            metrics.outcomes.labels("E20").inc()
        metrics.round_trip.observe(time.perf_counter() - start)
        await rt.bus.publish(
            GBCS_RESPONSE, Envelope("gbcs.response", env.request_id, {**passthrough, **outcome})
        )
        rt.bus.emit_timeline(
            env.request_id,
            "device_answered",
            code=str(outcome.get("error") or "I0"),
            srv=body.get("srv"),
        )

    rt.bus.consume(WAN_COMMANDS, on_command)


def run(settings: WanSettings | None = None) -> None:
    settings = settings or WanSettings()
    run_until_complete(run_service("wan", settings, settings.wan_metrics_port, _setup), settings)
