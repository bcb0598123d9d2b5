"""followup's HTTP API: the staff call list."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from regulars_runtime.http import (
    PageCursor,
    PageLimit,
    Problem,
    after_cursor,
    json_response,
    page,
)
from regulars_runtime.service import ShopId, context, staff_of

from .. import handlers
from ..adapters import queries
from ..domain.attempts import Attempt, AttemptOutcome, TaskFinished
from ..domain.messages import MessageStatus
from ..domain.tasks import TaskStatus, addressed

router = APIRouter()


class CallScript(BaseModel):
    """What the advisor says on the call, with the customer's name as it is now."""

    model_config = ConfigDict(extra="allow")

    customer: str
    lines: list[str]
    ask: list[str] = []
    vehicle_or_unit: str | None = None
    work_performed: str | None = None


class FollowUpOut(BaseModel):
    id: uuid.UUID
    customer_id: str
    repair_order_id: str
    assignee: str | None
    status: TaskStatus
    status_reason: str | None
    due_at: datetime
    attempts: int
    customer_phone: str | None = Field(
        description="the number to call, in E.164 (+15125550142); null when the shop has none"
    )
    script: CallScript
    created_at: datetime
    updated_at: datetime


class FollowUpPage(BaseModel):
    items: list[FollowUpOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


class AttemptOut(BaseModel):
    number: int
    outcome: AttemptOutcome
    satisfied: bool | None
    score: int | None
    notes: str | None
    by_staff: str | None
    at: datetime


class FollowUpWithHistory(FollowUpOut):
    history: list[AttemptOut]


class AttemptRecordedOut(BaseModel):
    attempt: int = Field(description="1 for the first attempt on the task")
    task: FollowUpWithHistory


class MessageOut(BaseModel):
    id: uuid.UUID
    customer_id: str
    channel: str | None
    kind: str
    purpose: str
    status: MessageStatus
    reason: str | None
    send_at: datetime | None
    sent_at: datetime | None
    repair_order_id: str | None
    created_at: datetime


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


def _task(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "customer_id": row["customer_id"],
        "repair_order_id": row["repair_order_id"],
        "assignee": row["assignee"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "due_at": row["due_at"].isoformat(),
        "attempts": row["attempts"],
        "customer_phone": row["customer_phone"],
        "script": addressed(row["script"], row["customer_name"]),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _moment(value: str | None, name: str) -> datetime | None:
    """A query's date and time, with its offset (the end of the caller's day is theirs to
    say: the shop's day and the server's differ); 422 naming the parameter otherwise."""
    if value is None:
        return None
    try:
        when: datetime | None = datetime.fromisoformat(value)
        # the moment in UTC, as the database compares it: 0001-01-01T00:00+05:00 has none
        if when is not None and when.tzinfo is not None:
            when = when.astimezone(UTC)
    except (ValueError, OverflowError):
        when = None
    if when is None or when.tzinfo is None:
        message = (
            "an ISO 8601 date and time with its UTC offset, such as 2026-12-02T23:59:59-05:00"
            " (in a URL a + is written %2B)"
        )
        raise Problem(422, f"{name}: {message}", errors=[{"field": name, "message": message}])
    return when


@router.get(
    "/v1/followups",
    tags=["follow-ups"],
    summary="The shop's follow-up call tasks, by due time",
    response_model=FollowUpPage,
)
async def list_followups(
    request: Request,
    shop: ShopId,
    status: TaskStatus | None = None,
    assignee: str | None = Query(None, max_length=200),
    customer_id: str | None = Query(None, max_length=200),
    due_before: str | None = Query(
        None,
        max_length=64,
        description="only tasks due before this moment (ISO 8601 with its offset), such as"
        " the end of the shop's day",
    ),
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Response:
    size = limit
    before = _moment(due_before, "due_before")
    after = after_cursor(cursor)
    rows = await queries.list_tasks(
        context(request).pool,
        shop,
        status=status,
        assignee=assignee,
        customer_id=customer_id,
        due_before=before,
        after=after,
        limit=size + 1,
    )
    return json_response(page(rows, size, at="due_at", item=_task))


class AttemptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: AttemptOutcome = Field(description="reached, no_answer, voicemail or wrong_number")
    satisfied: bool | None = Field(None, description="required when reached")
    score: int | None = Field(None, ge=0, le=10)
    notes: str | None = Field(None, max_length=10_000)
    by: str | None = Field(
        None,
        max_length=200,
        description="the staff id who called; with a staff token, the token's staff member",
    )

    @model_validator(mode="after")
    def _reached_needs_satisfied(self) -> AttemptBody:
        if self.outcome is AttemptOutcome.REACHED and self.satisfied is None:
            raise ValueError("satisfied is required when the outcome is reached")
        if self.outcome is not AttemptOutcome.REACHED and (
            self.satisfied is not None or self.score is not None
        ):
            raise ValueError("satisfied and score are only for a reached customer")
        return self


@router.post(
    "/v1/followups/{task_id}/attempts",
    status_code=201,
    tags=["follow-ups"],
    summary="Record a call attempt (reached completes the task; the last unanswered misses it)",
    response_model=AttemptRecordedOut,
    responses={401: {}, 404: {}, 409: {}, 422: {}},
)
async def post_attempt(request: Request, shop: ShopId, task_id: str, body: AttemptBody) -> Response:
    try:
        tid = uuid.UUID(task_id)
    except ValueError:
        raise Problem(404, f"no follow-up {task_id[:60]!r} in this shop") from None
    ctx = context(request)
    # at the console the signed-in person made the call, whatever the form says
    person = staff_of(request)
    by = person.staff_id if person is not None else body.by
    attempt = Attempt(body.outcome, ctx.deps.clock(), body.satisfied, body.score, body.notes, by)
    try:
        result = await ctx.bus.handle(handlers.tasks.RecordCallAttempt(shop, tid, attempt))
    except handlers.tasks.UnknownTask as exc:
        raise Problem(404, str(exc)) from None
    except TaskFinished as exc:
        raise Problem(409, str(exc)) from None
    row, history = await queries.task_with_history(ctx.pool, shop, tid)
    assert row is not None
    task = _task(row)
    task["history"] = [{**dict(a), "at": a["at"].isoformat()} for a in history]
    return json_response({"attempt": result.number, "task": task}, 201)


def _message(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "customer_id": row["customer_id"],
        "channel": row["channel"],
        "kind": row["kind"],
        "purpose": row["purpose"],
        "status": row["status"],
        "reason": row["reason"],
        "send_at": row["send_at"].isoformat() if row["send_at"] else None,
        "sent_at": row["sent_at"].isoformat() if row["sent_at"] else None,
        "repair_order_id": row["repair_order_id"],
        "created_at": row["created_at"].isoformat(),
    }


@router.get(
    "/v1/messages",
    tags=["messages"],
    summary="Messages to the shop's customers, newest first",
    response_model=MessagePage,
)
async def list_messages(
    request: Request,
    shop: ShopId,
    customer_id: str | None = Query(None, max_length=200),
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Response:
    size = limit
    before = after_cursor(cursor)
    rows = await queries.list_messages(
        context(request).pool, shop, customer_id, before=before, limit=size + 1
    )
    return json_response(page(rows, size, at="created_at", item=_message))


_UNSUBSCRIBED = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribed</title>
</head><body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto;
padding: 0 1rem"><h1>You are unsubscribed</h1><p>{shop} will send you no more email.
Messages about a repair you have open may still reach you by phone.</p></body></html>"""

_CONFIRM = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribe</title>
</head><body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto;
padding: 0 1rem"><h1>Unsubscribe from email?</h1><form method="post">
<button type="submit" style="font-size: 1.1rem; padding: .6rem 1.2rem">Unsubscribe</button>
</form></body></html>"""


@router.get(
    "/u/{token}",
    tags=["messages"],
    summary="Unsubscribe page (link in every email)",
    response_class=HTMLResponse,
)
async def unsubscribe_page(request: Request, token: str) -> Response:
    # A GET only shows the button: mail scanners follow links, and must not unsubscribe.
    await context(request).limit_client(request.scope)
    return HTMLResponse(_CONFIRM)


@router.post(
    "/u/{token}",
    tags=["messages"],
    summary="Unsubscribe (RFC 8058 one-click)",
    response_class=HTMLResponse,
    responses={
        404: {
            "description": "A link this service never gave out",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    },
)
async def unsubscribe(request: Request, token: str) -> Response:
    # No rate of requests here: a mail provider posts one-click unsubscribes for all its
    # users from a few addresses, and each must stop the mail. Guessing is limited instead.
    ctx = context(request)
    ctx.refuse_known_guesser(request.scope)
    shop = await ctx.bus.handle(handlers.outreach.Unsubscribe(token[:200]))
    if shop is None:
        await ctx.count_failure(request.scope)
        return HTMLResponse("<h1>This unsubscribe link is not known</h1>", status_code=404)
    return HTMLResponse(_UNSUBSCRIBED.format(shop=html.escape(shop)))
