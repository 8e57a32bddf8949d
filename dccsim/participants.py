"""The register of test participants (Users) that dccsim serves.

A participant is a User: an id (the DCCKI client certificate's CN), an EUI-64 (the RequestID
originator and the SMKI organisation certificates' subject), the User Roles it holds and the URL of
its Receive Response Service. The register is a JSON file under ``$DCCSIM_HOME/participants/``,
written atomically; services reload it when it changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dccsim.duis.catalogue import UserRole


@dataclass(frozen=True)
class Participant:
    user_id: str
    eui: str  # DUIS form: 8 upper-case hex octets joined by '-'
    roles: frozenset[UserRole]
    response_url: str | None


def registry_path(home: Path) -> Path:
    return home / "participants" / "registry.json"


def load(home: Path) -> dict[str, Participant]:
    path = registry_path(home)
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    return {
        user_id: Participant(
            user_id=user_id,
            eui=str(entry["eui"]).upper(),
            roles=frozenset(UserRole(r) for r in entry["roles"]),
            response_url=entry.get("response_url"),
        )
        for user_id, entry in raw.items()
    }


def save(home: Path, participants: dict[str, Participant]) -> None:
    path = registry_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        p.user_id: {
            "eui": p.eui,
            "roles": sorted(r.value for r in p.roles),
            "response_url": p.response_url,
        }
        for p in participants.values()
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".registry-")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def upsert(home: Path, participant: Participant) -> None:
    current = load(home)
    current[participant.user_id] = participant
    save(home, current)


class ParticipantRegister:
    """A cached view of the register that reloads when the file changes."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._mtime: float | None = None
        self._by_id: dict[str, Participant] = {}

    def _refresh(self) -> None:
        path = registry_path(self.home)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            self._by_id, self._mtime = {}, None
            return
        if mtime != self._mtime:
            self._by_id = load(self.home)
            self._mtime = mtime

    def get(self, user_id: str) -> Participant | None:
        self._refresh()
        return self._by_id.get(user_id)

    def all(self) -> dict[str, Participant]:
        self._refresh()
        return dict(self._by_id)
