"""What feedback remembers of a visit: who its advisor was, and whether it was a comeback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Visit:
    repair_order_id: str
    customer_id: str
    advisor: str | None
    comeback: bool
    completed_at: datetime | None
