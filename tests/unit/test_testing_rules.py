"""The informal testing rules file and the decision the User Gateway asks for."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from services.testing.rules import (
    DEFAULT_RULES,
    DEFAULT_RULES_TOML,
    RulesError,
    RulesFile,
    TestingRules,
    decide,
    load_rules,
    parse_rules,
    rules_path,
    write_default,
)

# A Wednesday, 10:00 in London (GMT in January).
WEDNESDAY_10AM = dt.datetime(2026, 1, 7, 10, 0, tzinfo=dt.UTC)

RULES = """
version = 4
effective_from = "2026-01-01"
[services]
pre_uit = true
gfi = false
[pre_uit]
allowed_srvs = ["4.1.1", "8.2"]
default_sr_limit = 100
[pre_uit.sr_limits]
"big-supplier" = 1000
[opening_hours]
timezone = "Europe/London"
days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
open = "08:00"
close = "18:00"
"""


@pytest.fixture
def rules() -> TestingRules:
    return parse_rules(RULES)


def test_default_file_parses_to_the_documented_default() -> None:
    assert parse_rules(DEFAULT_RULES_TOML) == DEFAULT_RULES


def test_missing_file_means_the_default(tmp_path: Path) -> None:
    assert load_rules(tmp_path) == DEFAULT_RULES
    path = write_default(tmp_path)
    assert path == rules_path(tmp_path)
    assert load_rules(tmp_path) == DEFAULT_RULES


def test_accepts_an_allowed_srv_in_hours_under_the_limit(rules: TestingRules) -> None:
    assert decide(rules, "demo-supplier", "4.1.1", WEDNESDAY_10AM, 99) is None


def test_refuses_an_srv_not_offered_with_e2(rules: TestingRules) -> None:
    verdict = decide(rules, "demo-supplier", "7.1", WEDNESDAY_10AM, 0)
    assert verdict is not None and verdict[0] == "E2" and "7.1" in verdict[1]


def test_refuses_outside_opening_hours_with_e3(rules: TestingRules) -> None:
    evening = dt.datetime(2026, 1, 7, 18, 0, tzinfo=dt.UTC)
    saturday = dt.datetime(2026, 1, 10, 10, 0, tzinfo=dt.UTC)
    for when in (evening, saturday):
        verdict = decide(rules, "demo-supplier", "4.1.1", when, 0)
        assert verdict is not None and verdict[0] == "E3" and "closed" in verdict[1]


def test_opening_hours_are_local_time(rules: TestingRules) -> None:
    # 07:30 UTC in July is 08:30 BST: open.
    assert decide(rules, "p", "4.1.1", dt.datetime(2026, 7, 8, 7, 30, tzinfo=dt.UTC), 0) is None


def test_refuses_once_the_participants_limit_is_used_up(rules: TestingRules) -> None:
    verdict = decide(rules, "demo-supplier", "4.1.1", WEDNESDAY_10AM, 100)
    assert verdict is not None and verdict[0] == "E3" and "100 of 100" in verdict[1]
    assert decide(rules, "big-supplier", "4.1.1", WEDNESDAY_10AM, 100) is None


def test_refuses_when_pre_uit_is_not_offered() -> None:
    closed = parse_rules("version = 2\n[services]\npre_uit = false\n")
    verdict = decide(closed, "demo-supplier", "4.1.1", WEDNESDAY_10AM, 0)
    assert verdict is not None and verdict[0] == "E3" and "not offered" in verdict[1]


def test_refuses_an_unknown_participant_with_e1(rules: TestingRules) -> None:
    verdict = decide(rules, None, "4.1.1", WEDNESDAY_10AM, 0)
    assert verdict is not None and verdict[0] == "E1"


def test_naive_now_is_a_programming_error(rules: TestingRules) -> None:
    with pytest.raises(ValueError, match="timezone"):
        decide(rules, "p", "4.1.1", dt.datetime(2026, 1, 7, 10, 0), 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "version"),
        ("version = 0", "version"),
        ("version = 1\n[pre_uit]\nlimit_period = 'week'", "limit_period"),
        ("version = 1\n[pre_uit.sr_limits]\nx = -1", "sr_limits"),
        ("version = 1\n[opening_hours]\ndays = ['Funday']", "days"),
        ("version = 1\n[opening_hours]\ntimezone = 'Mars/Olympus'", "timezone"),
        ("version = 1\n[opening_hours]\nopen = '18:00'\nclose = '08:00'", "after open"),
        ("version = [", "not TOML"),
    ],
)
def test_malformed_rules_are_refused(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(text)


def test_rules_file_reloads_and_refuses_an_older_version(tmp_path: Path) -> None:
    path = rules_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(RULES)
    current = RulesFile(tmp_path)
    assert current.current().version == 4
    path.write_text(RULES.replace("version = 4", "version = 3"))
    os.utime(path, (1, 1))  # make the change visible whatever the clock's resolution
    assert current.current().version == 4
    assert current.problem is not None and "older" in current.problem
    path.write_text(RULES.replace("version = 4", "version = 5").replace('"8.2"', '"8.3"'))
    os.utime(path, (2, 2))
    assert current.current().version == 5
    assert current.current().srv_allowed("8.3")
    assert current.problem is None


def test_rules_file_keeps_the_rules_in_force_when_the_file_breaks(tmp_path: Path) -> None:
    path = rules_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(RULES)
    current = RulesFile(tmp_path)
    assert current.current().version == 4
    path.write_text("version = [")
    os.utime(path, (3, 3))
    assert current.current().version == 4
    assert current.problem is not None and "not TOML" in current.problem


def test_rules_json_shows_what_the_portal_shows(rules: TestingRules) -> None:
    shown = rules.to_json()
    assert shown["version"] == 4
    assert shown["services"] == {"pre_uit": True, "gfi": False}
    assert shown["pre_uit"]["allowed_srvs"] == ["4.1.1", "8.2"]
    assert (
        shown["opening_hours"]["description"] == "Mon, Tue, Wed, Thu, Fri 08:00-18:00 Europe/London"
    )


def test_rules_file_sees_an_edit_saved_within_one_mtime_tick(tmp_path: Path) -> None:
    path = rules_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(RULES)
    os.utime(path, ns=(10**18, 10**18))
    current = RulesFile(tmp_path)
    assert current.current().version == 4
    # an editor's save: a new file renamed in, with the same (coarse) mtime as the old one
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(RULES.replace("version = 4", "version = 5"))
    os.utime(fresh, ns=(10**18, 10**18))
    os.replace(fresh, path)
    assert current.current().version == 5
