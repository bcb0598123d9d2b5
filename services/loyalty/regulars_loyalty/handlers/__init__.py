"""loyalty's reactions to events. Every write of loyalty's state happens here."""

from __future__ import annotations

from typing import Any

from regulars_events.topics import FAMILIES
from regulars_runtime.bus import Received

from .base import Deps, LoyaltyUnitOfWork

TOPICS: list[str] = [f"regulars.{family}" for family in FAMILIES]


async def remember(message: Received[Any], uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    """Every event about a customer goes on their timeline (the journey is read from it)."""
    if message.envelope.subject is not None:
        await uow.timeline.add(message.envelope)


__all__ = ["TOPICS", "Deps", "LoyaltyUnitOfWork", "remember"]
