"""SSI logins: one-time login links (``dccsim ssi link``) and the portal's sessions.

A link carries a random token that works once and expires; redeeming it opens a session whose
cookie is another random token, with its own CSRF token for the portal's forms. Only SHA-256
digests of link and session tokens are stored, so the database does not hold a usable secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.testing import store
from services.testing.phases import utc

LINK_TTL = dt.timedelta(minutes=15)
SESSION_TTL = dt.timedelta(hours=8)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Session:
    user_id: str
    csrf_token: str


class Logins:
    """Login links and sessions in the testing database."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], dt.datetime] = _now) -> None:
        self.engine = engine
        self.clock = clock

    async def create_link(self, user_id: str, *, ttl: dt.timedelta = LINK_TTL) -> str:
        """A fresh one-time login token for ``user_id``, valid for ``ttl``."""
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(store.login_links).values(
                    token_sha256=_digest(token),
                    user_id=user_id,
                    expires_at=self.clock() + ttl,
                    used_at=None,
                )
            )
        return token

    async def redeem(self, token: str) -> str | None:
        """The User ID a link was made for, once: None when unknown, used or expired."""
        digest = _digest(token)
        now = self.clock()
        async with self.engine.begin() as conn:
            table = store.login_links
            row = (await conn.execute(select(table).where(table.c.token_sha256 == digest))).first()
            if row is None or row.used_at is not None or utc(row.expires_at) <= now:
                return None
            result = await conn.execute(
                update(table)
                .where(table.c.token_sha256 == digest, table.c.used_at.is_(None))
                .values(used_at=now)
            )
            if result.rowcount != 1:  # redeemed concurrently
                return None
            return str(row.user_id)

    async def open_session(self, user_id: str, *, ttl: dt.timedelta = SESSION_TTL) -> str:
        """A new session for ``user_id``; returns the cookie value."""
        cookie = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(store.sessions).values(
                    token_sha256=_digest(cookie),
                    user_id=user_id,
                    csrf_token=secrets.token_urlsafe(24),
                    expires_at=self.clock() + ttl,
                )
            )
        return cookie

    async def session(self, cookie: str) -> Session | None:
        """The live session a cookie names, or None."""
        async with self.engine.connect() as conn:
            table = store.sessions
            row = (
                await conn.execute(select(table).where(table.c.token_sha256 == _digest(cookie)))
            ).first()
        if row is None or utc(row.expires_at) <= self.clock():
            return None
        return Session(str(row.user_id), str(row.csrf_token))

    async def close_session(self, cookie: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(store.sessions).where(store.sessions.c.token_sha256 == _digest(cookie))
            )
