from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# browser_fixture: the session's headless chromium, `browser`, for the console's pages
from browser import browser_fixture as browser_fixture
from harness import Broker, MailSink, SmsSink, System, start_postgres, workdir


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    from regulars_cli.schemas import migrate

    wd = workdir()
    database_url, pg = start_postgres(wd)
    asyncio.run(migrate(database_url))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        broker = Broker(wd)
        broker.start()
        bootstrap = broker.bootstrap
    sys_ = System(database_url, broker, bootstrap, wd, MailSink(), SmsSink(wd))
    try:
        yield sys_
    finally:
        sys_.stop_all()
        assert sys_.mail and sys_.sms
        sys_.mail.stop()
        sys_.sms.stop()
        if broker:
            broker.kill()
        if pg is not None:
            pg.cleanup()


@pytest.fixture(scope="session")
def running(system: System) -> System:
    """intake and followup up (feedback and loyalty where a test needs them)."""
    for name in ("intake", "followup"):
        if name not in system.services or not (
            system.services[name].proc and system.services[name].proc.poll() is None
        ):
            system.start(name)
    return system
