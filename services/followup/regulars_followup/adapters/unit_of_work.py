"""followup's unit of work on PostgreSQL: one connection, the caller's transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime.unit_of_work import PostgresUnitOfWork

from ..handlers.base import SCHEMA, FollowUpUnitOfWork
from .repository import (
    PostgresCustomers,
    PostgresFollowUpTasks,
    PostgresOpenCases,
    PostgresOutboundMessages,
    PostgresVisits,
)
from .texts import PostgresInboundTexts


class PostgresFollowUpUnitOfWork(PostgresUnitOfWork, FollowUpUnitOfWork):
    def __init__(self, conn: asyncpg.Connection, cause: Envelope | None = None) -> None:
        super().__init__(conn, schema=SCHEMA, cause=cause)
        self.tasks = PostgresFollowUpTasks(conn)
        self.visits = PostgresVisits(conn)
        self.customers = PostgresCustomers(conn)
        self.messages = PostgresOutboundMessages(conn)
        self.cases = PostgresOpenCases(conn)
        self.texts = PostgresInboundTexts(conn)


def infrastructure_fault(exc: BaseException) -> bool:
    """The database (or the way to it) failed, not the work: a lost or refused
    connection, a timeout, a serialization failure or deadlock, a server shutting down.
    Such a failure is tried again or left to a lease; it is never a customer's message
    failing."""
    return isinstance(
        exc,
        asyncpg.PostgresError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.InternalClientError
        | OSError
        | TimeoutError,
    )
