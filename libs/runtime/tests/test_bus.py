"""The message bus routes each message to its handler, in order, with one unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from regulars_events.catalogue import (
    CustomerUpserted,
    ServiceCompleted,
    ServiceVoided,
    ShopPolicyChanged,
)
from regulars_events.envelope import Envelope
from regulars_runtime.bus import Batch, MessageBus, Received
from regulars_runtime.timers import NewTimer, Timer
from regulars_runtime.unit_of_work import ShopPolicy, UnitOfWork, Waiting
from regulars_shop.policy import Policy

SHOP = uuid.uuid4()
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


class Shops:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.known: dict[uuid.UUID, ShopPolicy] = {}

    async def apply(self, envelope: Envelope) -> None:
        self.applied.append(envelope.type)

    async def policy(self, shop_id: uuid.UUID) -> ShopPolicy | None:
        return self.known.get(shop_id)


class Timers:
    def __init__(self) -> None:
        self.scheduled: list[NewTimer] = []

    async def schedule(self, timer: NewTimer, *, reschedule: bool = False) -> bool:
        self.scheduled.append(timer)
        return True

    async def schedule_many(self, new: Sequence[NewTimer]) -> int:
        self.scheduled.extend(new)
        return len(new)

    async def cancel(self, key: str, *, at: datetime | None = None) -> bool:
        return False


class FakeUnitOfWork(UnitOfWork):
    made: list[FakeUnitOfWork] = []

    def __init__(self, conn: Any, cause: Envelope | None) -> None:
        super().__init__(source="test", cause=cause)
        self.shops = SHOPS
        self.timers = Timers()
        self.written: list[Envelope] = []
        self.seen: list[tuple[str, Any]] = []
        FakeUnitOfWork.made.append(self)

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        self.written.extend(envelopes)


SHOPS = Shops()


@dataclass
class Deps:
    log: list[Any] = field(default_factory=list)


def envelope(event: Any) -> Envelope:
    return Envelope.wrap(event, source="intake", shop_id=str(SHOP), time=NOW)


def visit(ro: str) -> Envelope:
    return envelope(ServiceCompleted(repair_order_id=ro, customer_id="c1", completed_at=NOW))


async def on_visits(messages: Sequence[Received[Any]], uow: FakeUnitOfWork, deps: Deps) -> None:
    deps.log.append(("visits", [m.event.repair_order_id for m in messages]))
    for m in messages:
        uow.emit(
            CustomerUpserted(customer_id="c1", name="Lee", phone="+15555550100"),
            shop_id=SHOP,
            cause=m.envelope,
        )


async def on_void(message: Received[ServiceVoided], uow: FakeUnitOfWork, deps: Deps) -> None:
    deps.log.append(("void", message.event.repair_order_id, uow.cause is message.envelope))


async def on_policy(message: Received[Any], uow: FakeUnitOfWork, deps: Deps) -> None:
    deps.log.append(("policy", message.shop_id))


async def on_timer(timer: Timer, uow: FakeUnitOfWork, deps: Deps) -> None:
    deps.log.append(("timer", timer.key))


@dataclass(frozen=True)
class Rename:
    name: str


async def rename(command: Rename, uow: FakeUnitOfWork, deps: Deps) -> str:
    return command.name.upper()


def make_bus(deps: Deps) -> MessageBus[FakeUnitOfWork, Deps]:
    return MessageBus(
        unit_of_work=FakeUnitOfWork,
        deps=deps,
        events={ServiceVoided.type: on_void, ShopPolicyChanged.type: on_policy},
        batches={ServiceCompleted.type: Batch(on_visits, key=lambda m: m.event.repair_order_id)},
        timers={"reminder": on_timer},
        commands={Rename: rename},
    )


@pytest.fixture(autouse=True)
def fresh() -> None:
    FakeUnitOfWork.made.clear()
    SHOPS.applied.clear()


async def test_one_event_goes_to_its_handler_with_its_envelope_as_cause() -> None:
    deps = Deps()
    bus = make_bus(deps)
    void = envelope(ServiceVoided(repair_order_id="ro-1", customer_id="c1"))
    await bus.handle_event(void, conn=None)
    assert deps.log == [("void", "ro-1", True)]
    assert bus.handles(ServiceVoided.type) and not bus.handles(CustomerUpserted.type)


async def test_a_single_visit_takes_the_batch_path_as_a_run_of_one() -> None:
    deps = Deps()
    await make_bus(deps).handle_event(visit("ro-1"), conn=None)
    assert deps.log == [("visits", ["ro-1"])]
    (uow,) = FakeUnitOfWork.made
    assert [e.type for e in uow.written] == [CustomerUpserted.type]  # flushed to the outbox


async def test_runs_split_at_other_events_and_at_a_repeated_key() -> None:
    deps = Deps()
    void = envelope(ServiceVoided(repair_order_id="ro-2", customer_id="c1"))
    visits = [visit("ro-1"), visit("ro-2"), visit("ro-1"), visit("ro-3")]
    await make_bus(deps).handle_events([*visits[:3], void, visits[3]], conn=None)
    assert deps.log == [
        ("visits", ["ro-1", "ro-2"]),
        ("visits", ["ro-1"]),  # a repeat sees the first one applied
        ("void", "ro-2", True),
        ("visits", ["ro-3"]),
    ]
    (uow,) = FakeUnitOfWork.made  # one transaction for all of them
    # each effect names the event that caused it, in the order they were applied
    assert [e.causation_id for e in uow.written] == [str(v.id) for v in visits]


async def test_shop_facts_are_applied_before_their_handler_runs() -> None:
    deps = Deps()
    bus = make_bus(deps)
    policy = Policy.defaults().model_dump(mode="json")
    await bus.handle_event(envelope(ShopPolicyChanged(version=2, policy=policy)), conn=None)
    assert SHOPS.applied == [ShopPolicyChanged.type]
    assert deps.log == [("policy", SHOP)]


async def test_a_timer_goes_to_the_handler_of_its_kind() -> None:
    deps = Deps()
    timer = Timer(1, "reminder:1", "reminder", SHOP, NOW, {}, 0)
    await make_bus(deps).handle_timer(timer, conn=None)
    assert deps.log == [("timer", "reminder:1")]


async def test_a_missing_policy_makes_the_consumer_wait() -> None:
    uow = FakeUnitOfWork(None, None)
    with pytest.raises(Waiting, match="no policy yet"):
        await uow.policy(uuid.uuid4())
    assert (await uow.policy_or_defaults(uuid.uuid4())).version == 0


async def test_a_handler_of_every_event_reads_a_type_it_has_no_class_for() -> None:
    import dataclasses

    seen: list[str] = []

    async def remember(message: Received[Any], uow: FakeUnitOfWork, deps: Deps) -> None:
        seen.append(message.envelope.type)

    bus: MessageBus[FakeUnitOfWork, Deps] = MessageBus(
        unit_of_work=FakeUnitOfWork, deps=Deps(), every_event=remember
    )
    newer = dataclasses.replace(visit("ro-9"), type="regulars.service.rated.v9")
    await bus.handle_events([newer, visit("ro-10")], conn=None)
    assert seen == ["regulars.service.rated.v9", ServiceCompleted.type]
    with pytest.raises(KeyError):
        _ = Received.of(newer).event  # only a handler that asks for the event parses it


async def test_a_command_runs_in_the_transaction_the_bus_is_given() -> None:
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def in_memory() -> AsyncIterator[FakeUnitOfWork]:
        uow = FakeUnitOfWork(None, None)
        yield uow
        await uow.flush()

    bus: MessageBus[FakeUnitOfWork, Deps] = MessageBus(
        unit_of_work=FakeUnitOfWork, deps=Deps(), commands={Rename: rename}, transaction=in_memory
    )
    assert await bus.handle(Rename("lee")) == "LEE"
    assert len(FakeUnitOfWork.made) == 1
