"""Prometheus metrics and the health side port every service serves.

Each service builds a ``ServiceMetrics`` on its own ``CollectorRegistry`` (tests pass a private
one) and serves ``/metrics``, ``/healthz`` (the process is alive) and ``/readyz`` (every readiness
check passes: broker connected, database open, ...) on ``metrics_host:<service>_metrics_port``.
Names use the ``dccsim_`` prefix and base units; no EUI, request id or serial is ever a label.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool] | bool]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    """The metrics the shared kit records for every service."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "dccsim_consumer_messages_received",
            "Messages delivered to a consumer",
            ["queue"],
            registry=r,
        )
        self.processed = Counter(
            "dccsim_consumer_messages_processed",
            "Messages a consumer finished, by outcome (ack, retry, dead_letter)",
            ["queue", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "dccsim_consumer_processing_duration_seconds",
            "Handler run time",
            ["queue"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "dccsim_consumer_in_flight", "Messages being handled now", ["queue"], registry=r
        )
        self.message_age = Histogram(
            "dccsim_consumer_message_age_seconds",
            "Publish-to-receive age of messages",
            ["queue"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.published = Counter(
            "dccsim_bus_published_messages",
            "Messages published and confirmed by the broker",
            ["routing_key"],
            registry=r,
        )
        self.publish_failures = Counter(
            "dccsim_bus_publish_failures",
            "Publishes the broker did not confirm",
            ["routing_key"],
            registry=r,
        )
        self.confirm_duration = Histogram(
            "dccsim_bus_publish_confirm_duration_seconds",
            "Time from publish to broker confirm",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            "dccsim_bus_reconnects", "Times the broker connection was re-established", registry=r
        )
        self.connected = Gauge(
            "dccsim_bus_connected", "1 while the broker connection is up", registry=r
        )
        self.rpc_calls = Counter(
            "dccsim_rpc_calls",
            "RPC calls made, by method and outcome",
            ["method", "outcome"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "dccsim_rpc_duration_seconds",
            "RPC round trip",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Gauge(
            "dccsim_event_loop_lag_seconds",
            "How late the event loop ran a 0.5 s timer",
            registry=r,
        )


async def watch_loop_lag(metrics: ServiceMetrics, interval: float = 0.5) -> None:
    """Measure event-loop lag forever (run it as a background task)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        metrics.loop_lag.set(max(0.0, loop.time() - start - interval))


def build_health_app(
    metrics: ServiceMetrics, checks: dict[str, ReadinessCheck] | None = None
) -> web.Application:
    """The side-port app: /metrics, /healthz, /readyz."""
    checks = checks if checks is not None else {}
    started = time.time()

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {"service": metrics.service, "status": "alive", "uptime_s": time.time() - started}
        )

    async def readyz(_: web.Request) -> web.Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                outcome = check()
                if asyncio.iscoroutine(outcome):
                    outcome = await outcome
                results[name] = bool(outcome)
            except Exception:  # a failing check means not ready, never a 500
                log.exception("readiness check %s failed", name)
                results[name] = False
        ready = all(results.values())
        return web.json_response(
            {"service": metrics.service, "ready": ready, "checks": results},
            status=200 if ready else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_health_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
