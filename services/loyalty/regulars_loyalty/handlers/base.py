"""What loyalty's handlers are written against: its unit of work and its dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from regulars_events.envelope import Envelope
from regulars_runtime.clock import Clock
from regulars_runtime.unit_of_work import UnitOfWork


class Timeline(Protocol):
    async def add(self, envelope: Envelope) -> None:
        """Record the event on its customer's timeline (once per event id)."""
        ...


class LoyaltyUnitOfWork(UnitOfWork):
    timeline: Timeline


@dataclass(frozen=True)
class Deps:
    clock: Clock
