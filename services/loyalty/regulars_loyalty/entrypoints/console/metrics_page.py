"""The shop's metrics on the console: a range, the value over it, and a chart by month,
each with its definition a tap away (the definitions the API documents)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from regulars_runtime.http import Problem
from regulars_runtime.service import context

from ...domain.metrics import definitions
from ..api import metrics_report
from .access import signed_in
from .charts import Point, column_chart
from .pages import view

router = APIRouter(include_in_schema=False)

#: what is charted: key, title, unit, the axis' range, and how a value reads
CHARTED: tuple[tuple[str, str, str, float, float], ...] = (
    ("retention_rate", "Retention", "%", 0, 100),
    ("nps", "NPS", "", -100, 100),
    ("csat", "CSAT", "%", 0, 100),
    ("quality_pct", "Quality (no comeback)", "%", 0, 100),
    ("on_time_pct", "On time", "%", 0, 100),
    ("follow_up_completion_pct", "Follow-ups completed", "%", 0, 100),
    ("recovery_sla_compliance_pct", "Recovery SLA met", "%", 0, 100),
)
#: fractions shown as percentages; NPS and CSAT are points already
FRACTIONS = {"retention_rate", "quality_pct", "on_time_pct", "follow_up_completion_pct"}
FRACTIONS.add("recovery_sla_compliance_pct")
BASIS = {
    "retention_rate": "customers active at the start",
    "nps": "answers",
    "csat": "answers",
    "quality_pct": "visits",
    "on_time_pct": "visits with a promised time",
    "follow_up_completion_pct": "follow-ups completed or missed",
    "recovery_sla_compliance_pct": "cases whose SLA ended",
}


def _shown(key: str, value: float | None) -> float | None:
    if value is None:
        return None
    return value * 100 if key in FRACTIONS else value


def _words(value: float | None, unit: str) -> str:
    return "no data" if value is None else f"{value:.1f}{unit}"


@router.get("/reports")
async def metrics_page(request: Request) -> Response:
    signed = await signed_in(request)
    ctx = context(request)
    policy = signed.policy
    zone = ZoneInfo(policy.timezone)
    today = ctx.deps.clock().astimezone(zone).date()
    start = (request.query_params.get("from") or "").strip()[:10]
    end = (request.query_params.get("to") or "").strip()[:10]
    if not end:
        end = today.isoformat()
    if not start:
        first = date(today.year - 1, today.month, 1) + timedelta(days=32)
        start = first.replace(day=1).isoformat()
    errors: dict[str, str] = {}
    report: dict[str, Any] | None = None
    try:
        report = await metrics_report(ctx, signed.shop, start, end, "month")
    except Problem as problem:
        for error in problem.errors or []:
            errors[str(error["field"])] = str(error["message"])
        if not errors:
            errors["from"] = problem.message
    words = definitions()
    shown = []
    for key, title, unit, low, high in CHARTED:
        series = report["series"] if report else []
        points = [
            Point(
                datetime.fromisoformat(p["from"]).strftime("%b %y"),
                _shown(key, p["metrics"][key]["value"]),
            )
            for p in series
        ]
        whole = report["metrics"][key] if report else {"value": None, "denominator": 0}
        shown.append(
            {
                "key": key,
                "title": title,
                "value_words": _words(_shown(key, whole["value"]), unit),
                "basis": f"over {whole['denominator']} {BASIS[key]}",
                "chart": column_chart(key, title, points, low=low, high=high, unit=unit),
                "definition": words.get(key, "").replace("``", ""),
                "rows": [
                    {
                        "month": pt.label,
                        "value": _words(pt.value, unit),
                        "count": p["metrics"][key]["denominator"],
                    }
                    for pt, p in zip(points, series, strict=True)
                ],
            }
        )
    range_words = f"{start} to {end}"
    return await view(
        request,
        signed,
        "metrics.html",
        "metrics",
        422 if errors else 200,
        title="Metrics",
        start=start,
        end=end,
        timezone=policy.timezone,
        range_words=range_words,
        errors=errors,
        counts=report["counts"] if report else None,
        metrics=shown,
    )
