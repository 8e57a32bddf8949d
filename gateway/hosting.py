"""The estate a gateway hosts, held compactly, and the device models built from it on demand.

At 100,000 premises (500,000 devices) a Python object per device would cost more than the whole
memory budget, so an idle device is a row in a few typed arrays (``EstateIndex``: its EUI-64 in an
``array('Q')`` with its place in EUI order beside it, a type code and a premises number), about
17 bytes; premises added to estate.json later are merged in without disturbing the rows there.
A device model (keys, trust anchors, anti-replay counters, supply state) is built on its
first command from the key store and kept in an LRU (``DeviceModels``); when evicted, what a
real device keeps in non-volatile memory (anti-replay counters and the model's whole
``nonvolatile_state``: an ESME's supply state, clock offset, tariff, account, firmware, trust
anchors and held future-dated commands, a CHF's device log ...) is kept in a
``gateway.nonvolatile`` store and restored when the model is rebuilt, so eviction never reopens
a replay window nor undoes a command. With a ``DeviceStateFile`` it is written after every
accepted command, before the reply leaves, so neither does a restart or a crash.

Only what differs from a freshly built model is kept: each model remembers a short digest of
every ``nonvolatile_state`` entry as built, and its residue holds the entries whose digest has
changed (a meter whose tariff was set carries its tariff, not its trust anchors); a device
that never accepted a command and changed nothing leaves no residue at all. A rebuilt model
takes its fresh state with the residue laid over it, so a model's restore sees a whole state.

Keys are read lazily per device from the key store's files on the first command (two PEM files
per device), so start-up never touches the 1,000,000 key files of a full estate.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import time
import zlib
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import msgpack
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim import estate
from dccsim.duis.requestid import DCC_EUI
from dccsim.pki.cos import TRANSITIONAL_COS_EUI
from dccsim.pki.keystore import KeyStore, KeyStoreError
from dccsim.pki.smki import KeyUsage, Role
from dccsim.smi import DeviceType
from emulators.chf import Chf
from emulators.credentials import TrustAnchor
from emulators.device import DeviceRefusal, GbcsDevice, RemoteParty
from emulators.esme import Esme, LoadProfile
from emulators.gpf import Gpf
from emulators.gsme import GasLoadProfile, GasRegisters, Gsme
from emulators.hcalcs import Hcalcs
from emulators.ihd import Ihd
from emulators.ppmid import Ppmid
from gateway.nonvolatile import DeviceMemory, Residue, VolatileDeviceMemory

__all__ = ["DeviceModels", "DeviceRecord", "EstateIndex", "HubLocks", "ReplayCache", "Residue"]

# Registers are derived from the clock since this instant, so they agree across restarts.
REGISTER_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# A remote party whose certificates the key store lacks is looked up again after this long.
PARTY_MISS_S = 5.0
DEVICE_TYPES: tuple[DeviceType, ...] = tuple(DeviceType)
_TYPE_CODE = {t: i for i, t in enumerate(DEVICE_TYPES)}
ALERT_NO_EMULATOR = 0x8F1E  # integrity check failed: the device cannot process the command
# the others (CAD) raise ALERT_NO_EMULATOR; an IHD has no WAN use case (emulators/ihd.py)
HOSTED_TYPES = frozenset(
    {
        DeviceType.ESME,
        DeviceType.CHF,
        DeviceType.GSME,
        DeviceType.GPF,
        DeviceType.PPMID,
        DeviceType.HCALCS,
    }
)
# Whose credentials a device holds, by the roles the premises registers (a gas device its Gas
# Supplier's and Gas Transporter's); types not named trust every registered User.
TRUSTED_ROLES: dict[DeviceType, frozenset[str]] = {
    DeviceType.GSME: frozenset({"GS", "GT"}),
    DeviceType.GPF: frozenset({"GS", "GT"}),
    DeviceType.PPMID: frozenset({"IS", "GS"}),
    DeviceType.HCALCS: frozenset({"IS", "ED"}),
}
# The trust anchor cells (remote party role) a hosted meter holds for each registered role, as
# installed: the Supplier's and the Network Operator's DS and KA keys. One cell per role: the
# first registration in this order that names a User with certificates fills it.
TRUST_ANCHOR_ROLES: tuple[tuple[str, int], ...] = (
    ("IS", Role.SUPPLIER),
    ("GS", Role.SUPPLIER),
    ("ED", Role.NETWORK_OPERATOR),
    ("GT", Role.NETWORK_OPERATOR),
)
DIGEST_BYTES = 8  # of each nonvolatile_state entry as built (compared, never stored)
# Devices the ACB itself commands (device logs, joins, CS08 ... as the RTDS vectors show).
ACB_COMMANDED = frozenset(
    {DeviceType.CHF, DeviceType.GPF, DeviceType.GSME, DeviceType.PPMID, DeviceType.HCALCS}
)


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
    """The devices of an estate in typed arrays, found by EUI-64 with a bisect.

    A device's index (its row in ``euis``, ``types`` and ``device_premises``) and a premises'
    number never change once given out: premises hosted later (``extended``, ``merge``) take
    the next ones, so the models, replies and faults kept by index stay with their devices.
    ``_by_eui`` lists the device indexes in EUI-64 order for the lookup (4 bytes a device).
    """

    def __init__(self) -> None:
        self.euis = array("Q")
        self.types = bytearray()
        self.device_premises = array("I")
        self._by_eui = array("I")  # device indexes sorted by EUI-64, for a bisect lookup
        # premises ids packed in one ASCII blob (a str object each would pin the parser's
        # freed memory in place: RSS would stay at the JSON parse's peak)
        self._id_blob = b""
        self._id_offsets = array("I", [0])
        self._id_order = array("I")  # premises numbers sorted by id, for a bisect lookup
        self.premises_region = bytearray()
        self.premises_hub = array("Q")
        self.premises_registrations = array("I")
        self.registration_sets: list[dict[str, str]] = []
        self._registration_code: dict[tuple[tuple[str, str], ...], int] = {}
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
        return cls._build([premises_row(p) for p in premises], frozenset(regions))

    @classmethod
    def _build(cls, premises: list[dict[str, Any]], regions: frozenset[str]) -> EstateIndex:
        return cls().extended(premises, regions=regions) or cls()

    def extended(
        self, premises: Iterable[dict[str, Any]], *, regions: Iterable[str] = ()
    ) -> EstateIndex | None:
        """A new index holding this one's premises and devices, at the same numbers and
        indexes, and after them the premises of ``premises`` (rows as estate.json has them)
        that are not here yet, in ``regions`` (all when empty); None when there are none.
        ``self`` is not changed, so this can run in a thread while the gateway serves from it.

        A premises already hosted keeps what it was hosted with, and a device already hosted
        is not hosted twice: what estate.json says later about either is not applied.
        """
        wanted = frozenset(regions)
        grown = EstateIndex()
        grown.euis = array("Q", self.euis)
        grown.types = bytearray(self.types)
        grown.device_premises = array("I", self.device_premises)
        grown._id_offsets = array("I", self._id_offsets)
        grown.premises_region = bytearray(self.premises_region)
        grown.premises_hub = array("Q", self.premises_hub)
        grown.premises_registrations = array("I", self.premises_registrations)
        grown.registration_sets = list(self.registration_sets)
        grown._registration_code = dict(self._registration_code)
        grown.regions = list(self.regions)
        region_code = {name: i for i, name in enumerate(grown.regions)}
        type_code = {t.value: code for t, code in _TYPE_CODE.items()}
        blob = bytearray(self._id_blob)
        first_device, first_premises = len(self.euis), self.premises_count
        added: set[str] = set()  # premises ids new in this call (a repeated row is skipped)
        for p in premises:
            region = str(p["region"])
            if wanted and region not in wanted:
                continue
            premises_id = str(p["premises_id"])
            if premises_id in added or self._premises_by_id(premises_id) is not None:
                continue
            added.add(premises_id)
            if region not in region_code:
                region_code[region] = len(grown.regions)
                grown.regions.append(region)
            regs = tuple(sorted((str(k), str(v)) for k, v in p.get("registrations", {}).items()))
            code = grown._registration_code.get(regs)
            if code is None:
                code = grown._registration_code[regs] = len(grown.registration_sets)
                grown.registration_sets.append(dict(regs))
            number = len(grown._id_offsets) - 1
            blob += premises_id.encode("ascii")
            grown._id_offsets.append(len(blob))
            grown.premises_region.append(region_code[region])
            grown.premises_hub.append(_parse_eui_int(str(p["hub_eui"])))
            grown.premises_registrations.append(code)
            for d in p["devices"]:
                value = _parse_eui_int(str(d["eui"]))
                if self._find_value(value) is not None:
                    continue
                grown.euis.append(value)
                grown.types.append(type_code[str(d["type"])])
                grown.device_premises.append(number)
        if not added:
            return None
        grown._id_blob = bytes(blob)
        # what was here is one sorted run already: the sort costs little more than the new part's
        new_devices = range(first_device, len(grown.euis))
        grown._by_eui = array(
            "I", sorted(chain(self._by_eui, new_devices), key=grown.euis.__getitem__)
        )
        new_premises = range(first_premises, grown.premises_count)
        grown._id_order = array(
            "I", sorted(chain(self._id_order, new_premises), key=grown.premises_id)
        )
        return grown

    def adopt(self, grown: EstateIndex) -> None:
        """Take over ``grown``'s arrays (an ``extended`` copy of this index) in place, so that
        everything holding this index hosts the larger estate; every device index and premises
        number handed out before still names the same device and premises."""
        vars(self).update(vars(grown))

    def merge(
        self, premises: Iterable[dict[str, Any]], *, regions: Iterable[str] = ()
    ) -> list[int]:
        """Host the premises of ``premises`` not hosted yet (``extended`` then ``adopt``).
        Returns the numbers of the premises added."""
        before = self.premises_count
        grown = self.extended(premises, regions=regions)
        if grown is None:
            return []
        self.adopt(grown)
        return list(range(before, self.premises_count))

    def _find_value(self, value: int) -> int | None:
        order = self._by_eui
        i = bisect_left(order, value, key=self.euis.__getitem__)
        if i < len(order) and self.euis[order[i]] == value:
            return order[i]
        return None

    def find(self, eui: bytes) -> int | None:
        """The device index of ``eui``, or None when this estate does not hold it."""
        return self._find_value(eui_int(eui))

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

    def _premises_by_id(self, premises_id: str) -> int | None:
        i = bisect_left(self._id_order, premises_id, key=self.premises_id)
        if i < len(self._id_order) and self.premises_id(self._id_order[i]) == premises_id:
            return self._id_order[i]
        return None

    def premises_number(self, key: str) -> int | None:
        """A premises by its id (``P0000001``) or by the EUI-64 of any of its devices."""
        number = self._premises_by_id(key)
        if number is not None:
            return number
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


def premises_row(p: estate.Premises) -> dict[str, Any]:
    """A premises as estate.json's row for it (what ``EstateIndex.extended`` reads)."""
    return {
        "premises_id": p.premises_id,
        "region": p.region,
        "hub_eui": p.hub_eui,
        "registrations": p.registrations,
        "devices": [{"eui": d.eui, "type": d.device_type.value} for d in p.devices],
    }


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
        root_public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> None:
        """``memory`` keeps what models leave behind (default: in process, lost on restart).
        ``root_public_key`` is the SMKI Root key a meter holds in its Root cell (what a
        credentials update's certification path must lead to); without it a hosted meter
        replaces no trust anchor."""
        self.index = index
        self.keystore = keystore
        self.clock = clock
        self.capacity = capacity
        self.root_public_key = root_public_key
        self._models: OrderedDict[int, GbcsDevice] = OrderedDict()
        # device index -> the digests of its model's nonvolatile_state entries as built
        self._built_state: dict[int, BuiltState] = {}
        self._anchors: dict[tuple[bytes, KeyUsage, int], TrustAnchor | None] = {}
        self.memory: DeviceMemory = memory if memory is not None else VolatileDeviceMemory()
        self._acb_ka: ec.EllipticCurvePublicKey | None = None
        self._party_ka: dict[bytes, ec.EllipticCurvePublicKey | float] = {}
        self._party_ds_keys: dict[bytes, ec.EllipticCurvePublicKey | float] = {}
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

    def acb_ka_public(self) -> ec.EllipticCurvePublicKey:
        """The ACB's KA public key (what devices MAC their alerts to the DCC with), read once."""
        if self._acb_ka is None:
            self._acb_ka = self._public_ka(DCC_EUI)
        return self._acb_ka

    def _party(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        """The remote party's KA public key from the key store, or None while it has none.
        Keys are kept once read; a miss only for PARTY_MISS_S, so a User onboarded after the
        gateway started (its certificates stored later) is trusted once they are there."""
        return self._party_key(self._party_ka, eui, KeyUsage.KA)

    def _party_ds(self, eui: bytes) -> ec.EllipticCurvePublicKey | None:
        return self._party_key(self._party_ds_keys, eui, KeyUsage.DS)

    def _party_key(
        self,
        cache: dict[bytes, ec.EllipticCurvePublicKey | float],
        eui: bytes,
        usage: KeyUsage,
    ) -> ec.EllipticCurvePublicKey | None:
        held = cache.get(eui)
        if isinstance(held, ec.EllipticCurvePublicKey):
            return held
        now = time.monotonic()
        if held is not None and now - held < PARTY_MISS_S:
            return None
        try:
            public = self.keystore.certificate(eui, usage).public_key()
        except KeyStoreError:
            public = None
        if isinstance(public, ec.EllipticCurvePublicKey):
            cache[eui] = public
            return public
        cache[eui] = now  # when it was missed
        return None

    def _private(self, eui: bytes, usage: KeyUsage) -> ec.EllipticCurvePrivateKey:
        key = self.keystore.private_key(eui, usage)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyStoreError(f"{eui.hex()} {usage} private key is not EC")
        return key

    def _anchor(self, eui: bytes, usage: KeyUsage, role: int) -> TrustAnchor | None:
        """The trust anchor cell ``eui``'s ``usage`` certificate fills for ``role`` (shared by
        every meter holding it), or None when the key store has no such certificate."""
        key = (eui, usage, role)
        if key not in self._anchors:
            anchor: TrustAnchor | None = None
            try:
                anchor = TrustAnchor.from_certificate(
                    role, 0, self.keystore.certificate(eui, usage)
                )
            except (KeyStoreError, ValueError, x509.ExtensionNotFound):
                anchor = None
            self._anchors[key] = anchor
        return self._anchors[key]

    def trust_anchors(self, record: DeviceRecord) -> tuple[TrustAnchor, ...]:
        """The cells an installed meter of ``record``'s premises holds: for each role, the
        DS and KA certificates of the first registered User of ``TRUST_ANCHOR_ROLES`` that
        the meter trusts (a GSME: its Gas Supplier and Gas Transporter)."""
        trusted = TRUSTED_ROLES.get(record.device_type)
        cells: dict[int, tuple[TrustAnchor, TrustAnchor]] = {}
        for registration, role in TRUST_ANCHOR_ROLES:
            user = record.registrations.get(registration)
            if (
                user is None
                or role in cells
                or (trusted is not None and registration not in trusted)
            ):
                continue
            eui = _parse_eui_bytes(user)
            ds, ka = self._anchor(eui, KeyUsage.DS, role), self._anchor(eui, KeyUsage.KA, role)
            if ds is not None and ka is not None:
                cells[role] = (ds, ka)
        anchors = tuple(anchor for pair in cells.values() for anchor in pair)
        # The DCC's Transitional CoS Party (DS only), whose cell authorises a 6.23 change of
        # supplier, when the PKI has one (`dccsim pki init`, `dccsim seed`).
        cos = self._anchor(TRANSITIONAL_COS_EUI, KeyUsage.DS, int(Role.TRANSITIONAL_COS))
        return (*anchors, cos) if cos is not None else anchors

    def peek(self, index: int) -> GbcsDevice | None:
        return self._models.get(index)

    def get(self, record: DeviceRecord) -> GbcsDevice:
        """The model of ``record``'s device, built (and its residue restored) if need be."""
        model = self._models.get(record.index)
        if model is not None:
            self._models.move_to_end(record.index)
            return model
        model = self._build(record)
        built = model.nonvolatile_state()
        residue = self.memory.load(eui_int(record.eui))
        if residue is not None:
            model.last_counters = dict(residue.last_counters)
            model.refusals = residue.refusals
            model.alert_counter = residue.alert_counter
            if residue.extra:
                model.restore_nonvolatile_state({**built, **residue.extra})
        self._built_state[record.index] = BuiltState.of(built)
        self._models[record.index] = model
        self.built += 1
        while len(self._models) > self.capacity:
            old_index, old = self._models.popitem(last=False)
            baseline = self._built_state.pop(old_index, None) or BuiltState.of({})
            if not self.memory.durable:  # a durable store already has it (``commit``)
                kept = _residue(old, baseline)
                if not kept.empty:  # an untouched device leaves nothing behind
                    self.memory.save(self.index.euis[old_index], kept)
            self.evicted += 1
        return model

    def commit(self, record: DeviceRecord, model: GbcsDevice) -> None:
        """After ``model`` accepted a command and before its reply leaves: write what it keeps
        in non-volatile memory to a durable store (nothing to do for the in-process one)."""
        if self.memory.durable:
            baseline = self._built_state.get(record.index) or BuiltState.of({})
            self.memory.save(eui_int(record.eui), _residue(model, baseline))

    def residue(self, record: DeviceRecord) -> Residue | None:
        """What ``record``'s device would leave behind now (its model's, if built, else the
        store's); for the control API and tests."""
        model = self._models.get(record.index)
        if model is not None:
            return _residue(model, self._built_state.get(record.index) or BuiltState.of({}))
        residue = self.memory.load(eui_int(record.eui))
        if residue is not None and not self.memory.durable:
            self.memory.save(eui_int(record.eui), residue)  # ``load`` took it out
        return residue

    def forget(self, index: int) -> None:
        """Drop the model and its residue: the device as if fresh from the factory."""
        self._models.pop(index, None)
        self._built_state.pop(index, None)
        self.memory.forget(self.index.euis[index])

    def close(self) -> None:
        self.memory.close()

    def _build(self, record: DeviceRecord) -> GbcsDevice:
        if record.device_type is DeviceType.IHD:
            raise Ihd.refusal()
        if record.device_type not in HOSTED_TYPES:
            raise DeviceRefusal(
                ALERT_NO_EMULATOR, f"no emulator for {record.device_type.value} yet"
            )
        acb_ka = self.acb_ka_public()
        parties = {}
        roles = TRUSTED_ROLES.get(record.device_type)
        users = {
            _parse_eui_bytes(user)
            for role, user in record.registrations.items()
            if roles is None or role in roles
        }
        if record.device_type in ACB_COMMANDED:
            users.add(DCC_EUI)  # e.g. CCS01/CCS02 come from the ACB itself (the DCC's own)
        for user_eui in users:
            ka = self._party(user_eui)
            if ka is not None:
                # The DS key lets the meter check the User's signature on critical commands.
                parties[user_eui] = RemoteParty(user_eui, ka, self._party_ds(user_eui))
        common: dict[str, Any] = {
            "eui": record.eui,
            "ka_private_key": self._private(record.eui, KeyUsage.KA),
            "ds_private_key": self._private(record.eui, KeyUsage.DS),
            "acb_ka_public": acb_ka,
            "remote_parties": parties,
            "clock": self.clock,
        }
        if record.device_type is DeviceType.CHF:
            return Chf(**common)
        if record.device_type in (DeviceType.GSME, DeviceType.GPF):
            # one gas profile per premises: the GPF's mirror follows its GSME's register
            gas = GasRegisters(
                GasLoadProfile.from_seed(zlib.crc32(f"gas:{record.premises_id}".encode())),
                REGISTER_EPOCH,
            )
            if record.device_type is DeviceType.GPF:
                return Gpf(**common, mirror=gas)
            self._trust_cos_party(parties)  # 6.23 to a GSME, as to an ESME
            return Gsme(
                **common,
                load_profile=gas.profile,
                epoch=gas.epoch,
                trust_anchors=self.trust_anchors(record),
                root_public_key=self.root_public_key,
            )
        if record.device_type is DeviceType.PPMID:
            return Ppmid(**common)
        if record.device_type is DeviceType.HCALCS:
            return Hcalcs(**common)
        self._trust_cos_party(parties)
        return Esme(
            **common,
            load_profile=LoadProfile.from_seed(zlib.crc32(record.eui)),
            epoch=REGISTER_EPOCH,
            trust_anchors=self.trust_anchors(record),
            root_public_key=self.root_public_key,
        )

    def _trust_cos_party(self, parties: dict[bytes, RemoteParty]) -> None:
        """A meter trusts the DCC's Transitional CoS Party (6.23), when the PKI has one."""
        cos_ds = self._party_ds(TRANSITIONAL_COS_EUI)
        if cos_ds is not None:  # it holds no KA key: the meter answers it signed, not MAC'd
            parties[TRANSITIONAL_COS_EUI] = RemoteParty(TRANSITIONAL_COS_EUI, cos_ds, cos_ds)


_PACKER = msgpack.Packer(use_bin_type=True)  # one packer: packb makes a new one each call


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(_PACKER.pack(value), digest_size=DIGEST_BYTES).digest()


# the entry names of the models' states, each tuple shared by every model with those entries
_STATE_LAYOUTS: dict[tuple[str, ...], dict[str, int]] = {}


class BuiltState:
    """A model's ``nonvolatile_state`` as built, as one short digest per entry (in one bytes
    object, the entry names shared by every model of a kind: about 200 bytes a model), and the
    last state compared with it (its digest and what differed), so a model whose state has not
    moved since its last command costs one pack and one digest to compare."""

    __slots__ = ("digests", "last_changed", "last_digest", "positions")

    def __init__(self, positions: dict[str, int], digests: bytes) -> None:
        self.positions = positions
        self.digests = digests
        self.last_digest = b""
        self.last_changed: dict[str, Any] = {}

    @classmethod
    def of(cls, state: dict[str, Any]) -> BuiltState:
        names = tuple(state)
        positions = _STATE_LAYOUTS.get(names)
        if positions is None:
            positions = _STATE_LAYOUTS[names] = {name: i for i, name in enumerate(names)}
        return cls(positions, b"".join(_digest(value) for value in state.values()))

    def _built(self, key: str) -> bytes | None:
        i = self.positions.get(key)
        if i is None:
            return None
        return self.digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES]

    def changed(self, state: dict[str, Any]) -> dict[str, Any]:
        """The entries of ``state`` that differ from the model's as built."""
        whole = _digest(state)
        if whole != self.last_digest:
            self.last_changed = {
                key: value for key, value in state.items() if self._built(key) != _digest(value)
            }
            self.last_digest = whole
        return self.last_changed


def _residue(model: GbcsDevice, built: BuiltState) -> Residue:
    """``model``'s counters, refusals, alert counter, next due time and the
    ``nonvolatile_state`` entries that differ from ``built`` (the entries as it was built)."""
    return Residue(
        dict(model.last_counters),
        model.refusals,
        built.changed(model.nonvolatile_state()),
        model.alert_counter,
        model.next_due(),
    )


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
