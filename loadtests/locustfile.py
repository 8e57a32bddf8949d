"""Locust load test: Users sending signed DUIS Service Requests over mutual TLS.

    dccsim seed --premises 960 --suppliers 32      # 32 demo Suppliers, 30 premises each
    dccsim up &                                   # or `make run`
    locust -f loadtests/locustfile.py --headless -u 32 -r 8 -t 60s \\
        --host https://127.0.0.1:8443

Each simulated User is one demo Supplier (``dccsim seed --suppliers K``; users beyond K share
nothing and wait), sending SRV 4.1.1 to the ESMEs registered to it, one request at a time, in
RequestID counter order — the DCC refuses a counter that does not increase per originator, so
the concurrency is the number of Users. Locust measures the synchronous acknowledgement (I99);
the async Responses go to the Receive Response Service the Suppliers registered (run
``dccsim receive`` to see them) and dccsim's ``dccsim_delivery_latency_seconds`` measures them.
Environment: ``DCCSIM_HOME`` (default ./var), ``DCCSIM_LOAD_SRV`` (default 4.1.1).
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

from locust import HttpUser, between, task

from dccsim import estate
from dccsim.duis.xml import parse_response
from dccsim.seed import supplier_eui
from dccsim.testuser import TestUser, bundle_dir

HOME = Path(os.environ.get("DCCSIM_HOME", "var"))
SRV = os.environ.get("DCCSIM_LOAD_SRV", "4.1.1")
_next_supplier = itertools.count()
_lock = threading.Lock()


def _devices_of(supplier: str) -> list[str]:
    return [
        d.eui
        for p in estate.load(HOME)
        for d in p.devices
        if d.device_type.value == "ESME" and p.registrations.get("IS") == supplier
    ]


class DuisUser(HttpUser):
    wait_time = between(0, 0)

    def on_start(self) -> None:
        with _lock:
            index = next(_next_supplier)
        eui = supplier_eui(index)
        bundle = bundle_dir(HOME, eui)
        if not (bundle / "participant.json").is_file():
            raise RuntimeError(f"no demo Supplier {index} ({bundle}); seed with --suppliers")
        self.user = TestUser.load(bundle)
        self.devices = _devices_of(self.user.eui)
        if not self.devices:
            raise RuntimeError(f"no ESMEs registered to {eui}")
        self.targets = itertools.cycle(self.devices)
        self.client.cert = (str(bundle / "tls-client.pem"), str(bundle / "tls-client.key"))
        self.client.verify = str(bundle / "dccki-ca.pem")

    @task
    def send_service_request(self) -> None:
        _, document = self.user.service_request(SRV, next(self.targets))
        with self.client.post(
            "/api/v1/serviceS",
            data=document,
            name=f"serviceS {SRV}",
            headers={"Content-Type": "application/xml"},
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            code = parse_response(resp.content).response_code
            if code != "I99":
                resp.failure(f"DUIS {code}")
