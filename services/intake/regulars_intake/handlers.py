"""intake's commands: open a shop, change its policy, issue a key, accept posted events.

Every write of intake's state happens here, through an :class:`IntakeUnitOfWork`: load
the aggregate, let it decide, save it, emit what it returned. The repositories are the
Protocols below; ``adapters/`` implements them on PostgreSQL, a test in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypedDict

from regulars_events.catalogue import ConsentChanged, CustomerUpserted
from regulars_runtime.auth import issue_key
from regulars_runtime.bus import Command
from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork
from regulars_shop.policy import Policy

from .domain.acceptance import (
    NOTHING_KNOWN,
    RECORDED,
    Accepted,
    Answered,
    Arrival,
    Claimed,
    ClaimFirst,
    ConsentChange,
    CustomerDetails,
    Decision,
    Known,
    NewVisit,
    OrderStatus,
    Outcome,
    Receipt,
    ReceiptKey,
    claimed,
    decide,
    runs,
)
from .domain.connectors.setup import Connector, ConnectorSetup, Tally
from .domain.postings import Posting
from .domain.repair_orders import RepairOrder
from .domain.shop import Shop
from .domain.webhooks import DEFAULT_RETRY_SCHEDULE

SCHEMA = "intake"

__all__ = [
    "AcceptPostings",
    "ChangePolicy",
    "CreateShop",
    "Deps",
    "IntakeUnitOfWork",
    "IssueApiKey",
    "ListShops",
    "NewShop",
    "Outcome",
    "accept",
    "accept_many",
    "accept_postings",
    "change_policy",
    "issue_api_key",
    "list_shops",
    "open_shop",
]


# -- the ports: one repository per aggregate, and the unit of work holding them -------


class ShopSummary(TypedDict):
    id: uuid.UUID
    name: str
    created_at: datetime
    timezone: str


class ShopRegistry(Protocol):
    async def get(self, shop_id: uuid.UUID) -> Shop | None:
        """The shop with its latest policy version, held until commit: changes to one
        shop go one at a time, so two never take the same version."""
        ...

    async def save(self, shop: Shop) -> None:
        """Store a new shop, and the policy versions and keys added to it."""
        ...

    async def summaries(self) -> list[ShopSummary]:
        """Every shop, oldest first."""
        ...


class Receipts(Protocol):
    """The idempotency records of postings, by (shop, the shop's id)."""

    async def claim(self, claims: Sequence[ClaimFirst]) -> set[ReceiptKey]:
        """Record each claim's receipt unless its id is taken or its required customer
        is not in the directory; the keys recorded now. One statement for all."""
        ...

    async def stored(self, keys: Sequence[ReceiptKey]) -> dict[ReceiptKey, Receipt]:
        """The receipts holding these ids (seeing what committed since a claim waited)."""
        ...


class RepairOrders(Protocol):
    async def get(
        self, keys: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], RepairOrder]: ...

    async def add_completed(self, orders: Sequence[RepairOrder]) -> None:
        """Store new visits; one already known takes :meth:`RepairOrder.completed_again`.
        Each (shop, order) once at most."""
        ...

    async def save(self, order: RepairOrder) -> None:
        """Store the order's status."""
        ...


class CustomerDirectory(Protocol):
    async def known(self, customers: Sequence[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
        """Which of these (shop, customer id) are in the directory."""
        ...

    async def save_details(self, shop_id: uuid.UUID, customer: CustomerUpserted) -> None:
        """Add or replace the customer's details; consent given here is merged in."""
        ...

    async def change_consent(self, shop_id: uuid.UUID, change: ConsentChanged) -> None: ...


class Connectors(Protocol):
    async def for_system(self, shop_id: uuid.UUID, system: str) -> Connector | None: ...

    async def save(
        self, connector: Connector, sealed_secret: bytes, sealed_token: bytes | None
    ) -> None:
        """Store the connector, replacing the secret and choices of the shop's one for
        the same system (its id, counts and hook URL stay)."""
        ...

    async def tally(self, connector_id: uuid.UUID, tally: Tally) -> None:
        """Add one delivery to the connector's counts and set its last delivery time."""
        ...


class Sealer(Protocol):
    """Encrypts the secrets a connector is given (the key is the operator's)."""

    def seal(self, secret: str) -> bytes: ...


class IntakeUnitOfWork(UnitOfWork):
    registry: ShopRegistry
    receipts: Receipts
    repair_orders: RepairOrders
    customers: CustomerDirectory
    connectors: Connectors


@dataclass(frozen=True)
class Deps:
    """What intake's handlers need besides the unit of work."""

    clock: Clock
    #: waits between tries of a webhook delivery (REGULARS_WEBHOOK_RETRY_SCHEDULE)
    webhook_retry_schedule: tuple[timedelta, ...] = DEFAULT_RETRY_SCHEDULE
    sealer: Sealer | None = None


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateShop(Command["NewShop"]):
    name: str
    timezone: str


@dataclass(frozen=True)
class ListShops(Command[list[ShopSummary]]):
    """Every shop (an operator's question, from the CLI)."""


@dataclass(frozen=True)
class ChangePolicy(Command[int]):
    shop_id: uuid.UUID
    policy: Policy
    #: the staff member changing it at the console; None for the shop's system
    changed_by: str | None = None


@dataclass(frozen=True)
class IssueApiKey(Command[str]):
    shop_id: uuid.UUID


@dataclass(frozen=True)
class AcceptPostings(Command[list[Outcome]]):
    """Postings, each for its shop, answered in order as if posted one by one."""

    postings: Sequence[tuple[uuid.UUID, Posting]]


@dataclass(frozen=True)
class ConfigureConnector(Command[Connector]):
    shop_id: uuid.UUID
    system: str
    setup: ConnectorSetup


@dataclass(frozen=True)
class AcceptDelivery(Command[list[Outcome]]):
    """One webhook delivery of a connector: its postings accepted as if the shop had
    posted them, and the delivery counted."""

    connector_id: uuid.UUID
    shop_id: uuid.UUID
    postings: Sequence[Posting]
    #: postings the connector made that did not pass intake's checks
    rejected: int = 0


@dataclass(frozen=True)
class CountFailedDelivery(Command[None]):
    """A signed delivery the connector could not read or complete."""

    connector_id: uuid.UUID


@dataclass(frozen=True)
class NewShop:
    shop_id: uuid.UUID
    api_key: str


# -- shops ------------------------------------------------------------------------------


async def open_shop(command: CreateShop, uow: IntakeUnitOfWork, deps: Deps) -> NewShop:
    """A new shop on the default policy, with its first API key (shown only here)."""
    shop, policy_changed = Shop.open(uuid.uuid4(), command.name, command.timezone)
    key = issue_key()
    key_issued = shop.issue_key(key.key_id, key.secret_sha256)
    await uow.registry.save(shop)
    uow.emit(policy_changed, shop_id=shop.id)
    uow.emit(key_issued, shop_id=shop.id)
    return NewShop(shop.id, key.api_key)


async def list_shops(command: ListShops, uow: IntakeUnitOfWork, deps: Deps) -> list[ShopSummary]:
    """Every shop, oldest first (for the CLI)."""
    return await uow.registry.summaries()


async def issue_api_key(command: IssueApiKey, uow: IntakeUnitOfWork, deps: Deps) -> str:
    shop = await _shop(uow, command.shop_id)
    key = issue_key()
    issued = shop.issue_key(key.key_id, key.secret_sha256)
    await uow.registry.save(shop)
    uow.emit(issued, shop_id=shop.id)
    return key.api_key


async def change_policy(command: ChangePolicy, uow: IntakeUnitOfWork, deps: Deps) -> int:
    """The shop's policy replaced; the new version's number."""
    shop = await _shop(uow, command.shop_id)
    changed = shop.change_policy(command.policy, command.changed_by)
    await uow.registry.save(shop)
    uow.emit(changed, shop_id=shop.id)
    return changed.version


async def _shop(uow: IntakeUnitOfWork, shop_id: uuid.UUID) -> Shop:
    shop = await uow.registry.get(shop_id)
    if shop is None:
        raise LookupError(f"no shop {shop_id}")
    return shop


# -- connectors -------------------------------------------------------------------------


async def configure_connector(
    command: ConfigureConnector, uow: IntakeUnitOfWork, deps: Deps
) -> Connector:
    """The shop's connector for the system, new or with its secret and choices replaced."""
    await _shop(uow, command.shop_id)
    if deps.sealer is None:
        raise RuntimeError("connectors need a key to encrypt their secrets with")
    known = await uow.connectors.for_system(command.shop_id, command.system)
    connector = Connector(
        known.id if known is not None else uuid.uuid4(),
        command.shop_id,
        command.system,
        command.setup.choices(),
    )
    token = command.setup.access_token
    await uow.connectors.save(
        connector,
        deps.sealer.seal(command.setup.secret),
        deps.sealer.seal(token) if token is not None else None,
    )
    return connector


async def accept_delivery(
    command: AcceptDelivery, uow: IntakeUnitOfWork, deps: Deps
) -> list[Outcome]:
    outcomes = await accept_many(uow, [(command.shop_id, p) for p in command.postings])
    # A re-sent completion whose details changed since (a flood of order updates) is the
    # same visit already taken: counted with the accepted, not as a rejection.
    refused = sum(
        1
        for o in outcomes
        if o.status == "rejected" and (o.rejection is None or o.rejection.status != 409)
    )
    await uow.connectors.tally(
        command.connector_id,
        Tally(accepted=len(outcomes) - refused, rejected=command.rejected + refused),
    )
    return outcomes


async def count_failed_delivery(
    command: CountFailedDelivery, uow: IntakeUnitOfWork, deps: Deps
) -> None:
    await uow.connectors.tally(command.connector_id, Tally(errors=1))


# -- postings ---------------------------------------------------------------------------


async def accept_postings(
    command: AcceptPostings, uow: IntakeUnitOfWork, deps: Deps
) -> list[Outcome]:
    return await accept_many(uow, command.postings)


async def accept(uow: IntakeUnitOfWork, shop_id: uuid.UUID, posting: Posting) -> Outcome:
    """One posting: a run of one, decided as in any batch."""
    (outcome,) = await accept_many(uow, [(shop_id, posting)])
    return outcome


async def accept_many(
    uow: IntakeUnitOfWork, postings: Sequence[tuple[uuid.UUID, Posting]]
) -> list[Outcome]:
    """Many postings in one transaction, each answered as if posted one by one in order.

    Runs of postings that cannot affect one another (visits and other customer events,
    each with its own id) are claimed and stored with one statement per table; the hot
    path of single posts shares these runs through the group commit.
    """
    outcomes: list[Outcome] = []
    for run in runs([Arrival.of(shop_id, posting) for shop_id, posting in postings]):
        outcomes += await _accept_run(uow, run)
    return outcomes


async def _accept_run(uow: IntakeUnitOfWork, run: list[Arrival]) -> list[Outcome]:
    order_keys, customers = _to_look_up(run)
    if order_keys or customers:
        known = await _look_up(uow, run, order_keys, customers)
    else:
        known = [NOTHING_KNOWN] * len(run)  # the hot path: visits with ids
    decisions: list[Decision] = [decide(a, k) for a, k in zip(run, known, strict=True)]
    claims = [d for d in decisions if isinstance(d, ClaimFirst)]
    if claims:
        recorded = await uow.receipts.claim(claims)
        taken = [c.receipt.key for c in claims if c.receipt.key not in recorded]
        # Rare (a repeat, a conflict, an unknown customer): one more statement says which.
        stored = await uow.receipts.stored(taken) if taken else {}
        for i, decision in enumerate(decisions):
            if isinstance(decision, ClaimFirst):
                key = decision.receipt.key
                claim = RECORDED if key in recorded else Claimed(False, stored.get(key))
                decisions[i] = decide(run[i], claimed(known[i], claim))
    return await _store(uow, run, decisions)


def _to_look_up(
    run: list[Arrival],
) -> tuple[list[tuple[uuid.UUID, str]], list[tuple[uuid.UUID, str]]]:
    """What the run's answers turn on before any claim: the repair orders its voids and
    reopens name, and the customers of its postings without an id (a posting with one
    has its customer checked by its claim)."""
    order_keys = []
    customers = []
    for a in run:
        if a.order_key is not None:
            order_keys.append(a.order_key)
        elif a.client_id is None and a.required_customer is not None:
            customers.append((a.shop_id, a.required_customer))
    return order_keys, customers


async def _look_up(
    uow: IntakeUnitOfWork,
    run: list[Arrival],
    order_keys: list[tuple[uuid.UUID, str]],
    customers: list[tuple[uuid.UUID, str]],
) -> list[Known]:
    orders = await uow.repair_orders.get(order_keys) if order_keys else {}
    in_directory = await uow.customers.known(customers) if customers else set()
    return [
        Known(
            order=None if a.order_key is None else orders.get(a.order_key),
            customer_known=(
                None
                if a.client_id is not None or a.required_customer is None
                else (a.shop_id, a.required_customer) in in_directory
            ),
        )
        for a in run
    ]


async def _store(
    uow: IntakeUnitOfWork, run: list[Arrival], decisions: list[Decision]
) -> list[Outcome]:
    outcomes = []
    visits = []
    for arrival, decision in zip(run, decisions, strict=True):
        if isinstance(decision, Answered):
            outcomes.append(decision.outcome)
            continue
        assert isinstance(decision, Accepted), decision
        change = decision.change
        if isinstance(change, NewVisit):
            visits.append(change.order)
        elif isinstance(change, OrderStatus):
            await uow.repair_orders.save(change.order)
        elif isinstance(change, CustomerDetails):
            await uow.customers.save_details(arrival.shop_id, change.customer)
        elif isinstance(change, ConsentChange):
            await uow.customers.change_consent(arrival.shop_id, change.change)
        event_id = decision.outcome.event_id
        uow.emit(decision.event, shop_id=arrival.shop_id, id=event_id, time=decision.time)
        outcomes.append(decision.outcome)
    if visits:
        await uow.repair_orders.add_completed(visits)
    return outcomes
