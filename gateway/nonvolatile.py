"""What a hosted device keeps in non-volatile memory: its anti-replay counters per remote party,
its refusal count, the counter of its last alert and its model's other lasting state (the
``nonvolatile_state`` entries that differ from a freshly built model: an ESME's supply state,
clock offset, tariff, account, prepayment registers, firmware, trust anchors and held
future-dated commands, a CHF's device log, a GSME's valve state, tariff, credit, payment mode,
firmware, trust anchors, display message and HAN joins, a GPF's device log, a PPMID's or
HCALCS's joins), kept by EUI-64 while its model is not in memory. Registers are not kept:
every model derives them from its seeded load profile and the clock.

Two stores with one interface:

- ``VolatileDeviceMemory``: a dict, filled only when a model is evicted from the LRU; lost when
  the gateway stops (tests and throwaway estates).
- ``DeviceStateFile``: one SQLite row per device that has ever accepted a command
  (``$DCCSIM_HOME/data/gateway-*.sqlite3``), written after every command the device accepts and
  before its response leaves the gateway, so a command replayed after a crash or restart is
  still refused. Read lazily when a model is built, so start-up reads nothing and memory holds
  only SQLite's page cache — but for the devices holding a future-dated command, whose due time
  (``Residue.due``) is a column of its own, indexed, so a restarted gateway finds them at once
  (``due_devices``) and still carries them out on time.

Beside the state file the gateway keeps its unacknowledged alerts (``gateway.alert_journal``,
``gateway-*-alerts.journal``): the alerts it raised that the WAN side has not yet confirmed.

stdlib ``sqlite3`` rather than ``dccsim.storage.Database``: the write sits in the synchronous
path between a device's answer and the reply frame, inside the hub's lock, and
``Database.run`` for SQLite runs inline in the loop anyway. WAL with ``synchronous=NORMAL``: a
commit survives the process being killed (what the tests do), a power cut may lose the last
moments.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

# Bounds SQLite's page cache (KiB when negative): the estate's memory budget is for models.
PAGE_CACHE_KIB = 8 * 1024


@dataclass
class Residue:
    """What a device keeps across power cycles: the last accepted counter per originator EUI,
    its refusal count, (what its host keeps of) its model's ``nonvolatile_state``
    (msgpack-able values), its last alert's counter and when, on the gateway's clock, it next
    has held work due (``None``: none; not packed, a column of its own)."""

    last_counters: dict[bytes, int]
    refusals: int
    extra: dict[str, Any]
    alert_counter: int = 0
    due: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        """Nothing a freshly built model would not hold as well."""
        return not (self.last_counters or self.refusals or self.extra or self.alert_counter)

    def pack(self) -> bytes:
        packed: bytes = msgpack.packb(
            [list(self.last_counters.items()), self.refusals, self.extra, self.alert_counter],
            use_bin_type=True,
        )
        return packed

    @classmethod
    def unpack(cls, raw: bytes, due: dt.datetime | None = None) -> Residue:
        counters, refusals, extra, *rest = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        alert_counter = int(rest[0]) if rest else 0  # rows written before it was kept have none
        return cls(
            {bytes(k): int(v) for k, v in counters}, int(refusals), dict(extra), alert_counter, due
        )


def _due_us(due: dt.datetime | None) -> int | None:
    return None if due is None else int(due.timestamp() * 1_000_000)


def _due_at(value: int | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value / 1_000_000, dt.UTC)


class VolatileDeviceMemory:
    """Residues of evicted models in a dict (by EUI-64 as an integer); gone on restart."""

    durable = False

    def __init__(self) -> None:
        self._residues: dict[int, Residue] = {}

    def __len__(self) -> int:
        return len(self._residues)

    def load(self, eui: int) -> Residue | None:
        """The residue of ``eui`` (taken out: the rebuilt model holds it now), or None."""
        return self._residues.pop(eui, None)

    def save(self, eui: int, residue: Residue) -> None:
        self._residues[eui] = residue

    def forget(self, eui: int) -> None:
        self._residues.pop(eui, None)

    def due_devices(self) -> list[tuple[int, dt.datetime]]:
        """(EUI-64, due time) of the residues holding work due (all of them lost on restart)."""
        return [(eui, r.due) for eui, r in self._residues.items() if r.due is not None]

    def close(self) -> None:
        self._residues.clear()


class DeviceStateFile:
    """Residues in a SQLite file, one row per device: survives a gateway restart or crash."""

    durable = True

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # autocommit: each save is its own committed transaction before the reply is sent
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS device_state"
            " (eui BLOB PRIMARY KEY, state BLOB NOT NULL, due_us INTEGER) WITHOUT ROWID"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(device_state)")}
        if "due_us" not in columns:  # a file from before held work was kept
            self._db.execute("ALTER TABLE device_state ADD COLUMN due_us INTEGER")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS device_state_due ON device_state (due_us)"
            " WHERE due_us IS NOT NULL"
        )

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM device_state").fetchone()
        return int(count)

    def load(self, eui: int) -> Residue | None:
        row = self._db.execute(
            "SELECT state, due_us FROM device_state WHERE eui = ?", (eui.to_bytes(8, "big"),)
        ).fetchone()
        return None if row is None else Residue.unpack(bytes(row[0]), _due_at(row[1]))

    def save(self, eui: int, residue: Residue) -> None:
        self._db.execute(
            "INSERT INTO device_state (eui, state, due_us) VALUES (?, ?, ?)"
            " ON CONFLICT (eui) DO UPDATE SET state = excluded.state, due_us = excluded.due_us",
            (eui.to_bytes(8, "big"), residue.pack(), _due_us(residue.due)),
        )

    def due_devices(self) -> list[tuple[int, dt.datetime]]:
        """(EUI-64, due time) of every device holding work due (an indexed read)."""
        rows = self._db.execute(
            "SELECT eui, due_us FROM device_state WHERE due_us IS NOT NULL"
        ).fetchall()
        out = []
        for eui, due_us in rows:
            due = _due_at(due_us)
            assert due is not None
            out.append((int.from_bytes(bytes(eui), "big"), due))
        return out

    def forget(self, eui: int) -> None:
        self._db.execute("DELETE FROM device_state WHERE eui = ?", (eui.to_bytes(8, "big"),))

    def close(self) -> None:
        self._db.close()


DeviceMemory = VolatileDeviceMemory | DeviceStateFile
