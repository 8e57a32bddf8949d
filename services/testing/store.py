"""services/testing's own database: test phases and notices, the DCCKI PMA register, participant
profiles and applications, Service Request timelines, and SSI login links and sessions.

SQLAlchemy Core on an async engine from :func:`dccsim.storage.create_engine` (SQLite by default,
``$DCCSIM_HOME/data/testing.db``; PostgreSQL by URL). The schema is created by the service;
every history table only ever grows (rows are appended, never rewritten), which is what lets the
portal and the API show the full history of a phase or a PMA entry.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()

# One row per notified commencement date, in order: the first notification, then each
# re-notification (which names the Secretary of State's direction that caused it).
phase_dates = Table(
    "phase_dates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("phase", String(16), nullable=False, index=True),
    Column("commencement", Date, nullable=False),
    Column("kind", String(16), nullable=False),  # "notified" | "renotified"
    Column("direction_id", Integer, ForeignKey("directions.id"), nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False, default=""),
)

# Directions from the Secretary of State to re-notify a phase's commencement date.
directions = Table(
    "directions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("phase", String(16), nullable=False, index=True),
    Column("requested_date", Date, nullable=True),
    Column("reason", Text, nullable=False),
    Column("directed_at", DateTime(timezone=True), nullable=False),
    Column("fulfilled_at", DateTime(timezone=True), nullable=True),
)

notices = Table(
    "notices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("phase", String(16), nullable=False, index=True),
    Column("audience", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("commencement", Date, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)

# Testing-side facts about a participant that the shared register does not hold.
participant_profiles = Table(
    "participant_profiles",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # sec_party | rdp | non_sec_party
    Column("status", String(16), nullable=False),  # applied | active | suspended
)

# What a participant applied with, kept by the testing service: the shared register
# (dccsim/participants.py) holds only participants that may use the service now, so an applied
# or suspended participant's identity lives here until it is (re-)activated.
participant_applications = Table(
    "participant_applications",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("eui", String(23), nullable=False, unique=True),
    Column("roles", String(64), nullable=False),  # comma-separated User Role codes
    Column("response_url", Text, nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# Every status a participant has had, in order (applied -> active <-> suspended).
participant_status_history = Table(
    "participant_status_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

# One row per stage a Service Request reached (``request.timeline`` events): the first event
# for a (request, stage) wins, so a redelivered event changes nothing.
timeline_events = Table(
    "timeline_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(96), nullable=False, index=True),
    Column("originator", String(23), nullable=False, index=True),  # the RequestID's originator
    Column("stage", String(24), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("code", String(8), nullable=True),
    Column("srv", String(16), nullable=True),
    Column("user_id", String(128), nullable=True),
    UniqueConstraint("request_id", "stage", name="uq_timeline_request_stage"),
)

pma_entries = Table(
    "pma_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # review | notification | recommendation
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # DCC's decision on a recommendation (null until decided)
    Column("decision", String(32), nullable=True),
    Column("decision_reason", Text, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("notified_to_sos", Boolean, nullable=False, default=False),
)

pma_access_requests = Table(
    "pma_access_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", Integer, ForeignKey("pma_entries.id"), nullable=False, index=True),
    Column("requester", String(32), nullable=False),  # ssc | smki_pma
    Column("reason", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=True),
)

# Only the SHA-256 of a login link's token or a session's cookie is stored.
login_links = Table(
    "login_links",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


async def create_schema(engine: AsyncEngine) -> None:
    """Create every table that does not exist yet (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
