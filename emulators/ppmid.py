"""An emulated Prepayment Meter Interface Device (PPMID).

What GBCS lets the DCC see of a PPMID: it is a Type 1 HAN device (it holds SMKI credentials),
joined to the meters whose prepayment it fronts (CS03A2 / CS03C join, CS04AC unjoin, CS07 join
details) and it answers CS08 Read PPMID/HCALCS Firmware Version. Its own business — topping up
a GSME (PCS01), activating emergency credit (PCS02), asking an ESME to enable supply (PECS03)
— is HAN-only: GBCS defines those as messages from the PPMID to a meter over ZigBee, never as
commands over the SM WAN, so this model has no handler for them. A WAN command of any other use
case is answered the way the base device answers an unsupported use case (an other-reason
result for DLMS, an integrity alert otherwise), not dropped.
"""

from __future__ import annotations

from emulators.han import Type1Device


class Ppmid(Type1Device):
    """A PPMID: joins and CS08 (``emulators.han``), nothing of its own over the WAN."""
