"""The estate a gateway hosts, held compactly, and the device models built from it on demand.

At 100,000 premises (500,000 devices) a Python object per device would cost more than the whole
memory budget, so an idle device is a row in a few typed arrays (``EstateIndex``: its EUI-64 in a
sorted ``array('Q')``, a type code and a premises number), about 13 bytes. A device model (keys,
anti-replay counters, supply state) is built on its first command from the key store and kept in
an LRU (``DeviceModels``); when evicted, the little state a real device keeps in non-volatile
memory (anti-replay counters, supply state, clock offset, a CHF's device log) is kept in a
``gateway.nonvolatile`` store and restored when the model is rebuilt, so eviction never reopens
a replay window. With a ``DeviceStateFile`` it is written after every accepted command, before
the reply leaves, so neither does a restart or a crash.

Keys are read lazily per device from the key store's files on the first command (two PEM files
per device), so start-up never touches the 1,000,000 key files of a full estate.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import zlib
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim import estate
from dccsim.duis.requestid import DCC_EUI
from dccsim.pki.keystore import KeyStore, KeyStoreError
from dccsim.pki.smki import KeyUsage
from dccsim.smi import DeviceType
from emulators.chf import Chf
from emulators.device import DeviceRefusal, GbcsDevice, RemoteParty
from emulators.esme import Esme, LoadProfile, SupplyState
from gateway.nonvolatile import DeviceMemory, Residue, VolatileDeviceMemory

__all__ = ["DeviceModels", "DeviceRecord", "EstateIndex", "HubLocks", "ReplayCache", "Residue"]

# Registers are derived from the clock since this instant, so they agree across restarts.
REGISTER_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEVICE_TYPES: tuple[DeviceType, ...] = tuple(DeviceType)
_TYPE_CODE = {t: i for i, t in enumerate(DEVICE_TYPES)}
ALERT_NO_EMULATOR = 0x8F1E  # integrity check failed: the device cannot process the command
HOSTED_TYPES = frozenset({DeviceType.ESME, DeviceType.CHF})  # the others raise ALERT_NO_EMULATOR


def eui_int(eui: bytes) -> int:
    return int.from_bytes(eui, "big")


def eui_bytes(value: int) -> bytes:
    return value.to_bytes(8, "big")


@dataclass(frozen=True)
class DeviceRecord:
    """One hosted device as the estate describes it (built on demand, never stored)."""

    index: int
    eui: bytes
    device_type: DeviceType
    premises: int
    premises_id: str
    region: str
    hub_eui: bytes
    registrations: dict[str, str]


class EstateIndex:
    """The devices of an estate in typed arrays, sorted by EUI-64 for a bisect lookup."""

    def __init__(self) -> None:
        self.euis = array("Q")
        self.types = bytearray()
        self.device_premises = array("I")
        # premises ids packed in one ASCII blob (a str object each would pin the parser's
        # freed memory in place: RSS would stay at the JSON parse's peak)
        self._id_blob = b""
        self._id_offsets = array("I", [0])
        self._id_order = array("I")  # premises numbers sorted by id, for a bisect lookup
        self.premises_region = bytearray()
        self.premises_hub = array("Q")
        self.premises_registrations = array("I")
        self.registration_sets: list[dict[str, str]] = []
        self.regions: list[str] = list(estate.REGIONS)

    def __len__(self) -> int:
        return len(self.euis)

    @property
    def premises_count(self) -> int:
        return len(self._id_offsets) - 1

    def premises_id(self, premises: int) -> str:
        start, end = self._id_offsets[premises], self._id_offsets[premises + 1]
        return self._id_blob[start:end].decode("ascii")

    @classmethod
    def from_file(cls, home: Path, *, regions: Iterable[str] = ()) -> EstateIndex:
        """The estate in ``$home/estate.json`` (the premises in ``regions``, or all of them).

        Parses the JSON directly rather than through ``estate.load``: a frozen dataclass per
        device would need several hundred megabytes at full scale only to be thrown away.
        """
        path = estate.estate_path(home)
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_bytes())
        premises: list[dict[str, Any]] = raw["premises"]
        index = cls._build(premises, frozenset(regions))
        del raw, premises
        return index

    @classmethod
    def from_premises(
        cls, premises: Iterable[estate.Premises], *, regions: Iterable[str] = ()
    ) -> EstateIndex:
        rows = [
            {
                "premises_id": p.premises_id,
                "region": p.region,
                "hub_eui": p.hub_eui,
                "registrations": p.registrations,
                "devices": [{"eui": d.eui, "type": d.device_type.value} for d in p.devices],
            }
            for p in premises
        ]
        return cls._build(rows, frozenset(regions))

    @classmethod
    def _build(cls, premises: list[dict[str, Any]], regions: frozenset[str]) -> EstateIndex:
        index = cls()
        region_code = {name: i for i, name in enumerate(index.regions)}
        registration_code: dict[tuple[tuple[str, str], ...], int] = {}
        euis = array("Q")
        types = bytearray()
        owners = array("I")
        type_code = {t.value: code for t, code in _TYPE_CODE.items()}
        blob = bytearray()
        offsets = array("I", [0])
        for p in premises:
            region = str(p["region"])
            if regions and region not in regions:
                continue
            if region not in region_code:
                region_code[region] = len(index.regions)
                index.regions.append(region)
            regs = tuple(sorted((str(k), str(v)) for k, v in p.get("registrations", {}).items()))
            code = registration_code.get(regs)
            if code is None:
                code = registration_code[regs] = len(index.registration_sets)
                index.registration_sets.append(dict(regs))
            number = len(offsets) - 1
            blob += str(p["premises_id"]).encode("ascii")
            offsets.append(len(blob))
            index.premises_region.append(region_code[region])
            index.premises_hub.append(_parse_eui_int(str(p["hub_eui"])))
            index.premises_registrations.append(code)
            for d in p["devices"]:
                euis.append(_parse_eui_int(str(d["eui"])))
                types.append(type_code[str(d["type"])])
                owners.append(number)
        order = sorted(range(len(euis)), key=euis.__getitem__)
        index.euis = array("Q", (euis[i] for i in order))
        index.types = bytearray(types[i] for i in order)
        index.device_premises = array("I", (owners[i] for i in order))
        del order
        index._id_blob = bytes(blob)
        index._id_offsets = offsets
        index._id_order = array("I", sorted(range(len(offsets) - 1), key=index.premises_id))
        return index

    def find(self, eui: bytes) -> int | None:
        """The device index of ``eui``, or None when this estate does not hold it."""
        value = eui_int(eui)
        i = bisect_left(self.euis, value)
        return i if i < len(self.euis) and self.euis[i] == value else None

    def record(self, index: int) -> DeviceRecord:
        premises = self.device_premises[index]
        return DeviceRecord(
            index=index,
            eui=eui_bytes(self.euis[index]),
            device_type=DEVICE_TYPES[self.types[index]],
            premises=premises,
            premises_id=self.premises_id(premises),
            region=self.regions[self.premises_region[premises]],
            hub_eui=eui_bytes(self.premises_hub[premises]),
            registrations=self.registration_sets[self.premises_registrations[premises]],
        )

    def premises_number(self, key: str) -> int | None:
        """A premises by its id (``P0000001``) or by the EUI-64 of any of its devices."""
        i = bisect_left(self._id_order, key, key=self.premises_id)
        if i < len(self._id_order) and self.premises_id(self._id_order[i]) == key:
            return self._id_order[i]
        try:
            found = self.find(_parse_eui_bytes(key))
        except ValueError:
            return None
        return None if found is None else self.device_premises[found]

    def premises_devices(self, premises: int) -> list[int]:
        """The device indexes of a premises. Linear in the estate: control-plane use only."""
        return [i for i, p in enumerate(self.device_premises) if p == premises]

    def region_of(self, premises: int) -> str:
        return self.regions[self.premises_region[premises]]


def _parse_eui_bytes(text: str) -> bytes:
    raw = bytes.fromhex(text.replace("-", "").replace(":", ""))
    if len(raw) != 8:
        raise ValueError(f"not an EUI-64: {text!r}")
    return raw


def _parse_eui_int(text: str) -> int:
    return int(text.replace("-", ""), 16)


class DeviceModels:
    """Models built on first command, at most ``capacity`` at once (least recently used out)."""

    def __init__(
        self,
        index: EstateIndex,
        keystore: KeyStore,
        clock: Callable[[], dt.datetime],
        *,
        capacity: int = 20_000,
        memory: DeviceMemory | None = None,
    ) -> None:
        """``memory`` keeps what models leave behind (default: in process, lost on restart)."""
        self.index = index
        self.keystore = keystore
        self.clock = clock
        self.capacity = capacity
        self._models: OrderedDict[int, GbcsDevice] = OrderedDict()
        self.memory: DeviceMemory = memory if memory is not None else VolatileDeviceMemory()
        self._acb_ka: ec.EllipticCurvePublicKey | None = None
        self._party_ka: dict[bytes, ec.EllipticCurvePublicKey | None] = {}
        self._party_ds_keys: dict[bytes, ec.EllipticCurvePublicKey | None] = {}
        self.built = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[int]:
        return iter(self._models)

    def _public_ka(self, eui: bytes) -> ec.EllipticCurvePublicKey:
        key = self.keystore.certificate(eui, KeyUsage.KA).public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyStoreError(f"{eui.hex()} KA key is not EC")
        return key

    def _party(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        if eui not in self._party_ka:
            try:
                self._party_ka[eui] = self._public_ka(eui)
            except KeyStoreError:
                self._party_ka[eui] = None
        return self._party_ka[eui]

    def _party_ds(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        if eui not in self._party_ds_keys:
            key: ec.EllipticCurvePublicKey | None = None
            try:
                public = self.keystore.certificate(eui, KeyUsage.DS).public_key()
                key = public if isinstance(public, ec.EllipticCurvePublicKey) else None
            except KeyStoreError:
                key = None
            self._party_ds_keys[eui] = key
        return self._party_ds_keys[eui]

    def _private(self, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePrivateKey:
        key = self.keystore.private_key(eui, usage)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyStoreError(f"{eui.hex()} {usage} private key is not EC")
        return key

    def peek(self, index: int) -> GbcsDevice | None:
        return self._models.get(index)

    def get(self, record: DeviceRecord) -> GbcsDevice:
        """The model of ``record``'s device, built (and its residue restored) if need be."""
        model = self._models.get(record.index)
        if model is not None:
            self._models.move_to_end(record.index)
            return model
        model = self._build(record)
        residue = self.memory.load(eui_int(record.eui))
        if residue is not None:
            model.last_counters = dict(residue.last_counters)
            model.refusals = residue.refusals
            _restore_extra(model, residue.extra)
        self._models[record.index] = model
        self.built += 1
        while len(self._models) > self.capacity:
            old_index, old = self._models.popitem(last=False)
            if not self.memory.durable:  # a durable store already has it (``commit``)
                self.memory.save(self.index.euis[old_index], _residue(old))
            self.evicted += 1
        return model

    def commit(self, record: DeviceRecord, model: GbcsDevice) -> None:
        """After ``model`` accepted a command and before its reply leaves: write what it keeps
        in non-volatile memory to a durable store (nothing to do for the in-process one)."""
        if self.memory.durable:
            self.memory.save(eui_int(record.eui), _residue(model))

    def forget(self, index: int) -> None:
        """Drop the model and its residue: the device as if fresh from the factory."""
        self._models.pop(index, None)
        self.memory.forget(self.index.euis[index])

    def close(self) -> None:
        self.memory.close()

    def _build(self, record: DeviceRecord) -> GbcsDevice:
        if record.device_type not in HOSTED_TYPES:
            raise DeviceRefusal(
                ALERT_NO_EMULATOR, f"no emulator for {record.device_type.value} yet"
            )
        if self._acb_ka is None:
            self._acb_ka = self._public_ka(DCC_EUI)
        parties = {}
        users = {_parse_eui_bytes(user) for user in record.registrations.values()}
        if record.device_type is DeviceType.CHF:
            users.add(DCC_EUI)  # CCS01/CCS02 come from the ACB itself (the DCC's own commands)
        for user_eui in users:
            ka = self._party(user_eui)
            if ka is not None:
                # The DS key lets the meter check the User's signature on critical commands.
                parties[user_eui] = RemoteParty(user_eui, ka, self._party_ds(user_eui))
        if record.device_type is DeviceType.CHF:
            return Chf(
                eui=record.eui,
                ka_private_key=self._private(record.eui, KeyUsage.KA),
                ds_private_key=self._private(record.eui, KeyUsage.DS),
                acb_ka_public=self._acb_ka,
                remote_parties=parties,
                clock=self.clock,
            )
        return Esme(
            eui=record.eui,
            ka_private_key=self._private(record.eui, KeyUsage.KA),
            ds_private_key=self._private(record.eui, KeyUsage.DS),
            acb_ka_public=self._acb_ka,
            remote_parties=parties,
            clock=self.clock,
            load_profile=LoadProfile.from_seed(zlib.crc32(record.eui)),
            epoch=REGISTER_EPOCH,
        )


def _residue(model: GbcsDevice) -> Residue:
    return Residue(dict(model.last_counters), model.refusals, _extra_state(model))


def _extra_state(model: GbcsDevice) -> dict[str, Any]:
    if isinstance(model, Esme):  # esme.py predates nonvolatile_state: its two fields here
        return {
            "supply": int(model.supply),
            "clock_offset_us": model.clock_offset // dt.timedelta(microseconds=1),
        }
    return model.nonvolatile_state()


def _restore_extra(model: GbcsDevice, extra: dict[str, Any]) -> None:
    if not extra:
        return
    if isinstance(model, Esme):
        model.supply = SupplyState(int(extra["supply"]))
        model.clock_offset = dt.timedelta(microseconds=int(extra["clock_offset_us"]))
    else:
        model.restore_nonvolatile_state(extra)


class HubLocks:
    """One lock per Communications Hub, held only while a hub has work (a real hub handles one
    command at a time); an idle hub has no lock object at all."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, hub: bytes) -> Any:
        key = eui_int(hub)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            left = self._users[key] - 1
            if left:
                self._users[key] = left
            else:
                del self._users[key]
                del self._locks[key]


class ReplayCache:
    """Recent (device, command digest) -> response, gateway-wide and bounded: a repeated
    command (a WAN redelivery, a resend after a lost link) gets the same answer."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, device: int, digest: bytes) -> bytes | None:
        return self._entries.get((device, digest))

    def put(self, device: int, digest: bytes, response: bytes) -> None:
        self._entries[(device, digest)] = response
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def forget_device(self, device: int) -> None:
        for key in [k for k in self._entries if k[0] == device]:
            del self._entries[key]
