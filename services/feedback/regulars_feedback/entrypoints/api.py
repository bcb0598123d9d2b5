"""feedback's HTTP API: the public survey page and its answers, surveys and recovery cases
for the shop's staff. Commands go through the bus; reads through the adapters' queries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from regulars_runtime.bus import Command
from regulars_runtime.http import (
    PageCursor,
    PageLimit,
    Problem,
    after_cursor,
    json_response,
    page,
)
from regulars_runtime.openapi import PUBLIC
from regulars_runtime.service import ShopId, context, shop_of, staff_of

from ..adapters import queries
from ..domain.cases import CaseClosed, CaseStatus, OutcomeRequired
from ..domain.surveys import InvalidAnswer, UnknownSurvey, answerable, survey_link
from ..handlers import Deps
from ..handlers.cases import UnknownCase
from ..handlers.commands import AcknowledgeCase, AnswerSurvey, CommentOnCase, ResolveCase
from . import pages

router = APIRouter()
B = TypeVar("B", bound=BaseModel)

FORM = "application/x-www-form-urlencoded"


def _deps(request: Request) -> Deps:
    deps: Deps = context(request).deps
    return deps


# -- what the API answers ---------------------------------------------------------------------


class SurveyResult(BaseModel):
    """What an answer came to (the first answer's, for every later submission)."""

    survey_id: str
    status: str = Field(description="received")
    nps: int | None
    csat: int | None
    comment: str | None
    received_at: str


class SurveyOut(BaseModel):
    id: str
    customer_id: str
    repair_order_id: str | None
    reason: str = Field(description="after_follow_up, follow_up_missed or recovery_resurvey")
    token: str
    link: str = Field(description="the survey's public page")
    status: str = Field(description="sent, answered or expired")
    case_id: str | None = Field(description="the case a re-survey follows up")
    created_at: str
    expires_at: str


class SurveyPage(BaseModel):
    items: list[SurveyOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


class CaseHistoryEntry(BaseModel):
    """One line of a case's history; what the line records (clock, levels, scores...)
    comes with it as further fields."""

    model_config = ConfigDict(extra="allow")

    at: str
    kind: str = Field(description="opened, joined, severity, sla_at_risk, escalated, ...")
    by: str | None
    text: str | None


class CaseOut(BaseModel):
    id: str
    customer_id: str
    repair_order_id: str | None
    severity: str = Field(description="critical, high or normal")
    status: str = Field(description="open, acknowledged or resolved")
    assignee: str
    escalation_level: str = Field(description="advisor, service_manager or owner")
    opened_at: str
    ack_due_at: str
    resolve_due_at: str
    next_due_at: str | None = Field(
        description="the next deadline: ack_due_at while open, resolve_due_at once"
        " acknowledged, null once resolved"
    )
    acknowledged_at: str | None
    acknowledged_by: str | None
    resolved_at: str | None
    resolved_by: str | None
    outcome: str | None
    history: list[CaseHistoryEntry]


class CasePage(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


# -- paging -----------------------------------------------------------------------------------


# -- the public survey -------------------------------------------------------------------


@router.get(
    "/s/{token}",
    tags=["surveys"],
    summary="The survey page (public: the token in the link is the credential)",
    response_class=HTMLResponse,
    responses={404: {"content": {"text/html": {}}}},
)
async def survey_page(request: Request, token: str) -> Response:
    ctx = context(request)
    await _public(request)
    pool = ctx.pool
    survey = await queries.survey_by_token(pool, token[:200])
    if survey is None:
        await ctx.count_failure(request.scope)
        return pages.html_page(pages.not_found(), 404)
    shop = await queries.shop_name(pool, survey.shop_id)
    if survey.status == "answered":
        return pages.html_page(pages.thank_you(shop, again=True))
    if not answerable(survey.status, survey.expires_at, _deps(request).clock()):
        return pages.html_page(pages.not_found(), 404)
    return pages.html_page(pages.survey_form(token, shop))


async def _public(request: Request) -> None:
    """A public page's limits, before anything is looked up: the caller's rate of public
    requests, and an address known to be guessing tokens is refused (429) at once."""
    ctx = context(request)
    ctx.refuse_known_guesser(request.scope)
    await ctx.limit_client(request.scope)


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the form is not UTF-8") from None
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _json_fields(body: bytes) -> Any:
    try:
        return orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON: {exc}") from None


_ANSWER_FIELDS = {
    "type": "object",
    "properties": {
        "nps": {"type": "integer", "minimum": 0, "maximum": 10},
        "csat": {"type": "integer", "minimum": 1, "maximum": 5},
        "comment": {"type": "string", "maxLength": 10_000},
    },
}
_HTML = {"text/html": {"schema": {"type": "string"}}}


@router.post(
    "/v1/surveys/{token}/responses",
    tags=["surveys"],
    summary="Answer a survey (public): JSON {nps?, csat?, comment?} or the page's form",
    status_code=201,
    response_model=SurveyResult,
    responses={
        200: {
            "model": SurveyResult,
            "description": "Answered before: the first answer's result (HTML for the form)",
            "content": _HTML,
        },
        201: {"description": "The first answer (HTML for the form)", "content": _HTML},
        400: {},
        404: {"content": _HTML},
        415: {},
        422: {"content": _HTML},
    },
    openapi_extra={
        **PUBLIC,
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": _ANSWER_FIELDS},
                FORM: {"schema": _ANSWER_FIELDS},
            },
        },
    },
)
async def answer(request: Request, token: str) -> Response:
    await _public(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    is_form = media == FORM
    if is_form:
        raw: Any = _form_fields(body)
    elif media in ("", "application/json") or media.endswith("+json"):
        raw = _json_fields(body)
    else:
        raise Problem(415, f"send application/json or {FORM}, not {media[:60]!r}")
    pool = context(request).pool
    try:
        done = await context(request).bus.handle(AnswerSurvey(token[:200], raw))
    except UnknownSurvey as exc:
        await context(request).count_failure(request.scope)
        if is_form:
            return pages.html_page(pages.not_found(), 404)
        raise Problem(404, str(exc)) from None
    except InvalidAnswer as exc:
        errors = [{"field": p.field, "message": p.message} for p in exc.problems]
        if not is_form:
            raise Problem(422, str(exc), errors=errors) from None
        survey = await queries.survey_by_token(pool, token[:200])
        shop = await queries.shop_name(pool, survey.shop_id) if survey else "the shop"
        raw_comment = raw.get("comment") if isinstance(raw, dict) else None
        page = pages.survey_form(
            token,
            shop,
            errors=[f"{e['field']}: {e['message']}" for e in errors],
            comment=raw_comment if isinstance(raw_comment, str) else None,
        )
        return pages.html_page(page, 422)
    if is_form:
        shop = await queries.shop_name(pool, done.shop_id)
        return pages.html_page(pages.thank_you(shop, again=not done.first))
    return json_response(done.result, 201 if done.first else 200)


def _survey(row: dict[str, Any], public_url: str) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "customer_id": row["customer_id"],
        "repair_order_id": row["repair_order_id"],
        "reason": row["reason"],
        "token": row["token"],
        "link": survey_link(public_url, row["token"]),
        "status": row["status"],
        "case_id": str(row["case_id"]) if row["case_id"] else None,
        "created_at": row["created_at"].isoformat(),
        "expires_at": row["expires_at"].isoformat(),
    }


@router.get(
    "/v1/surveys",
    tags=["surveys"],
    summary="The shop's surveys, newest first, a page at a time",
    response_model=SurveyPage,
)
async def list_surveys(
    request: Request,
    shop: ShopId,
    customer_id: str | None = Query(None, max_length=200),
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Response:
    size = limit
    after = after_cursor(cursor)
    rows = await queries.surveys_page(
        context(request).pool, shop, customer_id=customer_id, after=after, limit=size + 1
    )
    public_url = _deps(request).public_url
    return json_response(page(rows, size, at="created_at", item=lambda r: _survey(r, public_url)))


# -- recovery cases ---------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def _next_due(row: dict[str, Any]) -> Any:
    if row["status"] == CaseStatus.OPEN:
        return row["ack_due_at"]
    if row["status"] == CaseStatus.ACKNOWLEDGED:
        return row["resolve_due_at"]
    return None


def _case(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "customer_id": row["customer_id"],
        "repair_order_id": row["repair_order_id"],
        "severity": row["severity"],
        "status": row["status"],
        "assignee": row["assignee"],
        "escalation_level": row["escalation_level"],
        "opened_at": _iso(row["opened_at"]),
        "ack_due_at": _iso(row["ack_due_at"]),
        "resolve_due_at": _iso(row["resolve_due_at"]),
        "next_due_at": _iso(_next_due(row)),
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "resolved_at": _iso(row["resolved_at"]),
        "resolved_by": row["resolved_by"],
        "outcome": row["outcome"],
        "history": [
            {
                "at": _iso(h["at"]),
                "kind": h["kind"],
                "by": h["by"],
                "text": h["text"],
                **{k: v for k, v in (h["data"] or {}).items() if v is not None},
            }
            for h in row["history"]
        ],
    }


@router.get(
    "/v1/cases",
    tags=["cases"],
    summary="The shop's recovery cases, newest first (or by the next deadline), with"
    " history, a page at a time",
    response_model=CasePage,
)
async def list_cases(
    request: Request,
    shop: ShopId,
    status: CaseStatus | None = None,
    customer_id: str | None = Query(None, max_length=200),
    still_open: bool = Query(
        False, alias="open", description="true: only cases not resolved yet (open or acknowledged)"
    ),
    assignee: str | None = Query(None, max_length=200, description="the staff id assigned"),
    order: Literal["newest", "sla"] = Query(
        "newest",
        description="newest: by when each opened, newest first; sla: by the next deadline"
        " (next_due_at; a resolved case by the one it had), soonest first",
    ),
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Response:
    size = limit
    after = after_cursor(cursor)
    rows = await queries.cases_page(
        context(request).pool,
        shop,
        status=status,
        customer_id=customer_id,
        after=after,
        limit=size + 1,
        still_open=still_open,
        assignee=assignee,
        order=order,
    )
    at = "deadline" if order == "sla" else "opened_at"
    return json_response(page(rows, size, at=at, item=_case))


def _case_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(404, f"no case {raw[:60]!r} in this shop") from None


async def _one_case(request: Request, shop: uuid.UUID, case_id: uuid.UUID) -> dict[str, Any]:
    row = await queries.case_with_history(context(request).pool, shop, case_id)
    if row is None:
        raise Problem(404, f"no case {case_id} in this shop")
    return _case(row)


@router.get(
    "/v1/cases/{case_id}",
    tags=["cases"],
    summary="One recovery case, with history",
    response_model=CaseOut,
    responses={404: {}},
)
async def get_case(request: Request, shop: ShopId, case_id: str) -> Response:
    return json_response(await _one_case(request, shop, _case_id(case_id)))


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(
        None,
        max_length=200,
        description="the staff id acknowledging; with a staff token, its staff member",
    )
    note: str | None = Field(None, max_length=10_000)


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(max_length=10_000, description="what was done: required")
    by: str | None = Field(
        None,
        max_length=200,
        description="the staff id resolving; with a staff token, its staff member",
    )

    @field_validator("outcome")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an outcome note is required to resolve a case")
        return value.strip()


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=10_000)
    by: str | None = Field(
        None, max_length=200, description="the staff id; with a staff token, its staff member"
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a comment needs text")
        return value.strip()


def _validated(model: type[B], raw: Any) -> B:
    """A command's body, or 422 naming each bad field."""
    if not isinstance(raw, dict):
        raise Problem(
            422,
            "body: expected a JSON object",
            errors=[{"field": "body", "message": "expected a JSON object"}],
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or "body",
                "message": str(err["msg"]).removeprefix("Value error, "),
            }
            for err in exc.errors(include_url=False)
        ]
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Problem(422, message, errors=errors) from None


async def _command(
    request: Request,
    case_id: str,
    model: type[B],
    make: Callable[[uuid.UUID, uuid.UUID, B], Command[Any]],
) -> dict[str, Any]:
    """Auth, the case id, the body; then the command ``make(shop, case id, body)`` through
    the bus, in a transaction of its own; answered with the case as it is now."""
    shop = await shop_of(request)
    cid = _case_id(case_id)
    body = _validated(model, _json_fields(await request.body()))
    person = staff_of(request)
    if person is not None:
        # at the console the signed-in person acts, whatever the form says
        body = body.model_copy(update={"by": person.staff_id})
    try:
        await context(request).bus.handle(make(shop, cid, body))
    except UnknownCase as exc:
        raise Problem(404, str(exc)) from None
    except CaseClosed as exc:
        raise Problem(409, f"case {cid}: {exc}") from None
    except OutcomeRequired as exc:
        raise Problem(422, str(exc), errors=[{"field": "outcome", "message": str(exc)}]) from None
    return await _one_case(request, shop, cid)


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """The documented body of a command (it is read and validated by hand, for one
    problem shape however it is wrong)."""
    return {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.post(
    "/v1/cases/{case_id}/acknowledge",
    tags=["cases"],
    summary="Acknowledge a case: stops its acknowledgement clock ({by?, note?})",
    response_model=CaseOut,
    responses={400: {}, 404: {}, 409: {}, 422: {}},
    openapi_extra=_body(AcknowledgeBody),
)
async def acknowledge(request: Request, case_id: str) -> Response:
    def make(shop: uuid.UUID, cid: uuid.UUID, body: AcknowledgeBody) -> AcknowledgeCase:
        return AcknowledgeCase(
            shop, cid, by=_blank_to_none(body.by), note=_blank_to_none(body.note)
        )

    return json_response(await _command(request, case_id, AcknowledgeBody, make))


@router.post(
    "/v1/cases/{case_id}/resolve",
    tags=["cases"],
    summary="Resolve a case with an outcome note ({outcome, by?}): stops every clock",
    response_model=CaseOut,
    responses={400: {}, 404: {}, 409: {}, 422: {}},
    openapi_extra=_body(ResolveBody),
)
async def resolve(request: Request, case_id: str) -> Response:
    def make(shop: uuid.UUID, cid: uuid.UUID, body: ResolveBody) -> ResolveCase:
        return ResolveCase(shop, cid, outcome=body.outcome, by=_blank_to_none(body.by))

    return json_response(await _command(request, case_id, ResolveBody, make))


@router.post(
    "/v1/cases/{case_id}/comments",
    status_code=201,
    tags=["cases"],
    summary="Add a comment ({text, by?}) to a case's history",
    response_model=CaseOut,
    responses={400: {}, 404: {}, 422: {}},
    openapi_extra=_body(CommentBody),
)
async def add_comment(request: Request, case_id: str) -> Response:
    def make(shop: uuid.UUID, cid: uuid.UUID, body: CommentBody) -> CommentOnCase:
        return CommentOnCase(shop, cid, text=body.text, by=_blank_to_none(body.by))

    return json_response(await _command(request, case_id, CommentBody, make), 201)
