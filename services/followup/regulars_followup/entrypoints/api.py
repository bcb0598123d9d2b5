"""followup's HTTP API: the staff call list."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from regulars_runtime.http import Problem, context, json_response, page_limit, shop_of

from ..adapters.repository import FollowUpRepository
from ..domain.tasks import TaskStatus

router = APIRouter()


def _encode_cursor(due_at: datetime, task_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{due_at.isoformat()}|{task_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        due, _, task = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(due), uuid.UUID(task)
    except ValueError:
        raise Problem(
            422,
            "cursor is not one this API gave out",
            errors=[{"field": "cursor", "message": "invalid"}],
        ) from None


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
        "script": row["script"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


@router.get(
    "/v1/followups", tags=["follow-ups"], summary="The shop's follow-up call tasks, by due time"
)
async def list_followups(
    request: Request,
    status: str | None = Query(None, description="scheduled, completed, missed or cancelled"),
    assignee: str | None = Query(None, max_length=200),
    customer_id: str | None = Query(None, max_length=200),
    limit: str | None = Query(None, description="1 to 1000, default 100"),
    cursor: str | None = Query(None, max_length=500),
) -> Response:
    shop = await shop_of(request)
    if status is not None and status not in set(TaskStatus):
        raise Problem(
            422,
            f"status must be one of {', '.join(TaskStatus)}, got {status[:40]!r}",
            errors=[{"field": "status", "message": "unknown status"}],
        )
    size = page_limit(limit)
    after = _decode_cursor(cursor) if cursor else None
    async with context(request).pool.acquire() as conn:
        rows = await FollowUpRepository(conn).list_tasks(
            shop,
            status=status,
            assignee=assignee,
            customer_id=customer_id,
            after=after,
            limit=size + 1,
        )
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = _encode_cursor(rows[-1]["due_at"], rows[-1]["id"]) if more else None
    return json_response({"items": [_task(r) for r in rows], "next_cursor": next_cursor})
