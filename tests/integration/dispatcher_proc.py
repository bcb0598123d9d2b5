"""followup's message dispatcher alone in a process, for test_dispatch_replicas' kill -9s.

    python dispatcher_proc.py DATABASE_URL SMS_URL SMTP_URL OWNER LEASE RENEW DEADLINE

It is the service's own dispatcher (bootstrap's bus, the real SMTP and SMS adapters,
PostgreSQL's wake-ups) with a short lease, so a test need not wait a minute for one to
expire. The test imports :func:`replica` to run more of them in its own process.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from regulars_followup import bootstrap
from regulars_followup.adapters.email import SmtpSender
from regulars_followup.adapters.sms import TwilioCompatibleSms
from regulars_followup.adapters.wakeups import PostgresWakeups
from regulars_followup.entrypoints.dispatcher import MessageDispatcher
from regulars_followup.handlers import Deps
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.db import create_pool

#: the SMS account the local stand-in takes, and our sending number
ACCOUNT, TOKEN, FROM = "AClocal", "local", "+15555550000"
SENDER = "Quick Lube <no-reply@quick.example>"
#: nobody listens there: the stand-in's status callbacks fail, as a provider's would
#: against a service that is down
PUBLIC_URL = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Timing:
    lease: float = 3.0
    renew: float = 0.5
    deadline: float = 2.0


@asynccontextmanager
async def replica(
    database_url: str,
    sms_url: str,
    smtp_url: str,
    owner: str,
    timing: Timing,
    clock: Clock = system_clock,
) -> AsyncIterator[MessageDispatcher]:
    """A dispatcher with its own pool and its own owner id, as a replica has."""
    pool: asyncpg.Pool = await create_pool(database_url, "followup", min_size=1, max_size=4)
    sms = TwilioCompatibleSms(sms_url, ACCOUNT, TOKEN, FROM, timeout=timing.deadline)
    try:
        yield MessageDispatcher(
            bus=bootstrap.bus(Deps(clock=clock), pool),
            wakeups=PostgresWakeups(database_url),
            email=SmtpSender(
                smtp_url, "Quick Lube <no-reply@quick.example>", timeout=timing.deadline
            ),
            sms=sms,
            public_url=PUBLIC_URL,
            owner=owner,
            lease_seconds=timing.lease,
            renew_every=timing.renew,
            send_deadline=timing.deadline,
            retry_pause=0.1,
        )
    finally:
        await sms.aclose()
        await pool.close()


async def main(argv: list[str]) -> None:
    database_url, sms_url, smtp_url, owner = argv[:4]
    timing = Timing(float(argv[4]), float(argv[5]), float(argv[6]))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with replica(database_url, sms_url, smtp_url, owner, timing) as dispatcher:
        print("ready", flush=True)
        await dispatcher.run(stop)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
