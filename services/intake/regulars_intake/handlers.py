"""intake's commands: create a shop, accept posted events, change the policy.

Every write of intake's state happens here, through an IntakeUnitOfWork.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from regulars_events.catalogue import (
    ServiceCompleted,
    ServiceVoided,
    ShopApiKeyIssued,
    ShopPolicyChanged,
)
from regulars_runtime.auth import IssuedKey, issue_key
from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork
from regulars_shop.policy import Policy

from .adapters.repository import IntakeRepository, Received, Visit
from .domain.postings import FieldError, Posting, Rejected

SCHEMA = "intake"


class IntakeUnitOfWork(UnitOfWork):
    repo: IntakeRepository


@dataclass(frozen=True)
class Deps:
    """What intake's handlers need besides the unit of work."""

    clock: Clock


@dataclass(frozen=True)
class Outcome:
    """One posted event's answer: accepted, duplicate or rejected."""

    status: str
    event_id: uuid.UUID | None = None
    client_id: str | None = None
    rejection: Rejected | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.client_id is not None:
            body["id"] = self.client_id
        if self.event_id is not None:
            body["event_id"] = str(self.event_id)
        if self.rejection is not None:
            body["code"] = self.rejection.status
            body.update(self.rejection.as_dict())
        return body


@dataclass(frozen=True)
class NewShop:
    shop_id: uuid.UUID
    api_key: str


async def create_shop(uow: IntakeUnitOfWork, name: str, timezone: str) -> NewShop:
    defaults = Policy.defaults().model_dump(mode="json")
    policy = Policy.model_validate(
        {**defaults, "timezone": timezone, "contact": {**defaults["contact"], "name": name}}
    )
    shop_id = uuid.uuid4()
    await uow.repo.add_shop(shop_id, name)
    version = await uow.repo.add_policy(shop_id, policy.model_dump(mode="json"))
    uow.emit(
        ShopPolicyChanged(version=version, policy=policy.model_dump(mode="json")), shop_id=shop_id
    )
    key = await _issue(uow, shop_id)
    return NewShop(shop_id, key.api_key)


async def list_shops(uow: IntakeUnitOfWork) -> list[Any]:
    """Every shop, oldest first (for the CLI)."""
    return list(await uow.repo.list_shops())


async def issue_api_key(uow: IntakeUnitOfWork, shop_id: uuid.UUID) -> str:
    if not await uow.repo.shop_exists(shop_id):
        raise LookupError(f"no shop {shop_id}")
    return (await _issue(uow, shop_id)).api_key


async def _issue(uow: IntakeUnitOfWork, shop_id: uuid.UUID) -> IssuedKey:
    key = issue_key()
    await uow.repo.add_key(key.key_id, shop_id, key.secret_sha256)
    uow.emit(
        ShopApiKeyIssued(key_id=key.key_id, secret_sha256=key.secret_sha256.hex()),
        shop_id=shop_id,
    )
    return key


async def change_policy(uow: IntakeUnitOfWork, shop_id: uuid.UUID, policy: Policy) -> int:
    document = policy.model_dump(mode="json")
    version = await uow.repo.add_policy(shop_id, document)
    uow.emit(ShopPolicyChanged(version=version, policy=document), shop_id=shop_id)
    return version


async def accept(uow: IntakeUnitOfWork, shop_id: uuid.UUID, posting: Posting) -> Outcome:
    """Record one well-formed posting and the event it becomes, or say why not."""
    event = posting.event
    data = event.model_dump(mode="json")
    voided_or_reopened = posting.short_type in ("service.voided", "service.reopened")
    if voided_or_reopened:
        customer_id = await uow.repo.visit_customer(shop_id, data["repair_order_id"])
        if customer_id is None:
            return Outcome(
                "rejected",
                None,
                posting.client_id,
                Rejected(
                    404,
                    f"repair_order_id {data['repair_order_id']!r} has no service.completed"
                    " in this shop",
                    [FieldError("data.repair_order_id", "not found")],
                ),
            )
        event = type(event).model_validate({**data, "customer_id": customer_id})
    customer_field = _customer_field(posting)
    if customer_field is not None and posting.client_id is None:
        rejection = await _unknown_customer(uow, shop_id, posting, customer_field)
        if rejection is not None:
            return Outcome("rejected", None, posting.client_id, rejection)

    event_id = posting.event_id(shop_id)
    if posting.client_id is not None:
        # The customer check rides on the idempotency insert: one round trip on the hot path.
        fresh, stored_hash, stored_id = await uow.repo.record_received(
            shop_id,
            posting.client_id,
            posting.body_hash,
            event_id,
            event.type,
            required_customer=getattr(event, customer_field) if customer_field else None,
        )
        if stored_id is None:
            assert customer_field is not None
            rejection = await _unknown_customer(uow, shop_id, posting, customer_field)
            assert rejection is not None
            return Outcome("rejected", None, posting.client_id, rejection)
        if not fresh:
            if stored_hash != posting.body_hash:
                return Outcome(
                    "rejected",
                    stored_id,
                    posting.client_id,
                    Rejected(
                        409,
                        f"id {posting.client_id!r} was already used for another event body",
                        [
                            FieldError(
                                "id", "already used with a different type, occurred_at or data"
                            )
                        ],
                    ),
                )
            return Outcome("duplicate", stored_id, posting.client_id)

    if posting.short_type == "customer.upserted":
        await uow.repo.upsert_customer(shop_id, data)
    elif voided_or_reopened:
        status = "voided" if isinstance(event, ServiceVoided) else "reopened"
        await uow.repo.set_visit_status(shop_id, data["repair_order_id"], status)
    elif isinstance(event, ServiceCompleted):
        await uow.repo.record_visit(
            shop_id, event.repair_order_id, event.customer_id, event.asset_id, event.completed_at
        )
    elif posting.short_type == "consent.changed":
        await uow.repo.set_consent(shop_id, data["customer_id"], data["channel"], data["granted"])
    uow.emit(event, shop_id=shop_id, id=event_id, time=posting.occurred_at.astimezone(UTC))
    return Outcome("accepted", event_id, posting.client_id)


#: types whose effect depends on what came before them (the directory, a visit's status):
#: accepted one at a time, in order
_ONE_AT_A_TIME = frozenset(
    {"customer.upserted", "service.voided", "service.reopened", "consent.changed"}
)


async def accept_many(
    uow: IntakeUnitOfWork, postings: Sequence[tuple[uuid.UUID, Posting]]
) -> list[Outcome]:
    """``accept`` for many postings in one transaction, set-based where order cannot matter.

    The answer for each posting is the one ``accept`` gives it when the postings are
    accepted one by one in this order. Runs of independent postings (visits and other
    customer events, each with its own id) are recorded with one statement per table; a
    posting that must see what came before it ends the run and goes through ``accept``.
    """
    outcomes: list[Outcome | None] = [None] * len(postings)
    run: list[int] = []
    keys: set[tuple[uuid.UUID, str]] = set()
    for i, (shop_id, posting) in enumerate(postings):
        if posting.client_id is None or posting.short_type in _ONE_AT_A_TIME:
            await _accept_run(uow, postings, run, outcomes)
            keys.clear()
            outcomes[i] = await accept(uow, shop_id, posting)
            continue
        # A repeated id, or a second completion of the same repair order, must see the
        # first: it starts a new run.
        touched = [(shop_id, "id:" + posting.client_id)]
        if isinstance(posting.event, ServiceCompleted):
            touched.append((shop_id, "order:" + posting.event.repair_order_id))
        if any(k in keys for k in touched):
            await _accept_run(uow, postings, run, outcomes)
            keys.clear()
        run.append(i)
        keys.update(touched)
    await _accept_run(uow, postings, run, outcomes)
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


async def _accept_run(
    uow: IntakeUnitOfWork,
    postings: Sequence[tuple[uuid.UUID, Posting]],
    run: list[int],
    outcomes: list[Outcome | None],
) -> None:
    if not run:
        return
    received = []
    for i in run:
        shop_id, posting = postings[i]
        assert posting.client_id is not None
        field = _customer_field(posting)
        received.append(
            Received(
                shop_id,
                posting.client_id,
                posting.body_hash,
                posting.event_id(shop_id),
                posting.event.type,
                getattr(posting.event, field) if field else None,
            )
        )
    recorded = await uow.repo.record_received_many(received)
    visits = []
    not_recorded = []
    for i, row in zip(run, received, strict=True):
        shop_id, posting = postings[i]
        if (row.shop_id, row.client_id) not in recorded:
            not_recorded.append(i)
            continue
        event = posting.event
        if isinstance(event, ServiceCompleted):
            visits.append(
                Visit(
                    shop_id,
                    event.repair_order_id,
                    event.customer_id,
                    event.asset_id,
                    event.completed_at,
                )
            )
        uow.emit(event, shop_id=shop_id, id=row.event_id, time=posting.occurred_at.astimezone(UTC))
        outcomes[i] = Outcome("accepted", row.event_id, posting.client_id)
    if visits:
        await uow.repo.record_visits(visits)
    # A duplicate, a conflict or an unknown customer: rare, and accept() tells which.
    for i in not_recorded:
        outcomes[i] = await accept(uow, *postings[i])
    run.clear()


def _customer_field(posting: Posting) -> str | None:
    """The data field naming a customer who must already be in the shop's directory."""
    if posting.short_type in ("customer.upserted", "service.voided", "service.reopened"):
        return None
    return "referrer_customer_id" if posting.short_type == "referral.reported" else "customer_id"


async def _unknown_customer(
    uow: IntakeUnitOfWork, shop_id: uuid.UUID, posting: Posting, field: str
) -> Rejected | None:
    customer_id = getattr(posting.event, field)
    if await uow.repo.customer_exists(shop_id, customer_id):
        return None
    return Rejected(
        404,
        f"{field} {customer_id!r} is not in this shop's customer directory;"
        " post customer.upserted first",
        [FieldError(f"data.{field}", "unknown customer")],
    )


def now() -> datetime:
    return datetime.now(UTC)
