"""Keep a long-running worker (relay, consumer, timers, dispatcher) alive.

A worker that fails (the broker or the database went away, a bug) is logged and started
again after a pause, until the service is asked to stop: one worker's failure must never
end the process, and the next attempt starts from durable state, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def keep_running(
    what: str,
    attempt: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    *,
    pause: float = 1.0,
) -> None:
    while not stop.is_set():
        try:
            await attempt(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(f"{what} failed; restarting in {pause:g} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
