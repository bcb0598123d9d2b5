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
