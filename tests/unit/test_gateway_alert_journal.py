"""The gateway's alert journal (gateway.alert_journal): unacknowledged alerts kept on disk until
the WAN side acknowledges them, reloaded after a restart, compacted, bounded; and the gateway's
use of it (ids on the link, acknowledgements, resends)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from dccsim.estate import REGIONS
from dccsim.pki.keystore import KeyStore
from gateway import alert_journal
from gateway.alert_journal import AlertJournal
from gateway.hosting import DeviceModels, EstateIndex
from gateway.network import NetworkModel
from gateway.server import GatewayServer, alert_journal_file

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def alert(n: int) -> dict[str, Any]:
    return {
        "t": "alert",
        "device": f"00-00-00-00-00-00-00-{n:02X}",
        "hub": "00-00-00-00-00-00-00-00",
        "region": "North",
        "premises_id": "P1",
        "alert_code": 0x8F3E,
        "frame": bytes([n]) * 20,
        "rid": "",
    }


def test_append_gives_increasing_ids_and_keeps_the_alert(tmp_path: Path) -> None:
    journal = AlertJournal(tmp_path / "a.journal")
    first, dropped = journal.append(alert(1))
    second, _ = journal.append({**alert(2), "id": 99})  # a stale link id is not kept
    assert dropped == []
    assert second == first + 1
    assert len(journal) == 2
    assert journal.pending() == [(first, alert(1)), (second, alert(2))]
    assert journal.get(second) == alert(2)


def test_ack_forgets_an_alert_once(tmp_path: Path) -> None:
    journal = AlertJournal(tmp_path / "a.journal")
    a, _ = journal.append(alert(1))
    b, _ = journal.append(alert(2))
    assert journal.ack(a) is True
    assert journal.ack(a) is False  # a repeated acknowledgement
    assert journal.ack(12345) is False  # never one of ours
    assert [i for i, _ in journal.pending()] == [b]


def test_a_reopened_journal_holds_what_was_not_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    journal = AlertJournal(path)
    ids = [journal.append(alert(n))[0] for n in range(5)]
    journal.ack(ids[1])
    journal.ack(ids[3])
    # no close(): as if the process were killed
    again = AlertJournal(path)
    assert again.pending() == [(ids[0], alert(0)), (ids[2], alert(2)), (ids[4], alert(4))]
    assert again.get(ids[2]) == alert(2)  # bytes survive as bytes
    new, _ = again.append(alert(9))
    assert new > ids[-1]  # ids never repeat


def test_a_torn_last_record_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    journal = AlertJournal(path)
    a, _ = journal.append(alert(1))
    first_only = path.stat().st_size
    b, _ = journal.append(alert(2))
    journal.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-5])  # killed half way through writing the second alert
    again = AlertJournal(path)
    assert again.pending() == [(a, alert(1))]
    assert path.stat().st_size == first_only  # the torn record is gone from the file
    # the torn alert was never durable, so never sent: its id may be given again
    c, _ = again.append(alert(3))
    assert c == b
    assert AlertJournal(path).pending() == [(a, alert(1)), (c, alert(3))]


def test_all_acknowledged_compacts_the_file_and_keeps_the_next_id(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    journal = AlertJournal(path)
    ids = [journal.append(alert(n))[0] for n in range(alert_journal.EMPTY_COMPACT_RECORDS)]
    full = path.stat().st_size
    for i in ids:
        journal.ack(i)
    assert len(journal) == 0
    assert path.stat().st_size < full / 10  # only the next-id record is left
    again = AlertJournal(path)
    assert again.pending() == []
    assert again.next_id == ids[-1] + 1


def test_a_short_journal_is_not_rewritten_each_time_it_empties(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    journal = AlertJournal(path)
    first, _ = journal.append(alert(0))
    one_alert = path.stat().st_size
    journal.ack(first)
    for n in range(1, 3):
        journal.ack(journal.append(alert(n))[0])
    assert len(journal) == 0
    assert path.stat().st_size > 3 * one_alert  # three alerts and their acks, not rewritten
    assert AlertJournal(path).pending() == []


def test_a_growing_journal_is_compacted_to_its_unacknowledged_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alert_journal, "COMPACT_RECORDS", 20)
    path = tmp_path / "a.journal"
    journal = AlertJournal(path)
    kept, _ = journal.append(alert(0))  # never acknowledged: the file never empties
    one_record = path.stat().st_size
    sizes = []
    for n in range(200):
        i, _ = journal.append(alert(n % 100))
        journal.ack(i)
        sizes.append(path.stat().st_size)
    # records beyond the one unacknowledged alert stay within the bound (each pair of records
    # is at most an alert and its acknowledgement, a little more than one alert record)
    assert max(sizes) < one_record * 2 * (20 + 4)
    assert min(sizes[10:]) < one_record * 2  # rewritten down to the kept alert at times
    assert AlertJournal(path).pending() == [(kept, alert(0))]


def test_a_full_journal_drops_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    journal = AlertJournal(path, capacity=3)
    ids = [journal.append(alert(n))[0] for n in range(3)]
    newest, dropped = journal.append(alert(3))
    assert dropped == [ids[0]]
    assert [i for i, _ in journal.pending()] == [ids[1], ids[2], newest]
    assert [i for i, _ in AlertJournal(path, capacity=3).pending()] == [ids[1], ids[2], newest]


def test_without_a_path_the_journal_is_memory_only(tmp_path: Path) -> None:
    journal = AlertJournal(None, capacity=2)
    a, _ = journal.append(alert(1))
    journal.append(alert(2))
    _, dropped = journal.append(alert(3))
    assert dropped == [a]
    assert len(journal) == 2
    journal.compact()  # nothing to rewrite
    assert list(tmp_path.iterdir()) == []


def test_the_journal_sits_beside_the_device_state_file(tmp_path: Path) -> None:
    state = tmp_path / "data" / "gateway-all.sqlite3"
    assert alert_journal_file(state) == tmp_path / "data" / "gateway-all-alerts.journal"


# -- the gateway's use of it ----------------------------------------------------------------


class FakeLink:
    """What a WAN link receives from the gateway."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.broken = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.broken:
            raise ConnectionResetError("link broke")
        self.sent.append(message)


def make_server(
    journal: AlertJournal, tmp_path: Path, ack_timeout_s: float = 10.0
) -> GatewayServer:
    index = EstateIndex()
    models = DeviceModels(index, KeyStore(tmp_path / "keys"), lambda: NOW)
    network = NetworkModel.from_config(list(REGIONS), seed=1)
    return GatewayServer(
        index,
        models,
        network,
        clock=lambda: NOW,
        alert_journal=journal,
        alert_ack_timeout_s=ack_timeout_s,
    )


async def test_the_gateway_sends_alerts_with_ids_and_keeps_them_until_acknowledged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.journal"
    server = make_server(AlertJournal(path), tmp_path)
    await server.send_alert(alert(1))  # no link: waits in the journal
    assert len(server.alert_journal) == 1 and server.alert_outbox == [alert(1)]
    link = FakeLink()
    server.links[1] = link
    await server._flush_alerts()
    await server.send_alert(alert(2))
    assert [m["id"] for m in link.sent] == [1, 2]
    assert link.sent[0]["frame"] == alert(1)["frame"]
    assert len(server.alert_journal) == 2  # sent, not acknowledged
    assert server.ack_alert(1) is True
    assert server.ack_alert(1) is False
    assert server.ack_alert("1") is False
    assert [i for i, _ in AlertJournal(path).pending()] == [2]


async def test_alerts_in_flight_on_a_lost_link_go_out_again_on_the_next(tmp_path: Path) -> None:
    server = make_server(AlertJournal(tmp_path / "a.journal"), tmp_path)
    first = FakeLink()
    server.links[1] = first
    await server.send_alert(alert(1))
    await server.send_alert(alert(2))
    server.ack_alert(1)
    del server.links[1]
    server._requeue_link(1)  # what handle_connection does when the connection closes
    second = FakeLink()
    server.links[2] = second
    await server._flush_alerts()
    assert [(m["id"], m["frame"]) for m in second.sent] == [(2, alert(2)["frame"])]


async def test_a_send_that_fails_keeps_the_alert_queued(tmp_path: Path) -> None:
    server = make_server(AlertJournal(tmp_path / "a.journal"), tmp_path)
    broken = FakeLink()
    broken.broken = True
    server.links[1] = broken
    await server.send_alert(alert(1))
    assert 1 not in server.links  # dropped as broken
    good = FakeLink()
    server.links[2] = good
    await server._flush_alerts()
    assert [m["id"] for m in good.sent] == [1]


async def test_an_alert_not_acknowledged_in_time_is_sent_again(tmp_path: Path) -> None:
    server = make_server(AlertJournal(tmp_path / "a.journal"), tmp_path, ack_timeout_s=0.05)
    link = FakeLink()
    server.links[1] = link
    await server.send_alert(alert(1))
    assert await server.resend_unacknowledged() == 0  # not yet stale
    await asyncio.sleep(0.06)
    assert await server.resend_unacknowledged() == 1
    assert [m["id"] for m in link.sent] == [1, 1]
    assert link.sent[0] == link.sent[1]  # the same frame: it collapses downstream
    server.ack_alert(1)
    await asyncio.sleep(0.06)
    assert await server.resend_unacknowledged() == 0


async def test_a_restarted_gateway_sends_the_unacknowledged_alerts(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    before = make_server(AlertJournal(path), tmp_path)
    await before.send_alert(alert(1))
    await before.send_alert(alert(2))
    before.ack_alert(1)
    after = make_server(AlertJournal(path), tmp_path)  # the first one killed, its journal reloaded
    link = FakeLink()
    after.links[1] = link
    await after._flush_alerts()
    assert [(m["id"], m["device"]) for m in link.sent] == [(2, alert(2)["device"])]


@pytest.mark.parametrize("capacity", [2])
async def test_the_gateway_counts_alerts_dropped_from_a_full_journal(
    tmp_path: Path, capacity: int, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(AlertJournal(tmp_path / "a.journal", capacity=capacity), tmp_path)

    class Count:
        value = 0.0

        def inc(self, amount: float = 1.0) -> None:
            self.value += amount

    dropped = Count()
    server.alerts_dropped = dropped
    for n in range(capacity + 1):
        await server.send_alert(alert(n))
    assert dropped.value == 1
    assert [a["device"] for a in server.alert_outbox] == [alert(1)["device"], alert(2)["device"]]
    assert "alert journal full" in caplog.text


async def test_alerts_raised_together_share_one_fdatasync_and_go_out_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    path = tmp_path / "a.journal"
    server = make_server(AlertJournal(path), tmp_path)
    link = FakeLink()
    server.links[1] = link
    # a held-work run or an outage: many alerts raised in one event-loop turn
    await asyncio.gather(*(server.send_alert(alert(n)) for n in range(50)))
    assert len(syncs) == 1
    assert [m["id"] for m in link.sent] == list(range(1, 51))
    assert [m["frame"] for m in link.sent] == [alert(n)["frame"] for n in range(50)]
    assert [i for i, _ in AlertJournal(path).pending()] == list(range(1, 51))
    await server.send_alert(alert(50))  # a later one: its own sync
    assert len(syncs) == 2


async def test_a_failed_fdatasync_fails_every_alert_waiting_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    server = make_server(AlertJournal(tmp_path / "a.journal"), tmp_path)
    link = FakeLink()
    server.links[1] = link
    results = await asyncio.gather(
        *(server.send_alert(alert(n)) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)
    assert link.sent == []  # not sent before it is durable
