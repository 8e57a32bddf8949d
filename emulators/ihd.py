"""An In-Home Display (IHD), as much of it as the DCC can see.

GBCS defines no SM WAN use case for an IHD. It is a Type 2 device: it holds no SMKI
credentials, so it can neither check a command's MAC or signature nor protect a response, and
no remote party can address it. What the DCC does see of an IHD is elsewhere: its entry in the
CHF device log (CCS01 / CCS02 / CCS07, ``emulators.chf``) and its Method B join to a meter
(CS03B, ``emulators.gsme``); over the HAN it reads what the meters and the GPF's GSME mirror
publish.

So this model keeps no state and answers every WAN command the way the Communications Hub
does for a device that cannot process it: the command is discarded with the GBCS alert
"integrity check of content or format of command failed" (0x8F1E), which the gateway turns
into an immediate E21 and a Device Alert, rather than being dropped silently.
"""

from __future__ import annotations

from emulators.device import ALERT_INTEGRITY_CHECK_FAILED, DeviceRefusal

NOT_ADDRESSABLE = "an IHD is a GBCS Type 2 device: no credentials, no SM WAN use case"


class Ihd:
    """An IHD on the WAN side: every command refused (see the module docstring)."""

    def __init__(self, *, eui: bytes) -> None:
        if len(eui) != 8:
            raise ValueError("a device EUI-64 is 8 bytes")
        self.eui = eui

    def handle(self, command_bytes: bytes) -> bytes:
        """Never returns: raises :class:`DeviceRefusal` with alert 0x8F1E."""
        raise self.refusal()

    @staticmethod
    def refusal() -> DeviceRefusal:
        """The refusal a WAN command to an IHD meets."""
        return DeviceRefusal(ALERT_INTEGRITY_CHECK_FAILED, NOT_ADDRESSABLE)
