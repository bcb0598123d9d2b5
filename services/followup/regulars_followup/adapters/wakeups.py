"""The dispatchers' wake-up: a LISTEN on its own connection for the NOTIFY sent at the
commit of every message that becomes due (see ``PostgresOutboundMessages.wake_dispatcher``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import asyncpg

from .repository import DISPATCH_CHANNEL


class PostgresWakeups:
    def __init__(self, database_url: str, channel: str = DISPATCH_CHANNEL) -> None:
        self.database_url = database_url
        self.channel = channel

    @contextlib.asynccontextmanager
    async def listening(self, wake: Callable[[], None]) -> AsyncIterator[None]:
        """``wake()`` on every notification while the block runs."""
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.add_listener(self.channel, lambda *_: wake())
            yield
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
