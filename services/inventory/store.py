"""The Smart Metering Inventory's storage: premises, devices, their status history, and
registration data with its history.

SQLAlchemy 2 async; SQLite by default (``$DCCSIM_HOME/data/inventory.db``) or PostgreSQL by URL.
Every status change goes through the lifecycle table in ``dccsim.smi`` and is recorded in
``status_history`` with its event, reason and time. Registration data is kept as periods
(``valid_from`` .. ``valid_to``) so that a change of supplier keeps the history and can be
future-dated. Functions that change data return the EUIs whose ``DeviceRecord`` changed, so the
service can publish ``inventory.changed`` for each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
    and_,
    delete,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.estate import Premises as EstatePremises
from dccsim.smi import (
    PREVIOUS_STATUS,
    DeviceRecord,
    DeviceStatus,
    DeviceType,
    StatusEvent,
    StatusTransitionError,
    next_status,
)
from dccsim.storage import create_engine

METERS = frozenset({DeviceType.ESME, DeviceType.GSME})
ELECTRICITY_ROLES = ("IS", "ES", "ED")
GAS_ROLES = ("GS", "GT")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def normalise_postcode(postcode: str) -> str:
    return "".join(postcode.split()).upper()


class Base(DeclarativeBase):
    pass


class PremisesRow(Base):
    __tablename__ = "premises"
    premises_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    uprn: Mapped[str | None] = mapped_column(String(12), nullable=True, index=True)
    postcode: Mapped[str] = mapped_column(String(10))
    postcode_key: Mapped[str] = mapped_column(String(10), index=True)  # normalised
    address: Mapped[str | None] = mapped_column(String(80), nullable=True)
    csp_region: Mapped[str] = mapped_column(String(16))
    mpan: Mapped[str | None] = mapped_column(String(13), nullable=True, index=True)
    mprn: Mapped[str | None] = mapped_column(String(10), nullable=True, index=True)


class Device(Base):
    __tablename__ = "devices"
    eui: Mapped[str] = mapped_column(String(23), primary_key=True)
    device_type: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32))
    status_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hub_eui: Mapped[str | None] = mapped_column(String(23), nullable=True, index=True)
    csp_region: Mapped[str] = mapped_column(String(16))
    mpxn: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    premises_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    postcode: Mapped[str | None] = mapped_column(String(10), nullable=True)
    manufacturer: Mapped[str | None] = mapped_column(String(4), nullable=True)
    model: Mapped[str | None] = mapped_column(String(8), nullable=True)
    firmware_version: Mapped[str | None] = mapped_column(String(8), nullable=True)
    gbcs_version: Mapped[str | None] = mapped_column(String(8), nullable=True)
    smets_chts_version: Mapped[str | None] = mapped_column(String(24), nullable=True)
    esme_variant: Mapped[str | None] = mapped_column(String(4), nullable=True)
    gpf_eui: Mapped[str | None] = mapped_column(String(23), nullable=True, index=True)
    meter_eui: Mapped[str | None] = mapped_column(String(23), nullable=True)
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    notified_by: Mapped[str | None] = mapped_column(String(23), nullable=True)
    commissioned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A meter installed under an exception to the roll-out obligation (advanced meter, current
    # transformer meter, large gas meter): "", "advanced", "ct", "large-gas".
    exception: Mapped[str | None] = mapped_column(String(12), nullable=True)


class StatusChange(Base):
    __tablename__ = "status_history"
    # No foreign key: the history of a device deleted by 8.4 outlives it.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    eui: Mapped[str] = mapped_column(String(23), index=True)
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(200))
    event: Mapped[str | None] = mapped_column(String(24), nullable=True)
    previous: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RegistrationPeriod(Base):
    """One User in one role for one MPxN from ``valid_from`` until ``valid_to`` (open: None)."""

    __tablename__ = "registration_periods"
    __table_args__ = (Index("ix_registration_mpxn_role", "mpxn", "role", "valid_from"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mpxn: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(4))
    user_eui: Mapped[str] = mapped_column(String(23))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str] = mapped_column(String(64), default="")
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)


# --- Communications Hub ordering (rules and methods in services.inventory.ch_orders) ---------


class DeliveryLocation(Base):
    """Where a Party has Communications Hubs delivered; its CSP region is the hubs' region."""

    __tablename__ = "ch_delivery_locations"
    location_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    party: Mapped[str] = mapped_column(String(23), index=True)
    name: Mapped[str] = mapped_column(String(80))
    postcode: Mapped[str] = mapped_column(String(10))
    csp_region: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HubForecast(Base):
    """A Party's forecast of hubs for one delivery month and CSP region; a later forecast for the
    same month and region supersedes the earlier one (kept, flagged)."""

    __tablename__ = "ch_forecasts"
    __table_args__ = (Index("ix_ch_forecast_party_month", "party", "delivery_month"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    party: Mapped[str] = mapped_column(String(23))
    delivery_month: Mapped[str] = mapped_column(String(7))  # "YYYY-MM"
    csp_region: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)


class HubOrder(Base):
    __tablename__ = "ch_orders"
    __table_args__ = (Index("ix_ch_order_party_month", "party", "delivery_month"),)
    order_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    party: Mapped[str] = mapped_column(String(23))
    delivery_month: Mapped[str] = mapped_column(String(7))
    location_id: Mapped[str] = mapped_column(String(32))
    hub_variant: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HubDelivery(Base):
    __tablename__ = "ch_deliveries"
    delivery_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(Integer, index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveredHub(Base):
    """One delivered Communications Hub: its CHF and GPF, and the delivery that brought it."""

    __tablename__ = "ch_delivered_hubs"
    chf_eui: Mapped[str] = mapped_column(String(23), primary_key=True)
    gpf_eui: Mapped[str] = mapped_column(String(23), unique=True)
    delivery_id: Mapped[int] = mapped_column(Integer, index=True)
    order_id: Mapped[int] = mapped_column(Integer, index=True)


# --- roll-out reporting (services.inventory.rollout) ---------------------------------------


class RolloutMilestone(Base):
    """A Supplier's annual milestone: Relevant Electricity / Gas Meters to install in ``year``;
    ``tolerance`` (a fraction) overrides the default when set."""

    __tablename__ = "rollout_milestones"
    supplier: Mapped[str] = mapped_column(String(23), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    electricity: Mapped[int] = mapped_column(Integer)
    gas: Mapped[int] = mapped_column(Integer)
    tolerance: Mapped[float | None] = mapped_column(Float, nullable=True)


# --- DSP schedules, 5.1-5.3 (rules and methods in services.inventory.schedules) -------------


class DspScheduleRow(Base):
    """A User's DSP schedule: the SRV the DCC sends on its behalf to a device, and when."""

    __tablename__ = "dsp_schedules"
    schedule_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_eui: Mapped[str] = mapped_column(String(23), index=True)
    device_id: Mapped[str] = mapped_column(String(23), index=True)
    variant: Mapped[str] = mapped_column(String(8))  # DSPScheduledServiceReferenceVariant
    frequency: Mapped[str] = mapped_column(String(12))  # ScheduleFrequency
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    execution_time: Mapped[str | None] = mapped_column(String(24), nullable=True)  # xs:time
    # The scheduled SRV's own body element and its fields, e.g. the read log period offsets.
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DspScheduleRunRow(Base):
    """One run of a DSP schedule, claimed before its Service Request is published (so a restart
    neither loses nor repeats it): ``state`` is claimed, published or refused."""

    __tablename__ = "dsp_schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "run_at"),)
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(Integer, index=True)
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    counter: Mapped[int] = mapped_column(BigInteger)  # the DCC's RequestID counter for the run
    request_id: Mapped[str] = mapped_column(String(80), index=True)
    state: Mapped[str] = mapped_column(String(12), index=True)
    code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- firmware images and distributions, 11.1 (services.inventory.firmware) ------------------


class FirmwareImageRow(Base):
    """A firmware image in the store; its bytes live on disk, named by ``sha256``."""

    __tablename__ = "firmware_images"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    manufacturer: Mapped[str] = mapped_column(String(4))
    model: Mapped[str] = mapped_column(String(8))
    version: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FirmwareDistributionRow(Base):
    """One 11.1 Update Firmware request: an image sent to a list of devices."""

    __tablename__ = "firmware_distributions"
    distribution_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    user_eui: Mapped[str] = mapped_column(String(23), index=True)
    request_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FirmwareDistributionDevice(Base):
    """A device's part in a distribution: ``status`` is "Distributing" or "Refused" (with the
    DUIS ``code`` and ``reason``), later whatever the device reports."""

    __tablename__ = "firmware_distribution_devices"
    distribution_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    eui: Mapped[str] = mapped_column(String(23), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Registration:
    mpxn: str
    role: str
    user_eui: str
    valid_from: datetime
    valid_to: datetime | None
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "mpxn": self.mpxn,
            "role": self.role,
            "user_eui": self.user_eui,
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HistoryEntry:
    status: DeviceStatus
    previous: DeviceStatus | None
    at: datetime
    event: str | None
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "previous": self.previous.value if self.previous else None,
            "at": self.at.isoformat(),
            "event": self.event,
            "reason": self.reason,
        }


def _add_missing_columns(conn: Connection) -> None:
    """A light migration: nullable columns added since a database was created are added to it
    (the inventory is rebuilt from the estate file, so nothing else has had to move yet)."""
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                ddl = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {ddl}'))


class SmartMeteringInventory:
    """The inventory's data and the rules that change it; used by the RPC layer and the CLI."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_add_missing_columns)
            await conn.run_sync(Base.metadata.create_all)

    async def drop_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- loading -------------------------------------------------------------------------------

    async def import_estate(
        self, estate: list[EstatePremises], *, reason: str = "estate import"
    ) -> int:
        """Add the estate's premises, devices and registrations not yet in the inventory."""
        now = utcnow()
        added = 0
        async with self.sessions.begin() as session:
            known = set((await session.scalars(select(Device.eui))).all())
            known_premises = set((await session.scalars(select(PremisesRow.premises_id))).all())
            regs = {
                (r.mpxn, r.role)
                for r in (
                    await session.scalars(
                        select(RegistrationPeriod).where(RegistrationPeriod.valid_to.is_(None))
                    )
                ).all()
            }
            for p in estate:
                if p.premises_id not in known_premises:
                    session.add(
                        PremisesRow(
                            premises_id=p.premises_id,
                            postcode=p.postcode,
                            postcode_key=normalise_postcode(p.postcode),
                            csp_region=p.region,
                            mpan=p.mpan,
                            mprn=p.mprn,
                        )
                    )
                    known_premises.add(p.premises_id)
                for d in p.devices:
                    if d.eui in known:
                        continue
                    session.add(
                        Device(
                            eui=d.eui,
                            device_type=d.device_type.value,
                            status=d.status.value,
                            status_since=now,
                            hub_eui=None if d.eui == p.hub_eui else p.hub_eui,
                            csp_region=p.region,
                            mpxn=p.mpan
                            if d.device_type is DeviceType.ESME
                            else p.mprn
                            if d.device_type is DeviceType.GSME
                            else None,
                            premises_id=p.premises_id,
                            postcode=p.postcode,
                            commissioned_at=now if d.status is DeviceStatus.COMMISSIONED else None,
                        )
                    )
                    session.add(
                        StatusChange(
                            eui=d.eui, status=d.status.value, at=now, reason=reason, event="import"
                        )
                    )
                    known.add(d.eui)
                    added += 1
                for role, user_eui in p.registrations.items():
                    # the gas roles are registered on the MPRN (when the premises has one)
                    mpxn = p.mprn if role in GAS_ROLES and p.mprn else p.mpan
                    if mpxn and (mpxn, role) not in regs:
                        session.add(
                            RegistrationPeriod(
                                mpxn=mpxn,
                                role=role,
                                user_eui=user_eui.upper(),
                                valid_from=now,
                                reason=reason,
                            )
                        )
                        regs.add((mpxn, role))
        return added

    # --- reading -------------------------------------------------------------------------------

    async def count(self) -> int:
        async with self.sessions() as session:
            return int((await session.scalar(select(func.count()).select_from(Device))) or 0)

    async def device(self, eui: str, *, at: datetime | None = None) -> DeviceRecord | None:
        """The device's record with the registrations in force ``at`` (default now)."""
        async with self.sessions() as session:
            row = await session.get(Device, eui.upper())
            if row is None:
                return None
            return await self._record(session, row, at or utcnow())

    async def devices(self, euis: Iterable[str]) -> list[DeviceRecord]:
        now = utcnow()
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(Device).where(Device.eui.in_([e.upper() for e in euis]))
                )
            ).all()
            return [await self._record(session, row, now) for row in rows]

    async def _record(self, session: AsyncSession, row: Device, at: datetime) -> DeviceRecord:
        device_type = DeviceType(row.device_type)
        hub = row.eui if device_type is DeviceType.CHF else row.hub_eui
        on_hub: list[Device] = []
        if hub is not None:
            on_hub = list(
                (
                    await session.scalars(
                        select(Device).where(Device.hub_eui == hub).order_by(Device.eui)
                    )
                ).all()
            )
        mpxns = self._registration_mpxns(row, device_type, on_hub)
        registrations = await self._registrations_in_force(session, mpxns, at)
        premises_uprn: str | None = None
        if row.premises_id is not None:
            premises = await session.get(PremisesRow, row.premises_id)
            premises_uprn = premises.uprn if premises else None
        gsme = None
        if device_type is DeviceType.GPF:
            gsme = next((d.eui for d in on_hub if d.gpf_eui == row.eui), None)
        return DeviceRecord(
            eui=row.eui,
            device_type=device_type,
            status=DeviceStatus(row.status),
            hub_eui=row.hub_eui,
            csp_region=row.csp_region,
            mpxn=row.mpxn,
            registrations=registrations,
            manufacturer=row.manufacturer,
            model=row.model,
            firmware_version=row.firmware_version,
            gbcs_version=row.gbcs_version,
            smets_chts_version=row.smets_chts_version,
            status_since=_aware(row.status_since).isoformat(),
            gpf_eui=row.gpf_eui,
            gsme_eui=gsme,
            meter_eui=row.meter_eui,
            devices=tuple(d.eui for d in on_hub) if device_type is DeviceType.CHF else (),
            premises_id=row.premises_id,
            uprn=premises_uprn,
            postcode=row.postcode,
            gateway=row.gateway,
        )

    @staticmethod
    def _registration_mpxns(
        row: Device, device_type: DeviceType, on_hub: Sequence[Device]
    ) -> list[str]:
        """Whose registrations make a User eligible for this device: a meter's own MPxN; a Type 2
        device's meter's; a GPF's GSME's; a hub's (or an unpaired device's) every meter's on it."""
        if row.mpxn:
            return [row.mpxn]
        by_eui = {d.eui: d for d in on_hub}
        if row.meter_eui and row.meter_eui in by_eui and by_eui[row.meter_eui].mpxn:
            return [str(by_eui[row.meter_eui].mpxn)]
        if device_type is DeviceType.GPF:
            gas = [d.mpxn for d in on_hub if d.gpf_eui == row.eui and d.mpxn]
            if gas:
                return [str(m) for m in gas]
        return [str(d.mpxn) for d in on_hub if d.mpxn]

    @staticmethod
    async def _registrations_in_force(
        session: AsyncSession, mpxns: Sequence[str], at: datetime
    ) -> dict[str, str]:
        if not mpxns:
            return {}
        rows = (
            await session.scalars(
                select(RegistrationPeriod)
                .where(
                    RegistrationPeriod.mpxn.in_(mpxns),
                    RegistrationPeriod.superseded.is_(False),
                    RegistrationPeriod.valid_from <= at,
                    or_(RegistrationPeriod.valid_to.is_(None), RegistrationPeriod.valid_to > at),
                )
                .order_by(RegistrationPeriod.valid_from)
            )
        ).all()
        return {r.role: r.user_eui for r in rows}

    async def status_history(self, eui: str) -> list[HistoryEntry]:
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(StatusChange)
                    .where(StatusChange.eui == eui.upper())
                    .order_by(StatusChange.id)
                )
            ).all()
        return [
            HistoryEntry(
                DeviceStatus(r.status),
                DeviceStatus(r.previous) if r.previous else None,
                _aware(r.at),
                r.event,
                r.reason,
            )
            for r in rows
        ]

    # --- the status lifecycle ------------------------------------------------------------------

    async def transition(
        self, eui: str, event: StatusEvent, *, reason: str, at: datetime | None = None
    ) -> DeviceStatus:
        """Move a device through the lifecycle table; the new status, or ``StatusTransitionError``
        with the DUIS code. Recorded in the status history."""
        async with self.sessions.begin() as session:
            row = await session.get(Device, eui.upper(), with_for_update=True)
            if row is None:
                next_status(event, None, DeviceType.ESME)  # raises E19 (or a type error)
                raise StatusTransitionError("E19", f"device {eui} is not in the inventory")
            return await self._apply(session, row, event, reason=reason, at=at or utcnow())

    async def _apply(
        self,
        session: AsyncSession,
        row: Device,
        event: StatusEvent,
        *,
        reason: str,
        at: datetime,
    ) -> DeviceStatus:
        current = DeviceStatus(row.status)
        target = next_status(event, current, DeviceType(row.device_type))
        new = (
            await self._status_before_suspension(session, row.eui)
            if target == PREVIOUS_STATUS
            else DeviceStatus(target)
        )
        row.status = new.value
        row.status_since = at
        if new is DeviceStatus.COMMISSIONED and row.commissioned_at is None:
            row.commissioned_at = at
        session.add(
            StatusChange(
                eui=row.eui,
                status=new.value,
                previous=current.value,
                at=at,
                event=event.value,
                reason=reason[:200],
            )
        )
        return new

    @staticmethod
    async def _status_before_suspension(session: AsyncSession, eui: str) -> DeviceStatus:
        last = await session.scalar(
            select(StatusChange)
            .where(StatusChange.eui == eui, StatusChange.status == DeviceStatus.SUSPENDED.value)
            .order_by(StatusChange.id.desc())
            .limit(1)
        )
        if last is None or last.previous is None:
            return DeviceStatus.COMMISSIONED
        return DeviceStatus(last.previous)

    async def set_status(self, eui: str, status: DeviceStatus, *, reason: str) -> None:
        """Administrative override (test-estate control): any status, still recorded."""
        now = utcnow()
        async with self.sessions.begin() as session:
            row = await session.get(Device, eui.upper())
            if row is None:
                raise KeyError(eui)
            session.add(
                StatusChange(
                    eui=row.eui,
                    status=status.value,
                    previous=row.status,
                    at=now,
                    reason=reason[:200],
                    event="admin",
                )
            )
            row.status = status.value
            row.status_since = now

    # --- registration data ---------------------------------------------------------------------

    async def register(
        self,
        mpxn: str,
        role: str,
        user_eui: str,
        *,
        effective: datetime | None = None,
        reason: str = "registration",
    ) -> list[str]:
        """Make ``user_eui`` the User in ``role`` for ``mpxn`` from ``effective`` (default now):
        a change of supplier when someone else held the role. The period in force is closed at
        ``effective``; periods that would have started later are superseded. Returns the EUIs
        of the devices whose eligibility this changes."""
        when = effective or utcnow()
        async with self.sessions.begin() as session:
            await session.execute(
                update(RegistrationPeriod)
                .where(
                    RegistrationPeriod.mpxn == mpxn,
                    RegistrationPeriod.role == role,
                    RegistrationPeriod.superseded.is_(False),
                    RegistrationPeriod.valid_from >= when,
                )
                .values(superseded=True)
            )
            await session.execute(
                update(RegistrationPeriod)
                .where(
                    RegistrationPeriod.mpxn == mpxn,
                    RegistrationPeriod.role == role,
                    RegistrationPeriod.superseded.is_(False),
                    RegistrationPeriod.valid_from < when,
                    or_(RegistrationPeriod.valid_to.is_(None), RegistrationPeriod.valid_to > when),
                )
                .values(valid_to=when)
            )
            session.add(
                RegistrationPeriod(
                    mpxn=mpxn,
                    role=role,
                    user_eui=user_eui.upper(),
                    valid_from=when,
                    reason=reason,
                    superseded=False,
                )
            )
            return await self._affected_by_mpxn(session, mpxn)

    async def end_registration(
        self, mpxn: str, role: str, *, effective: datetime | None = None
    ) -> list[str]:
        when = effective or utcnow()
        async with self.sessions.begin() as session:
            await session.execute(
                update(RegistrationPeriod)
                .where(
                    RegistrationPeriod.mpxn == mpxn,
                    RegistrationPeriod.role == role,
                    RegistrationPeriod.superseded.is_(False),
                    or_(RegistrationPeriod.valid_to.is_(None), RegistrationPeriod.valid_to > when),
                )
                .values(valid_to=when)
            )
            return await self._affected_by_mpxn(session, mpxn)

    async def registration_history(self, mpxn: str) -> list[Registration]:
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(RegistrationPeriod)
                    .where(
                        RegistrationPeriod.mpxn == mpxn, RegistrationPeriod.superseded.is_(False)
                    )
                    .order_by(RegistrationPeriod.role, RegistrationPeriod.valid_from)
                )
            ).all()
        return [
            Registration(
                r.mpxn,
                r.role,
                r.user_eui,
                _aware(r.valid_from),
                _aware(r.valid_to) if r.valid_to else None,
                r.reason,
            )
            for r in rows
        ]

    async def registrations_at(self, mpxn: str, at: datetime | None = None) -> dict[str, str]:
        async with self.sessions() as session:
            return await self._registrations_in_force(session, [mpxn], at or utcnow())

    @staticmethod
    async def _affected_by_mpxn(session: AsyncSession, mpxn: str) -> list[str]:
        """Devices whose registrations derive from ``mpxn``: its meters and everything on their
        hubs."""
        meters = (
            await session.execute(select(Device.eui, Device.hub_eui).where(Device.mpxn == mpxn))
        ).all()
        affected = {eui for eui, _ in meters}
        hubs = {hub for _, hub in meters if hub}
        if hubs:
            affected |= set(hubs)
            affected |= set(
                (await session.scalars(select(Device.eui).where(Device.hub_eui.in_(hubs)))).all()
            )
        return sorted(affected)

    # --- queries for the non-device SRVs -------------------------------------------------------

    async def premises_devices(
        self,
        *,
        device_id: str | None = None,
        mpxn: str | None = None,
        uprn: str | None = None,
        postcode: str | None = None,
        address: str | None = None,
    ) -> list[Device]:
        """The devices 8.2 Read Inventory returns for one filter (see ``services``)."""
        async with self.sessions() as session:
            if device_id is not None:
                row = await session.get(Device, device_id.upper())
                if row is None:
                    return []
                hub = row.eui if row.device_type == DeviceType.CHF.value else row.hub_eui
                if hub is None:
                    return [row]
                rest = (
                    await session.scalars(
                        select(Device)
                        .where(or_(Device.hub_eui == hub, Device.eui == hub), Device.eui != row.eui)
                        .order_by(Device.eui)
                    )
                ).all()
                return [row, *rest]
            if mpxn is not None:
                meters = (await session.scalars(select(Device).where(Device.mpxn == mpxn))).all()
                premises = {m.premises_id for m in meters if m.premises_id}
                hubs = {m.hub_eui for m in meters if m.hub_eui}
                found = (
                    await session.scalars(
                        select(Device)
                        .where(
                            or_(
                                Device.mpxn == mpxn,
                                Device.premises_id.in_(premises),
                                Device.hub_eui.in_(hubs),
                                Device.eui.in_(hubs),
                            )
                        )
                        .order_by(Device.premises_id, Device.eui)
                    )
                ).all()
                return list(found)
            query = select(PremisesRow.premises_id)
            if uprn is not None:
                query = query.where(PremisesRow.uprn == uprn)
            elif postcode is not None:
                query = query.where(PremisesRow.postcode_key == normalise_postcode(postcode))
                if address:
                    query = query.where(func.lower(PremisesRow.address) == address.lower())
            else:
                raise ValueError("one filter is needed")
            ids = list((await session.scalars(query)).all())
            if not ids:
                return []
            return list(
                (
                    await session.scalars(
                        select(Device)
                        .where(Device.premises_id.in_(ids))
                        .order_by(Device.premises_id, Device.eui)
                    )
                ).all()
            )

    async def premises(
        self, *, uprn: str | None = None, postcode: str | None = None
    ) -> list[PremisesRow]:
        async with self.sessions() as session:
            query = select(PremisesRow)
            if uprn is not None:
                query = query.where(PremisesRow.uprn == uprn)
            elif postcode is not None:
                query = query.where(PremisesRow.postcode_key == normalise_postcode(postcode))
            return list((await session.scalars(query.order_by(PremisesRow.premises_id))).all())

    async def hub_status_counts(self, premises_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """region -> {status -> number of CHFs} at these premises."""
        if not premises_ids:
            return {}
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Device.csp_region, Device.status, func.count())
                    .where(
                        Device.premises_id.in_(premises_ids),
                        Device.device_type == DeviceType.CHF.value,
                    )
                    .group_by(Device.csp_region, Device.status)
                )
            ).all()
        out: dict[str, dict[str, int]] = {}
        for region, status, n in rows:
            out.setdefault(str(region), {})[str(status)] = int(n)
        return out

    async def regions_near(self, postcode: str) -> list[str]:
        """CSP regions of the estate's premises in the same postcode district (outward code)."""
        outward = postcode.strip().upper().split()[0] if postcode.strip() else ""
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(PremisesRow.csp_region)
                    .where(PremisesRow.postcode.like(f"{outward} %"))
                    .distinct()
                )
            ).all()
        return sorted(str(r) for r in rows)

    async def premises_by_id(self, ids: Iterable[str]) -> dict[str, PremisesRow]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(PremisesRow).where(PremisesRow.premises_id.in_(wanted))
                )
            ).all()
        return {r.premises_id: r for r in rows}

    async def device_row(self, eui: str) -> Device | None:
        async with self.sessions() as session:
            return await session.get(Device, eui.upper())

    async def hub_devices(self, hub_eui: str) -> list[Device]:
        async with self.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(Device).where(
                            or_(Device.eui == hub_eui.upper(), Device.hub_eui == hub_eui.upper())
                        )
                    )
                ).all()
            )

    async def mpxn_premises(self, mpxn: str) -> PremisesRow | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(PremisesRow).where(or_(PremisesRow.mpan == mpxn, PremisesRow.mprn == mpxn))
            )

    async def delete_device(self, eui: str, *, reason: str) -> None:
        now = utcnow()
        async with self.sessions.begin() as session:
            row = await session.get(Device, eui.upper())
            if row is None:
                raise StatusTransitionError("E19", f"device {eui} is not in the inventory")
            if row.status not in (DeviceStatus.PENDING.value, DeviceStatus.WHITELISTED.value):
                raise StatusTransitionError(
                    "E5", f"a device in status {row.status} cannot be deleted from the inventory"
                )
            session.add(
                StatusChange(
                    eui=row.eui,
                    status=row.status,
                    previous=row.status,
                    at=now,
                    event="8.4-delete",
                    reason=reason[:200],
                )
            )
            await session.execute(delete(Device).where(Device.eui == row.eui))

    async def update_device(self, eui: str, **fields: Any) -> None:
        """Set columns of a device row (8.4 details, MPxN, relationships)."""
        allowed = {c.name for c in Device.__table__.columns} - {"eui", "status", "status_since"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(Device).where(Device.eui == eui.upper()).values(**fields)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise StatusTransitionError("E19", f"device {eui} is not in the inventory")

    async def add_device(
        self,
        eui: str,
        device_type: DeviceType,
        event: StatusEvent,
        *,
        reason: str,
        csp_region: str = "North",
        at: datetime | None = None,
        **fields: Any,
    ) -> DeviceStatus:
        """Enter a new device into the inventory through a creating event (12.2, CH delivery)."""
        when = at or utcnow()
        status = DeviceStatus(str(next_status(event, None, device_type)))
        async with self.sessions.begin() as session:
            existing = await session.get(Device, eui.upper())
            if existing is not None:
                next_status(event, DeviceStatus(existing.status), device_type)  # raises E5
            session.add(
                Device(
                    eui=eui.upper(),
                    device_type=device_type.value,
                    status=status.value,
                    status_since=when,
                    csp_region=csp_region,
                    **fields,
                )
            )
            session.add(
                StatusChange(
                    eui=eui.upper(), status=status.value, at=when, event=event.value, reason=reason
                )
            )
        return status

    async def transition_many(
        self, changes: Sequence[tuple[str, StatusEvent]], *, reason: str
    ) -> dict[str, DeviceStatus]:
        """Several transitions in one transaction: all happen or none (e.g. a hub's CHF and GPF)."""
        now = utcnow()
        out: dict[str, DeviceStatus] = {}
        async with self.sessions.begin() as session:
            for eui, event in changes:
                row = await session.get(Device, eui.upper(), with_for_update=True)
                if row is None:
                    raise StatusTransitionError("E19", f"device {eui} is not in the inventory")
                out[row.eui] = await self._apply(session, row, event, reason=reason, at=now)
        return out

    async def installed_meters(
        self, *, start: datetime, end: datetime
    ) -> list[tuple[str, str, str | None, datetime]]:
        """(device type, registered supplier EUI, exception, commissioned at) for the meters
        first commissioned in [start, end), with the supplier registered at that time."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        Device.device_type,
                        Device.mpxn,
                        Device.exception,
                        Device.commissioned_at,
                        RegistrationPeriod.user_eui,
                    )
                    .join(
                        RegistrationPeriod,
                        and_(
                            RegistrationPeriod.mpxn == Device.mpxn,
                            RegistrationPeriod.superseded.is_(False),
                            RegistrationPeriod.role.in_(("IS", "GS")),
                            RegistrationPeriod.valid_from <= Device.commissioned_at,
                            or_(
                                RegistrationPeriod.valid_to.is_(None),
                                RegistrationPeriod.valid_to > Device.commissioned_at,
                            ),
                        ),
                    )
                    .where(
                        Device.device_type.in_((DeviceType.ESME.value, DeviceType.GSME.value)),
                        Device.commissioned_at >= start,
                        Device.commissioned_at < end,
                    )
                )
            ).all()
        return [(str(t), str(u), e, _aware(c)) for t, _m, e, c, u in rows if c is not None]


# The name the first version of the service used.
InventoryStore = SmartMeteringInventory
