"""intake's unit of work on PostgreSQL: one connection, the caller's transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime.unit_of_work import PostgresUnitOfWork

from ..handlers import IntakeUnitOfWork
from .repository import IntakeRepository


class PostgresIntakeUnitOfWork(PostgresUnitOfWork, IntakeUnitOfWork):
    def __init__(self, conn: asyncpg.Connection, cause: Envelope | None = None) -> None:
        super().__init__(conn, schema="intake", cause=cause)
        self.repo = IntakeRepository(conn)
