"""The Smart Metering Inventory's storage: devices, their status history and registration data.

SQLAlchemy 2 async; SQLite by default (``$DCCSIM_HOME/data/inventory.db``) or PostgreSQL by URL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.estate import Premises
from dccsim.smi import DeviceRecord, DeviceStatus, DeviceType
from dccsim.storage import create_engine


class Base(DeclarativeBase):
    pass


class Device(Base):
    __tablename__ = "devices"
    eui: Mapped[str] = mapped_column(String(23), primary_key=True)
    device_type: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32))
    status_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hub_eui: Mapped[str | None] = mapped_column(String(23), nullable=True, index=True)
    csp_region: Mapped[str] = mapped_column(String(16))
    mpxn: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    premises_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    postcode: Mapped[str | None] = mapped_column(String(10), nullable=True)


class StatusChange(Base):
    __tablename__ = "status_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    eui: Mapped[str] = mapped_column(ForeignKey("devices.eui"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(64))


class Registration(Base):
    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("mpxn", "role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mpxn: Mapped[str] = mapped_column(String(16), index=True)
    role: Mapped[str] = mapped_column(String(4))
    user_eui: Mapped[str] = mapped_column(String(23))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InventoryStore:
    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def import_estate(self, estate: list[Premises], *, reason: str = "estate import") -> int:
        """Add the estate's devices and registrations that are not yet in the inventory."""
        now = datetime.now(UTC)
        added = 0
        async with self.sessions.begin() as session:
            known = set((await session.scalars(select(Device.eui))).all())
            regs = {(r.mpxn, r.role) for r in (await session.scalars(select(Registration))).all()}
            for p in estate:
                for d in p.devices:
                    if d.eui in known:
                        continue
                    meter = d.device_type in (DeviceType.ESME, DeviceType.GSME)
                    session.add(
                        Device(
                            eui=d.eui,
                            device_type=d.device_type.value,
                            status=d.status.value,
                            status_since=now,
                            hub_eui=None if d.eui == p.hub_eui else p.hub_eui,
                            csp_region=p.region,
                            mpxn=p.mpan if meter else None,
                            premises_id=p.premises_id,
                            postcode=p.postcode,
                        )
                    )
                    session.add(
                        StatusChange(eui=d.eui, status=d.status.value, at=now, reason=reason)
                    )
                    known.add(d.eui)
                    added += 1
                if p.mpan:
                    for role, user_eui in p.registrations.items():
                        if (p.mpan, role) not in regs:
                            session.add(
                                Registration(
                                    mpxn=p.mpan, role=role, user_eui=user_eui.upper(), since=now
                                )
                            )
                            regs.add((p.mpan, role))
        return added

    async def device(self, eui: str) -> DeviceRecord | None:
        async with self.sessions() as session:
            row = await session.get(Device, eui.upper())
            if row is None:
                return None
            registrations: dict[str, str] = {}
            if row.mpxn:
                for reg in (
                    await session.scalars(select(Registration).where(Registration.mpxn == row.mpxn))
                ).all():
                    registrations[reg.role] = reg.user_eui
            return DeviceRecord(
                eui=row.eui,
                device_type=DeviceType(row.device_type),
                status=DeviceStatus(row.status),
                hub_eui=row.hub_eui,
                csp_region=row.csp_region,
                mpxn=row.mpxn,
                registrations=registrations,
            )

    async def set_status(self, eui: str, status: DeviceStatus, *, reason: str) -> None:
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            row = await session.get(Device, eui.upper())
            if row is None:
                raise KeyError(eui)
            row.status = status.value
            row.status_since = now
            session.add(StatusChange(eui=row.eui, status=status.value, at=now, reason=reason))

    async def count(self) -> int:
        async with self.sessions() as session:
            return len((await session.scalars(select(Device.eui))).all())
