"""Every SQL statement of loyalty (the timeline insert is regulars_runtime.timeline), on the
caller's connection and transaction."""

from __future__ import annotations

import asyncpg
from regulars_events.envelope import Envelope
from regulars_runtime import timeline


class PostgresTimeline:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, envelope: Envelope) -> None:
        await timeline.add_to_timeline(self.conn, envelope)
