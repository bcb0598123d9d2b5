"""followup's unit of work on PostgreSQL: one connection, the caller's transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime.unit_of_work import PostgresUnitOfWork

from ..handlers.base import FollowUpUnitOfWork
from .repository import FollowUpRepository


class PostgresFollowUpUnitOfWork(PostgresUnitOfWork, FollowUpUnitOfWork):
    def __init__(self, conn: asyncpg.Connection, cause: Envelope | None = None) -> None:
        super().__init__(conn, schema="followup", cause=cause)
        self.repo = FollowUpRepository(conn)
