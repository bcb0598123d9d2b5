"""Surveys, their answers, and what each answer leads to: FeedbackReceived, a case for a
bad experience, praise passed on, review and referral asks."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from regulars_events.catalogue import FeedbackSource, FollowUpCompleted, FollowUpMissed
from regulars_runtime.bus import Received
from regulars_runtime.timers import Timer

from ..domain.cases import Signal, staff_of
from ..domain.classification import StaffRef, Verdict, classify_call
from ..domain.surveys import Survey, UnknownSurvey
from ..domain.verdicts import AskKind, ask, ask_subject, may_ask_for_review, positive_feedback
from ..domain.verdicts import praise as praised
from . import cases
from .base import Deps, FeedbackUnitOfWork, policy_or_defaults, shop_policy
from .commands import Answered, AnswerSurvey


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
    survey = Survey.request(
        shop_id=shop_id,
        customer_id=customer_id,
        repair_order_id=repair_order_id,
        reason=reason,
        now=now,
        key=deps.survey_key,
        case_id=case_id,
    )
    if not await uow.surveys.add(survey):
        return None
    uow.emit(survey.requested(deps.public_url), shop_id=shop_id, time=now)
    return survey.id


# -- what feedback leads to --------------------------------------------------------------


def pass_on_praise(
    uow: FeedbackUnitOfWork,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    verdict: Verdict,
    text: str | None,
    staff: Sequence[StaffRef],
    source: FeedbackSource,
    repair_order_id: str | None,
    survey_id: uuid.UUID | None = None,
) -> None:
    for event in praised(
        verdict,
        customer_id=customer_id,
        text=text,
        staff=staff,
        source=source,
        repair_order_id=repair_order_id,
        survey_id=survey_id,
    ):
        uow.emit(event, shop_id=shop_id)


async def _ask(
    uow: FeedbackUnitOfWork,
    deps: Deps,
    kind: AskKind,
    *,
    shop_id: uuid.UUID,
    customer_id: str,
    repair_order_id: str | None,
    survey_id: uuid.UUID | None,
) -> bool:
    """One review ask and one referral ask per visit, ever."""
    now = deps.clock()
    subject = ask_subject(repair_order_id, survey_id)
    if not await uow.asks.add(shop_id, customer_id, subject, kind, survey_id, now):
        return False
    event = ask(kind, customer_id=customer_id, repair_order_id=repair_order_id, survey_id=survey_id)
    uow.emit(event, shop_id=shop_id, time=now)
    return True


async def _may_ask_for_review(uow: FeedbackUnitOfWork, survey: Survey, since: datetime) -> bool:
    shop_id, customer_id = survey.shop_id, survey.customer_id
    case_open = await uow.cases.has_open(shop_id, customer_id)
    comeback = False
    if not case_open and survey.repair_order_id is not None:
        visit = await uow.visits.get(shop_id, survey.repair_order_id)
        comeback = visit is not None and visit.comeback
    if not case_open and not comeback:
        comeback = await uow.visits.had_comeback(shop_id, customer_id, since)
    return may_ask_for_review(case_open=case_open, comeback=comeback)


# -- answers -------------------------------------------------------------------------------


async def answer_survey(command: AnswerSurvey, uow: FeedbackUnitOfWork, deps: Deps) -> Answered:
    """The customer answered. The first answer counts; every later submission gets the
    first result and changes nothing. UnknownSurvey for an unknown or expired link;
    InvalidAnswer names what is wrong with a first answer."""
    survey = await uow.surveys.by_token(command.token, lock=True)
    if survey is None:
        raise UnknownSurvey("this survey link is not known")
    now = deps.clock()
    policy = await policy_or_defaults(uow, survey.shop_id)
    staff = staff_of(policy)
    answered = survey.answer(command.raw, staff, now)
    if not answered.first:
        return Answered(answered.result, False, survey.shop_id)
    assert answered.verdict is not None and answered.answer is not None
    verdict, answer = answered.verdict, answered.answer
    for event in answered.events:
        uow.emit(event, shop_id=survey.shop_id, time=now)
    if verdict.negative:
        await cases.report_negative(
            uow,
            deps,
            Signal(
                shop_id=survey.shop_id,
                customer_id=survey.customer_id,
                repair_order_id=survey.repair_order_id,
                source="survey",
                verdict=verdict,
                nps=answer.nps,
                csat=answer.csat,
                text=answer.comment,
                survey_id=survey.id,
            ),
            policy,
        )
    pass_on_praise(
        uow,
        shop_id=survey.shop_id,
        customer_id=survey.customer_id,
        verdict=verdict,
        text=answer.comment,
        staff=staff,
        source="survey",
        repair_order_id=survey.repair_order_id,
        survey_id=survey.id,
    )
    for kind in answered.asks:
        since = now - policy.comeback_window_timedelta
        if kind == "review" and not await _may_ask_for_review(uow, survey, since):
            continue
        await _ask(
            uow,
            deps,
            kind,
            shop_id=survey.shop_id,
            customer_id=survey.customer_id,
            repair_order_id=survey.repair_order_id,
            survey_id=survey.id,
        )
    await uow.surveys.save_answer(survey)
    return Answered(answered.result, True, survey.shop_id)


# -- events --------------------------------------------------------------------------------


async def on_followup_completed(
    message: Received[FollowUpCompleted], uow: FeedbackUnitOfWork, deps: Deps
) -> None:
    """A reached call: classify it (an unhappy call opens a case), pass on praise, then
    the survey goes out."""
    event = message.event
    shop_id = message.shop_id
    await uow.visits.remember(
        shop_id,
        event.repair_order_id,
        event.customer_id,
        advisor=event.assignee,
        comeback=None,
        completed_at=None,
    )
    known = await uow.shops.policy(shop_id)
    staff = staff_of(known.policy) if known else []
    verdict = classify_call(event.satisfied, event.score, event.notes, staff)
    if verdict.negative:
        policy = await shop_policy(uow, shop_id)
        await cases.report_negative(
            uow,
            deps,
            Signal(
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
        positive = positive_feedback(
            customer_id=event.customer_id,
            repair_order_id=event.repair_order_id,
            source="follow_up_call",
            survey_id=None,
            nps=event.score,
            csat=None,
            comment=event.notes,
        )
        uow.emit(positive, shop_id=shop_id, time=deps.clock())
        await _ask(
            uow,
            deps,
            "referral",
            shop_id=shop_id,
            customer_id=event.customer_id,
            repair_order_id=event.repair_order_id,
            survey_id=None,
        )
    pass_on_praise(
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
    event = message.event
    await request_survey(
        uow,
        deps,
        shop_id=message.shop_id,
        customer_id=event.customer_id,
        repair_order_id=event.repair_order_id,
        reason="follow_up_missed",
    )


async def on_resurvey_timer(timer: Timer, uow: FeedbackUnitOfWork, deps: Deps) -> None:
    """``recovery_check_in_after`` after a resolution: ask again how it is going."""
    case = await uow.cases.get(uuid.UUID(timer.payload["case_id"]), timer.shop_id)
    if case is None:
        return
    await request_survey(
        uow,
        deps,
        shop_id=case.shop_id,
        customer_id=case.customer_id,
        repair_order_id=case.repair_order_id,
        reason="recovery_resurvey",
        case_id=case.id,
    )


__all__ = ["AnswerSurvey", "Answered", "UnknownSurvey", "answer_survey", "request_survey"]
