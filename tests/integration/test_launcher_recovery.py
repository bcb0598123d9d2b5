"""`regulars run` keeps the system up by itself: a kill -9 of its PostgreSQL or of its
broker is followed by a restart of that part (same data directory, same port), and all four
services are ready again, and work, without anyone touching them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from harness import SERVICES, auth, free_port, wait_for, workdir

#: how long the system may take to be whole again after a part of it was killed
RECOVERY = 60.0


class Run:
    """A `regulars run` of its own: a temporary data directory and free ports."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.ports = {name: free_port() for name in SERVICES}
        self.kafka_port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL", "SMS_API_URL")
        }
        env.update(
            {
                "REGULARS_DATA_DIR": str(data),
                "REGULARS_KAFKA_PORT": str(self.kafka_port),
                "REGULARS_SMTP_PORT": str(free_port()),
                "REGULARS_SMS_PORT": str(free_port()),
                "DB_POOL_SIZE": "4",
                **{f"REGULARS_{name.upper()}_PORT": str(p) for name, p in self.ports.items()},
            }
        )
        self.env = env
        self.out = (data / "launcher.out").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "regulars_cli.main", "run"],
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )

    def said(self) -> str:
        return (self.data / "launcher.out").read_text(errors="replace")

    def not_ready(self) -> list[str]:
        waiting = []
        for name, port in self.ports.items():
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if r.status_code != 200:
                    waiting.append(f"{name}: {r.text}")
            except httpx.HTTPError as exc:
                waiting.append(f"{name}: {type(exc).__name__}")
        return waiting

    def wait_ready(self, timeout: float) -> float:
        started = time.monotonic()
        waiting: list[str] = []
        while time.monotonic() - started < timeout:
            assert self.proc.poll() is None, "regulars run exited:\n" + self.said()
            waiting = self.not_ready()
            if not waiting:
                return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"not ready in {timeout}s: {waiting}\n{self.said()[-3000:]}")

    def postgres_pid(self) -> int:
        pgdata = self.data / "postgres"
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])

    def broker_pid(self, within: float = RECOVERY) -> int:
        listener = f"tcp://127.0.0.1:{self.kafka_port}"
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                    found = argv and argv[0].endswith(b"tansu") and listener.encode() in argv
                    if found and "State:\tZ" not in (proc / "status").read_text():
                        return int(proc.name)
            time.sleep(0.2)
        raise AssertionError("no broker process\n" + self.said()[-3000:])

    def database_url(self) -> str:
        state = json.loads((self.data / "run.json").read_text())
        url: str = state["database_url"]
        return url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


@pytest.fixture
def run() -> Iterator[Run]:
    launched = Run(workdir())
    try:
        yield launched
    finally:
        launched.stop()


def gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            if "State:\tZ" in status:
                return
        time.sleep(0.05)


async def test_a_killed_postgres_and_broker_come_back_and_the_services_with_them(
    run: Run,
) -> None:
    run.wait_ready(120)

    old_postgres = run.postgres_pid()
    os.kill(old_postgres, signal.SIGKILL)
    gone(old_postgres)
    assert run.not_ready(), "the services must notice the database is gone"
    run.wait_ready(RECOVERY)
    assert run.postgres_pid() != old_postgres
    assert "postgres exited; restarting" in run.said()

    old_broker = run.broker_pid()
    os.kill(old_broker, signal.SIGKILL)
    gone(old_broker)
    run.wait_ready(RECOVERY)
    assert run.broker_pid() != old_broker
    assert "broker exited (-9); restarting" in run.said()

    # and it works: a shop made now, a visit posted now, becomes a follow-up task
    made = subprocess.run(
        [
            *(sys.executable, "-m", "regulars_cli.main", "shops", "create"),
            *("--name", "Back Again", "--timezone", "America/New_York", "--json"),
        ],
        env=run.env,
        capture_output=True,
        text=True,
        check=True,
    )
    shop = json.loads(made.stdout)
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "type": "customer.upserted",
            "id": "c-back",
            "occurred_at": now,
            "data": {"customer_id": "c-back", "name": "Bo Back", "phone": "+15125550123"},
        },
        {
            "type": "service.completed",
            "id": "visit-back",
            "occurred_at": now,
            "data": {
                "repair_order_id": "ro-back",
                "customer_id": "c-back",
                "completed_at": now,
                "advisor": "sam",
            },
        },
    ]
    intake = f"http://127.0.0.1:{run.ports['intake']}"
    async with httpx.AsyncClient(base_url=intake, timeout=10) as http:
        for event in events:
            r = await http.post("/v1/events", json=event, headers=auth(shop["api_key"]))
            assert r.status_code == 202, r.text
            assert r.json()["status"] == "accepted"

    async def task() -> int:
        conn = await asyncpg.connect(run.database_url())
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM followup.follow_up_tasks WHERE shop_id = $1",
                uuid.UUID(shop["shop_id"]),
            )
            return n
        finally:
            await conn.close()

    assert await wait_for(task, timeout=RECOVERY) == 1
    await asyncio.sleep(1)
    assert await task() == 1
