"""What staff and customers ask of feedback through the API: each one a command the bus
runs in a transaction of its own (registered in bootstrap)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from regulars_runtime.bus import Command


@dataclass(frozen=True)
class Answered:
    """What an answer came to: the result (the first one's, for a repeat), and the shop."""

    result: dict[str, Any]
    first: bool
    shop_id: uuid.UUID


@dataclass(frozen=True)
class AnswerSurvey(Command[Answered]):
    """A customer's answer through the survey's public link (``raw``: the fields as posted)."""

    token: str
    raw: object


@dataclass(frozen=True)
class AcknowledgeCase(Command[bool]):
    shop_id: uuid.UUID
    case_id: uuid.UUID
    by: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ResolveCase(Command[None]):
    shop_id: uuid.UUID
    case_id: uuid.UUID
    outcome: str
    by: str | None = None


@dataclass(frozen=True)
class CommentOnCase(Command[None]):
    shop_id: uuid.UUID
    case_id: uuid.UUID
    text: str
    by: str | None = None
