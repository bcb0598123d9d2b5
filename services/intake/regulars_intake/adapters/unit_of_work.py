"""intake's unit of work on PostgreSQL: one connection, the caller's transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime.unit_of_work import PostgresUnitOfWork

from ..webhook_handlers import WebhookUnitOfWork
from .connectors import PostgresConnectors, PostgresJobberFetches
from .repository import (
    PostgresCustomerDirectory,
    PostgresInvoices,
    PostgresReceipts,
    PostgresRepairOrders,
    PostgresShopRegistry,
    PostgresWaitingRoom,
)
from .secret_box import SecretBox
from .webhooks import PostgresWebhooks


class PostgresIntakeUnitOfWork(PostgresUnitOfWork, WebhookUnitOfWork):
    def __init__(
        self,
        conn: asyncpg.Connection,
        cause: Envelope | None = None,
        box: SecretBox | None = None,
    ) -> None:
        super().__init__(conn, schema="intake", cause=cause)
        self.registry = PostgresShopRegistry(conn)
        self.receipts = PostgresReceipts(conn)
        self.repair_orders = PostgresRepairOrders(conn)
        self.customers = PostgresCustomerDirectory(conn)
        self.webhooks = PostgresWebhooks(conn, box)
        self.invoices = PostgresInvoices(conn)
        self.waiting = PostgresWaitingRoom(conn)
        self.connectors = PostgresConnectors(conn)
        self.jobber_fetches = PostgresJobberFetches(conn)


def lost_a_lock_race(exc: BaseException) -> bool:
    """A transaction PostgreSQL rolled back to break a deadlock (two replicas letting held
    postings through crosswise): safe to run again, and it then goes through."""
    return isinstance(
        exc, asyncpg.exceptions.DeadlockDetectedError | asyncpg.exceptions.SerializationError
    )
