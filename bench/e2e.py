"""End-to-end latency: service.completed accepted by intake -> follow-up task listed by followup.

Visits go one at a time at a modest rate, each for its own customer, so a poll of
``GET /v1/followups?customer_id=...`` answers "is this visit's task there yet" exactly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

POLL_SECONDS = 0.005
VISIBLE_TIMEOUT = 10.0
# At most this many polls in flight: when followup slows down, visits pile up, and
# unbounded polling (every visit, every 5 ms) would take the CPU its consumer needs,
# making the latency it measures worse still. Normally one or two visits are pending.
MAX_POLLS_IN_FLIGHT = 4


@dataclass(frozen=True)
class Latencies:
    sent: int
    samples_ms: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def customer_ids(n: int) -> list[str]:
    return [f"e2e-{i:04d}" for i in range(n)]


def _visit(customer: str, repair_order: str) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    return {
        "type": "service.completed",
        "id": repair_order,
        "occurred_at": now,
        "data": {
            "repair_order_id": repair_order,
            "customer_id": customer,
            "completed_at": now,
            "advisor": "sam",
            "work_performed": "brake pads",
        },
    }


async def _wait_visible(
    followup: httpx.AsyncClient, polls: asyncio.Semaphore, customer: str, deadline: float
) -> bool:
    while time.monotonic() < deadline:
        async with polls:
            r = await followup.get("/v1/followups", params={"customer_id": customer})
        if r.status_code == 200 and r.json()["items"]:
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


async def _one(
    intake: httpx.AsyncClient,
    followup: httpx.AsyncClient,
    polls: asyncio.Semaphore,
    customer: str,
    n: int,
) -> float | None:
    r = await intake.post("/v1/events", json=_visit(customer, f"e2e-ro-{n:04d}"))
    accepted = time.monotonic()
    if r.status_code != 202 or r.json().get("status") != "accepted":
        print(f"e2e: visit {n} not accepted: {r.status_code} {r.text[:200]}")
        return None
    if not await _wait_visible(followup, polls, customer, accepted + VISIBLE_TIMEOUT):
        return None
    return (time.monotonic() - accepted) * 1000


async def measure(
    intake_url: str, followup_url: str, api_key: str, n: int, rate: float
) -> Latencies:
    """``n`` visits at ``rate`` per second; the latency of each that became visible."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx.AsyncClient(base_url=intake_url, headers=headers, timeout=10) as intake,
        httpx.AsyncClient(base_url=followup_url, headers=headers, timeout=10) as followup,
    ):
        polls = asyncio.Semaphore(MAX_POLLS_IN_FLIGHT)
        start = time.monotonic()
        # A task group: on Ctrl-C every visit in flight is cancelled before the clients close.
        async with asyncio.TaskGroup() as group:
            tasks = []
            for i, customer in enumerate(customer_ids(n)):
                # Paced from the start time, so a slow request does not stretch the schedule.
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(group.create_task(_one(intake, followup, polls, customer, i)))
        results = [t.result() for t in tasks]
    return Latencies(n, [ms for ms in results if ms is not None])
