"""The link between services/wan (the DCC's CSP adapter) and gateway/ (the SM WAN emulator).

A TLS stream of frames, each a 4-byte big-endian length then a msgpack map. Many commands are in
flight on one connection, matched by ``id``:

* WAN -> gateway ``{"t": "cmd", "id": n, "hub": EUI, "device": EUI, "frame": bytes,
  "deadline_s": float}``
* gateway -> WAN ``{"t": "rsp", "id": n, "frame": bytes}`` or ``{"t": "err", "id": n,
  "code": "E20"|"E21", "reason": str}``.

Unsolicited alerts, at least once:

* gateway -> WAN ``{"t": "alert", "id": a, "device": EUI, "hub": EUI, "region": str,
  "premises_id": str, "alert_code": int, "frame": bytes | None, "rid": str}``. ``a`` is the
  gateway's alert id (its own sequence, apart from the command ids ``n``); the gateway keeps the
  alert in its journal until it is acknowledged, and sends it again (same ``a``, same frame) on
  the next connection, after a timeout without an acknowledgement, and after a restart.
* WAN -> gateway ``{"t": "alert_ack", "id": a}``, sent on the connection the alert came in on
  and only once the alert's ``gbcs.alert`` publish is confirmed by the broker. An ack for an
  alert the gateway no longer holds is ignored.

Either side ignores a message whose ``t`` it does not know.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

MAX_FRAME_BYTES = 1 << 20
_LENGTH = struct.Struct(">I")


class LinkError(ConnectionError):
    """The peer sent something that is not a link frame, or the stream broke."""


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        raise LinkError("link closed") from exc
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise LinkError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        data = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise LinkError("link closed mid-frame") from exc
    try:
        message = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise LinkError(f"frame is not msgpack: {exc}") from exc
    if not isinstance(message, dict):
        raise LinkError("frame is not a map")
    return message


def encode_frame(message: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    if len(data) > MAX_FRAME_BYTES:
        raise LinkError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(data)) + data
