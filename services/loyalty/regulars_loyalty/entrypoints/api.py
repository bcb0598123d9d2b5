"""loyalty's HTTP API: a customer's journey across every service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from regulars_runtime.http import (
    PageCursor,
    PageLimit,
    Problem,
    after_cursor,
    json_response,
    page,
)
from regulars_runtime.service import ShopId, context

from ..adapters import queries

router = APIRouter()


class JourneyStep(BaseModel):
    event_id: str
    type: str = Field(description="the event's type, e.g. regulars.service.completed.v1")
    occurred_at: datetime
    data: dict[str, Any] = Field(description="the event as the catalogue defines it")


class JourneyPage(BaseModel):
    customer_id: str
    items: list[JourneyStep] = Field(description="oldest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


def _step(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(row["id"]),
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "data": row["data"],
    }


@router.get(
    "/v1/customers/{customer_id}/journey",
    tags=["customers"],
    summary="A customer's journey: every event about them, from every service, oldest first",
    response_model=JourneyPage,
    responses={404: {}},
)
async def journey(
    request: Request,
    shop: ShopId,
    customer_id: str = Path(max_length=200),
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Response:
    rows = await queries.journey_page(
        context(request).pool, shop, customer_id, after=after_cursor(cursor), limit=limit + 1
    )
    if not rows and cursor is None:
        # Ids are the shop's own: another shop's customer is no different from none.
        raise Problem(404, f"no customer {customer_id[:60]!r} in this shop")
    return json_response(
        {"customer_id": customer_id, **page(rows, limit, at="occurred_at", item=_step)}
    )
