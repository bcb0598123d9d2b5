"""Recording a staff call attempt on a follow-up task. Pure: the rules, not the storage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .tasks import TaskStatus


class AttemptOutcome(StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    WRONG_NUMBER = "wrong_number"


class TaskFinished(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the follow-up is already {status}; no more attempts can be recorded")
        self.status = status


@dataclass(frozen=True)
class Attempt:
    outcome: AttemptOutcome
    at: datetime
    satisfied: bool | None = None
    score: int | None = None
    notes: str | None = None
    by: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    number: int  # 1 for the first attempt on the task
    status: TaskStatus  # the task's status after this attempt
    missed_reason: str | None = None


def record_attempt(
    status: str, attempts_so_far: int, max_attempts: int, attempt: Attempt
) -> AttemptResult:
    """What one attempt does to a task: reached completes it; the last unanswered one misses it.

    A wrong number counts as unanswered: the call did not reach the customer, and the
    missed follow-up falls back to a survey by SMS or email, where a good address may exist.
    """
    if status != TaskStatus.SCHEDULED:
        raise TaskFinished(status)
    number = attempts_so_far + 1
    if attempt.outcome is AttemptOutcome.REACHED:
        if attempt.satisfied is None:
            raise ValueError("satisfied is required when the customer was reached")
        return AttemptResult(number, TaskStatus.COMPLETED)
    if number >= max_attempts:
        return AttemptResult(number, TaskStatus.MISSED, "max_attempts")
    return AttemptResult(number, TaskStatus.SCHEDULED)
