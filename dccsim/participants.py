"""The register of test participants (Users) that dccsim serves.

A participant is a User: an id (the DCCKI client certificate's CN), an EUI-64 (the RequestID
originator and the SMKI organisation certificates' subject), the User Roles it holds and the URLs
of its Receive Response Service (DUIS lets a User register more than one; the User Gateway's
delivery tries them in the order registered). The register is a JSON file under
``$DCCSIM_HOME/participants/``, written atomically; services reload it when it changes.

Each entry is ``{"eui", "roles", "response_url", "response_urls"}``: ``response_urls`` lists every
URL in order and ``response_url`` repeats the first, so a reader that knows only the single-URL
form (the register's original one, still read) keeps working.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dccsim.duis.catalogue import UserRole
from dccsim.filelock import exclusive, write_atomically


@dataclass(frozen=True)
class Participant:
    user_id: str
    eui: str  # DUIS form: 8 upper-case hex octets joined by '-'
    roles: frozenset[UserRole]
    response_url: str | None
    """The first Receive Response Service URL (None: none registered)."""
    further_response_urls: tuple[str, ...] = ()
    """Any more URLs, in the order the User registered them, after ``response_url``."""

    def __post_init__(self) -> None:
        further = tuple(self.further_response_urls)  # a list from a caller: keep it hashable
        object.__setattr__(self, "further_response_urls", further)
        if further and not self.response_url:
            raise ValueError("further Receive Response Service URLs need a first one")

    @property
    def response_urls(self) -> tuple[str, ...]:
        """Every registered Receive Response Service URL, in order, without repeats."""
        if not self.response_url:
            return ()
        return tuple(dict.fromkeys((self.response_url, *self.further_response_urls)))

    @classmethod
    def with_urls(
        cls, user_id: str, eui: str, roles: frozenset[UserRole], urls: Sequence[str]
    ) -> Participant:
        """A participant with the Receive Response Service URLs ``urls``, in order."""
        return cls(user_id, eui, roles, urls[0] if urls else None, tuple(urls[1:]))


def registry_path(home: Path) -> Path:
    return home / "participants" / "registry.json"


def load(home: Path) -> dict[str, Participant]:
    path = registry_path(home)
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    return {
        user_id: Participant.with_urls(
            user_id,
            str(entry["eui"]).upper(),
            frozenset(UserRole(r) for r in entry["roles"]),
            _urls(user_id, entry),
        )
        for user_id, entry in raw.items()
    }


def _urls(user_id: str, entry: dict[str, Any]) -> list[str]:
    """An entry's URLs: ``response_urls`` when present, else the single ``response_url``."""
    listed = entry.get("response_urls")
    if listed is None:
        single = entry.get("response_url")
        return [str(single)] if single else []
    if not isinstance(listed, list) or not all(isinstance(u, str) and u for u in listed):
        raise ValueError(f"participant {user_id}: response_urls must be a list of URLs")
    return list(listed)


def save(home: Path, participants: dict[str, Participant]) -> None:
    path = registry_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        p.user_id: {
            "eui": p.eui,
            "roles": sorted(r.value for r in p.roles),
            "response_url": p.response_url,
            "response_urls": list(p.response_urls),
        }
        for p in participants.values()
    }
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True), prefix=".registry-")


def locked(home: Path) -> contextlib.AbstractContextManager[None]:
    """The register's writer lock: ``with participants.locked(home): load, change, save``
    (upsert, remove and set_response_urls take it themselves)."""
    return exclusive(registry_path(home).with_name(".registry.lock"))


def upsert(home: Path, participant: Participant) -> None:
    """Add or replace one participant (its URLs become exactly ``participant``'s)."""
    with locked(home):
        current = load(home)
        current[participant.user_id] = participant
        save(home, current)


def remove(home: Path, user_id: str) -> None:
    """Take ``user_id`` out of the register (nothing when it is not there)."""
    with locked(home):
        current = load(home)
        if current.pop(user_id, None) is not None:
            save(home, current)


def set_response_urls(home: Path, user_id: str, urls: Sequence[str]) -> Participant:
    """Register ``urls`` (in delivery order) as the User's Receive Response Service URLs and
    return the updated participant. KeyError when the User is not registered."""
    with locked(home):
        current = load(home)
        held = current[user_id]
        updated = Participant.with_urls(held.user_id, held.eui, held.roles, urls)
        current[user_id] = updated
        save(home, current)
    return updated


class ParticipantRegister:
    """A cached view of the register that reloads when the file changes.

    The file is only ever replaced whole (``save`` renames a new one in), so a new inode, a
    new size or a new nanosecond mtime means a new register: two saves within one coarse
    mtime tick are still seen."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._stamp: tuple[int, int, int] | None = None
        self._by_id: dict[str, Participant] = {}

    def _refresh(self) -> None:
        path = registry_path(self.home)
        try:
            st = path.stat()
        except FileNotFoundError:
            self._by_id, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._by_id = load(self.home)
            self._stamp = stamp

    def get(self, user_id: str) -> Participant | None:
        self._refresh()
        return self._by_id.get(user_id)

    def all(self) -> dict[str, Participant]:
        self._refresh()
        return dict(self._by_id)
