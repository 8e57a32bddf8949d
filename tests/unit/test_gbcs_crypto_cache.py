"""The static-ECDH shared-secret cache: one point multiplication per key pair, bounded, shared."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import crypto
from dccsim.gbcs.crypto import SharedSecretCache, ecdh_z
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import (
    ImportRegisters,
    build_ecs17b_command,
    build_ecs17b_response,
    read_ecs17b_response,
)

USER = bytes.fromhex("90B3D51F30010000")
ESME = bytes.fromhex("00DB1234567890A0")


class CountingEcdh:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, private_key: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey
    ) -> bytes:
        self.calls += 1
        return ecdh_z(private_key, peer)


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingEcdh]:
    counter = CountingEcdh()
    monkeypatch.setattr(crypto, "SHARED_SECRETS", SharedSecretCache())
    monkeypatch.setattr(crypto, "ecdh_z", counter)
    yield counter


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _command(
    counter: int, acb: ec.EllipticCurvePrivateKey, device: ec.EllipticCurvePublicKey
) -> bytes:
    return build_ecs17b_command(
        originator_title=USER,
        device_title=ESME,
        counter=counter,
        acb_ka_private=acb,
        device_ka_public=device,
    )


def test_second_command_build_does_no_ecdh(exchanges: CountingEcdh) -> None:
    acb, device = _key(), _key().public_key()
    first = _command(1000, acb, device)
    assert exchanges.calls == 1
    second = _command(1001, acb, device)
    assert exchanges.calls == 1
    assert first != second  # the counter still changes the KDF, hence the MAC
    assert crypto.SHARED_SECRETS.hits == 1 and crypto.SHARED_SECRETS.misses == 1


def test_cached_mac_equals_uncached_mac(exchanges: CountingEcdh) -> None:
    acb, device = _key(), _key().public_key()
    warm = _command(7, acb, device)
    _command(7, acb, device)
    crypto.SHARED_SECRETS.clear()
    assert _command(7, acb, device) == warm
    assert exchanges.calls == 2


def test_equal_keys_in_different_objects_share_one_entry(exchanges: CountingEcdh) -> None:
    acb, device = _key(), _key()
    der = acb.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    reloaded = serialization.load_der_private_key(der, None)
    assert isinstance(reloaded, ec.EllipticCurvePrivateKey)
    _command(1, acb, device.public_key())
    _command(2, reloaded, device.public_key())
    assert exchanges.calls == 1


def test_both_ends_of_a_pair_share_the_secret(exchanges: CountingEcdh) -> None:
    """The ESME answering and the User reading need the same Z as the ACB-device pair's
    mirror: device KA x User KA is computed once for the response and its reading."""
    acb, device, user = _key(), _key(), _key()
    command = decode_message(_command(1, acb, device.public_key()))
    assert isinstance(command, GeneralCiphering)
    registers = ImportRegisters(active_import=10, reactive_import=3)
    response = build_ecs17b_response(
        command=command,
        registers=registers,
        date_time=encode_date_time(datetime(2024, 1, 1, tzinfo=UTC)),
        device_ka_private=device,
        recipient_ka_public=user.public_key(),
    )
    assert exchanges.calls == 2  # ACB-device, device-user
    read = read_ecs17b_response(
        response, recipient_ka_private=user, device_ka_public=device.public_key()
    )
    assert read == registers
    assert exchanges.calls == 2


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = SharedSecretCache(maxsize=2)
    own = _key()
    peers = [_key().public_key() for _ in range(3)]
    cache.shared_secret(own, peers[0])
    cache.shared_secret(own, peers[1])
    cache.shared_secret(own, peers[0])  # peers[0] is now the most recent
    cache.shared_secret(own, peers[2])  # evicts peers[1]
    assert len(cache) == 2
    misses = cache.misses
    cache.shared_secret(own, peers[0])
    assert cache.misses == misses
    cache.shared_secret(own, peers[1])
    assert cache.misses == misses + 1


def test_cache_gives_the_same_secret_from_many_threads() -> None:
    cache = SharedSecretCache(maxsize=8)
    own = _key()
    peers = [_key().public_key() for _ in range(16)]
    expected = [ecdh_z(own, peer) for peer in peers]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: cache.shared_secret(own, peers[i % 16]), range(800)))
    assert results == [expected[i % 16] for i in range(800)]
    assert len(cache) <= 8


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SharedSecretCache(maxsize=0)
