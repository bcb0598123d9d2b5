"""What every feedback handler is written against: its unit of work and dependencies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork
from regulars_shop.policy import Policy

if TYPE_CHECKING:
    from ..adapters.repository import FeedbackRepository

SCHEMA = "feedback"


class FeedbackUnitOfWork(UnitOfWork):
    repo: FeedbackRepository


@dataclass(frozen=True)
class Deps:
    """What handlers need besides the unit of work: the time, and the public survey URL."""

    clock: Clock
    public_url: str


async def shop_policy(uow: FeedbackUnitOfWork, shop_id: uuid.UUID) -> Policy:
    """The shop's policy; the consumer waits for it while it has not arrived."""
    return (await uow.policy(shop_id)).policy


async def policy_or_defaults(uow: FeedbackUnitOfWork, shop_id: uuid.UUID) -> Policy:
    """For an API command, which cannot wait: the defaults stand in for a missing policy."""
    return (await uow.policy_or_defaults(shop_id)).policy
