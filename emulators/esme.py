"""An emulated electricity smart meter (ESME): its registers and its GBCS use-case handlers."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.usecases import ECS17B, ImportRegisters, build_ecs17b_response
from emulators.device import GbcsDevice, RemoteParty, on

REGISTER_MODULUS = 1 << 32  # double-long-unsigned registers roll over


@dataclass(frozen=True)
class LoadProfile:
    """How the meter's registers move: start values and a constant mean demand.

    ``from_seed`` picks a plausible household demand deterministically, so an estate of meters
    differs from meter to meter yet every run is reproducible.
    """

    start_import_wh: int = 0
    start_reactive_varh: int = 0
    mean_power_w: float = 500.0
    reactive_ratio: float = 0.1  # varh per Wh
    twin_element: bool = False  # a twin-element ESME reports its second element's register
    secondary_share: float = 0.5  # share of the demand on the second element

    @classmethod
    def from_seed(cls, seed: int, *, twin_element: bool = False) -> LoadProfile:
        rng = random.Random(seed)
        return cls(
            start_import_wh=rng.randrange(0, 20_000_000),
            start_reactive_varh=rng.randrange(0, 2_000_000),
            mean_power_w=rng.uniform(150.0, 1_500.0),
            reactive_ratio=rng.uniform(0.02, 0.2),
            twin_element=twin_element,
        )


class Esme(GbcsDevice):
    """An ESME: import registers derived from the injected clock and its load profile."""

    def __init__(
        self,
        *,
        eui: bytes,
        ka_private_key: ec.EllipticCurvePrivateKey,
        ds_private_key: ec.EllipticCurvePrivateKey,
        acb_ka_public: ec.EllipticCurvePublicKey,
        remote_parties: Mapping[bytes, RemoteParty],
        clock: Callable[[], datetime],
        load_profile: LoadProfile | None = None,
        epoch: datetime | None = None,
    ) -> None:
        """``epoch`` is when the registers held the profile's start values (default: now)."""
        super().__init__(
            eui=eui,
            ka_private_key=ka_private_key,
            ds_private_key=ds_private_key,
            acb_ka_public=acb_ka_public,
            remote_parties=remote_parties,
            clock=clock,
        )
        self.load_profile = load_profile or LoadProfile()
        self.epoch = epoch if epoch is not None else clock()

    def registers(self, now: datetime) -> ImportRegisters:
        """The import registers at ``now`` (never below their start values)."""
        profile = self.load_profile
        hours = max((now - self.epoch).total_seconds(), 0.0) / 3600.0
        consumed_wh = profile.mean_power_w * hours
        secondary = None
        if profile.twin_element:
            secondary = int(consumed_wh * profile.secondary_share) % REGISTER_MODULUS
        return ImportRegisters(
            active_import=(profile.start_import_wh + int(consumed_wh)) % REGISTER_MODULUS,
            reactive_import=(
                profile.start_reactive_varh + int(consumed_wh * profile.reactive_ratio)
            )
            % REGISTER_MODULUS,
            secondary_active_import=secondary,
        )

    @on(ECS17B)
    def read_import_registers(
        self,
        *,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS17b: the import registers, encrypted for the requesting remote party."""
        return build_ecs17b_response(
            command=command,
            registers=self.registers(now),
            date_time=encode_date_time(now),
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )
