"""Surveys: when one is due, what its link is, and what its answer decides. Pure."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from regulars_events.base import Event
from regulars_events.catalogue import FeedbackReceived, SurveyRequested
from regulars_shop.survey_links import survey_page, survey_token

from .classification import StaffRef, Verdict, classify_survey
from .verdicts import AskKind, positive_feedback

#: a survey link stays answerable this long
SURVEY_LIFETIME = timedelta(days=30)


@dataclass(frozen=True)
class NewSurvey:
    token: str
    reason: str
    expires_at: datetime


def new_survey(
    key: bytes, shop_id: uuid.UUID, survey_id: uuid.UUID, reason: str, now: datetime
) -> NewSurvey:
    # The token is the only credential of a public page: an HMAC of the (random) id under
    # a key, so followup can make the same link from the id and nothing else can.
    return NewSurvey(survey_token(key, shop_id, survey_id), reason, now + SURVEY_LIFETIME)


def survey_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/s/{token}"


# -- answers ---------------------------------------------------------------------------------

COMMENT_MAX = 10_000


@dataclass(frozen=True)
class Answer:
    nps: int | None
    csat: int | None
    comment: str | None


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


class InvalidAnswer(ValueError):
    """The answer is not acceptable; ``problems`` names each field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def _score(raw: object, name: str, low: int, high: int, problems: list[FieldProblem]) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    value: int | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 3:
        value = int(raw.strip())
    if value is None or not low <= value <= high:
        shown = repr(raw)[:40]
        problems.append(
            FieldProblem(name, f"must be a whole number from {low} to {high}, got {shown}")
        )
        return None
    return value


def parse_answer(raw: object) -> Answer:
    """A survey answer from JSON or a form: ``nps`` 0-10 and/or ``csat`` 1-5, ``comment``.

    Blank form fields count as not given; fields other than these three are ignored.
    """
    if not isinstance(raw, dict):
        raise InvalidAnswer([FieldProblem("body", "expected an object with nps, csat, comment")])
    problems: list[FieldProblem] = []
    nps = _score(raw.get("nps"), "nps", 0, 10, problems)
    csat = _score(raw.get("csat"), "csat", 1, 5, problems)
    comment_raw = raw.get("comment")
    comment: str | None = None
    if comment_raw is not None and not isinstance(comment_raw, str):
        problems.append(FieldProblem("comment", "must be text"))
    elif isinstance(comment_raw, str):
        comment = comment_raw.strip() or None
        if comment is not None and len(comment) > COMMENT_MAX:
            problems.append(FieldProblem("comment", f"must be at most {COMMENT_MAX} characters"))
    if not problems and nps is None and csat is None:
        problems.append(FieldProblem("nps", "give nps (0-10) or csat (1-5), or both"))
    if problems:
        raise InvalidAnswer(problems)
    return Answer(nps, csat, comment)


def answerable(status: str, expires_at: datetime, now: datetime) -> bool:
    """A survey takes its first answer until it expires."""
    return status != "answered" and now < expires_at


# -- the aggregate -----------------------------------------------------------------------------


class UnknownSurvey(LookupError):
    """The link is not known, or no longer answerable: the customer sees "not found"."""


@dataclass(frozen=True)
class SurveyResponse:
    """The answer that counts (the first one), and the result every later one gets."""

    nps: int | None
    csat: int | None
    comment: str | None
    result: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class SurveyAnswer:
    """What an answer came to. A repeat (``first`` False) changes and causes nothing."""

    result: dict[str, Any]
    first: bool
    verdict: Verdict | None = None
    answer: Answer | None = None
    events: list[Event] = field(default_factory=list)
    #: the asks this answer makes, in order (the review ask may still be held back)
    asks: tuple[AskKind, ...] = ()


@dataclass
class Survey:
    id: uuid.UUID
    shop_id: uuid.UUID
    customer_id: str
    repair_order_id: str | None
    reason: str
    token: str
    status: str
    created_at: datetime
    expires_at: datetime
    case_id: uuid.UUID | None = None
    response: SurveyResponse | None = None

    @classmethod
    def request(
        cls,
        *,
        shop_id: uuid.UUID,
        customer_id: str,
        repair_order_id: str | None,
        reason: str,
        now: datetime,
        key: bytes,
        case_id: uuid.UUID | None = None,
    ) -> Survey:
        survey_id = uuid.uuid4()
        fresh = new_survey(key, shop_id, survey_id, reason, now)
        return cls(
            id=survey_id,
            shop_id=shop_id,
            customer_id=customer_id,
            repair_order_id=repair_order_id,
            reason=reason,
            token=fresh.token,
            status="sent",
            created_at=now,
            expires_at=fresh.expires_at,
            case_id=case_id,
        )

    def requested(self, public_url: str) -> SurveyRequested:
        """followup sends the link as consent allows; the event names the survey and its
        page, never the token (followup makes it again from the id)."""
        extra: dict[str, Any] = {"case_id": str(self.case_id)} if self.case_id else {}
        return SurveyRequested(
            survey_id=str(self.id),
            customer_id=self.customer_id,
            repair_order_id=self.repair_order_id,
            reason=self.reason,
            survey_page=survey_page(public_url),
            expires_at=self.expires_at,
            **extra,
        )

    def answer(self, raw: object, staff: Sequence[StaffRef], now: datetime) -> SurveyAnswer:
        """The customer answered (``raw``: the fields as posted). The first answer counts;
        every later one gets the first result. UnknownSurvey once it expired;
        InvalidAnswer names what is wrong with a first answer."""
        if self.response is not None:
            return SurveyAnswer(self.response.result, first=False)
        if now >= self.expires_at:
            raise UnknownSurvey("this survey link has expired")
        answer = parse_answer(raw)
        verdict = classify_survey(answer.nps, answer.csat, answer.comment, staff)
        events: list[Event] = [
            FeedbackReceived(
                survey_id=str(self.id),
                customer_id=self.customer_id,
                repair_order_id=self.repair_order_id,
                nps=answer.nps,
                csat=answer.csat,
                comment=answer.comment,
                received_at=now,
                reason=self.reason,
                negative=verdict.negative,
                positive=verdict.positive,
            )
        ]
        if not verdict.negative and verdict.positive:
            events.append(
                positive_feedback(
                    customer_id=self.customer_id,
                    repair_order_id=self.repair_order_id,
                    source="survey",
                    survey_id=self.id,
                    nps=answer.nps,
                    csat=answer.csat,
                    comment=answer.comment,
                )
            )
        result = {
            "survey_id": str(self.id),
            "status": "received",
            "nps": answer.nps,
            "csat": answer.csat,
            "comment": answer.comment,
            "received_at": now.isoformat(),
        }
        self.status = "answered"
        self.response = SurveyResponse(answer.nps, answer.csat, answer.comment, result, now)
        asks: tuple[AskKind, ...] = ("review", "referral") if verdict.positive else ("review",)
        return SurveyAnswer(result, True, verdict, answer, events, asks)
