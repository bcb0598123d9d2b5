"""The console's pages: signing in and out, and Today, the signed-in person's calls.

Every page is whole HTML that works without a script; with htmx, a call's buttons swap
just the list in place. Reads of loyalty's own projections go through its queries; calls,
cases and settings belong to followup, feedback and intake and are asked of them as the
signed-in person (adapters.shop_services).
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from regulars_runtime.service import context
from regulars_shop.policy import Policy

from ...adapters import queries
from ...adapters.shop_services import ServiceUnreachable, ShopServices
from ...domain.call_sheet import call_sheet
from ...domain.staff_access import LinkRefused, Scope
from ...handlers.console import AskForSignIn, SignIn, SignOut
from .access import (
    BadForm,
    Signed,
    check_csrf,
    clear_session_cookie,
    client_of,
    form_of,
    form_token,
    public_page,
    set_form_cookie,
    set_session_cookie,
    signed_in,
)
from .parts import ConsoleParts, parts_of
from .rendering import local, page

log = logging.getLogger("regulars.loyalty.console")

router = APIRouter(include_in_schema=False)

CALLS_PER_PAGE = 50
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

OUTCOME_WORDS = {
    "reached_yes": "Reached, satisfied",
    "reached_no": "Reached, not satisfied",
    "no_answer": "No answer",
    "voicemail": "Voicemail",
    "wrong_number": "Wrong number",
}
NOTICES = {
    **{k: (f"Call recorded: {v}.", "") for k, v in OUTCOME_WORDS.items()},
    "finished": ("That call was already finished; the list is up to date.", "warn"),
    "gone": ("That call is no longer on the list.", "warn"),
}


def shop_name(policy: Policy) -> str:
    return policy.contact.name or "Your shop"


async def view(
    request: Request, signed: Signed, template: str, section: str, status: int = 200, **values: Any
) -> Response:
    response = page(
        template,
        status,
        signed=signed,
        section=section,
        shop_name=shop_name(signed.policy),
        **values,
    )
    if signed.touched:
        set_session_cookie(response, request, signed.token)
    return response


def scope_of(request: Request, signed: Signed, given: str | None = None) -> Scope:
    who = given if given is not None else request.query_params.get("who")
    if who == "mine":
        return "mine"
    if who == "all":
        return "all"
    return signed.viewer.default_scope


# -- signing in and out ---------------------------------------------------------------------


def _sign_in_page(request: Request, status: int = 200, **values: Any) -> Response:
    token, new = form_token(request)
    values.setdefault("message", None)
    values.setdefault("error", None)
    values.setdefault("email", None)
    values.setdefault("tone", None)
    response = page(
        "sign_in.html", status, title="Sign in", signed=None, section="", form_token=token, **values
    )
    if new:
        set_form_cookie(response, request, token)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    await public_page(request)
    return _sign_in_page(request)


@router.post("/sign-in")
async def ask_for_link(request: Request) -> Response:
    await public_page(request)
    try:
        form = await form_of(request)
        check_csrf(form, request.cookies.get("regulars_form", ""))
    except BadForm:
        return _sign_in_page(
            request, 400, message="The form was out of date. Please try again.", tone="warn"
        )
    email = form.get("email", "").strip()
    if not _EMAIL.fullmatch(email) or len(email) > 320:
        return _sign_in_page(
            request, 422, error="Enter an email address, such as ana@yourshop.com.", email=email
        )
    ctx = context(request)
    answer = await ctx.bus.handle(AskForSignIn(email, client_of(request)))
    if answer.limited:
        response = _sign_in_page(
            request,
            429,
            message="Too many sign-in requests. Wait 15 minutes, then ask again.",
            tone="bad",
        )
        response.headers["Retry-After"] = "900"
        return response
    parts = parts_of(request)
    for letter in answer.letters:
        link = f"{parts.public_url}/sign-in/{letter.token}"
        # mailed after the answer, known address or not: the answer takes as long either way
        parts.send_later(parts.mail.send(letter.to, letter.name, letter.shop_name, link))
    return _sign_in_page(
        request,
        message=(
            "If that address is on your shop's staff list, a sign-in link is on its way."
            " It works once, for 15 minutes."
        ),
    )


@router.get("/sign-in/{token}")
async def link_page(request: Request, token: str) -> Response:
    # Mail scanners open links: a GET only shows the button, the POST signs in.
    await public_page(request)
    form, new = form_token(request)
    response = page(
        "sign_in_link.html",
        title="Sign in",
        signed=None,
        section="",
        form_token=form,
        token=token[:100],
        refused=None,
    )
    if new:
        set_form_cookie(response, request, form)
    return response


@router.post("/sign-in/link")
async def redeem_link(request: Request) -> Response:
    await public_page(request)
    try:
        form = await form_of(request)
        check_csrf(form, request.cookies.get("regulars_form", ""))
    except BadForm:
        return _sign_in_page(
            request, 400, message="The form was out of date. Open the link again.", tone="warn"
        )
    try:
        started = await context(request).bus.handle(SignIn(form.get("token", "")[:100]))
    except LinkRefused as refused:
        await context(request).count_failure(request.scope)
        form_value, _ = form_token(request)
        return page(
            "sign_in_link.html",
            400,
            title="Sign in",
            signed=None,
            section="",
            form_token=form_value,
            token="",
            refused=str(refused),
        )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, request, started.token)
    log.info("staff signed in", extra={"shop_id": str(started.shop_id), "staff": started.staff_id})
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    try:
        signed = await signed_in(request)
        check_csrf(await form_of(request), signed.csrf)
    except BadForm:
        return RedirectResponse("/", status_code=303)
    await context(request).bus.handle(SignOut(signed.token_sha256))
    response = _sign_in_page(request, message="You are signed out.")
    clear_session_cookie(response, request)
    return response


# -- today: the calls -------------------------------------------------------------------------


def _end_of_today(now: datetime, zone: ZoneInfo) -> datetime:
    day = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(day, time(0), zone)


def _due_words(due: datetime, now: datetime, zone: ZoneInfo) -> str:
    same_day = due.astimezone(zone).date() == now.astimezone(zone).date()
    return local(due, zone, "%H:%M" if same_day else "%a %d %b %H:%M")


async def _calls(
    request: Request,
    signed: Signed,
    scope: Scope,
    *,
    reached: str | None = None,
    errors: dict[str, dict[str, str]] | None = None,
    forms: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """What the call list shows: the page of calls due by the end of the shop's day."""
    ctx = context(request)
    parts = parts_of(request)
    zone = ZoneInfo(signed.policy.timezone)
    now = ctx.deps.clock()
    after = request.query_params.get("after")
    values: dict[str, Any] = {"calls": [], "unreachable": None, "next_cursor": None}
    try:
        answer = await parts.services.calls(
            signed.principal,
            due_before=_end_of_today(now, zone).isoformat(),
            assignee=signed.viewer.assignee_for(scope),
            cursor=after[:500] if after else None,
            limit=CALLS_PER_PAGE,
        )
    except ServiceUnreachable:
        values["unreachable"] = "The call list cannot be reached right now. Try again shortly."
        values["calls_heading"] = "Calls"
        return values
    items = answer.body.get("items", []) if answer.ok and isinstance(answer.body, dict) else []
    people, visits = await queries.call_context(
        ctx.pool,
        signed.shop,
        sorted({t["customer_id"] for t in items}),
        sorted({t["repair_order_id"] for t in items}),
    )
    names = signed.staff_names
    calls = []
    for task in items:
        person = people.get(task["customer_id"], {})
        visit = visits.get(task["repair_order_id"])
        sheet = call_sheet(task, names, signed.viewer.name)
        due = datetime.fromisoformat(task["due_at"])
        phone = person.get("phone")
        calls.append(
            {
                "id": task["id"],
                "customer_id": task["customer_id"],
                "customer_name": person.get("name")
                or (task.get("script") or {}).get("customer")
                or task["customer_id"],
                "phone": phone,
                "open_case": person.get("open_case"),
                "overdue": due <= now,
                "due_words": local(
                    due, zone, "%H:%M" if due.date() == now.date() else "%a %d %b %H:%M"
                ),
                "repair_order_id": task["repair_order_id"],
                "work": sheet["work_performed"],
                "unit": sheet["vehicle_or_unit"],
                "visit_words": "completed " + local(visit["completed_at"], zone, "%a %d %b")
                if visit
                else "",
                "kind": "At-risk call" if sheet["why"] else "Follow-up call",
                "why": sheet["why"],
                "advisor": sheet["advisor"],
                "attempts": task.get("attempts", 0),
                "lines": sheet["lines"],
                "reached_open": task["id"] == reached,
                "errors": (errors or {}).get(task["id"], {}),
                "form": (forms or {}).get(task["id"], {}),
            }
        )
    overdue = sum(1 for c in calls if c["overdue"])
    more = "+" if answer.body.get("next_cursor") else ""
    heading = f"{len(calls)}{more} call{'s' if len(calls) != 1 else ''} due today"
    if overdue:
        heading += f", {overdue} overdue"
    values.update(calls=calls, calls_heading=heading, next_cursor=answer.body.get("next_cursor"))
    return values


async def _today(
    request: Request,
    signed: Signed,
    scope: Scope,
    status: int = 200,
    **extra: Any,
) -> Response:
    ctx = context(request)
    zone = ZoneInfo(signed.policy.timezone)
    now = ctx.deps.clock()
    calls = await _calls(
        request,
        signed,
        scope,
        reached=extra.pop("reached", request.query_params.get("reached")),
        errors=extra.pop("errors", None),
        forms=extra.pop("forms", None),
    )
    summary = await queries.case_summary(ctx.pool, signed.shop, now)
    waiting = ""
    if summary["open"]:
        waiting = f"{summary['open']} open recovery case{'s' if summary['open'] != 1 else ''}"
        if summary["breached"]:
            waiting += f", {summary['breached']} past a deadline"
    notice, tone = NOTICES.get(request.query_params.get("done", ""), (None, ""))
    return await view(
        request,
        signed,
        "today.html",
        "today",
        status,
        title="Today",
        scope=scope,
        today_words=now.astimezone(zone).strftime("%A %d %B"),
        cases_waiting=waiting,
        cases_breached=summary["breached"],
        notice=extra.pop("notice", notice),
        notice_tone=extra.pop("notice_tone", tone),
        **calls,
    )


@router.get("/")
async def today(request: Request) -> Response:
    signed = await signed_in(request)
    return await _today(request, signed, scope_of(request, signed))


def _attempt_body(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str], str]:
    """The attempt followup is asked to record, the problems by field, and its words."""
    outcome = form.get("outcome", "")
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"outcome": outcome}
    if outcome not in ("reached", "no_answer", "voicemail", "wrong_number"):
        errors["outcome"] = "Choose what happened on the call."
        return body, errors, ""
    notes = form.get("notes", "").strip()
    if notes:
        body["notes"] = notes[:10_000]
    if outcome != "reached":
        return body, errors, outcome
    satisfied = form.get("satisfied")
    if satisfied not in ("yes", "no"):
        errors["satisfied"] = "Say whether the customer was satisfied: yes or no."
    else:
        body["satisfied"] = satisfied == "yes"
    score = form.get("score", "").strip()
    if score:
        if not (score.isascii() and score.isdigit()) or not 0 <= int(score) <= 10:
            errors["score"] = "A score is a whole number from 0 to 10, or leave it empty."
        else:
            body["score"] = int(score)
    return body, errors, f"reached_{satisfied}"


@router.post("/calls/{task_id}")
async def record_call(request: Request, task_id: str) -> Response:
    signed = await signed_in(request)
    form = await form_of(request)
    check_csrf(form, signed.csrf)
    scope = scope_of(request, signed, form.get("who"))
    try:
        uuid.UUID(task_id)
    except ValueError:
        return _back(scope, "gone")
    body, errors, done = _attempt_body(form)
    if errors:
        return await _today(
            request,
            signed,
            scope,
            422,
            reached=task_id,
            errors={task_id: errors},
            forms={task_id: form},
        )
    try:
        answer = await parts_of(request).services.record_attempt(signed.principal, task_id, body)
    except ServiceUnreachable:
        return await _today(
            request,
            signed,
            scope,
            503,
            notice="The call was not recorded: the call list cannot be reached. Try again.",
            notice_tone="bad",
        )
    if answer.status == 201:
        return _back(scope, done)
    if answer.status == 409:
        return _back(scope, "finished")
    if answer.status == 422:
        return await _today(
            request,
            signed,
            scope,
            422,
            reached=task_id if body["outcome"] == "reached" else None,
            errors={task_id: {k.split(".")[-1]: v for k, v in answer.field_errors().items()}},
            forms={task_id: form},
            notice=answer.detail,
            notice_tone="bad",
        )
    return _back(scope, "gone")


def _back(scope: Scope, done: str) -> Response:
    return RedirectResponse("/?" + urlencode({"who": scope, "done": done}), status_code=303)


__all__ = ["ConsoleParts", "ShopServices", "router", "scope_of", "view"]
