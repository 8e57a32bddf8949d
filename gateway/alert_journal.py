"""The gateway's unacknowledged alerts, kept until the WAN side acknowledges them.

Every unsolicited alert the gateway raises gets an alert id and is appended here before it is
sent; it stays until services/wan answers ``{"t": "alert_ack", "id": ...}`` (which it does only
once its ``gbcs.alert`` publish is confirmed by the broker). A gateway killed or restarted with
alerts waiting reloads them and sends them again, so an alert is delivered at least once.

``AlertJournal(path)``: an append-only file beside the device state store
(``$DCCSIM_HOME/data/gateway-*-alerts.journal``). Records are a 4-byte big-endian length then a
msgpack list:

* ``["a", id, alert]``: an alert (the link message's map, without ``id``), fsynced before
  ``append`` returns;
* ``["k", id]``: acknowledged (or dropped when the journal is full); flushed, not fsynced — a
  lost acknowledgement only means the alert is sent once more, and a resent alert collapses
  downstream (the same frame gives the same delivery key);
* ``["n", next_id]``: the first record of a compacted file, so ids never repeat.

A torn last record (the process killed mid-write) is ignored and cut off on load. The file is
compacted (rewritten to a temporary file, fsynced, renamed over it) when every alert in it is
acknowledged and it holds at least ``EMPTY_COMPACT_RECORDS`` records, or when it holds more
than ``COMPACT_RECORDS`` records beyond the unacknowledged ones: not after every alert, whose
rewrite would cost two more fsyncs on the gateway's event loop. At most ``capacity`` alerts
are held: appending to a full journal drops the oldest (the caller logs and counts it).
``AlertJournal(None)`` keeps them in memory only (tests and throwaway estates).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

log = logging.getLogger(__name__)

COMPACT_RECORDS = 4096  # records beyond the unacknowledged alerts before a rewrite
EMPTY_COMPACT_RECORDS = 256  # records before a rewrite once every alert is acknowledged
_LENGTH = struct.Struct(">I")
_MAX_RECORD = 1 << 24


class AlertJournal:
    """Unacknowledged alerts by id, oldest first; durable when given a ``path``."""

    def __init__(self, path: Path | None, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.path = path
        self.capacity = capacity
        self._pending: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._next_id = 1
        self._records = 0  # records in the file now
        self._file: BinaryIO | None = None
        self._unsynced = False  # records written but not yet fdatasync'd
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._load(path)
            self._file = path.open("ab")

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._pending

    @property
    def next_id(self) -> int:
        return self._next_id

    def get(self, alert_id: int) -> dict[str, Any] | None:
        return self._pending.get(alert_id)

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """The unacknowledged alerts (id, alert message), oldest first."""
        return list(self._pending.items())

    # -- writing ------------------------------------------------------------------------------

    def append(self, alert: dict[str, Any], *, sync: bool = True) -> tuple[int, list[int]]:
        """Keep ``alert`` (durably before returning, unless ``sync`` is false: then it is in
        the file, which a killed process does not lose, and durable at the next ``sync()``);
        returns its id and the ids of the oldest alerts dropped to make room (empty unless the
        journal was full)."""
        dropped: list[int] = []
        while len(self._pending) >= self.capacity:
            oldest, _ = self._pending.popitem(last=False)
            dropped.append(oldest)
        alert_id = self._next_id
        self._next_id += 1
        body = {k: v for k, v in alert.items() if k != "id"}
        self._pending[alert_id] = body
        records = [["k", i] for i in dropped]
        records.append(["a", alert_id, body])
        self._write(records, sync=sync)
        return alert_id, dropped

    def sync(self) -> None:
        """Make every alert appended so far durable (one fdatasync for all of them)."""
        if self._file is not None and self._unsynced:
            os.fdatasync(self._file.fileno())
            self._unsynced = False

    def ack(self, alert_id: int) -> bool:
        """The WAN side has it: forget ``alert_id``. False when it is not held (acknowledged
        already, dropped, or never one of ours)."""
        if self._pending.pop(alert_id, None) is None:
            return False
        self._write([["k", alert_id]], sync=False)
        if (not self._pending and self._records >= EMPTY_COMPACT_RECORDS) or (
            self._records > len(self._pending) + COMPACT_RECORDS
        ):
            self.compact()
        return True

    def compact(self) -> None:
        """Rewrite the file with only the unacknowledged alerts (atomically)."""
        if self.path is None or self._file is None:
            return
        records: list[list[Any]] = [["n", self._next_id]]
        records += [["a", i, alert] for i, alert in self._pending.items()]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(b"".join(_encode(r) for r in records))
            f.flush()
            os.fsync(f.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._file = self.path.open("ab")
        self._records = len(records)
        self._unsynced = False  # the rewritten file was fsynced whole

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- the file -----------------------------------------------------------------------------

    def _write(self, records: list[list[Any]], *, sync: bool) -> None:
        if self._file is None:
            return
        self._file.write(b"".join(_encode(r) for r in records))
        self._file.flush()
        if sync:
            os.fdatasync(self._file.fileno())  # the data; the size with it, the mtime not
        self._unsynced = self._unsynced or not sync
        self._records += len(records)

    def _load(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        offset = good = 0
        records = 0
        while offset + _LENGTH.size <= len(data):
            (length,) = _LENGTH.unpack_from(data, offset)
            end = offset + _LENGTH.size + length
            if length > _MAX_RECORD or end > len(data):
                break
            try:
                record = msgpack.unpackb(data[offset + _LENGTH.size : end], raw=False)
                self._apply(record)
            except (ValueError, TypeError, IndexError, msgpack.UnpackException):
                break
            offset = good = end
            records += 1
        if good < len(data):
            log.warning(
                "alert journal: torn or unreadable tail cut off",
                extra={"path": str(path), "bytes": len(data) - good},
            )
            with path.open("r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        self._records = records
        while len(self._pending) > self.capacity:
            self._pending.popitem(last=False)
        if self._pending:
            log.info(
                "alert journal loaded: unacknowledged alerts to resend",
                extra={"path": str(path), "alerts": len(self._pending)},
            )

    def _apply(self, record: Any) -> None:
        if not isinstance(record, list) or not record:
            raise ValueError("not a journal record")
        op = record[0]
        if op == "a":
            alert_id, alert = int(record[1]), record[2]
            if not isinstance(alert, dict):
                raise ValueError("alert record without an alert")
            self._pending[alert_id] = alert
            self._next_id = max(self._next_id, alert_id + 1)
        elif op == "k":
            self._pending.pop(int(record[1]), None)
        elif op == "n":
            self._next_id = max(self._next_id, int(record[1]))
        else:
            raise ValueError(f"unknown journal record {op!r}")


def _encode(record: list[Any]) -> bytes:
    data: bytes = msgpack.packb(record, use_bin_type=True)
    return _LENGTH.pack(len(data)) + data


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
