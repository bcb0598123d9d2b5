"""Followup's gauges read from its tables when Prometheus scrapes (metrics.TableReadings)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from regulars_runtime.metrics import MESSAGES, at_most_every, counts_by

#: no index bounds a count over every message, so it is read twice a minute at most
MESSAGES_EVERY = 30.0


async def _read_messages(conn: asyncpg.Connection, service: str, now: datetime) -> None:
    rows = await conn.fetch(
        "SELECT coalesce(channel, 'none') AS channel, status, count(*) AS n"
        " FROM messages GROUP BY 1, 2"
    )
    seen = [(labels["channel"], labels["status"]) for labels in _shown()]
    read = [((r["channel"], r["status"]), int(r["n"])) for r in rows]
    for (channel, status), count in counts_by(read, seen).items():
        MESSAGES.labels(channel, status).set(count)


def _shown() -> list[dict[str, str]]:
    return [dict(s.labels) for family in MESSAGES.collect() for s in family.samples]


read_messages = at_most_every(MESSAGES_EVERY, _read_messages)
