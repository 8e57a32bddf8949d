"""A whole dccsim installation for tests and benchmarks: a fresh DCCSIM_HOME, a private RabbitMQ
vhost, free ports, and every service as a separate process started with ``dccsim run``."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dccsim import estate
from dccsim.seed import seed_demo
from tests.broker import create_vhost, delete_vhost

SERVICE_ORDER = ("inventory", "gateway", "transform", "wan", "user_gateway")


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range (32768 and up here): the kernel's
    own choice (bind to port 0) comes from that range, where any process's next outgoing
    connection may take it before the service binds it."""
    low, high = 20_000, 32_000
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, first - 1)
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(200):
        port = random.randint(low, high)
        if port in _HANDED_OUT:  # free now, but already promised to a service
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


_HANDED_OUT: set[int] = set()  # every port this process gave out: never the same one twice


@dataclass
class System:
    home: Path
    premises: int = 3
    suppliers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    vhost: str = ""
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        self.vhost, url = create_vhost()
        self.ports = {
            "user_gateway": free_port(),
            "gateway": free_port(),
            "user_gateway_admin": free_port(),
            **{f"{name}_metrics": free_port() for name in SERVICE_ORDER},
        }
        self.env = {
            **os.environ,
            "DCCSIM_HOME": str(self.home),
            "DCCSIM_AMQP_URL": url,
            "DCCSIM_USER_GATEWAY_PORT": str(self.ports["user_gateway"]),
            "DCCSIM_USER_GATEWAY_ADMIN_PORT": str(self.ports["user_gateway_admin"]),
            "DCCSIM_GATEWAY_PORT": str(self.ports["gateway"]),
            "DCCSIM_WAN_GATEWAY_PORT": str(self.ports["gateway"]),
            "DCCSIM_DELIVERY_RETRY_INITIAL_S": "0.2",
            "DCCSIM_DELIVERY_RETRY_MAX_S": "0.5",
            "DCCSIM_WAN_DEADLINE_S": "10",
            **{
                f"DCCSIM_{name.upper()}_METRICS_PORT": str(self.ports[f"{name}_metrics"])
                for name in SERVICE_ORDER
            },
            **self.extra_env,
        }
        self.env.pop("DCCSIM_CONFIG", None)
        seed_demo(self.home, premises=self.premises, suppliers=self.suppliers)
        for name in SERVICE_ORDER:
            self.start_service(name)

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def start_service(self, name: str, *, wait: bool = True) -> None:
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name).open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "dccsim", "run", name],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.ports[f'{name}_metrics']}/readyz"
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log_path(name).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready: {self.log_path(name).read_text()[-3000:]}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def metric(self, service: str, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of a metric's samples on a service whose labels include ``labels``."""
        port = self.ports[f"{service}_metrics"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                continue
            total += float(value)
        return total

    @property
    def service_s(self) -> str:
        return f"https://127.0.0.1:{self.ports['user_gateway']}/api/v1/serviceS"

    def url(self, web_service: str) -> str:
        return f"https://127.0.0.1:{self.ports['user_gateway']}/api/v1/{web_service}"

    def esmes(self, supplier: str | None = None) -> list[str]:
        """The ESMEs of the estate (those whose Import Supplier is ``supplier``, if given)."""
        return [
            d.eui
            for p in estate.load(self.home)
            for d in p.devices
            if d.device_type.value == "ESME"
            and (supplier is None or p.registrations.get("IS") == supplier)
        ]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.vhost:
            delete_vhost(self.vhost)
