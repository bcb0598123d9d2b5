"""What a verdict leads to besides a recovery case: positive feedback, praise passed on to
the staff it names (and their manager), and the review and referral asks. Pure."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

from regulars_events.catalogue import (
    FeedbackSource,
    PositiveFeedback,
    ReferralRequested,
    ReviewRequested,
    StaffPraised,
)

from .classification import StaffRef, Verdict, incident_key, manager_of

AskKind = Literal["review", "referral"]


def positive_feedback(
    *,
    customer_id: str,
    repair_order_id: str | None,
    source: FeedbackSource,
    survey_id: uuid.UUID | None,
    nps: int | None,
    csat: int | None,
    comment: str | None,
) -> PositiveFeedback:
    return PositiveFeedback(
        customer_id=customer_id,
        repair_order_id=repair_order_id,
        source=source,
        survey_id=str(survey_id) if survey_id else None,
        nps=nps,
        csat=csat,
        comment=comment,
        incident_key=incident_key(customer_id, repair_order_id),
    )


def praise(
    verdict: Verdict,
    *,
    customer_id: str,
    text: str | None,
    staff: Sequence[StaffRef],
    source: FeedbackSource,
    repair_order_id: str | None,
    survey_id: uuid.UUID | None = None,
) -> list[StaffPraised]:
    """Praise naming a staff member reaches them and their manager (followup notifies)."""
    if not text or not verdict.praise:
        return []
    found = []
    for member in verdict.staff:
        manager = manager_of(member, staff)
        found.append(
            StaffPraised(
                customer_id=customer_id,
                staff_id=member.id,
                staff_name=member.name,
                text=text[:10_000],
                manager=manager.id if manager else None,
                repair_order_id=repair_order_id,
                survey_id=str(survey_id) if survey_id else None,
                source=source,
                staff_email=member.email,
                manager_name=manager.name if manager else None,
                manager_email=manager.email if manager else None,
            )
        )
    return found


def ask_subject(repair_order_id: str | None, survey_id: uuid.UUID | None) -> str:
    """What an ask is about: one review ask and one referral ask per visit, ever."""
    if repair_order_id:
        return f"ro:{repair_order_id}"
    return f"survey:{survey_id}" if survey_id else "customer"


def may_ask_for_review(*, case_open: bool, comeback: bool) -> bool:
    """Every surveyed customer is invited to review, whatever the score (no review
    gating), unless a recovery case is open or a comeback holds it back."""
    return not case_open and not comeback


def ask(
    kind: AskKind, *, customer_id: str, repair_order_id: str | None, survey_id: uuid.UUID | None
) -> ReviewRequested | ReferralRequested:
    cls = ReviewRequested if kind == "review" else ReferralRequested
    return cls(
        customer_id=customer_id,
        repair_order_id=repair_order_id,
        survey_id=str(survey_id) if survey_id else None,
    )
