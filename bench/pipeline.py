"""The pipeline benchmark: ``python -m bench.pipeline`` (``make bench``).

1. The bare broker over the same hops the pipeline uses (sr.accepted -> gbcs.command ->
   gbcs.response -> duis.response: 4 persistent, confirmed queue hops), closed loop at the same
   concurrency: ``broker_relay_per_s``.
2. The whole pipeline, every service a process: signed 4.1.1 requests over mutual TLS at a fixed
   concurrency until all async Responses arrive: ``srs_per_s``, and ack/response latencies.
3. The pipeline open loop at half of the measured maximum rate: ack p99 and response p99 there
   (the targets: under 25 ms and 150 ms).

Each phase runs ``--runs`` times and reports the median (timings here swing between runs).
Writes bench/results/pipeline.json and prints the same as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from dccsim import participants
from dccsim.config import CommonSettings
from dccsim.runtime import loop_factory
from dccsim.testuser import ResponseReceiver, TestUser, post
from tests.system import System

EVENT_LOOP = CommonSettings().event_loop  # DCCSIM_EVENT_LOOP, as the services read it

RESULTS = Path(__file__).resolve().parent / "results"
HOPS = 4


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The local RabbitMQ's Erlang VM, if there is one to account for."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    return int(entry.name)
            except OSError:
                continue
    return None


class CpuMeter:
    """CPU seconds per Service Request for each service process, the broker and the bench's own
    client (the User Systems and the receiver): which part bounds the throughput, in a figure
    that the machine's noise moves far less than it moves wall-clock rates."""

    def __init__(self, system: System) -> None:
        self.pids = {name: proc.pid for name, proc in system.procs.items()}
        broker = broker_pid()
        if broker is not None:
            self.pids["rabbitmq"] = broker
        self.totals: dict[str, float] = {}
        self.requests = 0

    def snapshot(self) -> dict[str, float]:
        taken = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        taken["bench_client"] = time.process_time()
        return taken

    def add(self, before: dict[str, float], after: dict[str, float], requests: int) -> None:
        for name, value in after.items():
            self.totals[name] = self.totals.get(name, 0.0) + value - before[name]
        self.requests += requests

    def per_sr_ms(self) -> dict[str, float]:
        if not self.requests:
            return {}
        out = {k: round(v * 1000 / self.requests, 3) for k, v in sorted(self.totals.items())}
        out["total"] = round(sum(self.totals.values()) * 1000 / self.requests, 3)
        return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def broker_relay(url: str, n: int, concurrency: int) -> float:
    """Messages/s through HOPS persistent confirmed hops, closed loop at ``concurrency``."""
    conn = await aio_pika.connect_robust(url)
    async with conn:
        pub = await conn.channel(publisher_confirms=True)
        cons = await conn.channel(publisher_confirms=True)
        await cons.set_qos(prefetch_count=64)
        names = [f"bench.hop{i}" for i in range(HOPS)]
        for name in names:
            await pub.declare_queue(name, durable=True, arguments={"x-queue-type": "classic"})
        done: asyncio.Queue[float] = asyncio.Queue()

        def stage(i: int) -> Any:
            async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
                if i + 1 < HOPS:
                    await cons.default_exchange.publish(
                        aio_pika.Message(msg.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=names[i + 1],
                    )
                else:
                    done.put_nowait(time.perf_counter())
                await msg.ack()

            return on_message

        consumers = []
        for i, name in enumerate(names):
            q = await cons.get_queue(name)
            consumers.append((q, await q.consume(stage(i))))
        body = b"x" * 400  # about a 4.1.1 envelope's size
        sent = 0
        start = time.perf_counter()

        async def publish_one() -> None:
            await pub.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=names[0],
            )

        for _ in range(min(concurrency, n)):
            await publish_one()
            sent += 1
        received = 0
        while received < n:
            await done.get()
            received += 1
            if sent < n:
                await publish_one()
                sent += 1
        elapsed = time.perf_counter() - start
        for q, tag in consumers:
            await q.cancel(tag)
        for name in names:
            await pub.queue_delete(name)
    return n / elapsed


class PipelineClient:
    """Drives the pipeline as ``len(users)`` User Systems at once, each sending its requests in
    RequestID-counter order (the DCC refuses a counter that does not increase per originator),
    so the concurrency is the number of Users."""

    def __init__(
        self,
        system: System,
        users: list[TestUser],
        receiver: ResponseReceiver,
        sessions: list[aiohttp.ClientSession],
    ) -> None:
        self.system, self.users, self.receiver, self.sessions = system, users, receiver, sessions
        self.devices = {u.eui: system.esmes(u.eui) for u in users}
        self.sent_at: dict[str, float] = {}
        self.acks: list[float] = []
        self.responses: list[float] = []
        receiver.on_receive = self._received

    def _received(self, item: Any) -> None:
        rid = str(item.response.request_id)
        t0 = self.sent_at.pop(rid, None)
        if t0 is not None:
            self.responses.append(item.at - t0)

    def documents(self, user: TestUser, n: int) -> list[tuple[str, bytes]]:
        devices = self.devices[user.eui]
        out = []
        for i in range(n):
            rid, doc = user.service_request("4.1.1", devices[i % len(devices)])
            out.append((str(rid), doc))
        return out

    async def send(self, session: aiohttp.ClientSession, rid: str, doc: bytes) -> None:
        t0 = time.perf_counter()
        self.sent_at[rid] = t0
        answer = await post(session, self.system.service_s, doc)
        self.acks.append(time.perf_counter() - t0)
        if answer.response_code != "I99":
            raise RuntimeError(f"{rid} answered {answer.response_code}")

    async def drain(self, timeout: float = 120.0) -> None:
        async with asyncio.timeout(timeout):
            while self.sent_at:
                await asyncio.sleep(0.01)

    def reset(self) -> None:
        self.acks, self.responses = [], []

    async def closed_loop(self, n: int) -> dict[str, float]:
        """Each User sends its share back to back: ``len(users)`` requests always in flight."""
        self.reset()
        per_user = [self.documents(u, n // len(self.users)) for u in self.users]
        start = time.perf_counter()

        async def user_system(
            session: aiohttp.ClientSession, docs: list[tuple[str, bytes]]
        ) -> None:
            for rid, doc in docs:
                await self.send(session, rid, doc)

        await asyncio.gather(
            *(user_system(s, d) for s, d in zip(self.sessions, per_user, strict=True))
        )
        await self.drain()
        total = sum(len(d) for d in per_user)
        return self._summary(total, time.perf_counter() - start)

    async def open_loop(self, rate: float, duration: float) -> dict[str, float]:
        """Requests at a fixed total rate, spread over the Users round robin; a User whose
        previous request is still being acknowledged sends the next right after it."""
        self.reset()
        k = len(self.users)
        per_user_n = max(1, int(rate * duration / k))
        per_user = [self.documents(u, per_user_n) for u in self.users]
        start = time.perf_counter()

        async def user_system(index: int) -> None:
            for j, (rid, doc) in enumerate(per_user[index]):
                due = start + (j * k + index) / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.send(self.sessions[index], rid, doc)

        await asyncio.gather(*(user_system(i) for i in range(k)))
        await self.drain()
        return self._summary(per_user_n * k, time.perf_counter() - start)

    def _summary(self, n: int, elapsed: float) -> dict[str, float]:
        return {
            "srs_per_s": n / elapsed,
            "ack_p50_ms": pct(self.acks, 0.50) * 1000,
            "ack_p99_ms": pct(self.acks, 0.99) * 1000,
            "response_p50_ms": pct(self.responses, 0.50) * 1000,
            "response_p99_ms": pct(self.responses, 0.99) * 1000,
        }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="dccsim-bench-"))
    system = System(home, premises=args.premises, suppliers=args.concurrency)
    system.start()
    sessions: list[aiohttp.ClientSession] = []
    try:
        from dccsim.seed import supplier_eui
        from dccsim.testuser import bundle_dir

        users = [TestUser.load(bundle_dir(home, supplier_eui(i))) for i in range(args.concurrency)]
        receiver = ResponseReceiver(users[0].receiver_ssl())
        await receiver.start()
        for current in participants.load(home).values():
            participants.upsert(
                home,
                participants.Participant(current.user_id, current.eui, current.roles, receiver.url),
            )
        sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=u.client_ssl())) for u in users
        ]
        client = PipelineClient(system, users, receiver, sessions)
        await client.closed_loop(min(200, args.requests))  # warm up
        relay_cpu = CpuMeter(system)
        relay_cpu.pids = {k: v for k, v in relay_cpu.pids.items() if k == "rabbitmq"}
        relay = []
        for _ in range(args.runs):
            before = relay_cpu.snapshot()
            relay.append(
                await broker_relay(system.env["DCCSIM_AMQP_URL"], args.requests, args.concurrency)
            )
            relay_cpu.add(before, relay_cpu.snapshot(), args.requests)
        cpu = CpuMeter(system)
        max_runs = []
        for _ in range(args.runs):
            before = cpu.snapshot()
            max_runs.append(await client.closed_loop(args.requests))
            cpu.add(before, cpu.snapshot(), args.requests)
        maximum = median_of(max_runs)
        half_rate = maximum["srs_per_s"] / 2
        half = median_of(
            [await client.open_loop(half_rate, args.half_rate_seconds) for _ in range(args.runs)]
        )
        await receiver.stop()
    finally:
        for session in sessions:
            await session.close()
        system.stop()
    broker = statistics.median(relay)
    return {
        "srs_per_s": round(maximum["srs_per_s"], 1),
        "ack_p50_ms": round(half["ack_p50_ms"], 2),
        "ack_p99_ms": round(half["ack_p99_ms"], 2),
        "response_p50_ms": round(half["response_p50_ms"], 2),
        "response_p99_ms": round(half["response_p99_ms"], 2),
        "broker_relay_per_s": round(broker, 1),
        "ratio": round(maximum["srs_per_s"] / broker, 3),
        "at_max": {k: round(v, 2) for k, v in maximum.items()},
        "cpu_ms_per_sr": cpu.per_sr_ms(),
        "relay_cpu_ms_per_message": relay_cpu.per_sr_ms(),
        "at_half_rate": {
            "rate_per_s": round(half_rate, 1),
            **{k: round(v, 2) for k, v in half.items()},
        },
        "run": {
            "srv": "4.1.1",
            "requests": args.requests,
            "concurrency": args.concurrency,
            "runs": args.runs,
            "half_rate_seconds": args.half_rate_seconds,
            "premises": args.premises,
            "queue_hops": HOPS,
            "statistic": "median of runs",
            "event_loop": str(EVENT_LOOP),
            "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "targets": {
            "ratio_min": 0.5,
            "ack_p99_ms_max_at_half_rate": 25,
            "response_p99_ms_max_at_half_rate": 150,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--half-rate-seconds", type=float, default=10.0)
    parser.add_argument("--premises", type=int, default=96)
    args = parser.parse_args()
    # the User side and the bare-broker relay on the event loop the services run on
    with asyncio.Runner(loop_factory=loop_factory(EVENT_LOOP)) as runner:
        result = runner.run(main_async(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':<22}{'value':>12}")
    for key in (
        "srs_per_s",
        "broker_relay_per_s",
        "ratio",
        "ack_p50_ms",
        "ack_p99_ms",
        "response_p50_ms",
        "response_p99_ms",
    ):
        print(f"{key:<22}{result[key]:>12}")
    print("CPU ms per Service Request at the maximum rate:")
    for name, value in result["cpu_ms_per_sr"].items():
        print(f"  {name:<20}{value:>12}")
    print(
        f"(latencies at half the maximum rate, {result['at_half_rate']['rate_per_s']}/s; "
        f"written to {RESULTS / 'pipeline.json'})"
    )


if __name__ == "__main__":
    main()
