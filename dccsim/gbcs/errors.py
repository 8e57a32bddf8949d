"""The one exception every GBCS decoder and verifier raises."""

from __future__ import annotations


class GbcsError(Exception):
    """A GBCS frame, DLMS APDU or cryptographic check that failed.

    ``reason`` is a short, log-safe description (it never carries key material).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
