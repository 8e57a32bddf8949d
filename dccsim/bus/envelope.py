"""The bus message envelope: a msgpack map every dccsim message travels in.

``{"v": 1, "rid": RequestID, "ts": publish time (float, Unix seconds), "kind": str, "body": {...}}``

``v`` lets a consumer refuse a schema it does not know instead of misreading it; ``rid`` is the
DUIS RequestID, the correlation key end to end; ``ts`` feeds the message-age metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

SCHEMA_VERSION = 1


class EnvelopeError(ValueError):
    """A message that is not a dccsim envelope of a version this code understands."""


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    request_id: str
    body: dict[str, Any]
    published_at: float = field(default_factory=time.time)
    version: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "v": self.version,
                "rid": self.request_id,
                "ts": self.published_at,
                "kind": self.kind,
                "body": self.body,
            },
            use_bin_type=True,
        )
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types
            raise EnvelopeError(f"not msgpack: {exc}") from exc
        if not isinstance(raw, dict):
            raise EnvelopeError("envelope is not a map")
        version = raw.get("v")
        if version != SCHEMA_VERSION:
            raise EnvelopeError(f"unsupported envelope schema version {version!r}")
        kind, rid, ts, body = raw.get("kind"), raw.get("rid"), raw.get("ts"), raw.get("body")
        if not isinstance(kind, str) or not isinstance(rid, str):
            raise EnvelopeError("envelope kind and rid must be strings")
        if not isinstance(ts, float | int) or not isinstance(body, dict):
            raise EnvelopeError("envelope ts must be a number and body a map")
        return cls(kind=kind, request_id=rid, body=body, published_at=float(ts), version=version)

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.published_at)
