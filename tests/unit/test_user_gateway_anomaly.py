"""Anomaly detection: the sliding window, the thresholds, the AD1 DCC Alert, the quarantine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from dccsim.bus import Envelope
from dccsim.bus.topology import DUIS_RESPONSE, SR_ACCEPTED
from dccsim.config import UserGatewaySettings
from dccsim.duis.xml import (
    DCC_ALERT_QUARANTINED_REQUEST,
    build_dcc_alert,
    check_schema,
    load_schema,
    parse_response,
    quarantined_request,
    to_bytes,
)
from dccsim.metrics import ServiceMetrics
from dccsim.storage import Database
from services.user_gateway.anomaly import AnomalyDetector, SlidingWindow
from services.user_gateway.quarantine import (
    QUARANTINED,
    RELEASED,
    NotQuarantined,
    Quarantine,
    build_admin_app,
)

RID = "90-B3-D5-1F-30-01-D0-00:00-DB-12-34-56-78-90-A0:1001"
USER_EUI = "90-B3-D5-1F-30-01-D0-00"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------- the sliding window


def test_window_admits_up_to_the_limit_then_refuses() -> None:
    window = SlidingWindow(3, 10.0)
    assert [window.admit(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [True, True, True, False, False]
    assert window.count(4.0) == 3


def test_window_slides_one_event_at_a_time() -> None:
    window = SlidingWindow(2, 10.0)
    assert window.admit(0.0) and window.admit(5.0)
    assert not window.admit(9.9)
    assert window.admit(10.0)  # the event at 0.0 has left the window (exactly window_s old)
    assert not window.admit(14.9)  # 5.0 and 10.0 are still in it
    assert window.admit(15.0)
    assert window.count(15.0) == 2


def test_refused_events_do_not_count() -> None:
    window = SlidingWindow(1, 10.0)
    assert window.admit(0.0)
    for t in range(1, 10):
        assert not window.admit(float(t))
    assert window.admit(10.0)


def test_window_empties_after_quiet_time() -> None:
    window = SlidingWindow(2, 1.0)
    window.admit(0.0)
    window.admit(0.5)
    assert window.count(100.0) == 0


def test_zero_threshold_refuses_everything() -> None:
    window = SlidingWindow(0, 10.0)
    assert not window.admit(0.0)


def test_window_arguments_checked() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(-1, 10.0)
    with pytest.raises(ValueError):
        SlidingWindow(1, 0.0)


# ---------------------------------------------------------------------- thresholds


def test_no_thresholds_admits_everything() -> None:
    detector = AnomalyDetector({}, 60.0)
    assert not detector.enabled
    assert all(detector.admit("U", "4.1.1") for _ in range(10_000))


def test_thresholds_per_user_and_per_srv() -> None:
    clock = Clock()
    detector = AnomalyDetector({"4.1.1": 2}, 60.0, clock=clock)
    assert detector.enabled
    assert detector.admit("A", "4.1.1") and detector.admit("A", "4.1.1")
    assert not detector.admit("A", "4.1.1")
    assert detector.admit("B", "4.1.1") and detector.admit("B", "4.1.1")  # B has its own window
    assert all(detector.admit("A", "7.1") for _ in range(100))  # no threshold for 7.1
    assert detector.count("A", "4.1.1") == 2
    clock.now += 60.0
    assert detector.admit("A", "4.1.1")


def test_wildcard_is_the_default_per_srv() -> None:
    clock = Clock()
    detector = AnomalyDetector({"*": 1, "4.1.1": 3}, 10.0, clock=clock)
    assert detector.threshold("4.1.1") == 3
    assert detector.threshold("7.1") == 1
    assert [detector.admit("A", "4.1.1") for _ in range(4)] == [True, True, True, False]
    # "*" is counted per variant, not summed across them
    assert detector.admit("A", "7.1") and not detector.admit("A", "7.1")
    assert detector.admit("A", "6.15.1") and not detector.admit("A", "6.15.1")


def test_negative_threshold_refused() -> None:
    with pytest.raises(ValueError):
        AnomalyDetector({"4.1.1": -1}, 60.0)
    with pytest.raises(ValueError):
        AnomalyDetector({"4.1.1": 1}, 0.0)


def test_settings_take_thresholds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCCSIM_ANOMALY_THRESHOLDS", '{"4.1.1": 2, "*": 50}')
    monkeypatch.setenv("DCCSIM_ANOMALY_WINDOW_S", "5")
    settings = UserGatewaySettings()
    assert settings.anomaly_thresholds == {"4.1.1": 2, "*": 50}
    assert settings.anomaly_window_s == 5.0
    monkeypatch.delenv("DCCSIM_ANOMALY_THRESHOLDS")
    assert UserGatewaySettings().anomaly_thresholds == {}


# ---------------------------------------------------------------------- the DCC Alert


def _alert() -> etree._Element:
    return build_dcc_alert(
        response_id=f"90-B3-D5-1F-30-00-00-02:{USER_EUI}:17",
        alert_code=DCC_ALERT_QUARANTINED_REQUEST,
        alert=quarantined_request(request_id=RID, event_ref=42),
        response_datetime=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )


def test_dcc_alert_validates_against_the_duis_xsd(reference_dir: Path) -> None:
    schema = load_schema(reference_dir / "duis" / "xsd")
    check_schema(schema, _alert())
    for breach in ("ADDCCThresholdBreach", "ADAttributeLimitsBreach"):
        root = build_dcc_alert(
            response_id=f"90-B3-D5-1F-30-00-00-02:{USER_EUI}:18",
            alert_code="AD1",
            alert=quarantined_request(request_id=RID, event_ref=1, breach=breach),
            response_datetime=dt.datetime.now(dt.UTC),
            request_id=RID,
        )
        check_schema(schema, root)


def test_dcc_alert_parses_back() -> None:
    parsed = parse_response(to_bytes(_alert()))
    assert parsed.body_name == "DCCAlertMessage"
    assert parsed.alert_code == "AD1"
    assert parsed.response_code == "I0"
    assert parsed.request_id is None
    assert str(parsed.response_id).endswith(":17")
    assert parsed.root is not None
    ns = {"sr": "http://www.dccinterface.co.uk/ServiceUserGateway"}
    breach = parsed.root.find(".//sr:QuarantinedRequest/sr:ADUserThresholdBreach", ns)
    assert breach is not None
    assert breach.findtext("sr:RequestID", namespaces=ns) == RID
    assert breach.findtext("sr:QuarantineEventRef", namespaces=ns) == "42"


def test_quarantined_request_arguments_checked() -> None:
    with pytest.raises(ValueError):
        quarantined_request(request_id=RID, event_ref=1, breach="Nope")
    with pytest.raises(ValueError):
        quarantined_request(request_id=RID, event_ref=10**20)


# ---------------------------------------------------------------------- the quarantine


class FakeBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope]] = []
        self.timeline: list[tuple[str, str]] = []
        self.fail = False

    async def publish(self, routing_key: str, envelope: Envelope) -> None:
        if self.fail:
            raise RuntimeError("broker down (test)")
        self.published.append((routing_key, envelope))

    def emit_timeline(self, request_id: str, stage: str, **_: Any) -> None:
        self.timeline.append((request_id, stage))


def _body() -> dict[str, Any]:
    return {
        "srv": "4.1.1",
        "cv": 1,
        "user_id": "SUPPLIER1",
        "user_eui": USER_EUI,
        "counter": 1001,
        "device": {"eui": "00-DB-12-34-56-78-90-A0"},
        "body_xml": b"<sr:ReadInstantaneousImportRegisters/>",
    }


@pytest.fixture
async def quarantine(tmp_path: Path) -> Any:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'quarantine.db'}")
    bus = FakeBus()
    q = Quarantine(
        db,
        bus,  # type: ignore[arg-type]
        to_bytes,
        ServiceMetrics("user_gateway_test"),
    )
    await q.create_schema()
    yield q, bus
    await q.close()
    await db.dispose()


async def test_hold_keeps_the_request_and_alerts_the_user(
    quarantine: tuple[Quarantine, FakeBus],
) -> None:
    q, bus = quarantine
    ref = await q.hold(request_id=RID, srv="4.1.1", web_service="serviceS", accepted_body=_body())
    entry = await q.get(ref)
    assert entry is not None and entry.status == QUARANTINED and entry.alerted_at is not None
    assert Envelope.decode(entry.envelope).body == _body()
    [(key, envelope)] = bus.published
    assert key == DUIS_RESPONSE
    assert envelope.body["user_id"] == "SUPPLIER1"
    assert envelope.body["delivery_key"] == f"dcc-alert:AD1:{RID}"
    alert = parse_response(envelope.body["xml"])
    assert alert.body_name == "DCCAlertMessage" and alert.alert_code == "AD1"
    assert (RID, "quarantined") in bus.timeline


async def test_release_publishes_an_ordinary_accepted_request(
    quarantine: tuple[Quarantine, FakeBus],
) -> None:
    q, bus = quarantine
    ref = await q.hold(request_id=RID, srv="4.1.1", web_service="serviceS", accepted_body=_body())
    bus.published.clear()
    entry = await q.release(ref)
    assert entry.status == RELEASED and entry.released_at is not None
    [(key, envelope)] = bus.published
    assert key == SR_ACCEPTED
    assert envelope.kind == "sr.accepted" and envelope.request_id == RID
    assert envelope.body == _body()
    with pytest.raises(NotQuarantined):
        await q.release(ref)  # once only
    with pytest.raises(NotQuarantined):
        await q.release(ref + 100)
    assert [e.request_id for e in await q.entries(status=RELEASED)] == [RID]
    assert await q.entries(status=QUARANTINED) == []


async def test_alert_that_failed_is_sent_again(quarantine: tuple[Quarantine, FakeBus]) -> None:
    q, bus = quarantine
    bus.fail = True
    ref = await q.hold(request_id=RID, srv="4.1.1", web_service="serviceS", accepted_body=_body())
    entry = await q.get(ref)
    assert entry is not None and entry.alerted_at is None  # kept all the same
    bus.fail = False
    assert await q.resend_alerts() == 1
    assert len(bus.published) == 1
    assert await q.resend_alerts() == 0


async def test_admin_api_lists_shows_and_releases(
    quarantine: tuple[Quarantine, FakeBus],
) -> None:
    q, bus = quarantine
    ref = await q.hold(request_id=RID, srv="4.1.1", web_service="serviceS", accepted_body=_body())
    async with TestClient(TestServer(build_admin_app(q))) as client:
        listed = await (await client.get("/quarantine?status=quarantined")).json()
        assert [e["request_id"] for e in listed["entries"]] == [RID]
        assert listed["entries"][0]["quarantine_event_ref"] == ref
        shown = await (await client.get(f"/quarantine/{ref}")).json()
        assert shown["status"] == "quarantined" and shown["srv"] == "4.1.1"
        assert (await client.get("/quarantine/999")).status == 404
        assert (await client.get("/quarantine/x")).status == 400
        assert (await client.get("/quarantine?status=bogus")).status == 400
        released = await client.post(f"/quarantine/{ref}/release")
        assert released.status == 200 and (await released.json())["status"] == "released"
        assert (await client.post(f"/quarantine/{ref}/release")).status == 409
    assert bus.published[-1][0] == SR_ACCEPTED
