"""Every handler error is classed, and each class has its budget: a permanent error a few
tries, a transient one minutes while the database answers (and no limit while it cannot be
reached), a missing prerequisite its own wait."""

from __future__ import annotations

import asyncpg
import pytest
from regulars_bus.consumer import Failure, RetryLater, RetryPolicy, _Parked, classify, next_hold

POLICY = RetryPolicy(
    attempts=3, first_backoff=0.1, max_backoff=2.0, transient_for=60.0, wait_for_prerequisite=30
)


class HandlerBug(Exception):
    pass


@pytest.mark.parametrize(
    "error",
    [
        OSError("connection reset"),
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients"),
        asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_infrastructure_away_or_busy_is_transient(error: BaseException) -> None:
    assert classify(error) is Failure.TRANSIENT


@pytest.mark.parametrize(
    "error",
    [
        HandlerBug("a deterministic bug"),
        KeyError("customer_id"),
        asyncpg.DataError("invalid input syntax for type uuid"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
        asyncpg.exceptions.UndefinedColumnError('column "x" does not exist'),
        asyncpg.exceptions.CheckViolationError("new row violates check constraint"),
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_everything_else_is_permanent(error: BaseException) -> None:
    assert classify(error) is Failure.PERMANENT


def test_an_error_raised_from_a_lost_connection_is_a_lost_connection() -> None:
    try:
        try:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("closed")
        except asyncpg.PostgresError as lost:
            raise HandlerBug("could not load the customer") from lost
    except HandlerBug as wrapped:
        assert classify(wrapped) is Failure.TRANSIENT


def test_a_missing_prerequisite_is_its_own_class() -> None:
    assert classify(RetryLater("no policy yet")) is Failure.PREREQUISITE


def _hold_until_given_up(
    failure: Failure, error: BaseException, *, every: float, reachable: bool = True, limit: int
) -> tuple[int, float]:
    """Fail the same record again and again, ``every`` seconds apart; the tries and the
    time until it is dead-lettered (or ``limit`` tries)."""
    held: _Parked | None = None
    now = 1000.0
    for attempt in range(1, limit + 1):
        held = next_hold(held, 7, failure, error, now, POLICY, database_reachable=reachable)
        if held is None:
            return attempt, now - 1000.0
        assert held.offset == 7 and held.resume_at > now
        now += every
    return limit, now - 1000.0


def test_a_permanent_error_is_dead_lettered_after_its_attempts() -> None:
    tries, _ = _hold_until_given_up(Failure.PERMANENT, HandlerBug(), every=1, limit=100)
    assert tries == POLICY.attempts


def test_a_transient_error_is_retried_for_its_window_then_dead_lettered() -> None:
    error = asyncpg.exceptions.QueryCanceledError("statement timeout")
    tries, spent = _hold_until_given_up(Failure.TRANSIENT, error, every=5, limit=10_000)
    assert tries < 10_000, "a record failing transiently must not be retried forever"
    assert POLICY.transient_for <= spent < POLICY.transient_for + 5


def test_a_database_that_cannot_be_reached_spends_no_record_budget() -> None:
    error = ConnectionRefusedError()
    # an hour of outage, one try every 5 s: never dead-lettered
    tries, _ = _hold_until_given_up(Failure.TRANSIENT, error, every=5, reachable=False, limit=720)
    assert tries == 720


def test_the_transient_budget_starts_over_after_an_outage() -> None:
    error = asyncpg.exceptions.SerializationError("could not serialize access")
    held = next_hold(None, 3, Failure.TRANSIENT, error, 0.0, POLICY)
    held = next_hold(held, 3, Failure.TRANSIENT, error, 50.0, POLICY)
    assert held is not None and held.transient_since == 0.0
    held = next_hold(held, 3, Failure.TRANSIENT, error, 55.0, POLICY, database_reachable=False)
    assert held is not None and held.transient_since is None
    # the database answers again: the record has its full window from now
    held = next_hold(held, 3, Failure.TRANSIENT, error, 100.0, POLICY)
    assert held is not None and held.transient_since == 100.0
    assert next_hold(held, 3, Failure.TRANSIENT, error, 159.0, POLICY) is not None
    assert next_hold(held, 3, Failure.TRANSIENT, error, 161.0, POLICY) is None


def test_a_missing_prerequisite_waits_its_own_window() -> None:
    _, spent = _hold_until_given_up(
        Failure.PREREQUISITE, RetryLater("no policy"), every=1, limit=1000
    )
    assert POLICY.wait_for_prerequisite <= spent < POLICY.wait_for_prerequisite + 1


def test_a_new_record_starts_with_a_fresh_budget() -> None:
    held = None
    for _ in range(POLICY.attempts - 1):
        held = next_hold(held, 1, Failure.PERMANENT, HandlerBug(), 0.0, POLICY)
    assert held is not None
    fresh = next_hold(held, 2, Failure.PERMANENT, HandlerBug(), 1.0, POLICY)
    assert fresh is not None and fresh.offset == 2 and fresh.failures == 1
