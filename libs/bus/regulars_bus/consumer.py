"""Kafka -> handler, with an inbox for exactly-once effect.

Each record is applied in a PostgreSQL transaction that also records its event id in
the inbox, so a redelivered event is recognised and skipped. Records fetched together
from one partition share that transaction (one commit for a backlog of them, not one
each); if any of them fails, the transaction is rolled back and they are applied one per
transaction, so the failure stays with its record. Offsets are committed by hand after
the effect commits.

Partitions are independent: each fetched run of a partition is worked by a task of its
own while the partition is paused, and the loop goes on fetching for the others. A record
that fails is never waited on in place: its partition is held (paused, rewound to that
record, resumed after a backoff) and every other partition keeps flowing. Why it failed
decides how long it may be held (:func:`classify`):

- permanent (a bug, bad data, any other database error): ``RetryPolicy.attempts`` tries;
- transient (connection lost, serialization failure, deadlock, a database timeout): for
  ``RetryPolicy.transient_for`` while the database answers. When the database cannot be
  reached at all, the record is not at fault: it waits without spending that budget, so
  an outage of PostgreSQL dead-letters nothing;
- RetryLater (what it needs travels on another topic and has not been applied yet): for
  ``RetryPolicy.wait_for_prerequisite``.

Past its budget the record is dead-lettered: its key, value and headers are kept in the
service's ``dead_letters`` table (what a replay reads) and copied to the dead-letter topic,
and the partition moves on.

SIGTERM (stop) and a revoke of partitions give in-flight work ``drain`` seconds to finish,
then abandon it: the task is cancelled and its transaction rolled back (the backend
terminated if need be) before the consumer leaves or the revoke completes, so a record
abandoned uncommitted comes again, to its new owner, and is never applied twice at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError
from regulars_events.envelope import Envelope, EnvelopeError
from regulars_events.topics import dead_letter_topic

from .kafka import KafkaConfig, producer
from .kafka import consumer as kafka_consumer
from .supervise import keep_running

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, asyncpg.Connection], Awaitable[None]]
#: applies several new events, in order, in the caller's transaction (set-based if it can)
BatchHandler = Callable[[Sequence[Envelope], asyncpg.Connection], Awaitable[None]]

#: errors that say "the infrastructure is away or busy", not "this message is bad"
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection lost, refused
    asyncpg.exceptions.OperatorInterventionError,  # 57: statement_timeout, admin shutdown
    asyncpg.exceptions.TransactionRollbackError,  # 40: serialization failure, deadlock
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.exceptions.InvalidCachedStatementError,  # a migration changed a table under us
    asyncpg.exceptions.OutdatedSchemaCacheError,
)
#: asyncpg's client-side errors that are the caller's fault: permanent, though they are
#: InterfaceErrors like "the connection is closed" (transient)
_CLIENT_MISTAKES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions._base.DataError,  # an argument that cannot be encoded
    asyncpg.exceptions._base.ClientConfigurationError,
    asyncpg.exceptions._base.UnsupportedClientFeatureError,
    asyncpg.exceptions._base.UnsupportedServerFeatureError,
)


class Failure(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    PREREQUISITE = "prerequisite"


def classify(exc: BaseException) -> Failure:
    """What a handler's error says about the record; its causes count (an error raised
    ``from`` a lost connection is a lost connection)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RetryLater):
            return Failure.PREREQUISITE
        if isinstance(current, _CLIENT_MISTAKES):
            return Failure.PERMANENT
        if isinstance(current, (*TRANSIENT, asyncpg.InterfaceError)):
            return Failure.TRANSIENT
        current = current.__cause__
    return Failure.PERMANENT


#: records taken from the broker per round (a backlog goes in few, large transactions)
FETCHED_AT_ONCE = 2000
#: per partition and fetch: small enough that a round holds records of every partition
#: with a backlog (1 MB, the default, brought ~1,500 of one partition and a few of the
#: others, so one partition worked while the rest waited). A larger record batch still
#: comes whole, on Kafka and on the embedded broker alike.
PARTITION_FETCH_BYTES = 64 * 1024
#: records of one partition applied in one transaction at most
TOGETHER = 100
#: partitions applied concurrently (each holds one pooled connection while it works)
PARTITIONS_AT_ONCE = 4
#: SIGTERM or a revoke: how long in-flight work may take before it is abandoned
DRAIN_SECONDS = 10.0
#: an abandoned task's rollback: how long before its backend is terminated instead
_ROLLBACK_SECONDS = 3.0
#: how long the database check may take before the database counts as unreachable
_REACHABLE_SECONDS = 3.0


class RetryLater(Exception):
    """Raised by a handler that cannot apply the event yet (something it needs has not arrived)."""


@dataclass(frozen=True)
class RetryPolicy:
    #: tries of a record failing permanently before it is dead-lettered
    attempts: int = 4
    first_backoff: float = 0.2
    max_backoff: float = 5.0
    #: how long an event may wait for what it needs (RetryLater) before it is dead-lettered
    wait_for_prerequisite: float = 600.0
    #: how long a record may keep failing transiently, with the database answering,
    #: before it is dead-lettered (time the database was unreachable does not count)
    transient_for: float = 300.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.first_backoff * (4**attempt), self.max_backoff))

    def parked_backoff(self, attempt: int) -> float:
        return float(min(self.first_backoff * (2**attempt), self.max_backoff))


@dataclass(frozen=True)
class _Parked:
    """A partition held at a record that has not been applied yet, and why."""

    offset: int
    since: float
    attempts: int = 0  # tries so far, of every kind
    failures: int = 0  # permanent failures
    #: since when it fails transiently with the database answering (None: not now)
    transient_since: float | None = None
    resume_at: float = field(default=0.0)
    error: str = ""


def next_hold(
    held: _Parked | None,
    offset: int,
    failure: Failure,
    error: BaseException,
    now: float,
    policy: RetryPolicy,
    *,
    database_reachable: bool = True,
) -> _Parked | None:
    """How long the record at ``offset`` is held after this failure; None: its budget is
    spent and it is dead-lettered now."""
    if held is None or held.offset != offset:
        held = _Parked(offset, since=now)
    held = replace(held, attempts=held.attempts + 1, error=repr(error)[:500])
    if failure is Failure.PREREQUISITE:
        if now - held.since >= policy.wait_for_prerequisite:
            return None
        return replace(held, resume_at=now + policy.parked_backoff(held.attempts - 1))
    if failure is Failure.TRANSIENT:
        if not database_reachable:
            # PostgreSQL is away: nothing this record did; its budget starts over once
            # the database answers again
            return replace(held, transient_since=None, resume_at=now + policy.max_backoff)
        since = held.transient_since if held.transient_since is not None else now
        if now - since >= policy.transient_for:
            return None
        return replace(
            held,
            transient_since=since,
            resume_at=now + policy.backoff(min(held.attempts - 1, 8)),
        )
    failures = held.failures + 1
    if failures >= policy.attempts:
        return None
    return replace(
        held, failures=failures, transient_since=None, resume_at=now + policy.backoff(failures - 1)
    )


def headers_json(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """A record's headers as the dead_letters table keeps them (values are bytes)."""
    return orjson.dumps(
        [[k, base64.b64encode(v or b"").decode()] for k, v in headers or ()]
    ).decode()


def headers_from_json(stored: Any) -> list[tuple[str, bytes]]:
    items = orjson.loads(stored) if isinstance(stored, (str, bytes)) else stored
    return [(str(k), base64.b64decode(v)) for k, v in items or ()]


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: EventConsumer) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.runner.give_up(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runner.forget_all_but(set(assigned))


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        pool: asyncpg.Pool,
        kafka: KafkaConfig,
        topics: Sequence[str],
        handle: Handler,
        wants: Callable[[str], bool],
        retry: RetryPolicy = RetryPolicy(),
        on_result: Callable[[str, str], None] | None = None,
        on_dead_letter: Callable[[str], None] | None = None,
        handle_many: BatchHandler | None = None,
        together: int = TOGETHER,
        partition_fetch_bytes: int = PARTITION_FETCH_BYTES,
        drain: float = DRAIN_SECONDS,
    ) -> None:
        """``together`` and ``partition_fetch_bytes`` size the transactions: a service whose
        handler is set-based over a whole run (loyalty's projection) takes larger ones."""
        self.service = service
        self.together = together
        self.partition_fetch_bytes = partition_fetch_bytes
        self.pool = pool
        self.kafka = kafka
        self.topics = list(topics)
        self.handle = handle
        self.handle_many = handle_many
        self.wants = wants
        self.retry = retry
        self.on_result = on_result
        self.on_dead_letter = on_dead_letter
        self.drain = drain
        self.group_id = f"regulars-{service}"
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self.parked: dict[TopicPartition, _Parked] = {}
        #: per partition, the next offset to apply: what the lag is counted from (the
        #: position runs ahead of it while fetched records are still being applied)
        self.applied: dict[TopicPartition, int] = {}
        #: the partitions being worked, each by its task (the partition is paused meanwhile)
        self._busy: dict[TopicPartition, asyncio.Task[int | None]] = {}
        #: the backend pid of the transaction a partition's task has open
        self._backends: dict[TopicPartition, int] = {}
        #: partitions being revoked: their work ends at the next chunk
        self._revoking: set[TopicPartition] = set()
        self._at_once = asyncio.Semaphore(PARTITIONS_AT_ONCE)
        self._dead_letters: Any = None
        self._stopping = asyncio.Event()
        self.running = False

    async def run(self, stop: asyncio.Event) -> None:
        await keep_running("consumer", self._run, stop)

    async def _run(self, stop: asyncio.Event) -> None:
        consumer = kafka_consumer(
            self.kafka,
            self.group_id,
            client_id=f"{self.group_id}-consumer",
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.kafka.heartbeat_interval_ms,
            max_poll_records=FETCHED_AT_ONCE,
            max_partition_fetch_bytes=self.partition_fetch_bytes,
            metadata_max_age_ms=5000,
        )
        dead_letters = producer(self.kafka, f"{self.group_id}-dead-letters")
        await consumer.start()
        await dead_letters.start()
        self._consumer = consumer
        self._dead_letters = dead_letters
        self.applied = {}  # a new session starts from the committed offsets
        self._at_once = asyncio.Semaphore(PARTITIONS_AT_ONCE)
        self._stopping = stop
        self.running = True
        fetch: asyncio.Task[dict[TopicPartition, list[Any]]] | None = None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            consumer.subscribe(self.topics, listener=_CommitOnRevoke(self))
            while not stop.is_set():
                self._settle(consumer)
                self._resume_due(consumer)
                if fetch is None:
                    fetch = asyncio.ensure_future(
                        consumer.getmany(timeout_ms=200, max_records=FETCHED_AT_ONCE)
                    )
                # Whichever comes first: records, a partition's work done, or stop.
                await asyncio.wait(
                    [fetch, stopping, *self._busy.values()],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if fetch.done():
                    batches, fetch = fetch.result(), None
                    self._start(consumer, batches)
                await self.commit_processed()
        finally:
            self.running = False
            if fetch is not None:
                fetch.cancel()
                with contextlib.suppress(BaseException):
                    await fetch
            stopping.cancel()
            # Let the work in hand finish within the drain time; abandon what does not.
            with contextlib.suppress(Exception):
                await self._finish_or_abandon(set(self._busy))
            with contextlib.suppress(Exception):
                await self.commit_processed()
            self._consumer = None
            self._dead_letters = None
            self._busy.clear()
            self.parked.clear()
            await dead_letters.stop()
            await consumer.stop()

    def _start(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batches.items():
            if not records:
                continue
            if tp in self._busy:
                # not expected (a busy partition is paused): never lose them, fetch again
                _seek(consumer, tp, records[0].offset)
                continue
            _pause(consumer, tp)
            self._busy[tp] = asyncio.create_task(
                self._work(tp, records), name=f"{self.group_id}-{tp.topic}-{tp.partition}"
            )

    def _settle(self, consumer: AIOKafkaConsumer) -> None:
        """Take in the partitions whose work is done: resume them, or rewind a held one."""
        for tp, task in list(self._busy.items()):
            if not task.done():
                continue
            del self._busy[tp]
            if task.cancelled():
                continue
            held_at = task.result()
            if held_at is None:
                _resume(consumer, tp)
            else:
                _seek(consumer, tp, held_at)  # stays paused until its resume time

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        for tp, parked in list(self.parked.items()):
            if tp not in self._busy and parked.resume_at <= now:
                _resume(consumer, tp)

    async def give_up(self, revoked: set[TopicPartition]) -> None:
        """Partitions revoked: their work finishes or is abandoned (rolled back) before the
        revoke completes, what was applied is committed, and their holds are forgotten."""
        self._revoking |= revoked  # their tasks stop at the end of the chunk in hand
        try:
            await self._finish_or_abandon(revoked)
        finally:
            self._revoking -= revoked
        await self.commit_processed()
        for tp in revoked:
            self.parked.pop(tp, None)  # its new owner starts from the committed offset
            self._processed.pop(tp, None)
            self.applied.pop(tp, None)
            self._busy.pop(tp, None)

    def forget_all_but(self, assigned: set[TopicPartition]) -> None:
        for state in (self.parked, self._processed, self.applied):
            for tp in [tp for tp in state if tp not in assigned]:
                state.pop(tp, None)

    async def _finish_or_abandon(self, partitions: set[TopicPartition]) -> None:
        working = {tp: t for tp, t in self._busy.items() if tp in partitions and not t.done()}
        if not working:
            return
        _done, late = await asyncio.wait(working.values(), timeout=self.drain)
        if not late:
            return
        log.warning(
            "in-flight records abandoned uncommitted; they will come again",
            extra={
                "partitions": [
                    f"{tp.topic}/{tp.partition}" for tp, t in working.items() if t in late
                ]
            },
        )
        for task in late:
            task.cancel()
        _done, stuck = await asyncio.wait(late, timeout=_ROLLBACK_SECONDS)
        if stuck:
            # The rollback itself hangs (a lost connection): end the backend, so the
            # transaction is gone before anyone else applies these records.
            pids = [
                self._backends[tp]
                for tp, t in working.items()
                if t in stuck and tp in self._backends
            ]
            for pid in pids:
                with contextlib.suppress(Exception):
                    await self.pool.execute("SELECT pg_terminate_backend($1, 5000)", pid)
            await asyncio.wait(stuck, timeout=_ROLLBACK_SECONDS)

    async def watermarks(self) -> dict[tuple[str, int], tuple[int | None, int]]:
        """Per assigned partition: the high watermark the last fetch saw (None before
        one) and the next offset to apply (records fetched and still being applied count
        as not applied; a parked partition waits at its record). Their difference is the
        lag; not ``end_offsets``, which the embedded broker answers wrongly once a batch
        holds several records."""
        consumer = self._consumer
        if consumer is None:
            return {}
        marks: dict[tuple[str, int], tuple[int | None, int]] = {}
        for tp in consumer.assignment():
            # no position yet (a reset pending, or just revoked): none shown this time
            with contextlib.suppress(Exception):
                position: int | None = self.applied.get(tp)
                if position is None:
                    position = int(await asyncio.wait_for(consumer.position(tp), 1))
                marks[(tp.topic, tp.partition)] = (consumer.highwater(tp), position)
        return marks

    async def commit_processed(self) -> None:
        if self._consumer is None or not self._processed:
            return
        assigned = self._consumer.assignment()
        offsets = {tp: o for tp, o in self._processed.items() if tp in assigned}
        self._processed = {}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception:
            # Not fatal: the records will come again and the inbox will skip them.
            log.warning("offset commit failed", exc_info=True)

    async def _work(self, tp: TopicPartition, records: Sequence[Any]) -> int | None:
        """Apply a partition's run of records; the offset it is held at, or None: all done."""
        at = int(records[0].offset)  # the first record not done yet
        self.applied.setdefault(tp, at)
        async with self._at_once:
            try:
                for start in range(0, len(records), self.together):
                    if self._stopping.is_set() or tp in self._revoking:
                        return at  # the rest comes again (to this or the new owner)
                    chunk = records[start : start + self.together]
                    # a held partition takes its held record alone, with its retry budget
                    if tp not in self.parked and await self._apply_together(tp, chunk):
                        at = self._processed[tp] = self.applied[tp] = chunk[-1].offset + 1
                        continue
                    for record in chunk:
                        if not await self._apply(tp, record):
                            return at
                        at = self._processed[tp] = self.applied[tp] = record.offset + 1
                return None
            except Exception as exc:
                # A fault of ours, not of a handler: hold the partition where it is.
                log.exception("partition work failed; held", extra={"offset": at})
                now = time.monotonic()
                self.parked[tp] = _Parked(
                    at, since=now, resume_at=now + self.retry.max_backoff, error=repr(exc)[:500]
                )
                return at

    async def _apply_together(self, tp: TopicPartition, records: Sequence[Any]) -> bool:
        """All of the records in one transaction; False (nothing applied) if any fails."""
        wanted = []
        for record in records:
            try:
                envelope = Envelope.from_kafka(record.headers, record.value)
            except EnvelopeError:
                return False  # for the dead-letter path of _apply
            if self.wants(envelope.type):
                wanted.append(envelope)
        if len(wanted) < 2:
            return not wanted  # a lone record takes the usual path, retries and all
        try:
            async with self.pool.acquire() as conn, _open_on(self._backends, tp, conn):
                fresh = {
                    r["event_id"]
                    for r in await conn.fetch(
                        "INSERT INTO inbox (event_id, type)"
                        " SELECT * FROM unnest($1::uuid[], $2::text[])"
                        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                        [e.id for e in wanted],
                        [e.type for e in wanted],
                    )
                }
                results, new = [], []
                for envelope in wanted:
                    # discard: an event delivered twice in this very chunk is applied once
                    if envelope.id in fresh:
                        fresh.discard(envelope.id)
                        new.append(envelope)
                        results.append((envelope.type, "applied"))
                    else:
                        results.append((envelope.type, "duplicate"))
                if self.handle_many is not None:
                    await self.handle_many(new, conn)
                else:
                    for envelope in new:
                        await self.handle(envelope, conn)
        except Exception as exc:
            log.debug("records applied together failed; one by one", extra={"error": repr(exc)})
            return False
        if self.on_result:
            for result in results:
                self.on_result(*result)
        return True

    async def _apply(self, tp: TopicPartition, record: Any) -> bool:
        """Done with the record (applied, skipped or dead-lettered); False: held."""
        try:
            envelope = Envelope.from_kafka(record.headers, record.value)
        except EnvelopeError as exc:
            return await self._give_up_on(tp, record, None, exc, attempts=1)
        if not self.wants(envelope.type):
            return True
        try:
            result = await self._apply_once(tp, envelope)
        except Exception as exc:
            failure = classify(exc)
            reachable = failure is not Failure.TRANSIENT or await self._database_reachable()
            now = time.monotonic()
            held = next_hold(
                self.parked.get(tp),
                record.offset,
                failure,
                exc,
                now,
                self.retry,
                database_reachable=reachable,
            )
            if held is not None:
                self.parked[tp] = held
                log.info(
                    "record not applied; its partition is held"
                    if reachable
                    else "database unreachable; the record waits for it",
                    extra={
                        "event_id": str(envelope.id),
                        "type": envelope.type,
                        "failure": failure.value,
                        "error": repr(exc)[:500],
                        "partition": f"{tp.topic}/{tp.partition}",
                        "offset": record.offset,
                        "attempt": held.attempts,
                        "retry_in": round(held.resume_at - now, 3),
                    },
                )
                return False
            attempts = (self.parked[tp].attempts + 1) if tp in self.parked else 1
            return await self._give_up_on(tp, record, envelope, exc, attempts=attempts)
        if self.on_result:
            self.on_result(envelope.type, result)
        self.parked.pop(tp, None)
        return True

    async def _give_up_on(
        self,
        tp: TopicPartition,
        record: Any,
        envelope: Envelope | None,
        exc: BaseException,
        attempts: int,
    ) -> bool:
        """Dead-letter the record; False (held, to try again) if that fails too."""
        try:
            await self._dead_letter(record, exc, attempts=attempts)
        except Exception as failed:
            log.warning(
                "could not dead-letter the record; its partition is held",
                extra={"offset": record.offset, "error": repr(failed)[:500]},
            )
            now = time.monotonic()
            held = self.parked.get(tp)
            base = held if held is not None and held.offset == record.offset else None
            self.parked[tp] = replace(
                base or _Parked(record.offset, since=now),
                resume_at=now + self.retry.max_backoff,
                error=repr(failed)[:500],
            )
            return False
        self.parked.pop(tp, None)
        if self.on_result and envelope is not None:
            self.on_result(envelope.type, "dead_letter")
        return True

    async def _database_reachable(self) -> bool:
        try:
            async with asyncio.timeout(_REACHABLE_SECONDS):
                return bool(await self.pool.fetchval("SELECT true"))
        except Exception:
            return False

    async def _apply_once(self, tp: TopicPartition, envelope: Envelope) -> str:
        async with self.pool.acquire() as conn, _open_on(self._backends, tp, conn):
            fresh = await conn.fetchval(
                "INSERT INTO inbox (event_id, type) VALUES ($1, $2)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING true",
                envelope.id,
                envelope.type,
            )
            if not fresh:
                return "duplicate"
            await self.handle(envelope, conn)
        return "applied"

    async def _dead_letter(self, record: Any, exc: BaseException, attempts: int) -> None:
        """Keep the record in PostgreSQL (what replay reads), then copy it to the
        dead-letter topic for tools. The row must be in before the offset moves past it."""
        headers = list(record.headers or ())
        meta = dict(headers)
        event_id = meta.get("ce_id", b"").decode(errors="replace") or None
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO dead_letters (event_id, type, topic, part, kafka_offset, error,"
                " record_key, record_value, record_headers, attempts, consumer)"
                " VALUES (CASE WHEN $1::text ~* '^[0-9a-f-]{36}$' THEN $1::text::uuid END,"
                " $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11)"
                " ON CONFLICT (event_id) WHERE replayed_at IS NULL DO NOTHING",
                event_id,
                meta.get("ce_type", b"").decode(errors="replace") or None,
                record.topic,
                record.partition,
                record.offset,
                repr(exc)[:2000],
                record.key,
                record.value,
                headers_json(headers),
                attempts,
                self.group_id,
            )
        topic = dead_letter_topic(self.service)
        log.error(
            "event dead-lettered",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "event_id": event_id,
                "error": repr(exc)[:500],
                "attempts": attempts,
            },
        )
        copy_headers = [
            *headers,
            ("dlq_error", repr(exc)[:2000].encode()),
            ("dlq_trace", "".join(traceback.format_exception(exc))[-4000:].encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_consumer", self.group_id.encode()),
        ]
        try:
            async with asyncio.timeout(10):
                await self._dead_letters.send_and_wait(
                    topic, value=record.value, key=record.key, headers=copy_headers
                )
        except Exception:
            # the row in PostgreSQL is the dead letter; the topic's copy is for tools
            log.warning("dead letter not copied to its topic", extra={"topic": topic})
        if self.on_dead_letter:
            self.on_dead_letter(record.topic)


@contextlib.asynccontextmanager
async def _open_on(
    backends: dict[TopicPartition, int], tp: TopicPartition, conn: asyncpg.Connection
) -> AsyncIterator[None]:
    """A transaction, its backend noted for the partition while it is open (what an
    abandon terminates if the rollback hangs); the note goes with the transaction."""
    backends[tp] = conn.get_server_pid()
    try:
        async with conn.transaction():
            yield
    finally:
        backends.pop(tp, None)


def _assigned(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    return tp in consumer.assignment()


def _pause(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    # A partition revoked meanwhile is no longer ours to pause, seek or resume: its new
    # owner starts from the committed offset. aiokafka raises IllegalStateError for it.
    if _assigned(consumer, tp):
        with contextlib.suppress(IllegalStateError):
            consumer.pause(tp)


def _seek(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    if _assigned(consumer, tp):
        with contextlib.suppress(IllegalStateError):
            consumer.seek(tp, offset)


def _resume(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    if _assigned(consumer, tp) and tp in consumer.paused():
        with contextlib.suppress(IllegalStateError):
            consumer.resume(tp)
