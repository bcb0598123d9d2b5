"""The relay sends each partition's rows of a round as one batch: a partition whose batch
fails has none of its rows marked and none of its later rows sent, the other partitions'
rows are marked, and a row the broker refuses for good is parked alone."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from regulars_bus.relay import partition_for, send_rows

TOPIC = "regulars.test"
PARTITIONS = [0, 1, 2, 3]


class FakeBatch:
    """Like aiokafka's BatchBuilder: full at ``cap`` bytes, though a first record always fits."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: Any, headers: Any) -> Any:
        size = len(key) + len(value)
        if self.records and self.size + size > self.cap:
            return None
        self.records.append((key, value))
        self.size += size
        return object()


class FakeProducer:
    def __init__(self, *, cap: int = 10_000) -> None:
        self.cap = cap
        #: partition -> what its batches' futures end with (an error, or None: acknowledged)
        self.outcome: dict[int, BaseException | None] = {}
        #: value -> error, for a record the broker refuses whatever batch it is in
        self.refuses: dict[bytes, BaseException] = {}
        self.sent: list[tuple[int, list[bytes]]] = []  # (partition, values) per produce

    async def partitions_for(self, topic: str) -> set[int]:
        return set(PARTITIONS)

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.cap)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        values = [v for _, v in batch.records]
        self.sent.append((partition, values))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        refused = next((self.refuses[v] for v in values if v in self.refuses), None)
        error = refused or self.outcome.get(partition)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(None)
        return future


def key_on(partition: int, n: int = 0) -> bytes:
    """The ``n``-th customer key the default partitioner puts on ``partition``."""
    found = [
        k
        for i in range(400)
        if partition_for(k := f"shop:1:customer:{i}".encode(), PARTITIONS) == partition
    ]
    return found[n]


def row(row_id: int, key: bytes, value: bytes | None = None) -> dict[str, Any]:
    return {
        "id": row_id,
        "topic": TOPIC,
        "key": key,
        "headers": [["ce_id", f"id-{row_id}"]],
        "value": value if value is not None else f"event {row_id}".encode(),
    }


def test_the_partition_is_the_default_partitioners() -> None:
    for i in range(200):
        key = f"shop:{i}:customer:{i * 7}".encode()
        assert partition_for(key, PARTITIONS) == DefaultPartitioner()(key, PARTITIONS, PARTITIONS)


async def test_a_failed_partition_keeps_its_rows_and_the_others_are_marked() -> None:
    a, b = key_on(0), key_on(1)
    rows = [row(1, a), row(2, b), row(3, a), row(4, b), row(5, a)]
    prod = FakeProducer()
    prod.outcome[0] = KafkaTimeoutError()  # partition 0's leader is away

    done = await send_rows(prod, rows, set())

    assert sorted(done.sent) == [2, 4]  # partition 1's rows, acknowledged
    assert done.failed and not done.refused
    # one produce per partition: partition 0's rows went (and failed) together
    assert sorted(p for p, _ in prod.sent) == [0, 1]
    assert dict(prod.sent)[0] == [b"event 1", b"event 3", b"event 5"]


async def test_rows_past_a_partitions_byte_cap_wait_with_the_rows_after_them() -> None:
    a, b = key_on(2), key_on(3)
    big = b"x" * 400
    rows = [row(1, a, big), row(2, b), row(3, a, big), row(4, a, b"small"), row(5, b)]
    prod = FakeProducer(cap=600)

    done = await send_rows(prod, rows, set())

    # row 3 does not fit partition 2's batch: neither it nor row 4 (after it) goes now
    assert sorted(done.sent) == [1, 2, 5]
    assert done.capped
    assert dict(prod.sent)[2] == [big]


async def test_a_row_the_broker_refuses_alone_is_parked_and_the_rest_go_on() -> None:
    a, b = key_on(0), key_on(1)
    huge = b"y" * 5000
    prod = FakeProducer()
    prod.refuses[huge] = MessageSizeTooLargeError()

    done = await send_rows(prod, [row(1, a, huge), row(2, b)], set())

    assert done.refused.keys() == {1}
    assert "MessageSizeTooLarge" in done.refused[1]
    assert done.sent == [2]


async def test_a_refused_batch_is_sent_one_row_at_a_time_to_find_the_culprit() -> None:
    a = key_on(0)
    bad = b"z" * 3000
    rows = [row(1, a), row(2, a, bad), row(3, a), row(4, key_on(1))]
    prod = FakeProducer()
    prod.refuses[bad] = MessageSizeTooLargeError()
    solo: set[TopicPartition] = set()

    done = await send_rows(prod, rows, solo)

    # partition 0's batch was refused whole; then its rows went one at a time, in order
    assert sorted(done.sent) == [1, 3, 4]
    assert done.refused.keys() == {2}
    assert not solo
    zero = [values for p, values in prod.sent if p == 0]
    assert zero == [[b"event 1", bad, b"event 3"], [b"event 1"], [bad], [b"event 3"]]


async def test_a_failure_in_one_by_one_sending_stops_that_partition_for_the_round() -> None:
    a = key_on(0)
    prod = FakeProducer()
    solo = {TopicPartition(TOPIC, 0)}
    prod.outcome[0] = KafkaTimeoutError()

    done = await send_rows(prod, [row(1, a), row(2, a)], solo)

    assert done.sent == [] and done.failed and not done.refused
    assert len(prod.sent) == 1  # row 2 was not sent after row 1 failed
