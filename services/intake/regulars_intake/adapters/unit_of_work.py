"""intake's unit of work on PostgreSQL: one connection, the caller's transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime.unit_of_work import PostgresUnitOfWork

from ..webhook_handlers import WebhookUnitOfWork
from .connectors import PostgresConnectors
from .repository import (
    PostgresCustomerDirectory,
    PostgresReceipts,
    PostgresRepairOrders,
    PostgresShopRegistry,
)
from .webhooks import PostgresWebhooks, SecretBox


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
        self.connectors = PostgresConnectors(conn)
