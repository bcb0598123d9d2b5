"""API keys that fail cost one lookup, not one per try; a key that arrives is seen at once."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from regulars_runtime.auth import KeyRing, issue_key, key_arrived
from regulars_runtime.http import Problem
from regulars_runtime.limits import Rate, Verdict, decide


class Table:
    """An ``api_keys`` table behind a pool, counting the lookups made."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.lookups = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Table]:
        yield self

    async def fetchrow(self, _sql: str, key_id: str) -> dict[str, Any] | None:
        self.lookups += 1
        return self.rows.get(key_id)


class Limits:
    """The shared limit, in memory: the same rule, one bucket per key."""

    def __init__(self) -> None:
        self.tats: dict[str, float] = {}
        self.now = 1000.0
        self.refused: dict[str, Verdict] = {}

    def refused_here(self, _rate: Rate, key: str) -> Verdict | None:
        return self.refused.get(key)

    async def enforce(self, rate: Rate, key: str) -> None:
        verdict = decide(rate, self.tats.get(key), self.now)
        if not verdict.allowed:
            self.refused[key] = verdict
            raise Problem(429, "over", limit=rate.name)
        self.tats[key] = verdict.tat


FAILED = Rate("failed authentications per client address", 0.1, 3)


def ring(table: Table, limits: Limits | None = None) -> KeyRing:
    return KeyRing(table, service="test", limits=limits, failed_auth=FAILED)  # type: ignore[arg-type]


def bearer(key: str) -> str:
    return f"Bearer {key}"


async def test_a_refused_key_is_refused_again_without_a_lookup() -> None:
    table = Table()
    keys = ring(table)
    made_up = issue_key().api_key
    for _ in range(5):
        assert await keys.shop_for(bearer(made_up)) is None
    assert table.lookups == 1


async def test_a_key_that_arrives_after_a_refusal_works_at_once() -> None:
    table = Table()
    keys = ring(table)
    issued = issue_key()
    assert await keys.shop_for(bearer(issued.api_key)) is None  # not here yet
    shop = uuid.uuid4()
    table.rows[issued.key_id] = {"shop_id": shop, "secret_sha256": issued.secret_sha256}
    key_arrived(issued.key_id)
    assert await keys.shop_for(bearer(issued.api_key)) == shop


async def test_a_flood_of_made_up_keys_from_one_address_stops_costing_lookups() -> None:
    table = Table()
    limits = Limits()
    keys = ring(table, limits)
    answers = []
    for _ in range(50):
        try:
            answers.append(await keys.shop_for(bearer(issue_key().api_key), "10.1.2.3"))
        except Problem as problem:
            answers.append(problem.status)
    assert answers[:3] == [None, None, None] and set(answers[3:]) == {429}
    assert table.lookups == 4  # the burst of 3, and the one that went over
    # another address is not refused
    assert await keys.shop_for(bearer(issue_key().api_key), "10.9.9.9") is None


async def test_a_wrong_secret_for_a_real_key_id_is_refused() -> None:
    table = Table()
    keys = ring(table)
    issued = issue_key()
    table.rows[issued.key_id] = {
        "shop_id": uuid.uuid4(),
        "secret_sha256": hashlib.sha256(b"another").digest(),
    }
    assert await keys.shop_for(bearer(issued.api_key)) is None


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer not-a-key"])
async def test_what_is_not_a_key_costs_no_lookup(header: str | None) -> None:
    table = Table()
    assert await ring(table).shop_for(header, "10.1.2.3") is None
    assert table.lookups == 0
