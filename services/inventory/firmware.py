"""Firmware: the image store and DUIS 11.1 Update Firmware distribution records.

An image is registered once (``firmware.add``) with the manufacturer and model it is built for
and its version; its bytes are kept on disk under ``$DCCSIM_HOME/data/firmware/<sha256>`` (named by
content, so adding the same bytes twice stores them once) and its metadata in the inventory
database. An 11.1 names an image (by ``sha256``, or by sending its bytes as the DUIS
``FirmwareImage`` does) and a DeviceIDList; each device is accepted ("Distributing") or refused
with a DUIS code: E19 not in the inventory, E11 another manufacturer/model than the image's, E4
the User is not the device's registered Import or Gas Supplier, E5 not Commissioned. The reply's
``warnings`` are the DUIS ``DSPUpdateFirmwareWarning`` lists. Sending the image to the devices is
not done here: the record is what the pipeline (and a test participant) reads.

RPC methods (routing key ``rpc.inventory``); every reply carries ``code`` (and ``reason`` when
refused). ``image`` = ``{sha256, manufacturer, model, version, size, added_at}``;
``distribution`` = ``{distribution_id, sha256, version, user_eui, request_id, created_at,
devices: [{eui, status, code, reason}, ...]}``.

``firmware.add``  {manufacturer (<=4), model (<=8), version (1..8), image (bytes) |
    image_b64, [sha256], [size]} -> {code: "I0", image, added: bool}; E13 when ``sha256`` or
    ``size`` disagree with the bytes, the bytes are empty or too big, or the manufacturer, model
    and version already name other bytes.
``firmware.list``  {[manufacturer], [model]} -> {code: "I0", images: [image, ...]}
11.1 ``firmware.distribute``  {user_eui, user_roles, sha256 | image | image_b64, [version],
    device_ids: [eui, ...] | "eui,eui,..." (DeviceIDList), [request_id]}
    -> {code, distribution, warnings: {invalid_device_ids, not_commissioned_device_ids,
    not_applicable_firmware_device_ids}}; ``code`` is "I0" when at least one device was
    accepted, otherwise the first device's refusal; E13 for an image not in the store or a
    ``version`` other than the image's.
``firmware.distribution``  {user_eui, distribution_id} -> {code: "I0", distribution}; E4 unless
    the User sent it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dccsim.duis.catalogue import UserRole
from dccsim.duis.codes import DuisError
from dccsim.smi import DeviceRecord, DeviceStatus
from services.inventory.store import (
    FirmwareDistributionDevice,
    FirmwareDistributionRow,
    FirmwareImageRow,
    SmartMeteringInventory,
    _aware,
    utcnow,
)

# DUIS FirmwareImage: base64Binary of at most 10,240,000 characters.
MAX_IMAGE_BYTES = 10_240_000 * 3 // 4
DISTRIBUTING = "Distributing"
REFUSED = "Refused"
# Who may send 11.1 for a device: its registered Import or Gas Supplier.
FIRMWARE_ROLES = frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER})
# Refusal code -> the DSPUpdateFirmwareWarning list it belongs to.
WARNING_LISTS = {
    "E19": "invalid_device_ids",
    "E4": "invalid_device_ids",
    "E5": "not_commissioned_device_ids",
    "E11": "not_applicable_firmware_device_ids",
}
# The inventory's device columns (DUIS FirmwareVersion is 1..8 characters).
_MAX_LENGTH = {"manufacturer": 4, "model": 8, "version": 8}
_EUI = re.compile(r"^[0-9A-F]{2}(-[0-9A-F]{2}){7}$")

Body = dict[str, Any]
Reply = dict[str, Any]
Method = Callable[[Body], Awaitable[Reply]]


@dataclass(frozen=True)
class FirmwareImage:
    sha256: str
    manufacturer: str
    model: str
    version: str
    size: int
    added_at: datetime

    @classmethod
    def from_row(cls, row: FirmwareImageRow) -> FirmwareImage:
        return cls(
            row.sha256, row.manufacturer, row.model, row.version, row.size, _aware(row.added_at)
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "version": self.version,
            "size": self.size,
            "added_at": self.added_at.isoformat(),
        }


@dataclass(frozen=True)
class DeviceOutcome:
    eui: str
    status: str
    code: str | None = None
    reason: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"eui": self.eui, "status": self.status, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class Distribution:
    distribution_id: int
    image: FirmwareImage
    user_eui: str
    request_id: str | None
    created_at: datetime
    devices: tuple[DeviceOutcome, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "distribution_id": self.distribution_id,
            "sha256": self.image.sha256,
            "version": self.image.version,
            "user_eui": self.user_eui,
            "request_id": self.request_id,
            "created_at": self.created_at.isoformat(),
            "devices": [d.to_wire() for d in self.devices],
        }

    def warnings(self) -> dict[str, list[str]]:
        lists: dict[str, list[str]] = {name: [] for name in sorted(set(WARNING_LISTS.values()))}
        for d in self.devices:
            if d.code in WARNING_LISTS:
                lists[WARNING_LISTS[d.code]].append(d.eui)
        return lists


def _field(name: str, value: object) -> str:
    """Manufacturer, model and version as the inventory holds them (upper case, bounded)."""
    text = str(value or "").strip().upper()
    if not 1 <= len(text) <= _MAX_LENGTH[name]:
        raise DuisError("E13", f"{name} is 1..{_MAX_LENGTH[name]} characters, not {value!r}")
    return text


class FirmwareStore:
    """Firmware images (bytes on disk under ``directory``, metadata in the inventory database)
    and the distributions of them to devices."""

    def __init__(self, inventory: SmartMeteringInventory, directory: Path) -> None:
        self.inventory = inventory
        self.directory = directory

    def path(self, sha256: str) -> Path:
        return self.directory / sha256

    def _write(self, sha256: str, image: bytes) -> None:
        target = self.path(sha256)
        if target.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{sha256}.{os.getpid()}.part")
        partial.write_bytes(image)
        os.replace(partial, target)  # whole file or none, even if two writers race

    def image_bytes(self, sha256: str) -> bytes:
        """The stored bytes of an image (FileNotFoundError when they are not on disk)."""
        return self.path(sha256).read_bytes()

    async def add(
        self,
        image: bytes,
        *,
        manufacturer: str,
        model: str,
        version: str,
        sha256: str | None = None,
        size: int | None = None,
    ) -> tuple[FirmwareImage, bool]:
        """Store an image; returns it and whether it was new. Adding the same bytes with the
        same metadata again is a no-op; E13 when anything disagrees."""
        manufacturer = _field("manufacturer", manufacturer)
        model = _field("model", model)
        version = _field("version", version)
        if not image or len(image) > MAX_IMAGE_BYTES:
            raise DuisError("E13", f"a firmware image is 1..{MAX_IMAGE_BYTES} bytes")
        digest = hashlib.sha256(image).hexdigest()
        if sha256 is not None and sha256.lower() != digest:
            raise DuisError("E13", "sha256 does not match the image bytes")
        if size is not None and size != len(image):
            raise DuisError("E13", f"size {size} does not match the image ({len(image)} bytes)")
        async with self.inventory.sessions.begin() as session:
            existing = await session.get(FirmwareImageRow, digest)
            if existing is not None:
                if (existing.manufacturer, existing.model, existing.version) != (
                    manufacturer,
                    model,
                    version,
                ):
                    raise DuisError("E13", "these bytes are already stored as another image")
                self._write(digest, image)
                return FirmwareImage.from_row(existing), False
            clash = await session.scalar(
                select(FirmwareImageRow.sha256).where(
                    FirmwareImageRow.manufacturer == manufacturer,
                    FirmwareImageRow.model == model,
                    FirmwareImageRow.version == version,
                )
            )
            if clash is not None:
                raise DuisError(
                    "E13", f"version {version} of {manufacturer}/{model} is other bytes"
                )
            self._write(digest, image)  # bytes first: a row never names a missing file
            row = FirmwareImageRow(
                sha256=digest,
                manufacturer=manufacturer,
                model=model,
                version=version,
                size=len(image),
                added_at=utcnow(),
            )
            session.add(row)
        return FirmwareImage.from_row(row), True

    async def image(self, sha256: str) -> FirmwareImage | None:
        async with self.inventory.sessions() as session:
            row = await session.get(FirmwareImageRow, sha256.lower())
        return FirmwareImage.from_row(row) if row else None

    async def images(
        self, *, manufacturer: str | None = None, model: str | None = None
    ) -> list[FirmwareImage]:
        query = select(FirmwareImageRow)
        if manufacturer:
            query = query.where(FirmwareImageRow.manufacturer == manufacturer.upper())
        if model:
            query = query.where(FirmwareImageRow.model == model.upper())
        query = query.order_by(
            FirmwareImageRow.manufacturer, FirmwareImageRow.model, FirmwareImageRow.version
        )
        async with self.inventory.sessions() as session:
            rows = (await session.scalars(query)).all()
        return [FirmwareImage.from_row(r) for r in rows]

    @staticmethod
    def outcome(
        image: FirmwareImage,
        eui: str,
        record: DeviceRecord | None,
        *,
        user_eui: str,
        user_roles: frozenset[UserRole],
        manufacturer: str | None,
        model: str | None,
    ) -> DeviceOutcome:
        """Whether one device may take the image, and the DUIS code when it may not."""
        if record is None:
            return DeviceOutcome(eui, REFUSED, "E19", "not in the inventory")
        if (manufacturer or "").upper() != image.manufacturer or (
            model or ""
        ).upper() != image.model:
            return DeviceOutcome(
                eui, REFUSED, "E11", f"the image is for {image.manufacturer}/{image.model}"
            )
        if not any(
            record.registrations.get(r.value, "").upper() == user_eui
            for r in FIRMWARE_ROLES & user_roles
        ):
            return DeviceOutcome(eui, REFUSED, "E4", "the User is not the device's supplier")
        if record.status is not DeviceStatus.COMMISSIONED:
            return DeviceOutcome(eui, REFUSED, "E5", f"the device is {record.status.value}")
        return DeviceOutcome(eui, DISTRIBUTING)

    async def distribute(
        self,
        image: FirmwareImage,
        device_ids: Iterable[str],
        *,
        user_eui: str,
        user_roles: frozenset[UserRole],
        request_id: str | None = None,
    ) -> Distribution:
        """Record an 11.1 distribution of ``image``, each device accepted or refused."""
        euis = list(dict.fromkeys(e.strip().upper() for e in device_ids if e.strip()))
        user = user_eui.upper()
        outcomes = []
        for eui in euis:
            record = await self.inventory.device(eui)
            row = await self.inventory.device_row(eui) if record else None
            outcomes.append(
                self.outcome(
                    image,
                    eui,
                    record,
                    user_eui=user,
                    user_roles=user_roles,
                    manufacturer=row.manufacturer if row else None,
                    model=row.model if row else None,
                )
            )
        now = utcnow()
        async with self.inventory.sessions.begin() as session:
            dist = FirmwareDistributionRow(
                sha256=image.sha256, user_eui=user, request_id=request_id, created_at=now
            )
            session.add(dist)
            await session.flush()
            for o in outcomes:
                session.add(
                    FirmwareDistributionDevice(
                        distribution_id=dist.distribution_id,
                        eui=o.eui,
                        status=o.status,
                        code=o.code,
                        reason=o.reason,
                        updated_at=now,
                    )
                )
        return Distribution(dist.distribution_id, image, user, request_id, now, tuple(outcomes))

    async def distribution(self, distribution_id: int) -> Distribution | None:
        async with self.inventory.sessions() as session:
            dist = await session.get(FirmwareDistributionRow, distribution_id)
            if dist is None:
                return None
            image = await session.get(FirmwareImageRow, dist.sha256)
            devices = (
                await session.scalars(
                    select(FirmwareDistributionDevice)
                    .where(FirmwareDistributionDevice.distribution_id == distribution_id)
                    .order_by(FirmwareDistributionDevice.eui)
                )
            ).all()
        assert image is not None  # images are never removed
        return Distribution(
            dist.distribution_id,
            FirmwareImage.from_row(image),
            dist.user_eui,
            dist.request_id,
            _aware(dist.created_at),
            tuple(DeviceOutcome(d.eui, d.status, d.code, d.reason) for d in devices),
        )


# --- the RPC methods ---------------------------------------------------------------------------


def _answered(method: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
    """A ``DuisError`` becomes ``{code, reason}``; a malformed body becomes E13."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Reply:
        try:
            return await method(*args, **kwargs)
        except DuisError as exc:
            return {"code": exc.code, "reason": exc.reason}
        except (KeyError, ValueError, TypeError) as exc:
            return {"code": "E13", "reason": f"malformed firmware request: {exc!s}"}

    return wrapper


def _image_bytes(body: Body) -> bytes | None:
    if body.get("image") is not None:
        return bytes(body["image"])
    if body.get("image_b64") is not None:
        return base64.b64decode(str(body["image_b64"]), validate=True)
    return None


def _device_ids(value: object) -> list[str]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = [str(e) for e in value]
    else:
        items = []
    euis = [e.strip().upper() for e in items]
    bad = [e for e in euis if not _EUI.match(e)]
    if not euis or bad:
        raise DuisError("E13", f"DeviceIDList needs EUI-64s, not {bad[:3] or 'nothing'}")
    return euis


class FirmwareRequests:
    """The ``firmware.*`` RPC methods, by name (``methods()``)."""

    def __init__(self, store: FirmwareStore) -> None:
        self.store = store

    def methods(self) -> dict[str, Method]:
        return {
            "firmware.add": self.add,
            "firmware.list": self.list_images,
            "firmware.distribute": self.distribute,
            "firmware.distribution": self.read_distribution,
        }

    @_answered
    async def add(self, body: Body) -> Reply:
        image = _image_bytes(body)
        if image is None:
            raise DuisError("E13", "firmware.add needs the image bytes")
        added, new = await self.store.add(
            image,
            manufacturer=str(body["manufacturer"]),
            model=str(body["model"]),
            version=str(body["version"]),
            sha256=str(body["sha256"]) if body.get("sha256") else None,
            size=int(body["size"]) if body.get("size") is not None else None,
        )
        return {"code": "I0", "image": added.to_wire(), "added": new}

    @_answered
    async def list_images(self, body: Body) -> Reply:
        images = await self.store.images(
            manufacturer=body.get("manufacturer"), model=body.get("model")
        )
        return {"code": "I0", "images": [i.to_wire() for i in images]}

    @_answered
    async def distribute(self, body: Body) -> Reply:
        raw = _image_bytes(body)
        sha = hashlib.sha256(raw).hexdigest() if raw is not None else str(body.get("sha256") or "")
        image = await self.store.image(sha) if sha else None
        if image is None:
            raise DuisError("E13", "the firmware image is not in the store (firmware.add it)")
        if body.get("version") and str(body["version"]).upper() != image.version:
            raise DuisError("E13", f"FirmwareVersion is not the image's version {image.version}")
        dist = await self.store.distribute(
            image,
            _device_ids(body.get("device_ids")),
            user_eui=str(body.get("user_eui") or ""),
            user_roles=frozenset(UserRole(r) for r in body.get("user_roles") or ()),
            request_id=str(body["request_id"]) if body.get("request_id") else None,
        )
        accepted = any(d.status == DISTRIBUTING for d in dist.devices)
        code = "I0" if accepted else (dist.devices[0].code or "E13")
        return {"code": code, "distribution": dist.to_wire(), "warnings": dist.warnings()}

    @_answered
    async def read_distribution(self, body: Body) -> Reply:
        dist = await self.store.distribution(int(body["distribution_id"]))
        if dist is None or dist.user_eui != str(body.get("user_eui") or "").upper():
            raise DuisError("E4", f"distribution {body['distribution_id']} is not this User's")
        return {"code": "I0", "distribution": dist.to_wire()}
