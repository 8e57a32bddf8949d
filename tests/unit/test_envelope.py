from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dccsim.bus.envelope import SCHEMA_VERSION, Envelope, EnvelopeError


def test_round_trip_keeps_every_field() -> None:
    env = Envelope("sr.accepted", "90-B3:00-DB:1", {"a": b"\x01", "n": 3}, published_at=12.5)
    back = Envelope.decode(env.encode())
    assert back == env
    assert back.version == SCHEMA_VERSION


def test_publish_time_is_a_float() -> None:
    raw = msgpack.unpackb(Envelope("k", "r", {}).encode())
    assert isinstance(raw["ts"], float)


def test_unknown_schema_version_is_refused() -> None:
    data = msgpack.packb({"v": 99, "rid": "r", "ts": 1.0, "kind": "k", "body": {}})
    with pytest.raises(EnvelopeError, match="version 99"):
        Envelope.decode(data)


@given(st.binary(max_size=200))
def test_garbage_only_raises_envelope_error(data: bytes) -> None:
    try:
        Envelope.decode(data)
    except EnvelopeError:
        pass


def test_age_is_never_negative() -> None:
    assert Envelope("k", "r", {}, published_at=100.0).age(now=50.0) == 0.0
