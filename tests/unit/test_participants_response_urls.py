"""The participant register holds several Receive Response Service URLs per User, in order,
and still reads the single-URL form it used to write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dccsim import participants
from dccsim.duis.catalogue import UserRole
from dccsim.participants import Participant, ParticipantRegister

ROLES = frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER})
EUI = "90-B3-D5-1F-30-01-D0-00"
FIRST, SECOND, THIRD = (f"https://127.0.0.1:{port}/receive" for port in (8490, 8491, 8492))


def _write(home: Path, entry: dict[str, object]) -> None:
    path = participants.registry_path(home)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"supplier": {"eui": EUI, "roles": ["IS"], **entry}}))


def test_the_single_url_form_is_still_read(tmp_path: Path) -> None:
    _write(tmp_path, {"response_url": FIRST})
    loaded = participants.load(tmp_path)["supplier"]
    assert loaded.response_url == FIRST
    assert loaded.response_urls == (FIRST,)


def test_an_entry_without_a_url_has_none(tmp_path: Path) -> None:
    _write(tmp_path, {"response_url": None})
    assert participants.load(tmp_path)["supplier"].response_urls == ()


def test_a_list_of_urls_is_read_in_order(tmp_path: Path) -> None:
    _write(tmp_path, {"response_urls": [SECOND, FIRST, THIRD]})
    loaded = participants.load(tmp_path)["supplier"]
    assert loaded.response_urls == (SECOND, FIRST, THIRD)
    assert loaded.response_url == SECOND


def test_the_list_wins_over_the_single_url(tmp_path: Path) -> None:
    _write(tmp_path, {"response_url": THIRD, "response_urls": [FIRST, SECOND]})
    assert participants.load(tmp_path)["supplier"].response_urls == (FIRST, SECOND)


def test_a_malformed_list_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"response_urls": FIRST})
    with pytest.raises(ValueError, match="response_urls"):
        participants.load(tmp_path)


def test_several_urls_round_trip_and_old_readers_see_the_first(tmp_path: Path) -> None:
    participants.upsert(
        tmp_path, Participant.with_urls("supplier", EUI, ROLES, [FIRST, SECOND, THIRD])
    )
    assert participants.load(tmp_path)["supplier"].response_urls == (FIRST, SECOND, THIRD)
    raw = json.loads(participants.registry_path(tmp_path).read_text())["supplier"]
    assert raw["response_url"] == FIRST
    assert raw["response_urls"] == [FIRST, SECOND, THIRD]


def test_a_participant_made_the_old_way_has_one_url() -> None:
    assert Participant("supplier", EUI, ROLES, FIRST).response_urls == (FIRST,)
    assert Participant("supplier", EUI, ROLES, None).response_urls == ()


def test_repeated_urls_are_tried_once() -> None:
    made = Participant.with_urls("supplier", EUI, ROLES, [FIRST, SECOND, FIRST])
    assert made.response_urls == (FIRST, SECOND)


def test_further_urls_need_a_first_one() -> None:
    with pytest.raises(ValueError):
        Participant("supplier", EUI, ROLES, None, (SECOND,))


def test_set_response_urls_replaces_the_list_and_the_register_sees_it(tmp_path: Path) -> None:
    participants.upsert(tmp_path, Participant("supplier", EUI, ROLES, FIRST))
    register = ParticipantRegister(tmp_path)
    assert register.get("supplier") is not None
    updated = participants.set_response_urls(tmp_path, "supplier", [SECOND, FIRST])
    assert updated.response_urls == (SECOND, FIRST)
    seen = register.get("supplier")
    assert seen is not None and seen.response_urls == (SECOND, FIRST)
    assert seen.roles == ROLES and seen.eui == EUI


def test_set_response_urls_for_an_unknown_user_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        participants.set_response_urls(tmp_path, "nobody", [FIRST])


def test_the_register_sees_every_save_even_within_one_mtime_tick(tmp_path: Path) -> None:
    participants.upsert(tmp_path, Participant("supplier", EUI, ROLES, FIRST))
    register = ParticipantRegister(tmp_path)
    path = participants.registry_path(tmp_path)
    for url in (SECOND, THIRD):
        before = path.stat()
        participants.set_response_urls(tmp_path, "supplier", [url])
        # a filesystem whose clock did not move between the two saves
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        seen = register.get("supplier")
        assert seen is not None and seen.response_urls == (url,)
