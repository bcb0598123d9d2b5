"""Follow-up call tasks: when one is due, what the advisor says, what state it is in. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from regulars_runtime.calendar import BusinessCalendar, due_after


class TaskStatus(StrEnum):
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    MISSED = "missed"
    CANCELLED = "cancelled"


OPEN_STATUSES = frozenset({TaskStatus.SCHEDULED})


@dataclass(frozen=True)
class FollowUpPlan:
    """Whether a completed visit gets a call, and when."""

    due_at: datetime | None
    reason: str  # "scheduled", or why not


def plan_follow_up(
    completed_at: datetime,
    calendar: BusinessCalendar,
    delay: timedelta,
    missed_after: timedelta,
    now: datetime,
) -> FollowUpPlan:
    """First business-hours slot at least ``delay`` after completion.

    A visit whose whole follow-up window is already over (a shop importing its history)
    gets no call: it would be missed the moment it was scheduled.
    """
    due = due_after(calendar, completed_at, delay)
    if due + missed_after < now:
        return FollowUpPlan(None, "follow-up window already over (historical visit)")
    return FollowUpPlan(due, "scheduled")


def call_script(
    customer_name: str | None, visit: dict[str, Any], shop_name: str | None = None
) -> dict[str, Any]:
    """What the advisor needs on the call: who, what was done, what to ask."""
    name = customer_name or "the customer"
    first = name.split()[0] if customer_name else "there"
    work = visit.get("work_performed") or visit.get("concern") or "the recent service"
    unit = visit.get("asset_id")
    opening = f"Hi {first}, this is {{advisor}} from {shop_name or 'the shop'}."
    return {
        "customer": name,
        "vehicle_or_unit": unit,
        "work_performed": work,
        "lines": [
            opening,
            f"I'm calling to check on {work}" + (f" on your {unit}" if unit else "") + ".",
            "Is everything working the way it should?",
            "On a scale of 0 to 10, how likely are you to recommend us to a friend?",
            "Is there anything we could have done better?",
        ],
        "ask": ["satisfied (yes/no)", "score 0-10 (optional)", "notes"],
    }
