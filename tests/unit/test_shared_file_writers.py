"""Processes that change the shared files at once (estate.json, the participant register) never
lose each other's change: each read-modify-write holds the file's writer lock."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

from dccsim import estate, participants
from dccsim.duis.catalogue import UserRole
from services.testing.onboarding import allocate_premises

WORKERS, EACH = 4, 15


def _register(home: str, worker: int) -> None:
    for i in range(EACH):
        participants.upsert(
            Path(home),
            participants.Participant(
                f"user-{worker}-{i}",
                f"90-B3-D5-1F-30-01-{worker:02X}-{i:02X}",
                frozenset({UserRole.IMPORT_SUPPLIER}),
                None,
            ),
        )


def _allocate(home: str, worker: int) -> None:
    eui = f"90-B3-D5-1F-30-01-{worker:02X}-00"
    for _ in range(EACH):
        with estate.locked(Path(home)):
            current = estate.load(Path(home))
            new = allocate_premises(current, eui, frozenset({UserRole.IMPORT_SUPPLIER}), 1)
            estate.save(Path(home), current + new)


def _run_workers(target: Callable[[str, int], None], home: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=(str(home), w)) for w in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0


def test_concurrent_upserts_keep_every_participant(tmp_path: Path) -> None:
    _run_workers(_register, tmp_path)
    held = participants.load(tmp_path)
    assert len(held) == WORKERS * EACH
    assert held["user-3-14"].eui == "90-B3-D5-1F-30-01-03-0E"


def test_concurrent_allocations_number_premises_once(tmp_path: Path) -> None:
    _run_workers(_allocate, tmp_path)
    ids = [p.premises_id for p in estate.load(tmp_path)]
    assert len(ids) == len(set(ids)) == WORKERS * EACH
    assert sorted(ids) == [f"P{n:07d}" for n in range(1, WORKERS * EACH + 1)]


def test_remove_takes_one_participant_out(tmp_path: Path) -> None:
    _register(str(tmp_path), 0)
    participants.remove(tmp_path, "user-0-3")
    participants.remove(tmp_path, "nobody")
    held = participants.load(tmp_path)
    assert len(held) == EACH - 1 and "user-0-3" not in held
