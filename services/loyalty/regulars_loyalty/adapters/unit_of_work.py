"""loyalty's unit of work on PostgreSQL: one connection, the caller's transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime.unit_of_work import PostgresUnitOfWork

from ..handlers.base import LoyaltyUnitOfWork
from .repository import PostgresHistory, PostgresRiskModels, PostgresStandings, PostgresTimeline
from .sign_ins import PostgresSignIns


class PostgresLoyaltyUnitOfWork(PostgresUnitOfWork, LoyaltyUnitOfWork):
    def __init__(self, conn: asyncpg.Connection, cause: Envelope | None = None) -> None:
        super().__init__(conn, schema="loyalty", cause=cause)
        self.timeline = PostgresTimeline(conn)
        self.history = PostgresHistory(conn)
        self.standings = PostgresStandings(conn)
        self.models = PostgresRiskModels(conn)
        self.sign_ins = PostgresSignIns(conn)
