"""A shop's visits as followup keeps them: one truth per repair order. Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class VisitStatus(StrEnum):
    COMPLETED = "completed"
    VOIDED = "voided"
    REOPENED = "reopened"


@dataclass
class Visit:
    shop_id: uuid.UUID
    repair_order_id: str
    customer_id: str
    completed_at: datetime
    status: VisitStatus
    data: dict[str, Any]

    def complete_again(self, at: datetime) -> bool:
        """A reopened visit completed again: True. Anything else is a repeat to ignore."""
        if self.status is not VisitStatus.REOPENED:
            return False
        self.status, self.completed_at = VisitStatus.COMPLETED, at
        return True

    def withdraw(self, status: VisitStatus) -> bool:
        """Voided or reopened: False when it was voided already (a void is final)."""
        if self.status is VisitStatus.VOIDED:
            return False
        self.status = status
        return True
