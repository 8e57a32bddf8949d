"""The ``dccsim`` command.

    dccsim up                 start every service as a child process (PKI and demo estate first)
    dccsim run SERVICE        run one service in the foreground
    dccsim services           list the runnable services
    dccsim pki ...            the development PKI (init, issue-party, ...)
    dccsim seed               the demo participant and a small estate
    dccsim send SRV --device EUI   send a signed Service Request as the demo participant
    dccsim receive            run the demo participant's Receive Response Service

State lives under ``$DCCSIM_HOME`` (default ``./var``). Services are found through the
``dccsim.services`` entry-point group, each exposing ``run(settings)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from dccsim import config


@dataclass(frozen=True)
class ServiceInfo:
    settings: type[config.CommonSettings]
    metrics_port: Callable[[Any], int]
    endpoints: Callable[[Any], dict[str, str]]


SERVICES: dict[str, ServiceInfo] = {
    "inventory": ServiceInfo(
        config.InventorySettings, lambda s: s.inventory_metrics_port, lambda s: {}
    ),
    "transform": ServiceInfo(
        config.TransformSettings, lambda s: s.transform_metrics_port, lambda s: {}
    ),
    "gateway": ServiceInfo(
        config.GatewaySettings,
        lambda s: s.gateway_metrics_port,
        lambda s: {"sm_wan_gateway": f"tls://{s.gateway_host}:{s.gateway_port}"},
    ),
    "wan": ServiceInfo(config.WanSettings, lambda s: s.wan_metrics_port, lambda s: {}),
    "user_gateway": ServiceInfo(
        config.UserGatewaySettings,
        lambda s: s.user_gateway_metrics_port,
        lambda s: {
            f"duis_{ws}": f"{'http' if s.insecure_http else 'https'}://{s.user_gateway_host}:"
            f"{s.user_gateway_port}/api/v1/{ws}"
            for ws in ("serviceS", "serviceD", "serviceT")
        },
    ),
    "smki_repository": ServiceInfo(
        config.SmkiRepositorySettings,
        lambda s: s.smki_repository_metrics_port,
        lambda s: {
            "smki_repository": f"http://{s.smki_repository_host}:{s.smki_repository_port}"
            "/services/certificatesearch"
        },
    ),
    "testing": ServiceInfo(
        config.TestingSettings,
        lambda s: s.testing_metrics_port,
        lambda s: {"testing_api": f"http://{s.testing_host}:{s.testing_port}/api/v1"},
    ),
}
# Start order: the inventory answers RPCs the User Gateway makes; the gateway before the WAN.
START_ORDER = (
    "inventory",
    "gateway",
    "transform",
    "wan",
    "user_gateway",
    "smki_repository",
    "testing",
)


def _home() -> Path:
    return config.CommonSettings().home


def _runnable() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="dccsim.services")}


def cmd_services(_: argparse.Namespace) -> int:
    for name in sorted(_runnable()):
        print(name)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    runnable = _runnable()
    if args.service not in runnable:
        print(
            f"dccsim: no service {args.service!r}; known: {', '.join(sorted(runnable))}",
            file=sys.stderr,
        )
        return 2
    info = SERVICES.get(args.service)
    settings = info.settings() if info else config.CommonSettings()
    runnable[args.service].load()(settings)
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from dccsim.seed import seed_demo

    t0 = time.perf_counter()
    result = seed_demo(
        _home(), premises=args.premises, response_url=args.response_url, suppliers=args.suppliers
    )
    print(
        f"demo estate: {result.premises} premises, {result.devices} devices "
        f"({time.perf_counter() - t0:.1f} s); demo Supplier bundle: {result.supplier_bundle}"
    )
    return 0


def _wait_ready(name: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def cmd_up(args: argparse.Namespace) -> int:
    from dccsim import estate
    from dccsim.seed import seed_demo

    home = _home()
    current = estate.load(home)
    if current and args.premises is None:
        # Keep the estate already seeded (by `dccsim seed` or `dccsim estate seed`).
        suppliers = len({p.registrations.get("IS") for p in current} - {None})
        result = seed_demo(home, premises=None, suppliers=max(1, suppliers))
    else:
        result = seed_demo(home, premises=args.premises or 3)
    print(f"PKI and demo estate ready ({result.premises} premises, {result.devices} devices)")
    stop = False

    def on_signal(signum: int, _: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    env = dict(os.environ, DCCSIM_HOME=str(home.absolute()))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(name: str) -> subprocess.Popen[bytes]:
        log_file = (log_dir / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "dccsim", "run", name],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

    endpoints: dict[str, Any] = {"services": {}}
    try:
        for name in START_ORDER:
            info = SERVICES[name]
            settings = info.settings()
            procs[name] = start(name)
            port = info.metrics_port(settings)
            if not _wait_ready(name, port, procs[name], args.ready_timeout):
                print(
                    f"dccsim: {name} did not become ready; see {log_dir / (name + '.log')}",
                    file=sys.stderr,
                )
                return 1
            endpoints["services"][name] = {
                "pid": procs[name].pid,
                "metrics": f"http://127.0.0.1:{port}/metrics",
                "healthz": f"http://127.0.0.1:{port}/healthz",
                "readyz": f"http://127.0.0.1:{port}/readyz",
                **info.endpoints(settings),
            }
            if stop:
                return 0
        endpoints["participants"] = {"demo_supplier_bundle": str(result.supplier_bundle)}
        (home / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        print("dccsim is up:")
        for name, eps in endpoints["services"].items():
            for key, value in eps.items():
                if key != "pid":
                    print(f"  {name:<13} {key:<18} {value}")
        print(f"  endpoints written to {home / 'endpoints.json'}; logs in {log_dir}")
        print(
            "  try: dccsim receive &  then  dccsim send 4.1.1 --device "
            f"{_first_esme(home)}   (Ctrl-C stops everything)"
        )
        sys.stdout.flush()
        restarts: dict[str, list[float]] = {}
        while not stop:
            time.sleep(0.5)
            for name, proc in list(procs.items()):
                if proc.poll() is not None and not stop:
                    recent = [t for t in restarts.get(name, []) if time.time() - t < 60]
                    if len(recent) >= 5:
                        print(f"dccsim: {name} keeps exiting; giving up", file=sys.stderr)
                        return 1
                    print(f"dccsim: {name} exited ({proc.returncode}); restarting", file=sys.stderr)
                    restarts[name] = [*recent, time.time()]
                    procs[name] = start(name)
        return 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
        print("dccsim stopped")


def _first_esme(home: Path) -> str:
    from dccsim import estate

    for p in estate.load(home):
        for d in p.devices:
            if d.device_type.value == "ESME":
                return d.eui
    return "<ESME EUI>"


def _demo_user(args: argparse.Namespace) -> Any:
    from dccsim.seed import DEMO_SUPPLIER_EUI
    from dccsim.testuser import TestUser, bundle_dir

    bundle = Path(args.participant) if args.participant else bundle_dir(_home(), DEMO_SUPPLIER_EUI)
    if not (bundle / "participant.json").is_file():
        print(
            f"dccsim: no participant bundle at {bundle}; run `dccsim seed` first", file=sys.stderr
        )
        raise SystemExit(2)
    return TestUser.load(bundle)


def cmd_send(args: argparse.Namespace) -> int:
    import aiohttp

    from dccsim.testuser import post

    user = _demo_user(args)
    settings = config.UserGatewaySettings()
    scheme = "http" if settings.insecure_http else "https"
    url = args.url or (
        f"{scheme}://{settings.user_gateway_host}:{settings.user_gateway_port}/api/v1/serviceS"
    )
    rid, document = user.service_request(
        args.srv, args.device, command_variant=args.command_variant
    )

    async def go() -> int:
        connector = aiohttp.TCPConnector(ssl=user.client_ssl())
        async with aiohttp.ClientSession(connector=connector) as session:
            answer = await post(session, url, document)
        print(json.dumps({"request_id": str(rid), "response_code": answer.response_code}))
        return 0 if answer.response_code in ("I0", "I99") else 1

    return asyncio.run(go())


def cmd_receive(args: argparse.Namespace) -> int:
    from dccsim import participants
    from dccsim.testuser import ReceivedResponse, ResponseReceiver

    user = _demo_user(args)

    def show(item: ReceivedResponse) -> None:
        r = item.response
        print(
            json.dumps(
                {
                    "request_id": str(r.request_id),
                    "response_id": str(r.response_id),
                    "response_code": r.response_code,
                    "gbcs_payload": r.gbcs_payload.hex().upper() if r.gbcs_payload else None,
                }
            ),
            flush=True,
        )

    async def go() -> int:
        receiver = ResponseReceiver(user.receiver_ssl(), port=args.port, on_receive=show)
        await receiver.start()
        home = _home()
        current = participants.load(home)[user.user_id]
        participants.upsert(
            home,
            participants.Participant(current.user_id, current.eui, current.roles, receiver.url),
        )
        print(
            f"receiving for {user.user_id} at {receiver.url} (registered); Ctrl-C stops", flush=True
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await receiver.stop()
        return 0

    return asyncio.run(go())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dccsim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start every service, print the endpoints")
    up.add_argument(
        "--premises",
        type=int,
        default=None,
        help="demo estate size (default: keep the seeded estate, or 3)",
    )
    up.add_argument("--ready-timeout", type=float, default=60.0)
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run one service in the foreground")
    run.add_argument("service")
    run.set_defaults(func=cmd_run)

    sub.add_parser("services", help="list runnable services").set_defaults(func=cmd_services)

    seed = sub.add_parser("seed", help="the demo participant and estate")
    seed.add_argument("--premises", type=int, default=3)
    seed.add_argument("--response-url")
    seed.add_argument(
        "--suppliers",
        type=int,
        default=1,
        help="demo Suppliers sharing the premises round robin (default 1)",
    )
    seed.set_defaults(func=cmd_seed)

    send = sub.add_parser("send", help="send a signed Service Request as a participant")
    send.add_argument("srv", help="Service Reference Variant, e.g. 4.1.1")
    send.add_argument("--device", required=True, help="target device EUI-64")
    send.add_argument("--command-variant", type=int, default=1)
    send.add_argument("--participant", help="bundle folder (default: the demo Supplier)")
    send.add_argument("--url", help="web service URL (default: this installation's serviceS)")
    send.set_defaults(func=cmd_send)

    receive = sub.add_parser("receive", help="run a participant's Receive Response Service")
    receive.add_argument("--port", type=int, default=8490)
    receive.add_argument("--participant", help="bundle folder (default: the demo Supplier)")
    receive.set_defaults(func=cmd_receive)
    _register_plugins(sub)
    return parser


def _register_plugins(sub: Any) -> None:
    """Command groups contributed through the ``dccsim.commands`` entry points."""
    for ep in entry_points(group="dccsim.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # a part not installed, or not written yet
            if os.environ.get("DCCSIM_DEBUG"):
                print(f"dccsim: command group {ep.name} unavailable: {exc}", file=sys.stderr)
            continue
        register(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI error is a message, not a stack trace
        if os.environ.get("DCCSIM_DEBUG"):
            raise
        print(f"dccsim: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
