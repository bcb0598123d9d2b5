"""A repair order as intake keeps it: the visit a void or a reopen refers to. Pure.

A void or a reopen carries only the repair order's id; the order remembers whose visit it
was, so the event can be keyed to its customer downstream.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from regulars_events.catalogue import ServiceCompleted


class VisitStatus(StrEnum):
    COMPLETED = "completed"
    VOIDED = "voided"
    REOPENED = "reopened"


@dataclass(frozen=True, slots=True)
class RepairOrder:
    shop_id: uuid.UUID
    repair_order_id: str
    customer_id: str
    asset_id: str | None
    completed_at: datetime
    status: VisitStatus = VisitStatus.COMPLETED

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        return (self.shop_id, self.repair_order_id)

    @classmethod
    def completed(cls, shop_id: uuid.UUID, event: ServiceCompleted) -> RepairOrder:
        return cls(
            shop_id, event.repair_order_id, event.customer_id, event.asset_id, event.completed_at
        )

    def completed_again(self) -> RepairOrder:
        """Another service.completed for a known order: the visit stays whose it was; a
        reopened order is completed again, a voided one stays void.

        The repository applies this rule where it stores completions set-based."""
        if self.status is VisitStatus.REOPENED:
            return dataclasses.replace(self, status=VisitStatus.COMPLETED)
        return self

    def voided(self) -> RepairOrder:
        return dataclasses.replace(self, status=VisitStatus.VOIDED)

    def reopened(self) -> RepairOrder:
        """A void is final: a reopen of a voided order leaves it void."""
        if self.status is VisitStatus.VOIDED:
            return self
        return dataclasses.replace(self, status=VisitStatus.REOPENED)
