"""gateway/: the SM WAN gateway emulator. A TLS server standing in for CSP networks (North,
Central, South) and every hub behind them, hosting the estate's emulated devices (emulators/) in
one process.

Per hub, one command at a time (a real Communications Hub serialises). The estate is held in
compact arrays (``gateway.hosting``) and a device model is built on its first command from the
key store, so an idle device costs a few bytes. Each command goes through the network model
(``gateway.network``: latency, loss, offline hubs, outages, scripted faults) before and after
its device. A device that discards a command (bad MAC, replay, untrusted party) raises its GBCS
alert to the DCC side and the command is answered ``E21`` at once (a real CSP would let the
deadline pass; the outcome the User sees is the same). Unsolicited alerts (outages, tamper,
scripted, and those a device raises itself, such as the outcome of a future-dated command it
held) are kept in a bounded journal (``gateway.alert_journal``: an fsynced append-only file
beside the device state store, oldest dropped when full) with an alert id, and sent to one
connected WAN link; each stays until the WAN side acknowledges it (``alert_ack``, sent once its
bus publish is confirmed). Unacknowledged alerts are sent again when a link connects, after
``ALERT_ACK_TIMEOUT_S`` without an acknowledgement, and, after a restart, from the journal: at
least once, end to end.

Held work: a device that holds a future-dated command (1.6, 1.1.1, 11.3, 6.15.1 with an
execution date-time) says when it falls due (``next_due``); the gateway keeps those times in a
heap and, when its clock reaches one, has the device carry it out under its hub's lock (a real
meter does it by its own clock, whether or not a command comes) and sends the outcome alerts
it raises. The due times are in the durable residue store too, so a restarted gateway picks
them up.

Premises added to estate.json while the gateway runs (a participant onboarded by
services/testing) are hosted without a restart: the gateway looks every ``ESTATE_POLL_S``
seconds whether the file was replaced, and ``POST /estate/reload`` on the control API re-reads
it at once. Either way the new premises are merged into the index; devices already hosted keep
their models, counters and faults. (A CSP learns of new hubs from its own systems, not from the
DCC's bus, so the gateway consumes no bus events.)

Run-time control: ``gateway.control`` (aiohttp, localhost, its own port).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import heapq
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import Counter, Gauge

from dccsim import estate
from dccsim.config import GatewaySettings
from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.estate import REGIONS, format_eui
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_CODE
from dccsim.pki.dccki import CrlWatcher, server_ssl_context
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.files import write_atomic
from dccsim.pki.keystore import KeyStore, KeyStoreError
from dccsim.pki.smki import KeyUsage
from dccsim.runtime import ServiceRuntime, run_service, run_until_complete
from dccsim.smi import DeviceType
from dccsim.wanlink import LinkError, encode_frame, read_frame
from emulators.alerts import build_device_alert, build_outage_restored_alert
from emulators.device import DeviceRefusal, GbcsDevice
from gateway.alert_journal import AlertJournal
from gateway.hosting import DeviceModels, DeviceRecord, EstateIndex, HubLocks, ReplayCache
from gateway.network import Fate, NetworkModel
from gateway.nonvolatile import DeviceStateFile

log = logging.getLogger(__name__)

ALERT_SUPPLY_INTERRUPTED = 0x8F57
ALERT_OUTBOX_SIZE = 10_000  # unacknowledged alerts kept; the oldest is dropped beyond
ALERT_ACK_TIMEOUT_S = 10.0  # an alert sent without an acknowledgement this long is sent again
DEFAULT_CONTROL_PORT = 7480
# How often the gateway looks whether estate.json was replaced (until GatewaySettings carries
# ``gateway_estate_poll_s``; 0 turns the watch off, leaving ``POST /estate/reload``).
ESTATE_POLL_S = 2.0
DUE_POLL_S = 0.2  # how often the gateway looks whether a device's held work is due
Send = Callable[[dict[str, Any]], Awaitable[None]]
_T = TypeVar("_T")


def control_file(home: Path) -> Path:
    """``$DCCSIM_HOME/gateway-control.json``: the running gateway's control API URL."""
    return home / "gateway-control.json"


FileSignature = tuple[int, int, int]  # inode, size, mtime (ns)


def _signature(st: os.stat_result) -> FileSignature:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class EstateFileError(ValueError):
    def __init__(self, reason: str, signature: FileSignature) -> None:
        super().__init__(reason)
        self.signature = signature


class EstateFile:
    """``$DCCSIM_HOME/estate.json`` as this gateway last read it.

    ``dccsim.estate.save`` replaces the file in one rename, so a file opened is always a whole
    estate, and a changed (inode, size, mtime) of the path means a new one. The signature is
    taken from the open file itself, so a replacement between the look and the read is noticed
    next time rather than missed.
    """

    def __init__(self, home: Path, regions: Iterable[str] = ()) -> None:
        self.path = estate.estate_path(home)
        self.regions = frozenset(regions)
        self.signature: FileSignature | None = None  # of the estate hosted now
        self.unreadable: FileSignature | None = None  # a version that failed to parse

    def changed(self) -> bool:
        """Whether the path names another file than the one last read (or failed)."""
        try:
            now = _signature(os.stat(self.path))
        except FileNotFoundError:
            return False
        return now != self.signature and now != self.unreadable

    def read(self) -> tuple[FileSignature | None, list[dict[str, Any]]]:
        """Blocking: the signature of the file read and its premises rows (none when there is
        no file). EstateFileError when it is not an estate."""
        try:
            handle = open(self.path, "rb")  # closed below, after fstat
        except FileNotFoundError:
            return None, []
        with handle:
            signature = _signature(os.fstat(handle.fileno()))
            data = handle.read()
        try:
            premises = json.loads(data)["premises"]
            if not isinstance(premises, list):
                raise TypeError("premises is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise EstateFileError(f"{self.path} is not an estate: {exc}", signature) from exc
        return signature, premises

    def grow(self, index: EstateIndex) -> tuple[FileSignature | None, EstateIndex | None]:
        """Blocking: the file's signature and ``index`` extended with the premises it holds
        that ``index`` does not (None when there are none). ``index`` is not changed."""
        signature, rows = self.read()
        return signature, index.extended(rows, regions=self.regions)


@dataclass(frozen=True)
class EstateRefresh:
    """What one look at estate.json did."""

    read: bool  # the file was read (it had changed, or the caller insisted)
    premises_added: int = 0
    devices_added: int = 0


@dataclass
class Outage:
    premises: int
    started: dt.datetime
    task: asyncio.Task[None] | None = None


class GatewayMetrics:
    def __init__(self, rt: ServiceRuntime, server: GatewayServer) -> None:
        r = rt.metrics.registry
        self.commands = Counter(
            "dccsim_gateway_commands", "Commands handled, by outcome", ["outcome"], registry=r
        )
        self.alerts = Counter(
            "dccsim_gateway_alerts",
            "Unsolicited alerts raised, by alert code",
            ["code"],
            registry=r,
        )
        self.connections = Gauge("dccsim_gateway_connections", "Open WAN connections", registry=r)
        self.premises_added = Counter(
            "dccsim_gateway_estate_premises_added",
            "Premises hosted after start-up (estate.json grew while running)",
            registry=r,
        )
        Gauge(
            "dccsim_gateway_devices_hosted", "Devices in this gateway's estate", registry=r
        ).set_function(lambda: float(len(server.index)))
        Gauge(
            "dccsim_gateway_models", "Device models in memory (built on first command)", registry=r
        ).set_function(lambda: float(len(server.models)))
        self.alerts_dropped = Counter(
            "dccsim_gateway_alerts_dropped",
            "Unacknowledged alerts dropped because the alert journal was full",
            registry=r,
        )
        self.alerts_resent = Counter(
            "dccsim_gateway_alerts_resent",
            "Alerts sent again (their link lost, or no acknowledgement in time)",
            registry=r,
        )
        Gauge(
            "dccsim_gateway_alert_outbox",
            "Alerts not yet acknowledged by the WAN side (waiting or in flight)",
            registry=r,
        ).set_function(lambda: float(len(server.alert_journal)))


class _NullCounter:
    def labels(self, *_: str) -> _NullCounter:
        return self

    def inc(self, amount: float = 1.0) -> None:
        pass


class GatewayServer:
    """The estate, its network model and the WAN connections: what the TLS server, the control
    API and the benchmarks drive."""

    def __init__(
        self,
        index: EstateIndex,
        models: DeviceModels,
        network: NetworkModel,
        *,
        clock: Callable[[], dt.datetime],
        restore_alert_delay_s: float = 1.0,
        replay_capacity: int = 100_000,
        fixed_delay_s: float = 0.0,
        estate_file: EstateFile | None = None,
        alert_journal: AlertJournal | None = None,
        alert_ack_timeout_s: float = ALERT_ACK_TIMEOUT_S,
    ) -> None:
        """``estate_file``: where ``refresh_estate`` finds premises added while running;
        ``alert_journal``: where unacknowledged alerts are kept (in memory when None)."""
        self.index = index
        self.estate_file = estate_file
        self._estate_lock = asyncio.Lock()
        self.premises_added: Any = _NullCounter()
        self.models = models
        self.network = network
        self.clock = clock
        self.restore_alert_delay_s = restore_alert_delay_s
        self.fixed_delay_s = fixed_delay_s  # added to every round trip (gateway_latency_ms)
        self.replay = ReplayCache(replay_capacity)
        self.hub_locks = HubLocks()
        self.commands: Any = _NullCounter()
        self.alert_counts: Any = _NullCounter()
        self.alerts_dropped: Any = _NullCounter()
        self.alerts_resent: Any = _NullCounter()
        self.connections: Any = None
        self.links: dict[int, Send] = {}
        self._link_ids = itertools.count(1)
        self._next_link = 0
        self.alert_journal = (
            alert_journal if alert_journal is not None else AlertJournal(None, ALERT_OUTBOX_SIZE)
        )
        self.alert_ack_timeout_s = alert_ack_timeout_s
        # alert ids to send, oldest first (all unacknowledged ones not in flight), and those in
        # flight: alert id -> (link id, loop time sent)
        self._alert_queue: deque[int] = deque(i for i, _ in self.alert_journal.pending())
        self._alerts_in_flight: dict[int, tuple[int, float]] = {}
        self._alert_lock = asyncio.Lock()
        self._journal_sync: asyncio.Future[None] | None = None  # the next group fdatasync
        self.outages: dict[int, Outage] = {}
        self._alert_counter = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        # device index -> when its held work falls due (gateway clock), and a heap of them
        # (an entry whose time is no longer the device's is stale and skipped)
        self.due: dict[int, dt.datetime] = {}
        self._due_heap: list[tuple[dt.datetime, int]] = []
        for eui, due in models.memory.due_devices():
            found = index.find(eui.to_bytes(8, "big"))
            if found is not None:
                self._schedule(found, due)

    def attach_metrics(self, metrics: GatewayMetrics) -> None:
        self.commands = metrics.commands
        self.alert_counts = metrics.alerts
        self.alerts_dropped = metrics.alerts_dropped
        self.alerts_resent = metrics.alerts_resent
        self.connections = metrics.connections
        self.premises_added = metrics.premises_added

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("gateway task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # -- the estate -----------------------------------------------------------------------

    async def refresh_estate(self, *, force: bool = False) -> EstateRefresh:
        """Host the premises estate.json has gained since it was last read: when the file was
        replaced, or always with ``force``. The file is parsed and the larger index built in a
        worker thread from the current one, then taken over in place in one step of the event
        loop, so a command in flight never sees half an estate and every device index already
        handed out (models, replies, faults, outages) keeps naming the same device.
        EstateFileError when the file is not an estate (what is hosted stays)."""
        source = self.estate_file
        if source is None:
            return EstateRefresh(read=False)
        async with self._estate_lock:
            if not force and not source.changed():
                return EstateRefresh(read=False)
            try:
                signature, grown = await asyncio.to_thread(source.grow, self.index)
            except EstateFileError as exc:
                source.unreadable = exc.signature
                raise
            premises = devices = 0
            if grown is not None:
                premises = grown.premises_count - self.index.premises_count
                devices = len(grown) - len(self.index)
                self.index.adopt(grown)
            source.signature = signature
        if premises:
            self.premises_added.inc(premises)
            log.info(
                "estate grew: new premises hosted",
                extra={"premises": premises, "devices": devices, "hosted": len(self.index)},
            )
        return EstateRefresh(read=True, premises_added=premises, devices_added=devices)

    async def watch_estate(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Every ``interval_s`` seconds until ``stopping``: ``refresh_estate``."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)
                return
            try:
                await self.refresh_estate()
            except EstateFileError as exc:
                log.error("estate.json not read; hosting what was there", extra={"error": str(exc)})
            except OSError as exc:
                log.warning("estate.json not read", extra={"error": str(exc)})

    # -- the WAN side ---------------------------------------------------------------------

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.connections is not None:
            self.connections.inc()
        tasks: set[asyncio.Task[None]] = set()
        write_lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with write_lock:
                writer.write(encode_frame(message))
                await writer.drain()

        link_id = next(self._link_ids)
        self.links[link_id] = send
        self.spawn(self._flush_alerts())
        try:
            while True:
                message = await read_frame(reader)
                kind = message.get("t")
                if kind == "alert_ack":
                    self.ack_alert(message.get("id"))
                    continue
                if kind != "cmd":
                    continue
                task = asyncio.create_task(self._command(message, send))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (LinkError, OSError) as exc:
            log.info("WAN connection closed", extra={"reason": str(exc)})
        except asyncio.CancelledError:
            pass  # the server is shutting down
        finally:
            self.links.pop(link_id, None)
            self._requeue_link(link_id)
            if self.connections is not None:
                self.connections.dec()
            for task in tasks:
                task.cancel()
            writer.close()

    async def _command(self, message: dict[str, Any], send: Send) -> None:
        cid = message.get("id")
        try:
            reply = await self.execute(message)
        except Exception as exc:  # a bug in a model must not kill the connection
            log.exception("device model failed")
            reply = {"t": "err", "code": "E21", "reason": f"device model error: {exc}"}
        if reply is None:
            return  # lost in the network: the WAN's deadline answers
        alert = reply.pop("alert", None)
        alert_message = reply.pop("alert_message", None)
        reply["id"] = cid
        with contextlib.suppress(OSError, LinkError):
            await send(reply)
        if isinstance(alert_message, dict) and alert_message.get("frame"):
            await self.send_alert({**alert_message, "rid": message.get("rid") or ""})
        elif alert is not None:
            await self.send_alert(
                {
                    "t": "alert",
                    "device": message.get("device"),
                    "rid": message.get("rid"),
                    "alert_code": alert,
                }
            )

    async def execute(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """One command frame -> the reply frame, or None when the network loses it."""
        try:
            eui = parse_eui(str(message.get("device")))
        except Exception:
            self.commands.labels("unknown_device").inc()
            return {"t": "err", "code": "E20", "reason": "no device EUI in the command"}
        found = self.index.find(eui)
        if found is None:
            self.commands.labels("unknown_device").inc()
            return {"t": "err", "code": "E20", "reason": "device not on this network"}
        frame = message.get("frame")
        if not isinstance(frame, bytes):
            return {"t": "err", "code": "E21", "reason": "command carried no frame"}
        deadline = float(message.get("deadline_s") or 1e9)
        record = self.index.record(found)
        route = self.network.route(
            eui=eui, hub=record.hub_eui, region=record.region, premises=record.premises
        )
        if route.fate is Fate.UNREACHABLE or route.fate is Fate.WAN_ERROR:
            await asyncio.sleep(min(route.latency_s, deadline))
            self.commands.labels(str(route.code)).inc()
            return {"t": "err", "code": route.code, "reason": route.reason}
        if route.fate is Fate.LOST_DOWN:
            self.commands.labels("lost").inc()
            return None
        latency = route.latency_s + self.fixed_delay_s
        async with self.hub_locks.hold(record.hub_eui):  # one command at a time per hub
            if latency >= deadline:
                await asyncio.sleep(deadline)
                self.commands.labels("late").inc()
                return None  # the answer would arrive after the deadline
            if latency:
                await asyncio.sleep(latency)
            reply = self._device_reply(record, frame, route.dlms_result)
        if route.fate is Fate.LOST_UP:
            self.commands.labels("lost").inc()
            return None
        return reply

    def _device_reply(
        self, record: DeviceRecord, frame: bytes, dlms_result: int | None
    ) -> dict[str, Any]:
        digest = hashlib.sha256(frame).digest()
        cached = self.replay.get(record.index, digest)
        if cached is not None:
            self.commands.labels("replayed_reply").inc()
            return {"t": "rsp", "frame": cached}
        try:
            model = self.models.get(record)
            if dlms_result is not None and len(frame) > 40:
                # a forced DLMS failure: the device answers the next command of this use case so
                code = _message_code(frame)
                use_case = USE_CASES_BY_CODE.get(code) if code is not None else None
                if use_case is not None:
                    model.script_fault(use_case, dlms_result)
            response = model.handle(frame)
            # the counter it accepted is on disk before the response can reach anyone
            self.models.commit(record, model)
            self._after_device(record, model)
        except DeviceRefusal as refusal:
            self.commands.labels("refused").inc()
            return {
                "t": "err",
                "code": "E21",
                "alert": refusal.alert_code,
                # the alert the device raises, as a real GBCS alert frame to the ACB
                "alert_message": self.device_alert(record, refusal.alert_code),
                "reason": f"device discarded the command: {refusal.reason}",
            }
        except KeyStoreError as exc:
            self.commands.labels("no_credentials").inc()
            return {"t": "err", "code": "E20", "reason": f"device has no credentials: {exc}"}
        self.replay.put(record.index, digest, response)
        self.commands.labels("response").inc()
        return {"t": "rsp", "frame": response}

    # -- held work (future-dated commands a device carries out by its own clock) ------------

    def _schedule(self, index: int, due: dt.datetime | None) -> None:
        if due is None:
            self.due.pop(index, None)
            return
        if self.due.get(index) != due:
            self.due[index] = due
            heapq.heappush(self._due_heap, (due, index))

    def _after_device(self, record: DeviceRecord, model: GbcsDevice) -> None:
        """After ``model`` handled a command or ran its held work: note when its next held
        work is due, and send the alerts it raised (in order, after this step)."""
        self._schedule(record.index, model.next_due())
        raised = model.take_alerts()
        if raised:
            messages = [self._alert_message(record, a.alert_code, a.frame) for a in raised]
            self.spawn(self.send_alerts(messages))

    async def run_due_work(self) -> int:
        """Have every device whose held work is due by the clock carry it out (its residue
        committed, its alerts sent); returns how many did. A device in a power outage does it
        once power is back."""
        now = self.clock()
        ran = 0
        while self._due_heap and self._due_heap[0][0] <= now:
            due, index = heapq.heappop(self._due_heap)
            if self.due.get(index) != due:
                continue  # stale: rescheduled or done since
            record = self.index.record(index)
            if record.premises in self.network.premises_outages:
                self.due.pop(index, None)
                self._schedule(index, now + dt.timedelta(seconds=1))
                continue
            del self.due[index]
            async with self.hub_locks.hold(record.hub_eui):
                try:
                    model = self.models.get(record)
                    model.run_due(self.clock())
                    self.models.commit(record, model)
                except (DeviceRefusal, KeyStoreError) as exc:
                    log.warning("held work not run", extra={"reason": str(exc)})
                    continue
                self._after_device(record, model)
            ran += 1
        return ran

    async def watch_due_work(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Every ``interval_s`` seconds until ``stopping``: ``run_due_work``."""
        # a bug in a model must not stop the others' held work
        await _every(interval_s, stopping, self.run_due_work, "held work failed")

    # -- alerts ---------------------------------------------------------------------------

    @property
    def alert_outbox(self) -> list[dict[str, Any]]:
        """The alerts not yet acknowledged by the WAN side (waiting or in flight), oldest
        first."""
        return [alert for _, alert in self.alert_journal.pending()]

    async def send_alert(self, alert: dict[str, Any]) -> None:
        """``send_alerts`` for one alert."""
        await self.send_alerts([alert])

    async def send_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Into the journal (durably: the group fdatasync of ``_journal_synced``), then each
        to one connected WAN link (round robin), in order; each stays in the journal until the
        WAN side acknowledges it."""
        ids: list[int] = []
        for alert in alerts:
            self.alert_counts.labels(f"{int(alert.get('alert_code', 0)):#06x}").inc()
            alert_id, dropped = self.alert_journal.append(alert, sync=False)
            ids.append(alert_id)
            if dropped:
                self.alerts_dropped.inc(len(dropped))
                log.warning(
                    "alert journal full: oldest unacknowledged alerts dropped",
                    extra={"dropped": len(dropped), "capacity": self.alert_journal.capacity},
                )
                for old in dropped:
                    self._alerts_in_flight.pop(old, None)
                # the queue is in id order and the dropped are the oldest: trim its head
                while self._alert_queue and self._alert_queue[0] not in self.alert_journal:
                    self._alert_queue.popleft()
        await asyncio.shield(self._journal_synced())  # shared: one waiter's cancel is its own
        # (those dropped meanwhile by a flood of newer ones are gone)
        self._alert_queue.extend(i for i in ids if i in self.alert_journal)
        await self._flush_alerts()

    def _journal_synced(self) -> asyncio.Future[None]:
        """Done once the journal is durable: one fdatasync, soon, for every alert appended
        before it runs (a held-work run or an outage raises many at once; one sync each would
        hold the event loop for each). Waiters resume in the order they came, so in id
        order."""
        pending = self._journal_sync
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._journal_sync = loop.create_future()

            def sync() -> None:
                self._journal_sync = None
                try:
                    self.alert_journal.sync()
                except OSError as exc:
                    pending.set_exception(exc)
                    pending.exception()  # retrieved: every waiter gets it, or none is left
                else:
                    pending.set_result(None)

            loop.call_soon(sync)
        return pending

    def ack_alert(self, alert_id: Any) -> bool:
        """The WAN side has published alert ``alert_id``: forget it. False when it is not an
        unacknowledged alert (acknowledged before, dropped, or not an id at all)."""
        if not isinstance(alert_id, int) or isinstance(alert_id, bool):
            return False
        self._alerts_in_flight.pop(alert_id, None)
        return self.alert_journal.ack(alert_id)

    def _requeue(self, alert_ids: Iterable[int]) -> None:
        """Send ``alert_ids`` again (in id order, before those not sent yet)."""
        again = [i for i in alert_ids if i in self.alert_journal]
        for i in again:
            self._alerts_in_flight.pop(i, None)
        if again:
            self.alerts_resent.inc(len(again))
            self._alert_queue = deque(sorted(set(again) | set(self._alert_queue)))

    def _requeue_link(self, link_id: int) -> None:
        self._requeue([i for i, (link, _) in self._alerts_in_flight.items() if link == link_id])
        if self._alert_queue and self.links:
            self.spawn(self._flush_alerts())

    async def resend_unacknowledged(self) -> int:
        """Send again every alert in flight longer than ``alert_ack_timeout_s`` without an
        acknowledgement; returns how many."""
        now = asyncio.get_running_loop().time()
        stale = [
            i
            for i, (_, sent) in self._alerts_in_flight.items()
            if now - sent >= self.alert_ack_timeout_s
        ]
        self._requeue(stale)
        if self._alert_queue:
            await self._flush_alerts()
        return len(stale)

    async def watch_alert_acks(self, stopping: asyncio.Event) -> None:
        """Until ``stopping``: ``resend_unacknowledged`` every quarter of the timeout."""
        interval = max(0.05, self.alert_ack_timeout_s / 4)
        await _every(interval, stopping, self.resend_unacknowledged, "alert resend failed")

    async def _flush_alerts(self) -> None:
        """Send the queued alerts, oldest first, each carrying its id, while a link is up."""
        async with self._alert_lock:
            loop = asyncio.get_running_loop()
            while self._alert_queue and self.links:
                alert_id = self._alert_queue[0]
                alert = self.alert_journal.get(alert_id)
                if alert is None or alert_id in self._alerts_in_flight:
                    self._alert_queue.popleft()  # acknowledged or dropped meanwhile
                    continue
                ids = sorted(self.links)
                link_id = ids[self._next_link % len(ids)]
                self._next_link += 1
                self._alerts_in_flight[alert_id] = (link_id, loop.time())
                self._alert_queue.popleft()
                try:
                    await self.links[link_id]({**alert, "id": alert_id})
                except (OSError, LinkError, KeyError):
                    self._alerts_in_flight.pop(alert_id, None)
                    self._alert_queue.appendleft(alert_id)
                    self.links.pop(link_id, None)

    def _next_alert_counter(self) -> int:
        # strictly increasing across restarts: milliseconds since the epoch, or one more
        self._alert_counter = max(self._alert_counter + 1, int(time.time() * 1000))
        return self._alert_counter

    def _keys(self, record: DeviceRecord) -> tuple[ec.EllipticCurvePrivateKey, ...]:
        model = self.models.peek(record.index)
        if model is not None:
            return model.ka_private_key, model.ds_private_key
        ka = self.models.keystore.private_key(record.eui, KeyUsage.KA)
        ds = self.models.keystore.private_key(record.eui, KeyUsage.DS)
        assert isinstance(ka, ec.EllipticCurvePrivateKey)
        assert isinstance(ds, ec.EllipticCurvePrivateKey)
        return ka, ds

    def device_alert(self, record: DeviceRecord, alert_code: int) -> dict[str, Any]:
        """An alert frame from ``record``'s device to the ACB (MAC'd); without a frame when the
        key store holds no keys for the device."""
        frame: bytes | None = None
        try:
            ka, _ = self._keys(record)
            acb = self.models.acb_ka_public()
            model = self.models.peek(record.index)
            # a built model numbers its alerts itself (with those it raises on its own)
            counter = (
                self._next_alert_counter()
                if model is None
                else model.next_alert_counter(self.clock())
            )
            frame = build_device_alert(
                device_eui=record.eui,
                recipient_eui=DCC_EUI,
                counter=counter,
                alert_code=alert_code,
                at=self.clock(),
                device_ka_private=ka,
                recipient_ka_public=acb,
            )
        except KeyStoreError as exc:
            log.warning("alert without a frame", extra={"reason": str(exc)})
        return self._alert_message(record, alert_code, frame)

    def _alert_message(
        self, record: DeviceRecord, alert_code: int, frame: bytes | None
    ) -> dict[str, Any]:
        return {
            "t": "alert",
            "device": format_eui(record.eui),
            "hub": format_eui(record.hub_eui),
            "region": record.region,
            "premises_id": record.premises_id,
            "alert_code": alert_code,
            "frame": frame,
            "rid": "",
        }

    # -- outages and resets (the control API calls these) -----------------------------------

    def _meters(self, premises: int) -> list[DeviceRecord]:
        return [
            r
            for r in (self.index.record(i) for i in self.index.premises_devices(premises))
            if r.device_type is DeviceType.ESME
        ]

    async def start_outage(self, premises: int, duration_s: float | None = None) -> None:
        """Power fails at ``premises``: its devices become unreachable (E20), each meter raises
        Supply interrupted (0x8F57, the last gasp the CSP relays); with ``duration_s`` power
        comes back by itself after that long."""
        if premises in self.outages:
            return
        outage = Outage(premises, self.clock())
        self.outages[premises] = outage
        self.network.premises_outages.add(premises)
        await self.send_alerts(
            [self.device_alert(meter, ALERT_SUPPLY_INTERRUPTED) for meter in self._meters(premises)]
        )
        if duration_s is not None:
            outage.task = self.spawn(self._end_after(premises, duration_s))

    async def _end_after(self, premises: int, duration_s: float) -> None:
        await asyncio.sleep(duration_s)
        await self.end_outage(premises, from_timer=True)

    async def end_outage(self, premises: int, *, from_timer: bool = False) -> bool:
        """Power returns: devices reachable again and, once each meter has rebooted
        (``restore_alert_delay_s``), its ECS80 Supply Outage Restored alert (0x8F35, or 0x8F36
        after 3 minutes or more) carrying the outage's start and end."""
        outage = self.outages.pop(premises, None)
        if outage is None:
            return False
        if outage.task is not None and not from_timer:
            outage.task.cancel()
        self.network.premises_outages.discard(premises)
        restored = self.clock()
        self.spawn(self._restored_alerts(premises, outage.started, restored))
        return True

    async def _restored_alerts(
        self, premises: int, started: dt.datetime, restored: dt.datetime
    ) -> None:
        await asyncio.sleep(self.restore_alert_delay_s)
        alerts: list[dict[str, Any]] = []
        for meter in self._meters(premises):
            supplier = meter.registrations.get("IS")
            frame: bytes | None = None
            try:
                _, ds = self._keys(meter)
                if supplier is not None:
                    frame = build_outage_restored_alert(
                        device_eui=meter.eui,
                        supplier_eui=parse_eui(supplier),
                        counter=self._next_alert_counter(),
                        started=started,
                        restored=restored,
                        at=self.clock(),
                        device_ds_private=ds,
                    )
            except KeyStoreError as exc:
                log.warning("alert without a frame", extra={"reason": str(exc)})
            code = 0x8F36 if (restored - started).total_seconds() >= 180 else 0x8F35
            alerts.append(self._alert_message(meter, code, frame))
        await self.send_alerts(alerts)

    def reset_premises(self, premises: int) -> int:
        """Every device of ``premises`` as new: models, residues, replies and faults dropped, any
        outage ended without alerts. Returns the number of devices reset."""
        outage = self.outages.pop(premises, None)
        if outage is not None and outage.task is not None:
            outage.task.cancel()
        self.network.premises_outages.discard(premises)
        devices = self.index.premises_devices(premises)
        for i in devices:
            record = self.index.record(i)
            self.due.pop(i, None)
            self.models.forget(i)
            self.replay.forget_device(i)
            self.network.devices.pop(record.eui, None)
            self.network.offline_hubs.discard(record.hub_eui)
        return len(devices)


def _message_code(frame: bytes) -> int | None:
    try:
        message = decode_message(frame)
    except Exception:
        return None
    if isinstance(message, GeneralCiphering):
        return message.general_signing.message_code
    return message.message_code


async def _every(
    interval_s: float, stopping: asyncio.Event, step: Callable[[], Awaitable[Any]], failed: str
) -> None:
    """``step()`` every ``interval_s`` seconds until ``stopping``; a step that raises is logged
    (``failed``) and the next one still runs."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
            return
        try:
            await step()
        except Exception:
            log.exception(failed)


def alert_journal_file(state_path: Path) -> Path:
    """Where a gateway whose device state is in ``state_path`` keeps its unacknowledged
    alerts: beside it (``gateway-all.sqlite3`` -> ``gateway-all-alerts.journal``)."""
    return state_path.with_name(f"{state_path.stem}-alerts.journal")


def state_file(home: Path, regions: list[str]) -> Path:
    """Where a gateway hosting ``regions`` (all when empty) keeps its devices' non-volatile
    state: one file per set of regions, so gateways for different regions never share one."""
    name = "-".join(sorted(r.lower() for r in regions)) or "all"
    return home / "data" / f"gateway-{name}.sqlite3"


def smki_root_key(home: Path) -> ec.EllipticCurvePublicKey | None:
    """The dev PKI's SMKI Root public key (what an installed meter's Root cell holds), or None
    when the PKI has no Root certificate."""
    path = PkiLayout.of(home).smki_root_cert
    if not path.is_file():
        return None
    key = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


def build_server(
    settings: GatewaySettings, *, clock: Callable[[], dt.datetime] | None = None
) -> GatewayServer:
    """The gateway's estate and network model from ``settings`` (no sockets)."""
    regions: list[str] = list(settings.gateway_regions)
    estate_file = EstateFile(settings.home, regions)
    signature, rows = estate_file.read()
    index = EstateIndex().extended(rows, regions=regions) or EstateIndex()
    estate_file.signature = signature
    del rows
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    configured = str(settings.gateway_state_file)
    state_path = Path(configured) if configured else state_file(settings.home, regions)
    models = DeviceModels(
        index,
        KeyStore(settings.keystore_dir),
        now,
        capacity=int(settings.gateway_max_models),
        memory=DeviceStateFile(state_path),
        root_public_key=smki_root_key(settings.home),
    )
    overrides: dict[str, dict[str, Any]] = {}
    network_file = str(settings.gateway_network_file)
    if network_file:
        overrides = json.loads(Path(network_file).read_text()).get("regions", {})
    seed = int(settings.gateway_network_seed)
    network = NetworkModel.from_config(
        list(regions or REGIONS),
        profile=str(settings.gateway_network_profile),
        loss=float(settings.gateway_loss),
        overrides=overrides,
        seed=None if seed < 0 else seed,
    )
    return GatewayServer(
        index,
        models,
        network,
        clock=now,
        restore_alert_delay_s=float(settings.gateway_restore_alert_delay_s),
        fixed_delay_s=settings.gateway_latency_ms / 1000.0,
        estate_file=estate_file,
        alert_journal=AlertJournal(alert_journal_file(state_path), ALERT_OUTBOX_SIZE),
    )


async def _setup(rt: ServiceRuntime) -> None:
    from gateway.control import start_control_server

    settings = rt.settings
    assert isinstance(settings, GatewaySettings)
    start = time.perf_counter()
    server = build_server(settings)
    server.attach_metrics(GatewayMetrics(rt, server))
    pki = PkiLayout.of(settings.home)
    ctx = server_ssl_context(
        pki.gateway_server_cert, pki.gateway_server_key, pki.tls_ca, require_client_cert=True
    )
    # The WAN side's DCCKI certificate can be revoked too: honour the CRL without a restart.
    crl_watcher = CrlWatcher(ctx, pki.dccki_crl)
    crl_watcher.start()
    rt.cleanups.append(crl_watcher.stop)
    srv = await asyncio.start_server(
        server.handle_connection, settings.gateway_host, settings.gateway_port, ssl=ctx, backlog=256
    )
    control_host = str(settings.gateway_control_host)
    wanted = int(settings.gateway_control_port)
    control, control_port = await start_control_server(
        server, control_host, wanted, fallback=wanted == DEFAULT_CONTROL_PORT
    )
    # where tests and tools find it (the port may be ephemeral)
    write_atomic(
        control_file(settings.home),
        json.dumps({"url": f"http://{control_host}:{control_port}"}).encode(),
    )

    async def close() -> None:
        srv.close()
        await srv.wait_closed()
        await control.cleanup()
        for task in list(server.tasks):
            task.cancel()
        server.models.close()
        server.alert_journal.close()

    rt.cleanups.append(close)
    poll_s = settings.gateway_estate_poll_s
    if poll_s > 0:
        rt.spawn(server.watch_estate(poll_s, rt.stopping), "estate-watch")
    rt.spawn(server.watch_due_work(DUE_POLL_S, rt.stopping), "held-work")
    rt.spawn(server.watch_alert_acks(rt.stopping), "alert-acks")
    log.info(
        "SM WAN gateway listening",
        extra={
            "address": f"{settings.gateway_host}:{settings.gateway_port}",
            "control": f"http://{control_host}:{control_port}",
            "devices": len(server.index),
            "premises": server.index.premises_count,
            "unacknowledged_alerts": len(server.alert_journal),
            "startup_s": round(time.perf_counter() - start, 3),
        },
    )


def run(settings: GatewaySettings | None = None) -> None:
    settings = settings or GatewaySettings()
    run_until_complete(
        run_service("gateway", settings, settings.gateway_metrics_port, _setup, use_bus=False),
        settings,
    )
