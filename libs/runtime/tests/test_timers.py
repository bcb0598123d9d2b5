"""Durable timers without a database: the retry backoff and the argument checks."""

from __future__ import annotations

from datetime import datetime

import pytest
from regulars_runtime import timers
from regulars_runtime.timers import RETRY_STEPS, backoff


def test_backoff_steps_1s_5s_30s_then_capped_at_5_minutes() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1.0, 5.0, 30.0, 120.0, 300.0, 300.0, 300.0]


def test_backoff_never_shrinks_and_never_exceeds_the_cap() -> None:
    waits = [backoff(n) for n in range(1, 1000)]
    assert waits == sorted(waits)
    assert max(waits) == RETRY_STEPS[-1] == 300.0


@pytest.mark.parametrize("attempts", [0, -1])
def test_backoff_counts_failures_from_one(attempts: int) -> None:
    with pytest.raises(ValueError):
        backoff(attempts)


def test_channel_is_per_schema() -> None:
    assert timers.notify_channel("followup") == "regulars_timers_followup"


@pytest.mark.parametrize("schema", ["Followup", "followup; DROP TABLE x", "", "1abc"])
def test_schema_names_that_could_not_be_interpolated_are_refused(schema: str) -> None:
    with pytest.raises(ValueError):
        timers.notify_channel(schema)


async def test_a_naive_moment_is_refused_before_any_sql() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await timers.schedule(
            None,  # never reached: the check comes first
            key="k",
            kind="k",
            shop_id=None,
            fire_at=datetime(2026, 11, 20, 9, 0),  # naive: the point of the test
            payload={},
            schema="followup",
        )
