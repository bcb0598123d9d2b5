"""The computations behind the gauges: lag, ages, counts that fall to zero, results."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from regulars_runtime import metrics

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_lag_is_the_high_watermark_less_the_position() -> None:
    assert metrics.partition_lag(120, 100) == 20
    assert metrics.partition_lag(100, 100) == 0
    # a position past a high watermark seen earlier is no negative lag
    assert metrics.partition_lag(100, 104) == 0


def test_lag_is_unknown_before_a_fetch_saw_the_high_watermark() -> None:
    assert metrics.partition_lag(None, 0) is None
    assert metrics.partition_lag(5, None) is None


def test_an_age_is_zero_when_nothing_waits_or_the_moment_is_to_come() -> None:
    assert metrics.seconds_past(NOW - timedelta(seconds=90), NOW) == 90.0
    assert metrics.seconds_past(None, NOW) == 0.0
    assert metrics.seconds_past(NOW + timedelta(seconds=5), NOW) == 0.0


def test_pool_connections_in_use_are_the_open_ones_not_idle() -> None:
    assert metrics.pool_connections(size=10, idle=3, max_size=16) == {
        "in_use": 7,
        "idle": 3,
        "max": 16,
    }
    assert metrics.pool_connections(size=0, idle=0, max_size=16)["in_use"] == 0


def test_a_count_no_row_holds_any_more_reads_zero() -> None:
    counts = metrics.counts_by(
        [(("sms", "sent"), 4), (("email", "failed"), 1)],
        seen=[("sms", "sent"), ("sms", "scheduled")],
    )
    assert counts == {("sms", "sent"): 4, ("email", "failed"): 1, ("sms", "scheduled"): 0}


def test_webhook_results() -> None:
    assert metrics.webhook_result(204, None) == "delivered"
    assert metrics.webhook_result(410, None) == "rejected"
    assert metrics.webhook_result(503, None) == "error"
    assert metrics.webhook_result(None, "timeout") == "timeout"
    assert metrics.webhook_result(None, None) == "connection"


def _value(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_replica_stops_showing_the_lag_of_a_partition_it_gave_up() -> None:
    shown = metrics.set_lags("lagtest", {("t", 0): 3, ("t", 1): 0}, set())
    assert (
        _value("regulars_consumer_lag", {"service": "lagtest", "topic": "t", "partition": "0"}) == 3
    )
    shown = metrics.set_lags("lagtest", {("t", 1): 7}, shown)
    assert (
        _value("regulars_consumer_lag", {"service": "lagtest", "topic": "t", "partition": "0"})
        is None
    )
    assert (
        _value("regulars_consumer_lag", {"service": "lagtest", "topic": "t", "partition": "1"}) == 7
    )
    assert shown == {("t", 1)}


def test_a_whole_table_reading_runs_at_most_every_so_often() -> None:
    calls: list[str] = []

    async def reading(conn: Any, service: str, now: datetime) -> None:
        calls.append(service)

    throttled = metrics.at_most_every(60, reading)

    async def twice() -> None:
        await throttled(None, "a", NOW)
        await throttled(None, "b", NOW)

    asyncio.run(twice())
    assert calls == ["a"]
    assert throttled.__name__ == "reading"


def test_build_info_is_one_with_the_version_and_commit() -> None:
    metrics.build_info("buildtest", "1.2.3", "")
    assert (
        _value(
            "regulars_build_info",
            {"service": "buildtest", "version": "1.2.3", "commit": "unknown"},
        )
        == 1
    )


class _Pool:
    """What TableReadings uses of an asyncpg pool: its sizes and a connection."""

    def __init__(self) -> None:
        self.acquired = 0

    def get_size(self) -> int:
        return 4

    def get_idle_size(self) -> int:
        return 1

    def get_max_size(self) -> int:
        return 8

    def acquire(self) -> Any:
        pool = self

        class _Acquired:
            async def __aenter__(self) -> object:
                pool.acquired += 1
                return object()

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Acquired()


def test_a_failing_reading_does_not_keep_the_others_from_being_read() -> None:
    import asyncpg

    read: list[str] = []

    async def broken(conn: Any, service: str, now: datetime) -> None:
        raise asyncpg.UndefinedTableError('relation "messages" does not exist')

    async def fine(conn: Any, service: str, now: datetime) -> None:
        read.append(service)

    readings = metrics.TableReadings(
        "readtest",
        _Pool(),
        lambda: NOW,
        readings=(broken, fine),  # type: ignore[arg-type]
    )
    asyncio.run(readings.refresh())
    assert read == ["readtest"]
    assert _value("regulars_db_pool_connections", {"service": "readtest", "state": "in_use"}) == 3


def test_readings_are_shared_by_scrapes_close_together_and_a_slow_one_is_cut_off() -> None:
    calls: list[int] = []

    async def slow(conn: Any, service: str, now: datetime) -> None:
        calls.append(1)
        await asyncio.sleep(10)

    pool = _Pool()
    readings = metrics.TableReadings(
        "slowtest",
        pool,
        lambda: NOW,
        readings=(slow,),
        timeout=0.05,  # type: ignore[arg-type]
    )

    async def scrapes() -> None:
        await asyncio.gather(readings.refresh(), readings.refresh(), readings.refresh())

    asyncio.run(scrapes())
    assert calls == [1] and pool.acquired == 1
