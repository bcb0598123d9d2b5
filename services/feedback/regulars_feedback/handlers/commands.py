"""What staff and customers ask of feedback through the API: each one a command the bus
runs in a transaction of its own (registered in bootstrap)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerSurvey:
    """A customer's answer through the survey's public link (``raw``: the fields as posted)."""

    token: str
    raw: object


@dataclass(frozen=True)
class AcknowledgeCase:
    shop_id: uuid.UUID
    case_id: uuid.UUID
    by: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ResolveCase:
    shop_id: uuid.UUID
    case_id: uuid.UUID
    outcome: str
    by: str | None = None


@dataclass(frozen=True)
class CommentOnCase:
    shop_id: uuid.UUID
    case_id: uuid.UUID
    text: str
    by: str | None = None
