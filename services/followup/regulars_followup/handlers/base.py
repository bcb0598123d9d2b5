"""What every followup handler is written against: its unit of work and dependencies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import ShopPolicy, UnitOfWork

if TYPE_CHECKING:
    from ..adapters.repository import FollowUpRepository

SCHEMA = "followup"


class FollowUpUnitOfWork(UnitOfWork):
    repo: FollowUpRepository


@dataclass(frozen=True)
class Deps:
    """What handlers need besides the unit of work."""

    clock: Clock


async def shop_policy(uow: FollowUpUnitOfWork, shop_id: uuid.UUID) -> ShopPolicy:
    """The shop's policy; the consumer waits for it while it has not arrived."""
    return await uow.policy(shop_id)
