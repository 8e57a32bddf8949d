"""Helpers for tests that use the real RabbitMQ: a private vhost per test session, and cutting a
named connection the way a network fault or broker restart would."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from urllib.parse import quote

BROKER_HOST = os.environ.get("DCCSIM_TEST_AMQP_HOST", "127.0.0.1")


def _ctl(*args: str) -> str:
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def rabbitmqctl_available() -> bool:
    return shutil.which("rabbitmqctl") is not None


def create_vhost() -> tuple[str, str]:
    """A fresh vhost with guest permissions; returns (vhost, amqp url)."""
    vhost = f"dccsim-test-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost, f"amqp://guest:guest@{BROKER_HOST}:5672/{quote(vhost, safe='')}"


def delete_vhost(vhost: str) -> None:
    _ctl("delete_vhost", vhost)


def close_connections(vhost: str, name_contains: str = "") -> int:
    """Force-close the broker connections of ``vhost`` whose client name contains the text."""
    out = _ctl("list_connections", "pid", "vhost", "client_properties")
    closed = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[1] != vhost or name_contains not in parts[2]:
            continue
        _ctl("close_connection", parts[0], "test: cut the connection")
        closed += 1
    return closed
