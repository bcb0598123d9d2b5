"""Recovery cases on the console: the open ones by time left, one case with its customer,
visit, signals and history, and the three things a manager does to it. feedback owns
cases: every read and command goes to it as the signed-in person."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from regulars_runtime.service import context

from ...adapters import queries
from ...adapters.shop_services import ServiceUnreachable
from ...domain.call_sheet import staff_name
from ...domain.case_clock import by_time_left, clock_of
from .access import Signed, check_csrf, form_of, signed_in
from .pages import scope_of, view
from .parts import parts_of
from .rendering import local, money

router = APIRouter(include_in_schema=False)

CASES_PER_PAGE = 100
LEVELS = {"advisor": "advisor", "service_manager": "service manager", "owner": "owner"}
STATUS = {"open": "Open", "acknowledged": "Acknowledged", "resolved": "Resolved"}
SOURCES = {"survey": "Survey answer", "follow_up_call": "Follow-up call", "reply": "Reply"}
HISTORY = {
    "opened": "Opened",
    "joined": "More feedback",
    "severity": "Severity changed",
    "sla_at_risk": "SLA at risk",
    "sla_breached": "SLA breached",
    "escalated": "Escalated",
    "acknowledged": "Acknowledged",
    "comment": "Comment",
    "resolved": "Resolved",
    "reply": "Customer replied",
}
DONE = {
    "acknowledge": "Acknowledged: the acknowledgement clock has stopped.",
    "comment": "Comment added.",
    "resolve": "Resolved: every clock has stopped.",
    "closed": "This case is already resolved.",
}


@router.get("/cases")
async def cases(request: Request) -> Response:
    signed = await signed_in(request)
    scope = scope_of(request, signed)
    ctx = context(request)
    zone = ZoneInfo(signed.policy.timezone)
    now = ctx.deps.clock()
    names = signed.staff_names
    after = request.query_params.get("after")
    values: dict[str, Any] = {"cases": [], "unreachable": None, "next_cursor": None}
    try:
        answer = await parts_of(request).services.open_cases(
            signed.principal,
            assignee=signed.viewer.assignee_for(scope),
            cursor=after[:500] if after else None,
            limit=CASES_PER_PAGE,
        )
    except ServiceUnreachable:
        answer = None
        values["unreachable"] = "Cases cannot be reached right now. Try again shortly."
    items = answer.body.get("items", []) if answer and answer.ok else []
    items = [c for c in items if c.get("status") != "resolved"]
    people, _ = await queries.call_context(
        ctx.pool, signed.shop, sorted({c["customer_id"] for c in items}), []
    )
    shown = []
    for case in by_time_left(items, now):
        clock = clock_of(case, now)
        shown.append(
            {
                "id": case["id"],
                "customer_name": people.get(case["customer_id"], {}).get("name")
                or case["customer_id"],
                "severity": case["severity"],
                "standing": clock.standing,
                "acknowledged": case.get("acknowledged_at") is not None,
                "clock_words": clock.words,
                "due_iso": clock.due_at.isoformat(),
                "verb": "Acknowledge" if clock.running == "acknowledge" else "Resolve",
                "due_words": local(clock.due_at, zone),
                "assignee": staff_name(names, case.get("assignee")) or "nobody",
                "level": LEVELS.get(case.get("escalation_level", ""), case.get("escalation_level")),
                "opened_words": local(case["opened_at"], zone),
                "repair_order_id": case.get("repair_order_id"),
            }
        )
    breached = sum(1 for c in shown if c["standing"] == "breached")
    heading = f"{len(shown)} open case{'s' if len(shown) != 1 else ''}"
    if breached:
        heading += f", {breached} breached"
    values.update(
        cases=shown,
        heading=heading,
        next_cursor=answer.body.get("next_cursor") if answer and answer.ok else None,
    )
    return await view(request, signed, "cases.html", "cases", title="Cases", scope=scope, **values)


def _signals(history: list[dict[str, Any]], zone: ZoneInfo) -> list[dict[str, Any]]:
    found = []
    for entry in history:
        if entry.get("kind") not in ("opened", "joined", "reply"):
            continue
        lines = []
        if entry.get("nps") is not None:
            lines.append(f"Likely to recommend: {entry['nps']} of 10")
        if entry.get("csat") is not None:
            lines.append(f"Satisfaction: {entry['csat']} of 5")
        if entry.get("text"):
            lines.append(f"“{entry['text']}”")
        if entry.get("reasons"):
            lines.append("Why a case: " + ", ".join(str(r) for r in entry["reasons"]))
        kind = (
            "Reply"
            if entry["kind"] == "reply"
            else SOURCES.get(entry.get("source", ""), "Feedback")
        )
        found.append({"kind": kind, "when": local(entry["at"], zone), "lines": lines})
    return found


_SHOWN_DETAILS = ("severity", "from", "to", "level", "clock", "due_at")


def _history(history: list[dict[str, Any]], names: dict[str, str], zone: ZoneInfo) -> list[Any]:
    out = []
    for entry in history:
        details = []
        for key in _SHOWN_DETAILS:
            value = entry.get(key)
            if value is None or (entry["kind"] in ("opened", "joined") and key == "severity"):
                continue
            if key == "due_at":
                value = local(str(value), zone)
            details.append(f"{key.replace('_', ' ')}: {value}")
        out.append(
            {
                "at": entry["at"],
                "when": local(entry["at"], zone),
                "kind": HISTORY.get(entry["kind"], entry["kind"].replace("_", " ").capitalize()),
                "by": staff_name(names, entry.get("by")),
                "text": entry.get("text"),
                "details": ", ".join(details),
            }
        )
    return out


async def _case_page(
    request: Request,
    signed: Signed,
    case_id: str,
    status: int = 200,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    ctx = context(request)
    try:
        uuid.UUID(case_id)
    except ValueError:
        return await _missing(request, signed)
    try:
        answer = await parts_of(request).services.case(signed.principal, case_id)
    except ServiceUnreachable:
        return await view(
            request,
            signed,
            "problem.html",
            "cases",
            503,
            title="Cases cannot be reached",
            message="feedback, which keeps the cases, is not answering. Try again shortly.",
            back="/cases",
            back_words="Back to cases",
        )
    if answer.status != 200 or not isinstance(answer.body, dict):
        return await _missing(request, signed)
    case = answer.body
    zone = ZoneInfo(signed.policy.timezone)
    now = ctx.deps.clock()
    names = signed.staff_names
    people, visits = await queries.call_context(
        ctx.pool, signed.shop, [case["customer_id"]], [case.get("repair_order_id") or ""]
    )
    person = people.get(case["customer_id"], {})
    visit = visits.get(case.get("repair_order_id") or "")
    is_open = case["status"] != "resolved"
    clock = clock_of(case, now) if is_open else None
    phone = person.get("phone")
    done = DONE.get(request.query_params.get("done", ""))
    return await view(
        request,
        signed,
        "case.html",
        "cases",
        status,
        title=f"Case: {person.get('name') or case['customer_id']}",
        case=case,
        customer_name=person.get("name") or case["customer_id"],
        phone=phone,
        email=None,
        stage=person.get("stage"),
        visit=None
        if visit is None
        else {
            "completed_words": local(visit["completed_at"], zone),
            "advisor": staff_name(names, visit.get("advisor")),
            "total": money(visit.get("total_cents")),
        },
        signals=_signals(case.get("history") or [], zone),
        history=_history(case.get("history") or [], names, zone),
        open=is_open,
        clock=clock,
        due_iso=clock.due_at.isoformat() if clock else "",
        verb=("Acknowledge" if clock.running == "acknowledge" else "Resolve") if clock else "",
        due_words=local(clock.due_at, zone) if clock else "",
        status_words=STATUS.get(case["status"], case["status"]),
        assignee=staff_name(names, case.get("assignee")) or "nobody",
        level=LEVELS.get(case.get("escalation_level", ""), case.get("escalation_level")),
        opened_words=local(case["opened_at"], zone),
        acknowledged_words=local(case.get("acknowledged_at"), zone),
        acknowledged_by=staff_name(names, case.get("acknowledged_by")) or "someone",
        resolved_words=local(case.get("resolved_at"), zone),
        resolved_by=staff_name(names, case.get("resolved_by")) or "someone",
        errors=errors or {},
        form=form or {},
        notice=done or (next(iter(errors.values())) if errors else None),
        notice_tone="bad" if errors else "",
    )


async def _missing(request: Request, signed: Signed) -> Response:
    return await view(
        request,
        signed,
        "problem.html",
        "cases",
        404,
        title="No such case",
        message="This shop has no case with that id.",
        back="/cases",
        back_words="Back to cases",
    )


@router.get("/cases/{case_id}")
async def case_page(request: Request, case_id: str) -> Response:
    signed = await signed_in(request)
    return await _case_page(request, signed, case_id[:100])


COMMANDS = {
    "acknowledge": ("acknowledge", ("note",)),
    "comment": ("comments", ("text",)),
    "resolve": ("resolve", ("outcome",)),
}


@router.post("/cases/{case_id}/{command}")
async def case_command(request: Request, case_id: str, command: str) -> Response:
    signed = await signed_in(request)
    form = await form_of(request)
    check_csrf(form, signed.csrf)
    if command not in COMMANDS:
        return await _missing(request, signed)
    verb, fields = COMMANDS[command]
    body = {f: form.get(f, "").strip() for f in fields}
    errors = {}
    if command == "resolve" and not body["outcome"]:
        errors["outcome"] = "Write the outcome: what was done for the customer. It is required."
    if command == "comment" and not body["text"]:
        errors["text"] = "Write the comment first."
    if errors:
        return await _case_page(request, signed, case_id, 422, errors=errors, form=form)
    if command == "acknowledge" and not body["note"]:
        body = {}
    try:
        uuid.UUID(case_id)
        answer = await parts_of(request).services.case_command(
            signed.principal, case_id, verb, body
        )
    except ValueError:
        return await _missing(request, signed)
    except ServiceUnreachable:
        return await _case_page(
            request,
            signed,
            case_id,
            503,
            errors={"service": "Not saved: feedback, which keeps the cases, is not answering."},
            form=form,
        )
    if answer.ok:
        return _back(case_id, command)
    if answer.status == 409:
        return _back(case_id, "closed")
    if answer.status == 422:
        errors = answer.field_errors() or {"outcome": answer.detail}
        return await _case_page(request, signed, case_id, 422, errors=errors, form=form)
    return await _missing(request, signed)


def _back(case_id: str, done: str) -> Response:
    return RedirectResponse(f"/cases/{case_id}?" + urlencode({"done": done}), status_code=303)
