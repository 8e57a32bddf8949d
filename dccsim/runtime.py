"""What every service process does around its own logic: logging, metrics, the health side
port, the bus, signal handling and an orderly stop.

A service's ``run(settings)`` calls ``run_service(name, settings, metrics_port, setup)``; ``setup``
receives the ``ServiceRuntime`` after the bus is connected, registers its consumers and HTTP
servers and adds readiness checks and cleanups.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from dccsim import logging as dlog
from dccsim.bus import Bus
from dccsim.config import CommonSettings, EventLoop
from dccsim.metrics import (
    ReadinessCheck,
    ServiceMetrics,
    build_health_app,
    start_health_server,
    watch_loop_lag,
)

log = logging.getLogger(__name__)

Cleanup = Callable[[], Awaitable[None]]


T = TypeVar("T")


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the event loop ``choice`` names: uvloop's where it is installed (it is a
    dependency where it builds: not on Windows), the standard one otherwise or when asked."""
    if choice is EventLoop.UVLOOP:
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: running on the standard asyncio loop")
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_until_complete(main: Coroutine[Any, Any, T], settings: CommonSettings) -> T:
    """``asyncio.run(main)`` on the event loop ``settings.event_loop`` names: how a service
    process runs. uvloop took a fifth off the pipeline's CPU per Service Request (its
    transports, timers and callbacks are C; bench/pipeline.py, ``DCCSIM_EVENT_LOOP``)."""
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        return runner.run(main)


@dataclass
class ServiceRuntime:
    name: str
    settings: CommonSettings
    metrics: ServiceMetrics
    bus: Bus
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    cleanups: list[Cleanup] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task that is kept referenced and whose failure is logged."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)
        return task


async def run_service(
    name: str,
    settings: CommonSettings,
    metrics_port: int,
    setup: Callable[[ServiceRuntime], Awaitable[None]],
    *,
    use_bus: bool = True,
) -> None:
    dlog.configure(settings, name)
    # Database drivers (aiosqlite) run in a worker thread; with the default 5 ms GIL switch
    # interval every handoff to it can wait that long behind the busy event loop.
    sys.setswitchinterval(0.0005)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = ServiceMetrics(name)
    bus = Bus(settings, metrics, name=f"dccsim-{name}")
    rt = ServiceRuntime(name, settings, metrics, bus)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, rt.stopping.set)
    rt.spawn(watch_loop_lag(metrics), "loop-lag")
    started = asyncio.Event()
    rt.checks["started"] = started.is_set  # not ready until setup has opened every listener
    if use_bus:
        rt.checks["broker"] = lambda: bus.is_connected
    health_runner: web.AppRunner | None = None
    try:
        health_runner = await start_health_server(
            build_health_app(metrics, rt.checks), settings.metrics_host, metrics_port
        )
        if use_bus:
            await bus.connect()
        await setup(rt)
        # Long-lived objects made at start (keys, schemas, caches) leave the GC's view, and
        # young collections run less often: fewer pauses in the request path's tail latency.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        started.set()
        log.info("service ready", extra={"metrics_port": metrics_port})
        await rt.stopping.wait()
        log.info("stopping")
    finally:
        for cleanup in reversed(rt.cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("cleanup failed")
        if use_bus:
            await bus.close()
        for task in list(rt.tasks):
            task.cancel()
        if health_runner is not None:
            await health_runner.cleanup()
