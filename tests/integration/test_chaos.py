"""The fault suite's short form (`make chaos` is the long one): with two replicas of every
service under a steady load, each replica, each relay, the broker and PostgreSQL are
killed -9 in turn, and nothing accepted is lost, no effect happens twice, no timer fires
twice. The counts are printed; a failure shows them, and its seed replays it:
``make chaos SEED=<seed> DURATION=30``."""

from __future__ import annotations

import os

import pytest
from chaos import Plan, run

SEED = int(os.environ.get("CHAOS_SEED") or 20261202)


@pytest.mark.timeout(1800)
async def test_nothing_lost_and_nothing_twice_under_faults() -> None:
    counts = await run(Plan(seed=SEED, duration=30, rate=1.0))
    print(counts.render())
    assert counts.clean, counts.render()
    assert counts.accepted["service.completed"] > 0 and counts.accepted["call attempts"] > 0
