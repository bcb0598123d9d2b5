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
from typing import Any, Protocol, TypedDict

from regulars_events.catalogue import ConsentChanged, CustomerUpserted, InvoiceIssued
from regulars_runtime.auth import issue_key
from regulars_runtime.bus import Command
from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork
from regulars_shop.contact import DEFAULT_COUNTRY
from regulars_shop.policy import Policy

from .domain.acceptance import (
    NOTHING_KNOWN,
    RECORDED,
    RECORDED_CUSTOMER_UNKNOWN,
    Accepted,
    Answered,
    Arrival,
    Claimed,
    ClaimFirst,
    ConsentChange,
    CustomerDetails,
    Decision,
    Hold,
    InvoiceRecord,
    Known,
    Needs,
    NewVisit,
    OrderStatus,
    Outcome,
    Receipt,
    ReceiptKey,
    claimed,
    decide,
    provides,
    runs,
)
from .domain.connectors.setup import Connector, ConnectorSetup, Tally
from .domain.contact import usable_contact
from .domain.postings import Posting, Rejected
from .domain.repair_orders import RepairOrder
from .domain.shop import Shop, UnknownKey, coarse_use
from .domain.webhooks import DEFAULT_RETRY_SCHEDULE

SCHEMA = "intake"

__all__ = [
    "AcceptPostings",
    "ChangePolicy",
    "CreateShop",
    "Deps",
    "IntakeUnitOfWork",
    "IssueApiKey",
    "IssuedApiKey",
    "ListShops",
    "NewShop",
    "NoteKeyUse",
    "Outcome",
    "RevokeApiKey",
    "accept",
    "accept_many",
    "accept_postings",
    "change_policy",
    "issue_api_key",
    "list_shops",
    "note_key_use",
    "open_shop",
    "revoke_api_key",
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

    async def key_known(self, shop_id: uuid.UUID, key_id: str) -> bool:
        """Whether the shop ever had this key (revoked ones included)."""
        ...

    async def note_key_use(self, shop_id: uuid.UUID, key_id: str, hour: datetime) -> None:
        """Record that the key was used in this hour, unless it is recorded already."""
        ...

    async def countries(self, shop_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Each shop's country in its latest policy (absent: a policy from before the
        setting, read as the default)."""
        ...


class Receipts(Protocol):
    """The idempotency records of postings, by (shop, the shop's id)."""

    async def claim(self, claims: Sequence[ClaimFirst]) -> dict[ReceiptKey, bool]:
        """Record each claim's receipt unless its id is taken; the keys recorded now,
        each with whether its required customer is in the directory. One statement."""
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


class Invoices(Protocol):
    async def issued(self, keys: Sequence[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
        """Which of these (shop, invoice id) were issued."""
        ...

    async def add(self, shop_id: uuid.UUID, invoice: InvoiceIssued) -> None:
        """Keep an issued invoice (again: no change)."""
        ...


@dataclass(frozen=True)
class HeldPosting:
    """A posting accepted before what it needs arrived, as it waits."""

    shop_id: uuid.UUID
    event_id: uuid.UUID
    posting: Posting
    needs: Needs
    #: when it was first held (None: now); its age on the waiting list counts from then
    since: datetime | None = None


class WaitingRoom(Protocol):
    """Postings held for what they need, shop by shop.

    A holder and whoever provides what it needs must not miss each other across
    replicas: both take :meth:`lock` on the need first (held until commit), so either
    the holder sees what was provided, or the provider sees the held posting.
    """

    async def lock(self, needs: Sequence[Needs]) -> None: ...

    async def hold(self, held: HeldPosting) -> None: ...

    async def take(self, needs: Sequence[Needs]) -> list[HeldPosting]:
        """Remove and return what waits for these, in the order it happened."""
        ...


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


@dataclass(frozen=True)
class ClaimedFetch:
    """A thin Jobber event claimed under a lease, with what reading its item needs."""

    id: uuid.UUID
    connector: Connector
    timezone: str
    sealed_token: bytes | None
    payload: dict[str, Any]
    #: counting this try
    attempts: int
    received_at: datetime
    #: the database's time at the claim
    now: datetime


class JobberFetches(Protocol):
    async def add(
        self,
        connector_id: uuid.UUID,
        shop_id: uuid.UUID,
        key: tuple[str, str, str],
        payload: dict[str, Any],
    ) -> bool:
        """Keep the thin event; False when the same one (topic, item, occurredAt) is kept."""
        ...

    async def claim(self, limit: int, lease: timedelta) -> list[ClaimedFetch]:
        """Due pending events, each leased to the caller until ``now() + lease``."""
        ...

    async def finish(
        self, claimed: ClaimedFetch, status: str, error: str | None, retry_in: timedelta | None
    ) -> bool:
        """Record a try's end; False when the lease was lost (another replica took it)."""
        ...

    async def ask_again(self, connector_id: uuid.UUID) -> int:
        """Parked events of the connector made due again; how many."""
        ...


class Sealer(Protocol):
    """Encrypts the secrets a connector is given (the key is the operator's)."""

    def seal(self, secret: str) -> bytes: ...


class IntakeUnitOfWork(UnitOfWork):
    registry: ShopRegistry
    receipts: Receipts
    repair_orders: RepairOrders
    customers: CustomerDirectory
    invoices: Invoices
    waiting: WaitingRoom
    connectors: Connectors
    jobber_fetches: JobberFetches


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
class IssueApiKey(Command["IssuedApiKey"]):
    shop_id: uuid.UUID
    #: what the key is for, in the shop's words ("Tekmetric", "reporting script")
    label: str | None = None


@dataclass(frozen=True)
class RevokeApiKey(Command[bool]):
    """Answers True when revoked now, False when it was revoked before (nothing changes)."""

    shop_id: uuid.UUID
    key_id: str
    #: the id of the API key the request is signed with (None: a person, the CLI)
    signed_with: str | None = None


@dataclass(frozen=True)
class NoteKeyUse(Command[None]):
    shop_id: uuid.UUID
    key_id: str


@dataclass(frozen=True)
class AcceptPostings(Command[list[Outcome]]):
    """Postings, each for its shop, answered in order as if posted one by one."""

    postings: Sequence[tuple[uuid.UUID, Posting]]


@dataclass(frozen=True)
class IssuedApiKey:
    key_id: str
    #: shown once, here; only its hash is kept
    api_key: str
    label: str | None


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


async def issue_api_key(command: IssueApiKey, uow: IntakeUnitOfWork, deps: Deps) -> IssuedApiKey:
    """A new key for the shop (raises TooManyKeys past the most it may have in use)."""
    shop = await _shop(uow, command.shop_id)
    key = issue_key()
    issued = shop.issue_key(key.key_id, key.secret_sha256, command.label)
    await uow.registry.save(shop)
    uow.emit(issued, shop_id=shop.id)
    return IssuedApiKey(key.key_id, key.api_key, command.label)


async def revoke_api_key(command: RevokeApiKey, uow: IntakeUnitOfWork, deps: Deps) -> bool:
    """The key stops working: here at once, on the other services when they apply the
    event. Raises UnknownKey (not this shop's) and LastActiveKey (its only key in use)."""
    shop = await _shop(uow, command.shop_id)
    try:
        revoked = shop.revoke_key(command.key_id, command.signed_with)
    except UnknownKey:
        if await uow.registry.key_known(shop.id, command.key_id):
            return False
        raise
    await uow.registry.save(shop)
    uow.emit(revoked, shop_id=shop.id)
    return True


async def note_key_use(command: NoteKeyUse, uow: IntakeUnitOfWork, deps: Deps) -> None:
    await uow.registry.note_key_use(command.shop_id, command.key_id, coarse_use(deps.clock()))


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
    if known is not None and command.system == "jobber":
        # Most parked reads were parked for a token Jobber refused or did not have: the
        # shop putting the connector again is how it fixes that, so they are tried again
        # (one that Jobber truly does not know parks again after one try).
        await uow.jobber_fetches.ask_again(connector.id)
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
    usable, refused = await _usable_contacts(uow, postings)
    accepted: list[Outcome] = []
    for run in runs([Arrival.of(shop_id, posting) for shop_id, posting in usable]):
        accepted += await _accept_run(uow, run)
    if not refused:
        return accepted
    answers = iter(accepted)
    return [refused[i] if i in refused else next(answers) for i in range(len(postings))]


async def _usable_contacts(
    uow: IntakeUnitOfWork, postings: Sequence[tuple[uuid.UUID, Posting]]
) -> tuple[list[tuple[uuid.UUID, Posting]], dict[int, Outcome]]:
    """Customers' contact data in the form every service uses (phones in E.164), read in
    each shop's country; a posting with an unusable value is refused before its id is
    claimed, so the shop can post it again corrected under the same id."""
    shops = {s for s, p in postings if isinstance(p.event, CustomerUpserted)}
    if not shops:
        return list(postings), {}
    countries = await uow.registry.countries(sorted(shops))
    usable: list[tuple[uuid.UUID, Posting]] = []
    refused: dict[int, Outcome] = {}
    for i, (shop_id, posting) in enumerate(postings):
        try:
            usable.append(
                (shop_id, usable_contact(posting, countries.get(shop_id, DEFAULT_COUNTRY)))
            )
        except Rejected as rejected:
            refused[i] = Outcome("rejected", None, posting.client_id, rejected)
    return usable, refused


async def _accept_run(uow: IntakeUnitOfWork, run: list[Arrival]) -> list[Outcome]:
    order_keys, customers, invoices = _to_look_up(run)
    if order_keys or customers or invoices:
        known = await _look_up(uow, run, order_keys, customers, invoices)
    else:
        known = [NOTHING_KNOWN] * len(run)  # the hot path: visits with ids
    decisions: list[Decision] = [decide(a, k) for a, k in zip(run, known, strict=True)]
    claims = [d for d in decisions if isinstance(d, ClaimFirst)]
    if claims:
        recorded = await uow.receipts.claim(claims)
        taken = [c.receipt.key for c in claims if c.receipt.key not in recorded]
        # Rare (a repeat or a conflict): one more statement says which.
        stored = await uow.receipts.stored(taken) if taken else {}
        for i, decision in enumerate(decisions):
            if isinstance(decision, ClaimFirst):
                key = decision.receipt.key
                if key in recorded:
                    claim = RECORDED if recorded[key] else RECORDED_CUSTOMER_UNKNOWN
                else:
                    claim = Claimed(False, stored.get(key))
                decisions[i] = decide(run[i], claimed(known[i], claim))
    return await _store(uow, run, decisions)


def _to_look_up(
    run: list[Arrival],
) -> tuple[list[tuple[uuid.UUID, str]], list[tuple[uuid.UUID, str]], list[tuple[uuid.UUID, str]]]:
    """What the run's answers turn on before any claim: the repair orders its voids and
    reopens name, the invoices its payments name, and the customers of its postings
    without an id (a posting with one has its customer checked by its claim)."""
    order_keys = []
    customers = []
    invoices = []
    for a in run:
        if a.order_key is not None:
            order_keys.append(a.order_key)
        if a.invoice_key is not None:
            invoices.append(a.invoice_key)
        if (a.client_id is None or a.held) and a.required_customer is not None:
            customers.append((a.shop_id, a.required_customer))
    return order_keys, customers, invoices


async def _look_up(
    uow: IntakeUnitOfWork,
    run: list[Arrival],
    order_keys: list[tuple[uuid.UUID, str]],
    customers: list[tuple[uuid.UUID, str]],
    invoices: list[tuple[uuid.UUID, str]],
) -> list[Known]:
    orders = await uow.repair_orders.get(order_keys) if order_keys else {}
    in_directory = await uow.customers.known(customers) if customers else set()
    issued = await uow.invoices.issued(invoices) if invoices else set()
    return [
        Known(
            order=None if a.order_key is None else orders.get(a.order_key),
            customer_known=(
                None
                if (a.client_id is not None and not a.held) or a.required_customer is None
                else (a.shop_id, a.required_customer) in in_directory
            ),
            claim=RECORDED if a.held else None,
            invoice_known=None if a.invoice_key is None else a.invoice_key in issued,
        )
        for a in run
    ]


async def _store(
    uow: IntakeUnitOfWork, run: list[Arrival], decisions: list[Decision]
) -> list[Outcome]:
    outcomes = []
    visits = []
    provided: list[Needs] = []
    for arrival, decision in zip(run, decisions, strict=True):
        if isinstance(decision, Hold):
            decision = await _hold(uow, arrival, decision)
        if isinstance(decision, Answered | Hold):
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
        elif isinstance(change, InvoiceRecord):
            await uow.invoices.add(arrival.shop_id, change.invoice)
        needs = provides(arrival.shop_id, change)
        if needs is not None:
            provided.append(needs)
        event_id = decision.outcome.event_id
        uow.emit(
            decision.event,
            shop_id=arrival.shop_id,
            id=event_id,
            time=decision.time,
            traceparent=arrival.posting.traceparent,
        )
        outcomes.append(decision.outcome)
    if visits:
        await uow.repair_orders.add_completed(visits)
    if provided:
        await _release(uow, provided)
    return outcomes


async def _hold(
    uow: IntakeUnitOfWork, arrival: Arrival, hold: Hold, since: datetime | None = None
) -> Decision:
    """Hold the posting for what it needs, unless that arrived meanwhile (from another
    sender, committed since the look-up): then it is decided again, as held."""
    again = Arrival(
        arrival.shop_id,
        arrival.posting,
        arrival.event_id,
        arrival.client_id,
        arrival.customer_field,
        arrival.required_customer,
        arrival.order_key,
        arrival.invoice_key,
        held=True,
    )
    locked: set[Needs] = set()
    decision: Decision = hold
    while isinstance(decision, Hold) and decision.needs not in locked:
        await uow.waiting.lock([decision.needs])
        locked.add(decision.needs)
        order_keys, customers, invoices = _to_look_up([again])
        (known,) = await _look_up(uow, [again], order_keys, customers, invoices)
        decision = decide(again, known)
    if isinstance(decision, Hold):
        await uow.waiting.hold(
            HeldPosting(arrival.shop_id, arrival.event_id, arrival.posting, decision.needs, since)
        )
    return decision


async def _release(uow: IntakeUnitOfWork, provided: list[Needs]) -> None:
    """Decide again, in the order they happened, the postings held for what was just
    provided; each may provide more (a visit released by its customer lets its void
    through)."""
    while provided:
        needs = sorted(set(provided))
        await uow.waiting.lock(needs)
        held = await uow.waiting.take(needs)
        provided = []
        for one in held:
            arrival = Arrival.of(one.shop_id, one.posting, held_as=one.event_id)
            order_keys, customers, invoices = _to_look_up([arrival])
            known = await _look_up(uow, [arrival], order_keys, customers, invoices)
            decision = decide(arrival, known[0])
            if isinstance(decision, Hold):
                # Waiting for something else now (a payment whose customer arrived, its
                # invoice not yet): held again for that, unless it has just come too.
                decision = await _hold(uow, arrival, decision, one.since)
                if isinstance(decision, Hold):
                    continue
            await _store_released(uow, arrival, decision, provided)


async def _store_released(
    uow: IntakeUnitOfWork, arrival: Arrival, decision: Decision, provided: list[Needs]
) -> None:
    assert isinstance(decision, Accepted), decision
    change = decision.change
    if isinstance(change, NewVisit):
        await uow.repair_orders.add_completed([change.order])
    elif isinstance(change, OrderStatus):
        await uow.repair_orders.save(change.order)
    elif isinstance(change, CustomerDetails):
        await uow.customers.save_details(arrival.shop_id, change.customer)
    elif isinstance(change, ConsentChange):
        await uow.customers.change_consent(arrival.shop_id, change.change)
    elif isinstance(change, InvoiceRecord):
        await uow.invoices.add(arrival.shop_id, change.invoice)
    needs = provides(arrival.shop_id, change)
    if needs is not None:
        provided.append(needs)
    uow.emit(
        decision.event, shop_id=arrival.shop_id, id=decision.outcome.event_id, time=decision.time
    )
