"""Follow-up call tasks: when one is due, what the advisor says, what state it is in. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from regulars_shop.calendar import BusinessCalendar, due_after

from .templates import first_name_of


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


#: where the customer's first name goes in a stored script (see ``addressed``)
FIRST_NAME = "{customer_first_name}"


def call_script(visit: dict[str, Any], shop_name: str | None = None) -> dict[str, Any]:
    """What the advisor needs on the call: what was done, what to ask.

    The customer's name is not in it: ``addressed`` puts it in when the task is read.
    """
    work = visit.get("work_performed") or visit.get("concern") or "the recent service"
    unit = visit.get("asset_id")
    opening = f"Hi {FIRST_NAME}, this is {{advisor}} from {shop_name or 'the shop'}."
    return {
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


#: loyalty's reasons for a customer at risk, as the advisor reads them before the call
AT_RISK_REASONS = {
    "open_negative_feedback": "they told us about a bad experience",
    "missed_follow_up": "we could not reach them after a visit",
    "overdue_maintenance": "their maintenance is overdue",
}


def at_risk_script(
    last_visit: dict[str, Any],
    reasons: list[str],
    shop_name: str | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    """The call to a customer whose churn risk crossed the shop's threshold: why they are
    at risk, and their last visit to open with. No offer: the call is to listen."""
    work = last_visit.get("work_performed") or last_visit.get("concern")
    unit = last_visit.get("asset_id")
    since = "I'm calling to check in after your last visit" + (f" for {work}" if work else "")
    return {
        "vehicle_or_unit": unit,
        "work_performed": work,
        "last_repair_order_id": last_visit.get("repair_order_id"),
        "why": [AT_RISK_REASONS.get(r, r.replace("_", " ")) for r in reasons],
        "churn_risk": score,
        "lines": [
            f"Hi {FIRST_NAME}, this is {{advisor}} from {shop_name or 'the shop'}.",
            since + (f" on your {unit}" if unit else "") + ".",
            "How has everything been since then?",
            "Is there anything we could have done better, or anything you need from us?",
        ],
        "ask": ["satisfied (yes/no)", "score 0-10 (optional)", "notes"],
    }


def addressed(script: dict[str, Any], customer_name: str | None) -> dict[str, Any]:
    """The script as the advisor reads it, with the customer's name as it is now.

    Names go in when a task is read, not when it is scheduled: the customer's record
    travels on its own topic and can be applied after the visit (or concurrently with
    it), and a customer can be renamed. Scripts stored with a name keep it until the
    directory has one.
    """
    name = customer_name or script.get("customer") or "the customer"
    first = first_name_of(customer_name) or "there"
    return {
        **script,
        "customer": name,
        "lines": [line.replace(FIRST_NAME, first) for line in script.get("lines", [])],
    }
