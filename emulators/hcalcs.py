"""An emulated HAN Connected Auxiliary Load Control Switch (HCALCS).

What GBCS lets the DCC see of an HCALCS: it is a Type 1 HAN device (SMKI credentials), joined
to its ESME (CS03A2 / CS03C join — the critical variants, signed by the Supplier, are the ones
the RTDS sends to it — CS04AC unjoin, CS07 join details) and it answers CS08 Read PPMID/HCALCS
Firmware Version. Switching the load is not a WAN use case of the HCALCS: the Supplier sets
the ESME's auxiliary controller schedules (ECS46/ECS47) and the ESME drives the switch over the
HAN (HECS01 only allocates a message code for the HCALCS's event log). So this model has no
handler for switching; other WAN commands get the base device's answer for an unsupported use
case, not silence.
"""

from __future__ import annotations

from emulators.han import Type1Device


class Hcalcs(Type1Device):
    """An HCALCS: joins and CS08 (``emulators.han``), nothing of its own over the WAN."""
