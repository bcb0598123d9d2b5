"""intake's unit of work in memory: the seam the handler tests stand on.

The repositories keep the promises their Protocols make (an id is claimed once, a claim
says whether its customer is in the directory, a known repair order takes
``completed_again``, a held posting is parsed again from what was stored), so
a handler that breaks one of them fails here as it would on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from regulars_events.catalogue import ConsentChanged, CustomerUpserted, InvoiceIssued
from regulars_events.envelope import Envelope
from regulars_intake.domain.acceptance import ClaimFirst, Needs, Receipt, ReceiptKey
from regulars_intake.domain.connectors.setup import Connector, Tally
from regulars_intake.domain.postings import as_posted, parse_posting
from regulars_intake.domain.repair_orders import RepairOrder
from regulars_intake.domain.shop import ApiKey, PolicyVersion, Shop
from regulars_intake.domain.webhooks import Answer, DeliveryStatus, signing_secrets
from regulars_intake.handlers import ClaimedFetch, Deps, HeldPosting, ShopSummary
from regulars_intake.webhook_handlers import (
    ClaimedDelivery,
    NewDelivery,
    Webhook,
    WebhookUnitOfWork,
)
from regulars_runtime.testing import FakeClock, ShopsInMemory, TimersInMemory


@dataclass
class StoredShop:
    name: str
    created_at: datetime
    policies: list[PolicyVersion] = field(default_factory=list)
    keys: list[ApiKey] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    last_used: dict[str, datetime] = field(default_factory=dict)


class FakeShopRegistry:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.shops: dict[uuid.UUID, StoredShop] = {}

    async def get(self, shop_id: uuid.UUID) -> Shop | None:
        stored = self.shops.get(shop_id)
        if stored is None:
            return None
        latest = max((p.version for p in stored.policies), default=0)
        active = {k.key_id for k in stored.keys} - stored.revoked
        return Shop(shop_id, stored.name, policy_version=latest, active_keys=active)

    async def save(self, shop: Shop) -> None:
        if shop.is_new:
            assert shop.id not in self.shops, "a new shop's id is taken"
            self.shops[shop.id] = StoredShop(shop.name, self.clock())
        stored = self.shops[shop.id]
        taken = {p.version for p in stored.policies}
        for policy in shop.new_policies:
            assert policy.version not in taken, f"policy version {policy.version} is taken"
            stored.policies.append(policy)
            taken.add(policy.version)
        stored.keys.extend(shop.new_keys)
        stored.revoked.update(shop.revoked_keys)

    async def key_known(self, shop_id: uuid.UUID, key_id: str) -> bool:
        stored = self.shops.get(shop_id)
        return stored is not None and any(k.key_id == key_id for k in stored.keys)

    async def note_key_use(self, shop_id: uuid.UUID, key_id: str, hour: datetime) -> None:
        stored = self.shops[shop_id]
        if key_id in {k.key_id for k in stored.keys}:
            before = stored.last_used.get(key_id)
            if before is None or before < hour:
                stored.last_used[key_id] = hour

    async def summaries(self) -> list[ShopSummary]:
        return [
            ShopSummary(
                id=shop_id,
                name=s.name,
                created_at=s.created_at,
                timezone=max(s.policies, key=lambda p: p.version).document["timezone"],
            )
            for shop_id, s in sorted(self.shops.items(), key=lambda kv: kv[1].created_at)
            if s.policies
        ]

    async def countries(self, shop_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        found = {}
        for shop_id in shop_ids:
            stored = self.shops.get(shop_id)
            if stored and stored.policies:
                latest = max(stored.policies, key=lambda p: p.version).document
                if latest.get("country"):
                    found[shop_id] = latest["country"]
        return found


class FakeCustomerDirectory:
    def __init__(self) -> None:
        self.customers: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}

    async def known(self, customers: Sequence[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
        return {c for c in customers if c in self.customers}

    async def save_details(self, shop_id: uuid.UUID, customer: CustomerUpserted) -> None:
        data = customer.model_dump(mode="json")
        given = {k: v for k, v in (data.get("consent") or {}).items() if v is not None}
        before = self.customers.get((shop_id, customer.customer_id))
        consent = {**(before["consent"] if before else {}), **given}
        self.customers[(shop_id, customer.customer_id)] = {"data": data, "consent": consent}

    async def change_consent(self, shop_id: uuid.UUID, change: ConsentChanged) -> None:
        found = self.customers.get((shop_id, change.customer_id))
        if found is not None:
            found["consent"] = {**found["consent"], change.channel: change.granted}


class FakeReceipts:
    def __init__(self, directory: FakeCustomerDirectory) -> None:
        self.directory = directory
        self.receipts: dict[ReceiptKey, Receipt] = {}
        #: how many claims each call made: the hot path claims a whole run at once
        self.claim_calls: list[int] = []

    async def claim(self, claims: Sequence[ClaimFirst]) -> dict[ReceiptKey, bool]:
        self.claim_calls.append(len(claims))
        recorded = {}
        for claim in sorted(claims, key=lambda c: (str(c.receipt.shop_id), c.receipt.client_id)):
            key = claim.receipt.key
            customer = claim.required_customer
            if key in self.receipts:
                continue
            self.receipts[key] = claim.receipt
            recorded[key] = customer is None or (key[0], customer) in self.directory.customers
        return recorded

    async def stored(self, keys: Sequence[ReceiptKey]) -> dict[ReceiptKey, Receipt]:
        return {k: self.receipts[k] for k in keys if k in self.receipts}


class FakeRepairOrders:
    def __init__(self) -> None:
        self.orders: dict[tuple[uuid.UUID, str], RepairOrder] = {}
        self.add_calls: list[int] = []

    async def get(
        self, keys: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], RepairOrder]:
        return {k: self.orders[k] for k in keys if k in self.orders}

    async def add_completed(self, orders: Sequence[RepairOrder]) -> None:
        self.add_calls.append(len(orders))
        keys = [o.key for o in orders]
        assert len(keys) == len(set(keys)), "one statement cannot store an order twice"
        for order in orders:
            known = self.orders.get(order.key)
            self.orders[order.key] = order if known is None else known.completed_again()

    async def save(self, order: RepairOrder) -> None:
        if order.key in self.orders:
            self.orders[order.key] = order


@dataclass
class StoredWebhook:
    webhook: Webhook
    secret: str
    previous: str | None = None
    previous_until: datetime | None = None
    failing_since: datetime | None = None


@dataclass
class StoredDelivery:
    new: NewDelivery
    created_at: datetime
    status: DeliveryStatus = "pending"
    attempts: int = 0
    ladder: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    last: Answer | None = None


class FakeWebhookBook:
    """Keeps the promises of the PostgreSQL one: shop-scoped, one delivery per (webhook,
    event), a try claimed by one holder until its lease passes, answers of a lost lease
    ignored."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.webhooks: dict[uuid.UUID, StoredWebhook] = {}
        self.deliveries: dict[uuid.UUID, StoredDelivery] = {}

    def _mine(self, shop_id: uuid.UUID, webhook_id: uuid.UUID) -> StoredWebhook | None:
        found = self.webhooks.get(webhook_id)
        return found if found is not None and found.webhook.shop_id == shop_id else None

    async def count(self, shop_id: uuid.UUID) -> int:
        return sum(1 for w in self.webhooks.values() if w.webhook.shop_id == shop_id)

    async def add(self, webhook: Webhook, secret: str) -> None:
        self.webhooks[webhook.id] = StoredWebhook(webhook, secret)

    async def get(self, shop_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook | None:
        found = self._mine(shop_id, webhook_id)
        return found.webhook if found else None

    async def save(self, webhook: Webhook) -> None:
        stored = self.webhooks[webhook.id]
        if webhook.enabled and not stored.webhook.enabled:
            stored.failing_since = None
        stored.webhook = webhook

    async def delete(self, shop_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
        if self._mine(shop_id, webhook_id) is None:
            return False
        del self.webhooks[webhook_id]
        for key in [k for k, d in self.deliveries.items() if d.new.webhook_id == webhook_id]:
            del self.deliveries[key]
        return True

    async def rotate(
        self, shop_id: uuid.UUID, webhook_id: uuid.UUID, secret: str, keep_old_for: timedelta
    ) -> bool:
        found = self._mine(shop_id, webhook_id)
        if found is None:
            return False
        found.previous, found.secret = found.secret, secret
        found.previous_until = self.clock() + keep_old_for
        return True

    async def subscribers(self, shop_id: uuid.UUID, event_type: str) -> list[uuid.UUID]:
        return [
            w.webhook.id
            for w in self.webhooks.values()
            if w.webhook.shop_id == shop_id
            and w.webhook.enabled
            and event_type in w.webhook.event_types
        ]

    async def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> int:
        taken = {(d.new.webhook_id, d.new.event_id) for d in self.deliveries.values()}
        added = 0
        for new in deliveries:
            if (new.webhook_id, new.event_id) not in taken:
                self.deliveries[new.id] = StoredDelivery(
                    new, self.clock(), next_attempt_at=self.clock()
                )
                added += 1
        return added

    async def replay(
        self,
        shop_id: uuid.UUID,
        webhook_id: uuid.UUID,
        *,
        delivery_id: uuid.UUID | None = None,
        since: datetime | None = None,
        limit: int,
    ) -> int:
        chosen = [
            d
            for d in self.deliveries.values()
            if d.new.shop_id == shop_id
            and d.new.webhook_id == webhook_id
            and (delivery_id is None or d.new.id == delivery_id)
            and (since is None or d.created_at >= since)
        ][:limit]
        for d in chosen:
            d.status, d.ladder, d.next_attempt_at, d.lease_until = "pending", 0, self.clock(), None
        return len(chosen)

    async def claim(self, limit: int, lease: timedelta) -> list[ClaimedDelivery]:
        now = self.clock()
        claimed = []
        for d in sorted(self.deliveries.values(), key=lambda d: d.next_attempt_at or now):
            w = self.webhooks[d.new.webhook_id]
            due = d.status == "pending" and d.next_attempt_at is not None
            if not due or not w.webhook.enabled or (d.next_attempt_at or now) > now:
                continue
            if d.lease_until is not None and d.lease_until >= now:
                continue
            if len(claimed) == limit:
                break
            d.attempts += 1
            d.ladder += 1
            d.lease_until = now + lease
            kept = signing_secrets(w.secret, w.previous, w.previous_until, now)
            claimed.append(
                ClaimedDelivery(
                    d.new.id,
                    w.webhook.id,
                    w.webhook.shop_id,
                    w.webhook.url,
                    d.new.body,
                    tuple(kept),
                    d.attempts,
                    d.ladder,
                    w.failing_since,
                    now,
                )
            )
        return claimed

    async def record(
        self,
        claimed: ClaimedDelivery,
        answer: Answer,
        status: DeliveryStatus,
        retry_in: timedelta | None,
        healthy: bool,
    ) -> bool:
        d = self.deliveries.get(claimed.id)
        if d is None or d.attempts != claimed.attempts or d.lease_until is None:
            return False
        now = self.clock()
        d.status, d.last, d.lease_until = status, answer, None
        d.next_attempt_at = now + retry_in if status == "pending" and retry_in else None
        w = self.webhooks[claimed.webhook_id]
        w.failing_since = None if healthy else (w.failing_since or now)
        return True

    async def disable(self, webhook_id: uuid.UUID, reason: str) -> bool:
        w = self.webhooks[webhook_id]
        if not w.webhook.enabled:
            return False
        w.webhook = Webhook(**{**w.webhook.__dict__, "enabled": False, "disabled_reason": reason})
        return True


class FakeInvoices:
    def __init__(self) -> None:
        self.invoices: dict[tuple[uuid.UUID, str], str] = {}

    async def issued(self, keys: Sequence[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
        return {k for k in keys if k in self.invoices}

    async def add(self, shop_id: uuid.UUID, invoice: InvoiceIssued) -> None:
        self.invoices.setdefault((shop_id, invoice.invoice_id), invoice.customer_id)


class FakeWaitingRoom:
    """Held postings kept as PostgreSQL keeps them: as posted, parsed again when taken."""

    def __init__(self) -> None:
        self.held: dict[tuple[uuid.UUID, uuid.UUID], tuple[Needs, dict[str, Any], int]] = {}
        self.locked: list[Needs] = []
        self.since: dict[tuple[uuid.UUID, uuid.UUID], datetime] = {}
        self._arrived = 0

    async def lock(self, needs: Sequence[Needs]) -> None:
        self.locked.extend(needs)

    async def hold(self, held: HeldPosting) -> None:
        self._arrived += 1
        key = (held.shop_id, held.event_id)
        before = self.held.get(key)
        arrived = before[2] if before else self._arrived
        self.held[key] = (held.needs, as_posted(held.posting), arrived)
        self.since[key] = held.since or self.since.get(key) or datetime.now(UTC)

    async def take(self, needs: Sequence[Needs]) -> list[HeldPosting]:
        wanted = set(needs)
        taken = [(k, v) for k, v in self.held.items() if v[0] in wanted]
        for k, _v in taken:
            del self.held[k]
        taken.sort(key=lambda kv: (parse_posting(kv[1][1]).occurred_at, kv[1][2]))
        return [
            HeldPosting(k[0], k[1], parse_posting(v[1]), v[0], self.since.pop(k)) for k, v in taken
        ]

    def waiting_for(self, shop_id: uuid.UUID) -> list[Needs]:
        return [v[0] for k, v in self.held.items() if k[0] == shop_id]


class FakeConnectors:
    def __init__(self) -> None:
        self.connectors: dict[uuid.UUID, Connector] = {}
        self.sealed: dict[uuid.UUID, tuple[bytes, bytes | None]] = {}
        self.tallies: dict[uuid.UUID, Tally] = {}

    async def for_system(self, shop_id: uuid.UUID, system: str) -> Connector | None:
        for c in self.connectors.values():
            if c.shop_id == shop_id and c.system == system:
                return c
        return None

    async def save(
        self, connector: Connector, sealed_secret: bytes, sealed_token: bytes | None
    ) -> None:
        self.connectors[connector.id] = connector
        self.sealed[connector.id] = (sealed_secret, sealed_token)

    async def tally(self, connector_id: uuid.UUID, tally: Tally) -> None:
        was = self.tallies.get(connector_id, Tally())
        self.tallies[connector_id] = Tally(
            was.accepted + tally.accepted, was.rejected + tally.rejected, was.errors + tally.errors
        )


@dataclass
class StoredFetch:
    connector_id: uuid.UUID
    shop_id: uuid.UUID
    key: tuple[str, str, str]
    payload: dict[str, Any]
    status: str = "pending"
    attempts: int = 0
    error: str | None = None
    retry_in: timedelta | None = None
    leased: bool = False


class FakeJobberFetches:
    """One row per (connector, topic, item, occurredAt); a finish counts only while the
    claim that made it holds the lease (the same attempt, still leased, still pending)."""

    def __init__(self, connectors: FakeConnectors, clock: FakeClock) -> None:
        self.connectors = connectors
        self.clock = clock
        self.rows: dict[uuid.UUID, StoredFetch] = {}

    async def add(
        self,
        connector_id: uuid.UUID,
        shop_id: uuid.UUID,
        key: tuple[str, str, str],
        payload: dict[str, Any],
    ) -> bool:
        if any(r.connector_id == connector_id and r.key == key for r in self.rows.values()):
            return False
        self.rows[uuid.uuid4()] = StoredFetch(connector_id, shop_id, key, payload)
        return True

    async def claim(self, limit: int, lease: timedelta) -> list[ClaimedFetch]:
        claimed = []
        for fetch_id, r in self.rows.items():
            if r.status != "pending" or r.leased or len(claimed) >= limit:
                continue
            r.attempts += 1
            r.leased = True
            claimed.append(
                ClaimedFetch(
                    fetch_id,
                    self.connectors.connectors[r.connector_id],
                    "America/Chicago",
                    self.connectors.sealed[r.connector_id][1],
                    r.payload,
                    r.attempts,
                    self.clock(),
                    self.clock(),
                )
            )
        return claimed

    async def finish(
        self, claimed: ClaimedFetch, status: str, error: str | None, retry_in: timedelta | None
    ) -> bool:
        r = self.rows[claimed.id]
        if r.attempts != claimed.attempts or not r.leased or r.status != "pending":
            return False
        r.status, r.error, r.retry_in, r.leased = status, error, retry_in, False
        return True

    async def ask_again(self, connector_id: uuid.UUID) -> int:
        parked = [
            r for r in self.rows.values() if r.connector_id == connector_id and r.status == "parked"
        ]
        for r in parked:
            r.status = "pending"
        return len(parked)


class Intake:
    """intake's state in memory, and what its committed units of work emitted."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.deps = Deps(clock=self.clock)
        self.registry = FakeShopRegistry(self.clock)
        self.customers = FakeCustomerDirectory()
        self.receipts = FakeReceipts(self.customers)
        self.repair_orders = FakeRepairOrders()
        self.invoices = FakeInvoices()
        self.waiting = FakeWaitingRoom()
        self.connectors = FakeConnectors()
        self.jobber_fetches = FakeJobberFetches(self.connectors, self.clock)
        self.shops = ShopsInMemory()
        self.timers = TimersInMemory()
        self.webhooks = FakeWebhookBook(self.clock)
        self.outbox: list[Envelope] = []

    def unit_of_work(self, cause: Envelope | None = None) -> FakeIntakeUnitOfWork:
        return FakeIntakeUnitOfWork(self, cause)

    def emitted(self, event_type: str | None = None) -> list[Envelope]:
        return [e for e in self.outbox if event_type is None or e.type == event_type]


class FakeIntakeUnitOfWork(WebhookUnitOfWork):
    def __init__(self, intake: Intake, cause: Envelope | None = None) -> None:
        super().__init__(source="intake", cause=cause)
        self.intake = intake
        self.registry = intake.registry
        self.receipts = intake.receipts
        self.repair_orders = intake.repair_orders
        self.customers = intake.customers
        self.invoices = intake.invoices
        self.waiting = intake.waiting
        self.connectors = intake.connectors
        self.jobber_fetches = intake.jobber_fetches
        self.shops = intake.shops
        self.timers = intake.timers
        self.webhooks = intake.webhooks

    async def _write_outbox(self, envelopes: list[Envelope]) -> None:
        self.intake.outbox.extend(envelopes)
