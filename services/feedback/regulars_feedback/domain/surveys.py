"""Surveys: when one is due and what its link is. Pure."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

#: a survey link stays answerable this long
SURVEY_LIFETIME = timedelta(days=30)


@dataclass(frozen=True)
class NewSurvey:
    token: str
    reason: str
    expires_at: datetime


def new_survey(reason: str, now: datetime) -> NewSurvey:
    # 32 random bytes: the token is the only credential of a public page, so unguessable.
    return NewSurvey(secrets.token_urlsafe(32), reason, now + SURVEY_LIFETIME)


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
