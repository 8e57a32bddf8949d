"""Bounds-checked reading of octet strings and the DER/BER length form GBCS and A-XDR share."""

from __future__ import annotations

from dccsim.gbcs.errors import GbcsError


def encode_length(n: int) -> bytes:
    """DER minimal length: one byte below 0x80, else ``81 xx``, ``82 xx xx`` (up to 0xFFFFFF)."""
    if n < 0:
        raise ValueError("negative length")
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 7) // 8
    if size > 3:
        raise ValueError(f"length {n} too large for a GBCS frame")
    return bytes([0x80 | size]) + n.to_bytes(size, "big")


class OctetReader:
    """A cursor over ``data``; every overrun or malformed length raises :class:`GbcsError`."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self._data = data
        self._pos = pos

    @property
    def pos(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise GbcsError(f"truncated {what}: need {n} bytes, have {self.remaining()}")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def expect(self, expected: bytes, what: str) -> None:
        got = self.take(len(expected), what)
        if got != expected:
            raise GbcsError(f"bad {what}: expected {expected.hex()}, got {got.hex()}")

    def length(self, what: str) -> int:
        """A DER length in minimal form (``n``, ``81 n``, ``82 n n``, ``83 n n n``)."""
        first = self.byte(what)
        if first < 0x80:
            return first
        size = first & 0x7F
        if size == 0 or size > 3:
            raise GbcsError(f"bad {what}: unsupported length form {first:02x}")
        value = self.uint(size, what)
        if encode_length(value) != bytes([first]) + value.to_bytes(size, "big"):
            raise GbcsError(f"bad {what}: non-minimal length encoding")
        return value

    def sized(self, what: str) -> bytes:
        """A length-prefixed octet string."""
        return self.take(self.length(what), what)

    def slice(self, start: int, end: int) -> bytes:
        """Bytes already read, from ``start`` to ``end`` (positions from :attr:`pos`)."""
        return self._data[start:end]
