"""Customers on the console: search, and one customer's stage, risk, value, consent and
journey, all from loyalty's own projections."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from regulars_runtime.service import context

from ...adapters import queries
from ...domain.call_sheet import staff_name
from ...domain.journey import describe
from ..api import json_value, key_cursor
from .access import signed_in
from .pages import view
from .rendering import local, stage_words

router = APIRouter(include_in_schema=False)

CUSTOMERS_PER_PAGE = 50
JOURNEY_PER_PAGE = 100
CHANNELS = {"sms": "Text messages", "email": "Email", "call": "Calls"}
ACTORS = {"customer": "the customer", "system": "Regulars", "shop_system": "the shop system"}


def _unkey(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value.encode(), altchars=b"-_", validate=True).decode() or None
    except (ValueError, UnicodeDecodeError):
        return None


@router.get("/customers")
async def customers(request: Request) -> Response:
    signed = await signed_in(request)
    ctx = context(request)
    q = (request.query_params.get("q") or "").strip()[:200] or None
    after = _unkey(request.query_params.get("after"))
    zone = ZoneInfo(signed.policy.timezone)
    rows = await queries.customers_page(
        ctx.pool,
        signed.shop,
        stage=None,
        at_risk=None,
        q=q,
        after=after,
        limit=CUSTOMERS_PER_PAGE + 1,
    )
    shown = rows[:CUSTOMERS_PER_PAGE]
    more = len(rows) > CUSTOMERS_PER_PAGE
    listed = [
        {
            **r,
            "stage_words": stage_words(r["stage"]),
            "last_visit": local(r["last_visit_at"], zone, "%d %b %Y"),
        }
        for r in shown
    ]
    heading = (
        f"{len(shown)}{'+' if more else ''} match{'es' if len(shown) != 1 else ''} for “{q}”"
        if q
        else "Customers by id"
    )
    next_query = urlencode(
        {**({"q": q} if q else {}), "after": key_cursor(shown[-1]["customer_id"])} if shown else {}
    )
    return await view(
        request,
        signed,
        "customers.html",
        "customers",
        title="Customers",
        q=q,
        error=None,
        customers=listed,
        heading=heading,
        next_cursor=more,
        next_query=next_query,
    )


def _before(value: str | None) -> tuple[datetime, uuid.UUID] | None:
    raw = _unkey(value)
    if raw is None:
        return None
    at, _, event = raw.partition("|")
    try:
        return datetime.fromisoformat(at), uuid.UUID(event)
    except ValueError:
        return None


@router.get("/customers/{customer_id}")
async def customer(request: Request, customer_id: str) -> Response:
    signed = await signed_in(request)
    ctx = context(request)
    customer_id = customer_id[:200]
    row = await queries.customer(ctx.pool, signed.shop, customer_id)
    if row is None:
        return await view(
            request,
            signed,
            "problem.html",
            "customers",
            404,
            title="No such customer",
            message="This shop has no customer with that id.",
            back="/customers",
            back_words="Back to customers",
        )
    zone = ZoneInfo(signed.policy.timezone)
    names = signed.staff_names
    steps = await queries.journey_page(
        ctx.pool,
        signed.shop,
        customer_id,
        after=_before(request.query_params.get("before")),
        limit=JOURNEY_PER_PAGE + 1,
        newest_first=True,
    )
    journey = []
    for step in steps[:JOURNEY_PER_PAGE]:
        entry = describe(step["type"], step["data"])
        who = (
            staff_name(names, entry.who.name)
            if entry.who.actor in ("advisor", "staff")
            else ACTORS.get(entry.who.actor)
        )
        journey.append(
            {
                "at": step["occurred_at"].isoformat(),
                "when": local(step["occurred_at"], zone, "%d %b %Y, %H:%M"),
                "summary": entry.summary,
                "who": who,
            }
        )
    older = None
    if len(steps) > JOURNEY_PER_PAGE:
        last = steps[JOURNEY_PER_PAGE - 1]
        older = key_cursor(f"{last['occurred_at'].isoformat()}|{last['id']}")
    consent = json_value(row["consent"]) or {}
    p_alive = row["p_alive"]
    model = "visit rhythm (BG/NBD) fitted on the shop's customers"
    if row["risk_model"] != "bg_nbd":
        model = "rules (the shop has too little history for a fitted rhythm yet)"
    return await view(
        request,
        signed,
        "customer.html",
        "customers",
        title=row["name"] or customer_id,
        c=row,
        stage_words=stage_words(row["stage"]),
        stage_since=local(row["stage_since"], zone, "%d %b %Y"),
        first_visit=local(row["first_visit_at"], zone, "%d %b %Y"),
        last_visit=local(row["last_visit_at"], zone, "%d %b %Y"),
        next_visit=local(row["expected_next_visit"], zone, "%d %b %Y"),
        risk_pct=f"{row['risk_score'] * 100:.0f}%",
        p_alive="not estimated" if p_alive is None else f"{p_alive * 100:.0f}%",
        model_words=model,
        reasons=json_value(row["risk_reasons"]) or [],
        consent=[(CHANNELS.get(k, k), v) for k, v in sorted(consent.items())],
        journey=journey,
        older=older,
    )
