"""The FollowUpTask: a call staff owe a customer, and every decision about it.

Its methods change it and return the events they cause; the handlers load it, call it,
save it and emit what it returned. Pure: no storage, no clock of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from regulars_events.base import Event
from regulars_events.catalogue import (
    FollowUpAttempted,
    FollowUpCancelled,
    FollowUpCompleted,
    FollowUpMissed,
    FollowUpScheduled,
)
from regulars_shop.calendar import BusinessCalendar, due_after

from .attempts import Attempt, AttemptResult, record_attempt
from .tasks import OPEN_STATUSES, TaskStatus, at_risk_script, call_script, plan_follow_up
from .visits import Visit

#: the kinds of call a task is: after a visit, after a resolved case, to an at-risk customer
VISIT_CALL = "visit"
CHECK_IN_CALL = "recovery_check_in"
AT_RISK_CALL = "at_risk"


def at_risk_key(crossing: uuid.UUID) -> str:
    """What an at-risk call is keyed by in place of a repair order: the CustomerAtRisk
    event (one per crossing of the threshold), so a redelivered one finds its call."""
    return f"at_risk:{crossing}"


@dataclass(frozen=True)
class FollowUpTerms:
    """What the shop's policy says about follow-up calls, as a task needs it."""

    calendar: BusinessCalendar
    delay: timedelta
    missed_after: timedelta
    max_attempts: int
    shop_name: str | None
    policy_version: int


@dataclass(frozen=True)
class CompletedVisit:
    """A visit as its ServiceCompleted tells it: what a follow-up call is planned from."""

    shop_id: uuid.UUID
    repair_order_id: str
    customer_id: str
    completed_at: datetime
    advisor: str | None
    data: dict[str, Any]
    event_id: uuid.UUID


@dataclass(frozen=True)
class MissCheck:
    """The moment a task is missed if nothing has happened to it by then.

    It names the attempts and due time it was set for: an attempt since, or a reopened
    visit's new due time, means a later check governs the task and this one stands down.
    """

    task_id: uuid.UUID
    shop_id: uuid.UUID
    attempts: int
    due_at: datetime
    at: datetime


@dataclass
class FollowUpTask:
    """A call a staff member owes a customer after a visit (or a resolved case)."""

    id: uuid.UUID
    shop_id: uuid.UUID
    customer_id: str
    repair_order_id: str
    assignee: str | None
    status: TaskStatus
    due_at: datetime
    script: dict[str, Any]
    policy_version: int
    attempts: int = 0
    status_reason: str | None = None
    kind: str = VISIT_CALL
    #: attempts recorded since the task was loaded, for its repository to keep
    new_attempts: list[tuple[int, Attempt]] = field(default_factory=list)

    @classmethod
    def schedule(
        cls, visit: CompletedVisit, terms: FollowUpTerms, now: datetime, task_id: uuid.UUID
    ) -> Scheduled | None:
        """The call a newly completed visit earns; None when its window is already over."""
        task = cls(
            id=task_id,
            shop_id=visit.shop_id,
            customer_id=visit.customer_id,
            repair_order_id=visit.repair_order_id,
            assignee=visit.advisor,
            status=TaskStatus.SCHEDULED,
            due_at=visit.completed_at,
            script={},
            policy_version=terms.policy_version,
        )
        return task.reschedule(visit, terms, now)

    def reschedule(
        self, visit: CompletedVisit, terms: FollowUpTerms, now: datetime
    ) -> Scheduled | None:
        """A visit completed (again, after a reopen): the call starts over from it.

        The one decision for a new visit and a reopened one alike.
        """
        plan = plan_follow_up(
            visit.completed_at, terms.calendar, terms.delay, terms.missed_after, now
        )
        if plan.due_at is None:
            return None
        self.status, self.status_reason = TaskStatus.SCHEDULED, None
        self.due_at, self.attempts = plan.due_at, 0
        self.policy_version = terms.policy_version
        self.script = call_script(visit.data, terms.shop_name)
        event = FollowUpScheduled(
            task_id=str(self.id),
            customer_id=visit.customer_id,
            repair_order_id=visit.repair_order_id,
            assignee=visit.advisor,
            due_at=plan.due_at,
        )
        return Scheduled(self, event, self.miss_check(plan.due_at + terms.missed_after))

    @classmethod
    def check_in(
        cls,
        task_id: uuid.UUID,
        shop_id: uuid.UUID,
        customer_id: str,
        repair_order_id: str,
        assignee: str | None,
        due_at: datetime,
        policy_version: int,
    ) -> FollowUpTask:
        """A week after a recovery case is resolved: a call to make sure the fix held."""
        return cls(
            id=task_id,
            shop_id=shop_id,
            customer_id=customer_id,
            repair_order_id=repair_order_id,
            assignee=assignee,
            status=TaskStatus.SCHEDULED,
            due_at=due_at,
            policy_version=policy_version,
            kind=CHECK_IN_CALL,
            script={
                "lines": [
                    "Hi, this is {advisor}; we resolved a problem with your recent "
                    "service a week ago.",
                    "Is everything still working as it should?",
                ],
                "ask": ["satisfied (yes/no)", "notes"],
            },
        )

    @classmethod
    def at_risk_call(
        cls,
        task_id: uuid.UUID,
        crossing: uuid.UUID,
        last_visit: Visit,
        reasons: list[str],
        score: float | None,
        terms: FollowUpTerms,
        now: datetime,
    ) -> Scheduled:
        """The customer's churn risk crossed the shop's threshold: the advisor of their last
        visit calls them, at the first business moment from now."""
        due = due_after(terms.calendar, now, timedelta(0))
        key = at_risk_key(crossing)
        advisor = last_visit.data.get("advisor")
        assignee = advisor if isinstance(advisor, str) and advisor else None
        task = cls(
            id=task_id,
            shop_id=last_visit.shop_id,
            customer_id=last_visit.customer_id,
            repair_order_id=key,
            assignee=assignee,
            status=TaskStatus.SCHEDULED,
            due_at=due,
            script=at_risk_script(
                {"repair_order_id": last_visit.repair_order_id, **last_visit.data},
                reasons,
                terms.shop_name,
                score,
            ),
            policy_version=terms.policy_version,
            kind=AT_RISK_CALL,
        )
        event = FollowUpScheduled(
            task_id=str(task_id),
            customer_id=task.customer_id,
            repair_order_id=key,
            assignee=assignee,
            due_at=due,
        )
        return Scheduled(task, event, task.miss_check(due + terms.missed_after))

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def miss_check(self, at: datetime) -> MissCheck:
        return MissCheck(self.id, self.shop_id, self.attempts, self.due_at, at)

    def governed_by(self, check: MissCheck) -> bool:
        """Whether ``check`` still decides this task: nothing has happened since it was set."""
        return (
            self.status is TaskStatus.SCHEDULED
            and self.attempts == check.attempts
            and self.due_at == check.due_at
        )

    def cancel(self, reason: str) -> FollowUpCancelled | None:
        """The call is off (its visit voided or reopened, a case opened before an at-risk
        call): an open call is cancelled; a finished one stands."""
        if not self.is_open:
            return None
        self.status, self.status_reason = TaskStatus.CANCELLED, reason
        return FollowUpCancelled(
            task_id=str(self.id),
            customer_id=self.customer_id,
            repair_order_id=self.repair_order_id,
            reason=reason,
        )

    def miss(self, reason: str, at: datetime) -> FollowUpMissed:
        self.status, self.status_reason = TaskStatus.MISSED, reason
        return FollowUpMissed(
            task_id=str(self.id),
            customer_id=self.customer_id,
            repair_order_id=self.repair_order_id,
            reason=reason,
            missed_at=at,
        )

    def record_attempt(
        self, attempt: Attempt, max_attempts: int, missed_after: timedelta
    ) -> AttemptRecorded:
        """Staff called: reached completes the task, the last unanswered call misses it,
        and otherwise it is missed only if staff then stop trying (the returned check)."""
        result = record_attempt(self.status, self.attempts, max_attempts, attempt)
        self.attempts = result.number
        self.new_attempts.append((result.number, attempt))
        ids = {
            "task_id": str(self.id),
            "customer_id": self.customer_id,
            "repair_order_id": self.repair_order_id,
        }
        events: list[Event] = [
            FollowUpAttempted(
                **ids,
                attempt=result.number,
                outcome=attempt.outcome.value,
                by=attempt.by,
                at=attempt.at,
            )
        ]
        check = None
        if result.status is TaskStatus.COMPLETED:
            assert attempt.satisfied is not None  # record_attempt refuses a reach without it
            self.status, self.status_reason = TaskStatus.COMPLETED, "reached"
            events.append(
                FollowUpCompleted(
                    **ids,
                    assignee=self.assignee,
                    satisfied=attempt.satisfied,
                    score=attempt.score,
                    notes=attempt.notes,
                    completed_at=attempt.at,
                )
            )
        elif result.status is TaskStatus.MISSED:
            events.append(self.miss(result.missed_reason or "max_attempts", attempt.at))
        else:
            check = self.miss_check(attempt.at + missed_after)
        return AttemptRecorded(result, events, check)


@dataclass(frozen=True)
class Scheduled:
    task: FollowUpTask
    event: FollowUpScheduled
    miss: MissCheck


@dataclass(frozen=True)
class AttemptRecorded:
    result: AttemptResult
    events: list[Event]
    #: when the task is missed if no further attempt comes (None: it is finished)
    miss: MissCheck | None
