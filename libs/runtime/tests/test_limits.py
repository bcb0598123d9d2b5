"""The rate-limit rule every replica applies (GCRA), without a database."""

from __future__ import annotations

import pytest
from regulars_runtime.limits import Rate, Verdict, decide, too_many

RATE = Rate("events per shop", per_second=10, burst=5)


def run(rate: Rate, times: list[float], cost: float = 1) -> list[Verdict]:
    tat: float | None = None
    verdicts = []
    for now in times:
        verdict = decide(rate, tat, now, cost)
        if verdict.allowed:
            tat = verdict.tat
        verdicts.append(verdict)
    return verdicts


def test_a_burst_then_the_rate() -> None:
    verdicts = run(RATE, [100.0] * 7)
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 2
    # one request's worth comes back every 0.1 s
    assert verdicts[5].wait == pytest.approx(0.1)
    assert verdicts[5].retry_after == 1


def test_over_a_long_run_no_more_than_the_rate_and_the_burst() -> None:
    times = [100 + i * 0.01 for i in range(1000)]  # 100 a second for 10 s
    allowed = sum(v.allowed for v in run(RATE, times))
    assert 10 * 10 <= allowed <= 10 * 10 + 5 + 1


def test_a_full_bucket_comes_back_after_a_pause() -> None:
    tat = None
    for _ in range(5):
        verdict = decide(RATE, tat, 100.0)
        tat = verdict.tat
    assert not decide(RATE, tat, 100.0).allowed
    assert decide(RATE, tat, 100.5).allowed  # 0.5 s later: the whole burst again


def test_a_refusal_says_when_the_same_request_would_fit() -> None:
    tat = decide(RATE, None, 100.0, cost=5).tat
    refused = decide(RATE, tat, 100.0, cost=3)
    assert not refused.allowed
    assert refused.wait == pytest.approx(0.3)
    assert decide(RATE, tat, 100.0 + refused.wait, cost=3).allowed


def test_a_batch_larger_than_the_burst_passes_once_full_and_pays_its_whole_cost() -> None:
    big = decide(RATE, None, 100.0, cost=20)
    assert big.allowed and big.tat == pytest.approx(102.0)
    after = decide(RATE, big.tat, 100.0, cost=1)
    assert not after.allowed and after.wait == pytest.approx(1.6)
    assert not decide(RATE, 100.2, 100.0, cost=20).allowed  # not full: waits to be


def test_the_answer_names_the_limit_and_says_when() -> None:
    tat = decide(RATE, None, 100.0, cost=5).tat
    problem = too_many(RATE, decide(RATE, tat, 100.0))
    assert problem.status == 429
    assert problem.headers == {"Retry-After": "1"}
    assert problem.extra["limit"] == "events per shop"
    assert "events per shop" in problem.message


def test_a_rate_is_positive_with_a_burst_of_at_least_one() -> None:
    with pytest.raises(ValueError):
        Rate("x", 0, 5)
    with pytest.raises(ValueError):
        Rate("x", 1, 0.5)
