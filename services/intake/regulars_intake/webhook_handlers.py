"""Outbound webhooks: a shop's subscriptions, and the deliveries its events become.

Every write of the subscription and delivery tables happens here, through the unit of
work's :class:`WebhookBook` (``adapters/webhooks.py`` on PostgreSQL, a test's in memory).
Intake's own consumer (its own group, never the ingestion path) calls
:func:`on_event`; the delivery worker claims due tries with :class:`ClaimDeliveries`,
sends them, and records each answer with :class:`RecordAnswer`.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from regulars_events.base import EVENT_TYPES
from regulars_runtime.bus import Command, Received

from .domain.webhooks import (
    MAX_WEBHOOKS_PER_SHOP,
    OLD_SECRET_KEPT,
    Answer,
    DeliveryStatus,
    WebhookRejected,
    check_description,
    check_event_types,
    check_url,
    cloud_event,
    judge,
)
from .handlers import Deps, IntakeUnitOfWork


def offered_event_types() -> list[str]:
    """Every event type of the catalogue, in its order: what a subscription may name."""
    return list(EVENT_TYPES)


@dataclass(frozen=True)
class Webhook:
    id: uuid.UUID
    shop_id: uuid.UUID
    url: str
    event_types: tuple[str, ...]
    description: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewDelivery:
    id: uuid.UUID
    webhook_id: uuid.UUID
    shop_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    body: dict[str, Any]


@dataclass(frozen=True)
class ClaimedDelivery:
    """One try a replica holds under its lease: everything the sender needs."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    shop_id: uuid.UUID
    url: str
    body: dict[str, Any]
    #: the current secret, and the previous one while it still signs
    secrets: tuple[str, ...]
    #: this try's number: the claim token a late answer of an expired lease lacks
    attempts: int
    ladder: int
    failing_since: datetime | None
    now: datetime


@dataclass(frozen=True)
class OwnerNotice:
    """An endpoint switched off after failing for days: its shop's owners are told."""

    shop_id: uuid.UUID
    webhook_id: uuid.UUID
    url: str
    reason: str
    emails: tuple[str, ...]


class WebhookBook(Protocol):
    async def count(self, shop_id: uuid.UUID) -> int: ...

    async def add(self, webhook: Webhook, secret: str) -> None: ...

    async def get(self, shop_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook | None: ...

    async def save(self, webhook: Webhook) -> None:
        """Store url, event types, description and enabled (re-enabling clears the streak)."""
        ...

    async def delete(self, shop_id: uuid.UUID, webhook_id: uuid.UUID) -> bool: ...

    async def rotate(
        self, shop_id: uuid.UUID, webhook_id: uuid.UUID, secret: str, keep_old_for: timedelta
    ) -> bool:
        """Make ``secret`` the current one; the current one signs on for ``keep_old_for``."""
        ...

    async def subscribers(self, shop_id: uuid.UUID, event_type: str) -> list[uuid.UUID]:
        """The shop's enabled webhooks that want ``event_type``."""
        ...

    async def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> int:
        """Store each unless its (webhook, event) is there already; how many were new."""
        ...

    async def replay(
        self,
        shop_id: uuid.UUID,
        webhook_id: uuid.UUID,
        *,
        delivery_id: uuid.UUID | None = None,
        since: datetime | None = None,
        limit: int,
    ) -> int:
        """Make deliveries due now with a fresh retry ladder; how many."""
        ...

    async def claim(self, limit: int, lease: timedelta) -> list[ClaimedDelivery]:
        """Due tries of enabled webhooks, each leased to the caller (SKIP LOCKED)."""
        ...

    async def record(
        self,
        claimed: ClaimedDelivery,
        answer: Answer,
        status: DeliveryStatus,
        retry_in: timedelta | None,
        healthy: bool,
    ) -> bool:
        """The try's outcome; False if the lease was lost (another replica owns it now)."""
        ...

    async def disable(self, webhook_id: uuid.UUID, reason: str) -> bool:
        """Switch the endpoint off; False if it was off already."""
        ...


class WebhookUnitOfWork(IntakeUnitOfWork):
    webhooks: WebhookBook


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# -- the shop's subscriptions -----------------------------------------------------------


@dataclass(frozen=True)
class CreateWebhook(Command["tuple[Webhook, str]"]):
    shop_id: uuid.UUID
    url: object
    event_types: object
    description: object = None


@dataclass(frozen=True)
class UpdateWebhook(Command["Webhook | None"]):
    shop_id: uuid.UUID
    webhook_id: uuid.UUID
    #: only the fields given: url, event_types, description, enabled
    changes: dict[str, Any]


@dataclass(frozen=True)
class DeleteWebhook(Command[bool]):
    shop_id: uuid.UUID
    webhook_id: uuid.UUID


@dataclass(frozen=True)
class RotateSecret(Command["str | None"]):
    shop_id: uuid.UUID
    webhook_id: uuid.UUID


@dataclass(frozen=True)
class ReplayDeliveries(Command["int | None"]):
    shop_id: uuid.UUID
    webhook_id: uuid.UUID
    delivery_id: uuid.UUID | None = None
    since: datetime | None = None
    limit: int = 10_000


async def create_webhook(
    command: CreateWebhook, uow: WebhookUnitOfWork, deps: Deps
) -> tuple[Webhook, str]:
    url = check_url(command.url)
    event_types = check_event_types(command.event_types, offered_event_types())
    description = check_description(command.description)
    if await uow.webhooks.count(command.shop_id) >= MAX_WEBHOOKS_PER_SHOP:
        raise WebhookRejected("webhooks", f"a shop has at most {MAX_WEBHOOKS_PER_SHOP} webhooks")
    now = deps.clock()
    webhook = Webhook(
        id=uuid.uuid4(),
        shop_id=command.shop_id,
        url=url,
        event_types=event_types,
        description=description,
        enabled=True,
        disabled_reason=None,
        created_at=now,
        updated_at=now,
    )
    secret = new_secret()
    await uow.webhooks.add(webhook, secret)
    return webhook, secret


async def update_webhook(
    command: UpdateWebhook, uow: WebhookUnitOfWork, deps: Deps
) -> Webhook | None:
    webhook = await uow.webhooks.get(command.shop_id, command.webhook_id)
    if webhook is None:
        return None
    changes = command.changes
    unknown = sorted(set(changes) - {"url", "event_types", "description", "enabled"})
    if unknown:
        raise WebhookRejected(unknown[0], "not a field of a webhook")
    enabled = changes.get("enabled", webhook.enabled)
    if not isinstance(enabled, bool):
        raise WebhookRejected("enabled", "true or false")
    updated = Webhook(
        id=webhook.id,
        shop_id=webhook.shop_id,
        url=check_url(changes["url"]) if "url" in changes else webhook.url,
        event_types=(
            check_event_types(changes["event_types"], offered_event_types())
            if "event_types" in changes
            else webhook.event_types
        ),
        description=(
            check_description(changes["description"])
            if "description" in changes
            else webhook.description
        ),
        enabled=enabled,
        disabled_reason=None if enabled else (webhook.disabled_reason or "disabled by the shop"),
        created_at=webhook.created_at,
        updated_at=deps.clock(),
    )
    await uow.webhooks.save(updated)
    return updated


async def delete_webhook(command: DeleteWebhook, uow: WebhookUnitOfWork, deps: Deps) -> bool:
    return await uow.webhooks.delete(command.shop_id, command.webhook_id)


async def rotate_secret(command: RotateSecret, uow: WebhookUnitOfWork, deps: Deps) -> str | None:
    secret = new_secret()
    rotated = await uow.webhooks.rotate(
        command.shop_id, command.webhook_id, secret, OLD_SECRET_KEPT
    )
    return secret if rotated else None


async def replay_deliveries(
    command: ReplayDeliveries, uow: WebhookUnitOfWork, deps: Deps
) -> int | None:
    if await uow.webhooks.get(command.shop_id, command.webhook_id) is None:
        return None
    return await uow.webhooks.replay(
        command.shop_id,
        command.webhook_id,
        delivery_id=command.delivery_id,
        since=command.since,
        limit=command.limit,
    )


# -- events in, deliveries out ----------------------------------------------------------


async def on_event(message: Received[Any], uow: WebhookUnitOfWork, deps: Deps) -> None:
    """An event of the topics becomes one delivery per webhook of its shop that wants it."""
    envelope = message.envelope
    subscribed = await uow.webhooks.subscribers(message.shop_id, envelope.type)
    if not subscribed:
        return
    body = cloud_event(
        event_id=envelope.id,
        event_type=envelope.type,
        source=envelope.source,
        time=envelope.time,
        subject=envelope.subject,
        shop_id=envelope.shop_id,
        data=envelope.data,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.causation_id,
        traceparent=envelope.traceparent,
    )
    await uow.webhooks.add_deliveries(
        [
            NewDelivery(
                id=uuid.uuid4(),
                webhook_id=webhook_id,
                shop_id=message.shop_id,
                event_id=envelope.id,
                event_type=envelope.type,
                body=body,
            )
            for webhook_id in subscribed
        ]
    )


# -- the delivery worker's claims and answers -------------------------------------------


@dataclass(frozen=True)
class ClaimDeliveries(Command[list[ClaimedDelivery]]):
    limit: int
    lease: timedelta


@dataclass(frozen=True)
class RecordAnswer(Command["OwnerNotice | None"]):
    claimed: ClaimedDelivery
    answer: Answer


async def claim_deliveries(
    command: ClaimDeliveries, uow: WebhookUnitOfWork, deps: Deps
) -> list[ClaimedDelivery]:
    return await uow.webhooks.claim(command.limit, command.lease)


async def record_answer(
    command: RecordAnswer, uow: WebhookUnitOfWork, deps: Deps
) -> OwnerNotice | None:
    claimed = command.claimed
    verdict = judge(
        command.answer,
        attempts=claimed.ladder,
        schedule=deps.webhook_retry_schedule,
        failing_since=claimed.failing_since,
        now=claimed.now,
    )
    kept = await uow.webhooks.record(
        claimed, command.answer, verdict.status, verdict.retry_in, verdict.healthy
    )
    if not kept or verdict.disable is None:
        return None
    if not await uow.webhooks.disable(claimed.webhook_id, verdict.disable):
        return None
    policy = await uow.policy_or_defaults(claimed.shop_id)
    emails = tuple(m.email for m in policy.policy.staff_with_role("owner") if m.email)
    return OwnerNotice(claimed.shop_id, claimed.webhook_id, claimed.url, verdict.disable, emails)
