"""The dispatcher's loop over followup's handlers, state in memory: what a database fault
while dispatching does (it is retried or left to the lease, never the customer's
message failing), and what a sender's own bug does (that message's error)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from regulars_events.catalogue import MessageFailed
from regulars_followup.domain.messages import MessageStatus
from regulars_followup.entrypoints.dispatcher import MessageDispatcher
from regulars_followup.handlers import COMMANDS, Deps, FollowUpUnitOfWork
from regulars_followup.handlers.outreach import ClaimDueMessages, RecordDelivery, RenewLease
from regulars_runtime.bus import Command, MessageBus

from services.followup.tests.fakes import FakeClock, World
from services.followup.tests.test_handlers import MONDAY_2PM, made_due, only_message


class FlakyBus(MessageBus[FollowUpUnitOfWork, Deps]):
    """The bus over the world's unit of work, whose commands fail first as told."""

    def __init__(self, world: World) -> None:
        @contextlib.asynccontextmanager
        async def transaction() -> AsyncIterator[FollowUpUnitOfWork]:
            yield world.uow

        super().__init__(
            unit_of_work=lambda conn, cause: world.uow,
            deps=world.deps,
            commands=COMMANDS,
            transaction=transaction,
        )
        self.failures: dict[type, list[BaseException]] = {}

    async def handle(self, command: Command[Any]) -> Any:
        queue = self.failures.get(type(command))
        if queue:
            raise queue.pop(0)
        return await super().handle(command)


class Texts:
    def __init__(self, fails_with: Exception | None = None) -> None:
        self.sent: list[str] = []
        self.fails_with = fails_with

    async def send(self, *, to: str, body: str, status_callback: str | None = None) -> str:
        if self.fails_with is not None:
            raise self.fails_with
        self.sent.append(to)
        return f"SM{len(self.sent)}"

    async def sent_since(self, *, to: str, body_sha256: str, since: datetime) -> list[str]:
        return []


class NoWakeups:
    def listening(self, wake: Callable[[], None]) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


@pytest.fixture
def world() -> World:
    return World(FakeClock(MONDAY_2PM))


def dispatcher(bus: FlakyBus, texts: Texts) -> MessageDispatcher:
    return MessageDispatcher(
        bus=bus,
        wakeups=NoWakeups(),
        email=None,
        sms=texts,
        public_url="https://regulars.example",
        owner="replica-a",
        lease_seconds=6,
        renew_every=0.5,
        send_deadline=2,
        retry_pause=0,
    )


async def test_recording_the_outcome_is_retried_while_the_database_is_away(world: World) -> None:
    await made_due(world)
    bus, texts = FlakyBus(world), Texts()
    bus.failures[RecordDelivery] = [
        ConnectionResetError("connection lost"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
    ]
    assert await dispatcher(bus, texts).dispatch_once() == 1
    sent = only_message(world)
    assert (sent.status, sent.provider_id, len(texts.sent)) == (MessageStatus.SENT, "SM1", 1)
    assert world.uow.emitted(MessageFailed) == []


async def test_a_database_fault_before_sending_leaves_the_message_to_its_lease(
    world: World,
) -> None:
    await made_due(world)
    bus, texts = FlakyBus(world), Texts()
    bus.failures[RenewLease] = [asyncpg.exceptions.ConnectionDoesNotExistError("gone")]
    assert await dispatcher(bus, texts).dispatch_once() == 1
    left = only_message(world)
    assert (left.status, left.reason, texts.sent) == (MessageStatus.SENDING, None, [])
    assert left.lease_owner == "replica-a"  # recovered once its lease expires
    assert world.uow.emitted(MessageFailed) == []


async def test_a_claim_the_database_fails_is_tried_again_and_changes_nothing(
    world: World,
) -> None:
    await made_due(world)
    bus, texts = FlakyBus(world), Texts()
    bus.failures[ClaimDueMessages] = [asyncpg.exceptions.DeadlockDetectedError("deadlock")]
    sending = dispatcher(bus, texts)
    with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
        await sending.dispatch_once()  # the loop's supervisor starts it again
    assert only_message(world).status is MessageStatus.DUE
    assert await sending.dispatch_once() == 1
    assert only_message(world).status is MessageStatus.SENT


async def test_a_bug_in_a_sender_is_that_messages_own_error(world: World) -> None:
    await made_due(world)
    bus, texts = FlakyBus(world), Texts(fails_with=KeyError("Body"))
    assert await dispatcher(bus, texts).dispatch_once() == 1
    failed = only_message(world)
    assert failed.status is MessageStatus.FAILED and "KeyError" in (failed.reason or "")
    assert len(world.uow.emitted(MessageFailed)) == 1


def test_a_send_may_not_outlast_the_lease() -> None:
    world = World(FakeClock(MONDAY_2PM))
    with pytest.raises(ValueError, match="lease"):
        MessageDispatcher(
            bus=FlakyBus(world),
            wakeups=NoWakeups(),
            email=None,
            sms=Texts(),
            public_url="",
            lease_seconds=10,
            renew_every=2,
            send_deadline=9,
        )
