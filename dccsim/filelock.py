"""One writer at a time for the shared files several processes read, modify and write back
(estate.json, the participant register): an advisory ``flock`` on a lock file beside them.

Readers take no lock (every writer replaces the file whole, atomically); a read-modify-write
holds ``exclusive(lock_path)`` around the read, the change and the write, so two processes (the
testing service onboarding a User while ``dccsim seed`` runs, or two onboardings at once) never
lose each other's change or hand out the same premises numbers. The lock is per open file, so
threads of one process exclude each other too; it is not re-entrant.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``lock_path`` (created if missing) for the ``with`` body."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def write_atomically(path: Path, text: str, *, prefix: str) -> None:
    """Replace ``path`` with ``text``: written beside it, synced, then renamed over it, so a
    reader sees the old file or the whole new one, also after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
