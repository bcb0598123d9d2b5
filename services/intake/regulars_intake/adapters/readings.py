"""Intake's gauges read from its tables when Prometheus scrapes (metrics.TableReadings)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from regulars_runtime.metrics import COUNT_CAP, WEBHOOK_PENDING


async def read_webhook_deliveries(conn: asyncpg.Connection, service: str, now: datetime) -> None:
    # on the partial index of pending deliveries (webhook_deliveries_due)
    pending = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries WHERE status = 'pending'"
        " LIMIT $1) AS waiting",
        COUNT_CAP,
    )
    WEBHOOK_PENDING.set(pending)
