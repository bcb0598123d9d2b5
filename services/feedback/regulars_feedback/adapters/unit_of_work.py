"""feedback's unit of work on PostgreSQL: one connection, the caller's transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime.unit_of_work import PostgresUnitOfWork

from ..handlers.base import FeedbackUnitOfWork
from .repository import (
    PostgresAsks,
    PostgresRecoveryCases,
    PostgresSurveys,
    PostgresTimeline,
    PostgresVisits,
)


class PostgresFeedbackUnitOfWork(PostgresUnitOfWork, FeedbackUnitOfWork):
    def __init__(self, conn: asyncpg.Connection, cause: Envelope | None = None) -> None:
        super().__init__(conn, schema="feedback", cause=cause)
        self.cases = PostgresRecoveryCases(conn)
        self.surveys = PostgresSurveys(conn)
        self.visits = PostgresVisits(conn)
        self.asks = PostgresAsks(conn)
        self.timeline = PostgresTimeline(conn)
