"""Surveys, their answers, and what each answer leads to: FeedbackReceived, a case for a
bad experience, praise passed on, review and referral asks. Every write of them is here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from regulars_events.catalogue import (
    FeedbackReceived,
    FeedbackSource,
    FollowUpCompleted,
    FollowUpMissed,
    PositiveFeedback,
    ReferralRequested,
    ReviewRequested,
    StaffPraised,
    SurveyRequested,
)
from regulars_runtime.bus import Received
from regulars_runtime.timers import Timer

from ..domain.cases import staff_of
from ..domain.classification import (
    StaffRef,
    Verdict,
    classify_call,
    classify_survey,
    incident_key,
    manager_of,
)
from ..domain.surveys import Answer, new_survey, parse_answer, survey_link
from . import cases
from .base import Deps, FeedbackUnitOfWork, policy_or_defaults, shop_policy


class UnknownSurvey(LookupError):
    pass


@dataclass(frozen=True)
class Answered:
    """What an answer came to: the result (the first one's, for a repeat), and the shop."""

    result: dict[str, Any]
    first: bool
    shop_id: uuid.UUID


async def request_survey(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    repair_order_id: str | None,
    reason: str,
    case_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """One survey per visit and reason (and case, for a re-survey); followup sends its link
    as consent allows. None when it exists already."""
    now = deps.clock()
    survey = new_survey(reason, now)
    survey_id = uuid.uuid4()
    added = await uow.repo.add_survey(
        {
            "id": survey_id,
            "shop_id": shop_id,
            "customer_id": customer_id,
            "repair_order_id": repair_order_id,
            "reason": reason,
            "token": survey.token,
            "expires_at": survey.expires_at,
            "case_id": case_id,
            "created_at": now,
        }
    )
    if not added:
        return None
    extra: dict[str, Any] = {"case_id": str(case_id)} if case_id else {}
    uow.emit(
        SurveyRequested(
            survey_id=str(survey_id),
            customer_id=customer_id,
            repair_order_id=repair_order_id,
            reason=reason,
            survey_url=survey_link(deps.public_url, survey.token),
            expires_at=survey.expires_at,
            **extra,
        ),
        shop_id=shop_id,
        time=now,
    )
    return survey_id


# -- what feedback leads to --------------------------------------------------------------


async def pass_on_praise(
    uow: FeedbackUnitOfWork,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    verdict: Verdict,
    text: str | None,
    staff: list[StaffRef],
    source: FeedbackSource,
    repair_order_id: str | None,
    survey_id: uuid.UUID | None = None,
) -> None:
    """Praise naming a staff member reaches them and their manager (followup notifies)."""
    if not text:
        return
    for member in verdict.staff:
        manager = manager_of(member, staff)
        uow.emit(
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
            ),
            shop_id=shop_id,
        )


async def _ask(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    kind: str,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    repair_order_id: str | None,
    survey_id: uuid.UUID | None,
) -> bool:
    """One review ask and one referral ask per visit, ever."""
    subject = (
        f"ro:{repair_order_id}"
        if repair_order_id
        else f"survey:{survey_id}"
        if survey_id
        else "customer"
    )
    now = deps.clock()
    if not await uow.repo.add_ask(shop_id, customer_id, subject, kind, survey_id, now):
        return False
    cls = ReviewRequested if kind == "review" else ReferralRequested
    uow.emit(
        cls(
            customer_id=customer_id,
            repair_order_id=repair_order_id,
            survey_id=str(survey_id) if survey_id else None,
        ),
        shop_id=shop_id,
        time=now,
    )
    return True


async def ask_for_review(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    repair_order_id: str | None,
    survey_id: uuid.UUID | None,
    comeback_window: Any,
) -> bool:
    """Every surveyed customer is invited to review, whatever the score (no review gating),
    unless a recovery case is open or a comeback holds it back."""
    repo = uow.repo
    if await repo.has_open_case(shop_id, customer_id):
        return False
    if repair_order_id is not None:
        visit = await repo.visit(shop_id, repair_order_id)
        if visit is not None and visit["comeback"]:
            return False
    if await repo.had_comeback(shop_id, customer_id, deps.clock() - comeback_window):
        return False
    return await _ask(
        uow,
        deps,
        "review",
        shop_id=shop_id,
        customer_id=customer_id,
        repair_order_id=repair_order_id,
        survey_id=survey_id,
    )


def _positive(
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


# -- answers -------------------------------------------------------------------------------


def _result(survey: asyncpg.Record, answer: Answer, at: datetime) -> dict[str, Any]:
    return {
        "survey_id": str(survey["id"]),
        "status": "received",
        "nps": answer.nps,
        "csat": answer.csat,
        "comment": answer.comment,
        "received_at": at.isoformat(),
    }


async def answer_survey(uow: FeedbackUnitOfWork, deps: Deps, token: str, raw: object) -> Answered:
    """The customer answered (``raw``: the fields as posted). The first answer counts;
    every later submission gets the first result and changes nothing. UnknownSurvey for
    an unknown or expired link; InvalidAnswer names what is wrong with a first answer."""
    repo = uow.repo
    survey = await repo.survey_by_token(token, lock=True)
    if survey is None:
        raise UnknownSurvey("this survey link is not known")
    shop_id, customer_id = survey["shop_id"], survey["customer_id"]
    first = await repo.response(survey["id"])
    if first is not None:
        return Answered(first["result"], False, shop_id)
    now = deps.clock()
    if now >= survey["expires_at"]:
        raise UnknownSurvey("this survey link has expired")
    answer = parse_answer(raw)
    repair_order_id: str | None = survey["repair_order_id"]
    policy = await policy_or_defaults(uow, shop_id)
    staff = staff_of(policy)
    verdict = classify_survey(answer.nps, answer.csat, answer.comment, staff)
    uow.emit(
        FeedbackReceived(
            survey_id=str(survey["id"]),
            customer_id=customer_id,
            repair_order_id=repair_order_id,
            nps=answer.nps,
            csat=answer.csat,
            comment=answer.comment,
            received_at=now,
            reason=survey["reason"],
            negative=verdict.negative,
            positive=verdict.positive,
        ),
        shop_id=shop_id,
        time=now,
    )
    if verdict.negative:
        await cases.report_negative(
            uow,
            deps,
            cases.Signal(
                shop_id=shop_id,
                customer_id=customer_id,
                repair_order_id=repair_order_id,
                source="survey",
                verdict=verdict,
                nps=answer.nps,
                csat=answer.csat,
                text=answer.comment,
                survey_id=survey["id"],
            ),
            policy,
        )
    elif verdict.positive:
        uow.emit(
            _positive(
                customer_id,
                repair_order_id,
                "survey",
                survey["id"],
                answer.nps,
                answer.csat,
                answer.comment,
            ),
            shop_id=shop_id,
            time=now,
        )
    if verdict.praise:
        await pass_on_praise(
            uow,
            shop_id=shop_id,
            customer_id=customer_id,
            verdict=verdict,
            text=answer.comment,
            staff=staff,
            source="survey",
            repair_order_id=repair_order_id,
            survey_id=survey["id"],
        )
    ids = {
        "shop_id": shop_id,
        "customer_id": customer_id,
        "repair_order_id": repair_order_id,
        "survey_id": survey["id"],
    }
    await ask_for_review(uow, deps, comeback_window=policy.comeback_window_timedelta, **ids)
    if verdict.positive:
        await _ask(uow, deps, "referral", **ids)
    result = _result(survey, answer, now)
    await repo.add_response(
        survey,
        nps=answer.nps,
        csat=answer.csat,
        comment=answer.comment,
        result=result,
        received_at=now,
    )
    return Answered(result, True, shop_id)


# -- events --------------------------------------------------------------------------------


async def on_followup_completed(
    message: Received[FollowUpCompleted], uow: FeedbackUnitOfWork, deps: Deps
) -> None:
    """A reached call: classify it (an unhappy call opens a case), pass on praise, then
    the survey goes out."""
    event, envelope = message.event, message.envelope
    shop_id = uuid.UUID(envelope.shop_id)
    repo = uow.repo
    await repo.remember_visit(
        shop_id,
        event.repair_order_id,
        event.customer_id,
        advisor=event.assignee,
        comeback=None,
        completed_at=None,
    )
    known = await uow.shops.policy(shop_id)
    staff = staff_of(known[1]) if known else []
    verdict = classify_call(event.satisfied, event.score, event.notes, staff)
    if verdict.negative:
        policy = await shop_policy(uow, shop_id)
        await cases.report_negative(
            uow,
            deps,
            cases.Signal(
                shop_id=shop_id,
                customer_id=event.customer_id,
                repair_order_id=event.repair_order_id,
                source="follow_up_call",
                verdict=verdict,
                nps=event.score,
                text=event.notes,
                advisor=event.assignee,
            ),
            policy,
        )
    elif verdict.positive:
        uow.emit(
            _positive(
                event.customer_id,
                event.repair_order_id,
                "follow_up_call",
                None,
                event.score,
                None,
                event.notes,
            ),
            shop_id=shop_id,
            time=deps.clock(),
        )
        await _ask(
            uow,
            deps,
            "referral",
            shop_id=shop_id,
            customer_id=event.customer_id,
            repair_order_id=event.repair_order_id,
            survey_id=None,
        )
    if verdict.praise:
        await pass_on_praise(
            uow,
            shop_id=shop_id,
            customer_id=event.customer_id,
            verdict=verdict,
            text=event.notes,
            staff=staff,
            source="follow_up_call",
            repair_order_id=event.repair_order_id,
        )
    await request_survey(
        uow,
        deps,
        shop_id=shop_id,
        customer_id=event.customer_id,
        repair_order_id=event.repair_order_id,
        reason="after_follow_up",
    )


async def on_followup_missed(
    message: Received[FollowUpMissed], uow: FeedbackUnitOfWork, deps: Deps
) -> None:
    """No call happened: the survey by text or email stands in for it."""
    event, envelope = message.event, message.envelope
    await request_survey(
        uow,
        deps,
        shop_id=uuid.UUID(envelope.shop_id),
        customer_id=event.customer_id,
        repair_order_id=event.repair_order_id,
        reason="follow_up_missed",
    )


async def on_resurvey_timer(timer: Timer, uow: FeedbackUnitOfWork, deps: Deps) -> None:
    """``recovery_check_in_after`` after a resolution: ask again how it is going."""
    payload = timer.payload
    case = await uow.repo.case(uuid.UUID(payload["case_id"]))
    if case is None:
        return
    await request_survey(
        uow,
        deps,
        shop_id=case["shop_id"],
        customer_id=case["customer_id"],
        repair_order_id=case["repair_order_id"],
        reason="recovery_resurvey",
        case_id=case["id"],
    )
