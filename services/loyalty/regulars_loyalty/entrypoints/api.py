"""loyalty's HTTP API: customers with their stage and churn risk, each customer's journey
across every service, and the shop's retention metrics."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Path, Query, Request
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
from regulars_runtime.service import ServiceContext, ShopId, context
from regulars_shop.policy import parse_duration

from ..adapters import queries
from ..domain import metrics as definitions
from ..domain.journey import describe
from ..domain.stages import STAGES, Stage
from ..domain.stages import __doc__ as STAGES_DOC

router = APIRouter()

CustomerIdPath = Annotated[str, Path(max_length=200, description="the shop's own customer id")]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# -- customers ---------------------------------------------------------------------------


class RiskReason(BaseModel):
    code: str = Field(
        description="open_negative_feedback, missed_follow_up, overdue_maintenance or visit_rhythm"
    )
    words: str
    weight: float


class CustomerListed(BaseModel):
    customer_id: str
    name: str | None
    phone: str | None
    email: str | None
    stage: Stage
    stage_since: datetime | None
    risk_score: float
    at_risk: bool
    p_alive: float | None
    visits: int
    last_visit_at: datetime | None
    expected_next_visit: datetime | None


class CustomerPage(BaseModel):
    items: list[CustomerListed]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


def key_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _after_key(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        # validate: a cursor with characters base64 has none of is not one (lenient
        # decoding would drop them and start the list again from the top)
        key = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        if not key:
            raise ValueError("empty")
        return key
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            422,
            "cursor: not a cursor this API gave out",
            errors=[{"field": "cursor", "message": "not a cursor this API gave out"}],
        ) from None


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "stage_since": _iso(row["stage_since"]),
        "last_visit_at": _iso(row["last_visit_at"]),
        "expected_next_visit": _iso(row["expected_next_visit"]),
    }


@router.get(
    "/v1/customers",
    tags=["customers"],
    summary="The shop's customers, with their stage and churn risk, a page at a time",
    description=(
        "In customer id order. `q` matches any part of a name or a customer id"
        " (case-insensitive), or of a phone number's digits (3 or more)." + (STAGES_DOC or "")
    ),
    response_model=CustomerPage,
)
async def list_customers(
    request: Request,
    shop: ShopId,
    stage: Annotated[Stage | None, Query(description="only customers in this stage")] = None,
    at_risk: Annotated[
        bool | None,
        Query(description="only customers whose churn risk is (not) over the shop's threshold"),
    ] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Response:
    rows = await queries.customers_page(
        context(request).pool,
        shop,
        stage=stage,
        at_risk=at_risk,
        q=q,
        after=_after_key(cursor),
        limit=limit + 1,
    )
    shown = rows[:limit]
    return json_response(
        {
            "items": [_listed(r) for r in shown],
            "next_cursor": key_cursor(shown[-1]["customer_id"]) if len(rows) > limit else None,
        }
    )


class Referral(BaseModel):
    customer_id: str
    at: datetime


class OpenCase(BaseModel):
    case_id: str
    severity: str | None
    opened_at: datetime | None
    ack_due_at: datetime | None
    resolve_due_at: datetime | None
    acknowledged_at: datetime | None


class Reply(BaseModel):
    event_id: str
    occurred_at: datetime
    channel: str | None
    text: str | None


class Risk(BaseModel):
    score: float = Field(ge=0, le=1)
    at_risk: bool = Field(description="the score is at or over the shop's at_risk_threshold")
    p_alive: float | None = Field(description="the probability the customer is still a customer")
    expected_visits_12m: float | None
    expected_next_visit: datetime | None
    model: Literal["bg_nbd", "rules"]
    model_note: str | None = Field(description="why the rules alone, when they are")
    reasons: list[RiskReason]


class CustomerDetail(BaseModel):
    customer_id: str
    name: str | None
    phone: str | None
    email: str | None
    stage: Stage
    stage_since: datetime | None
    stage_reason: str
    next_stage_change_at: datetime | None = Field(description="when time alone changes the stage")
    risk: Risk
    visits: int
    first_visit_at: datetime | None
    last_visit_at: datetime | None
    lifetime_value_cents: int
    average_interval_days: float | None
    expected_next_visit: datetime | None
    referrals_made: list[Referral]
    referrals_received: list[Referral]
    open_case: OpenCase | None
    consent: dict[str, bool]
    recent_replies: list[Reply] = Field(
        description="the customer's last messages to the shop, newest first"
    )


def _stamped(rows: list[dict[str, Any]], *fields: str) -> list[dict[str, Any]]:
    return [{**r, **{f: _iso(r[f]) for f in fields}} for r in rows]


@router.get(
    "/v1/customers/{customer_id}",
    tags=["customers"],
    summary="One customer: stage and since when, churn risk and why, visits, value, referrals",
    response_model=CustomerDetail,
    responses={404: {}},
)
async def get_customer(request: Request, shop: ShopId, customer_id: CustomerIdPath) -> Response:
    pool = context(request).pool
    row = await queries.customer(pool, shop, customer_id)
    if row is None:
        raise Problem(404, f"no customer {customer_id[:60]!r} in this shop")
    model = await queries.risk_model(pool, shop)
    interval = row["average_interval_s"]
    consent = row["consent"]
    case = row["open_case"]
    return json_response(
        {
            "customer_id": row["customer_id"],
            "name": row["name"],
            "phone": row["phone"],
            "email": row["email"],
            "stage": row["stage"],
            "stage_since": _iso(row["stage_since"]),
            "stage_reason": row["stage_reason"],
            "next_stage_change_at": _iso(row["next_change_at"]),
            "risk": {
                "score": row["risk_score"],
                "at_risk": row["at_risk"],
                "p_alive": row["p_alive"],
                "expected_visits_12m": row["expected_visits_12m"],
                "expected_next_visit": _iso(row["expected_next_visit"]),
                "model": row["risk_model"],
                "model_note": None if model is None else model["note"],
                "reasons": json_value(row["risk_reasons"]),
            },
            "visits": row["visits"],
            "first_visit_at": _iso(row["first_visit_at"]),
            "last_visit_at": _iso(row["last_visit_at"]),
            "lifetime_value_cents": row["lifetime_value_cents"],
            "average_interval_days": None if interval is None else round(interval / 86400, 2),
            "expected_next_visit": _iso(row["expected_next_visit"]),
            "referrals_made": _stamped(row["referrals_made"], "at"),
            "referrals_received": _stamped(row["referrals_received"], "at"),
            "open_case": None
            if case is None
            else {
                **case,
                **{
                    f: _iso(case[f])
                    for f in ("opened_at", "ack_due_at", "resolve_due_at", "acknowledged_at")
                },
            },
            "consent": {} if consent is None else json_value(consent),
            "recent_replies": [
                {**r, "event_id": str(r["event_id"]), "occurred_at": _iso(r["occurred_at"])}
                for r in row["recent_replies"]
            ],
        }
    )


def json_value(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


# -- the journey ---------------------------------------------------------------------------


class Who(BaseModel):
    actor: Literal["advisor", "staff", "customer", "system", "shop_system"]
    name: str | None = Field(description="the advisor's or staff member's name or id, when known")


class JourneyStep(BaseModel):
    event_id: str
    type: str = Field(description="the event's type, e.g. regulars.service.completed.v1")
    occurred_at: datetime
    who: Who
    summary: str = Field(description="one line, in the shop's words")
    ids: dict[str, str] = Field(
        description="the ids to follow: repair_order_id, task_id, case_id, survey_id, message_id..."
    )
    data: dict[str, Any] = Field(description="the event as the catalogue defines it")


class JourneyPage(BaseModel):
    customer_id: str
    items: list[JourneyStep] = Field(description="oldest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


def _step(row: dict[str, Any]) -> dict[str, Any]:
    entry = describe(row["type"], row["data"])
    return {
        "event_id": str(row["id"]),
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "who": {"actor": entry.who.actor, "name": entry.who.name},
        "summary": entry.summary,
        "ids": entry.ids,
        "data": row["data"],
    }


@router.get(
    "/v1/customers/{customer_id}/journey",
    tags=["customers"],
    summary="A customer's journey: everything that happened to them, in time order",
    response_model=JourneyPage,
    responses={404: {}},
)
async def journey(
    request: Request,
    shop: ShopId,
    customer_id: CustomerIdPath,
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


# -- metrics -------------------------------------------------------------------------------


class Measure(BaseModel):
    value: float | None = Field(description="null when the denominator is 0")
    numerator: float | None
    denominator: int


class Metrics(BaseModel):
    retention_rate: Measure
    nps: Measure
    csat: Measure
    quality_pct: Measure
    on_time_pct: Measure
    referral_pct: Measure
    ar_past_due_pct: Measure
    follow_up_completion_pct: Measure
    recovery_sla_compliance_pct: Measure
    time_to_ack_p50_s: Measure
    time_to_resolve_p50_s: Measure
    plan_renewal_pct: Measure


class Counts(BaseModel):
    new_customers: int
    visits: int
    revenue_cents: int


class Period(BaseModel):
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    metrics: Metrics
    counts: Counts


class MetricsReport(BaseModel):
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to", description="exclusive")
    interval: Literal["day", "week", "month"]
    timezone: str
    metrics: Metrics
    counts: Counts
    customers_by_stage: dict[str, int] = Field(description="now, every stage listed")
    series: list[Period]


MAX_PERIODS = 1000


def _moment(value: str, name: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A date (the shop's local midnight; as ``to``, the whole day is in) or an ISO-8601
    time with an offset."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            at = datetime.combine(day + timedelta(days=1) if end else day, time(0), zone)
            return at
        at = datetime.fromisoformat(value)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        message = "a date (YYYY-MM-DD) or a time with an offset (2026-01-01T00:00:00-06:00)"
        raise Problem(422, f"{name}: {message}", errors=[{"field": name, "message": message}])
    return at.astimezone(zone)


def _measures(m: dict[str, definitions.Measure]) -> dict[str, dict[str, Any]]:
    return {
        name: {"value": x.value, "numerator": x.numerator, "denominator": x.denominator}
        for name, x in m.items()
    }


@router.get(
    "/v1/metrics",
    tags=["metrics"],
    summary="The shop's retention metrics for a range, and a series per interval",
    description=(
        "`from` and `to` are dates (the shop's local midnight; `to` includes its whole day)"
        " or times with an offset (`to` exclusive). Intervals are cut at the shop's local"
        " midnight, Monday or first of the month. Default: the last 12 months to now.\n"
        + (definitions.__doc__ or "")
    ),
    response_model=MetricsReport,
)
async def metrics(
    request: Request,
    shop: ShopId,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=40,
            description="a date (the shop's midnight) or a time with an offset",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=40,
            description="a date (its whole day included) or a time with an offset (exclusive)",
        ),
    ] = None,
    interval: Literal["day", "week", "month"] = "month",
) -> Response:
    return json_response(await metrics_report(context(request), shop, start, end, interval))


async def metrics_report(
    ctx: ServiceContext[Any],
    shop: uuid.UUID,
    start: str | None,
    end: str | None,
    interval: Literal["day", "week", "month"],
) -> dict[str, Any]:
    """The shop's metrics for a range (the API's answer, and the console's charts)."""
    policy = await queries.shop_policy(ctx.pool, shop)
    zone = ZoneInfo(policy.timezone)
    now = ctx.deps.clock()
    stop = now.astimezone(zone) if end is None else _moment(end, "to", zone, end=True)
    begin = (
        (stop - timedelta(days=365)) if start is None else _moment(start, "from", zone, end=False)
    )
    if begin >= stop:
        message = "must be before to"
        raise Problem(422, f"from: {message}", errors=[{"field": "from", "message": message}])
    periods = definitions.intervals(begin, stop, interval)
    if len(periods) > MAX_PERIODS:
        message = (
            f"{len(periods)} intervals; at most {MAX_PERIODS}:"
            " a coarser interval or a shorter range"
        )
        raise Problem(
            422, f"interval: {message}", errors=[{"field": "interval", "message": message}]
        )
    bounds = [p[0] for p in periods] + [periods[-1][1]]
    series, whole = await queries.tallies(
        ctx.pool,
        shop,
        [b.astimezone(UTC) for b in bounds],
        parse_duration(policy.lapsed_after),
        now,
    )
    stages = await queries.stage_counts(ctx.pool, shop)
    return {
        "from": begin.isoformat(),
        "to": stop.isoformat(),
        "interval": interval,
        "timezone": policy.timezone,
        "metrics": _measures(definitions.report(whole)),
        "counts": definitions.counts(whole),
        "customers_by_stage": {s: stages.get(s, 0) for s in STAGES},
        "series": [
            {
                "from": a.isoformat(),
                "to": b.isoformat(),
                "metrics": _measures(definitions.report(t)),
                "counts": definitions.counts(t),
            }
            for (a, b), t in zip(periods, series, strict=True)
        ],
    }
