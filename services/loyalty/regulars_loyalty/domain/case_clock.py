"""Where a recovery case stands against its SLA, as a manager reads it at a glance. Pure.

feedback owns the clocks (business hours, escalation); it writes ``sla_at_risk`` into a
case's history when a window is nearly spent. The console reads that, and the deadline
against now, and says what is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

Standing = Literal["on_time", "at_risk", "breached"]


@dataclass(frozen=True)
class CaseClock:
    #: "acknowledge" until someone does, then "resolve"
    running: Literal["acknowledge", "resolve"]
    due_at: datetime
    left: timedelta
    standing: Standing

    @property
    def words(self) -> str:
        verb = "Acknowledge" if self.running == "acknowledge" else "Resolve"
        if self.standing == "breached":
            return f"{verb}: overdue by {span(-self.left)}"
        return f"{verb} within {span(self.left)}"


def span(delta: timedelta) -> str:
    """A time left as a person says it: 2 d 3 h, 3 h 05 min, 12 min."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    return f"{mins} min"


def clock_of(case: Mapping[str, Any], now: datetime) -> CaseClock:
    acknowledged = case.get("acknowledged_at") is not None
    running: Literal["acknowledge", "resolve"] = "resolve" if acknowledged else "acknowledge"
    due = _when(case["resolve_due_at"] if acknowledged else case["ack_due_at"])
    left = due - now
    standing: Standing
    if left <= timedelta(0):
        standing = "breached"
    elif _warned(case.get("history") or [], running):
        standing = "at_risk"
    else:
        standing = "on_time"
    return CaseClock(running, due, left, standing)


def _warned(history: Sequence[Mapping[str, Any]], clock: str) -> bool:
    return any(h.get("kind") == "sla_at_risk" and h.get("clock") == clock for h in history)


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def by_time_left(cases: Sequence[Mapping[str, Any]], now: datetime) -> list[Mapping[str, Any]]:
    """Open cases, the least time left first."""
    return sorted(cases, key=lambda c: clock_of(c, now).due_at)
