"""feedback's HTTP API: the public survey page and its answers, surveys and recovery cases
for the shop's staff."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import asyncpg
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from regulars_runtime.http import Problem, json_response, page_limit
from regulars_runtime.service import context, shop_of
from regulars_runtime.shop_directory import policy_for

from ..adapters.repository import FeedbackRepository
from ..domain.cases import CaseClosed, CaseStatus
from ..domain.surveys import InvalidAnswer, answerable, survey_link
from ..handlers import Deps, FeedbackUnitOfWork, cases, surveys
from . import pages

router = APIRouter()
B = TypeVar("B", bound=BaseModel)

#: a survey answer is small; anything bigger is not one
MAX_ANSWER_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"


def _deps(request: Request) -> Deps:
    deps: Deps = context(request).deps
    return deps


async def _shop_name(conn: asyncpg.Connection, shop_id: uuid.UUID) -> str:
    known = await policy_for(conn, shop_id)
    return (known[1].contact.name if known else None) or "the shop"


# -- the public survey -------------------------------------------------------------------


@router.get(
    "/s/{token}",
    tags=["surveys"],
    summary="The survey page (public: the token in the link is the credential)",
    response_class=HTMLResponse,
)
async def survey_page(request: Request, token: str) -> Response:
    async with context(request).pool.acquire() as conn:
        repo = FeedbackRepository(conn)
        survey = await repo.survey_by_token(token[:200])
        if survey is None:
            return pages.html_page(pages.not_found(), 404)
        shop = await _shop_name(conn, survey["shop_id"])
        if survey["status"] == "answered":
            return pages.html_page(pages.thank_you(shop, again=True))
        if not answerable(survey["status"], survey["expires_at"], _deps(request).clock()):
            return pages.html_page(pages.not_found(), 404)
    return pages.html_page(pages.survey_form(token, shop))


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


@router.post(
    "/v1/surveys/{token}/responses",
    tags=["surveys"],
    summary="Answer a survey (public): JSON {nps?, csat?, comment?} or the page's form",
    responses={201: {}, 200: {}, 404: {}, 413: {}, 415: {}, 422: {}},
)
async def answer(request: Request, token: str) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_ANSWER_BYTES:
        raise Problem(413, f"an answer is at most {MAX_ANSWER_BYTES} bytes")
    is_form = media == FORM
    if is_form:
        raw: Any = _form_fields(body)
    elif media in ("", "application/json") or media.endswith("+json"):
        raw = _json_fields(body)
    else:
        raise Problem(415, f"send application/json or {FORM}, not {media[:60]!r}")
    pool = context(request).pool
    try:
        async with context(request).bus.unit_of_work() as uow:
            done = await surveys.answer_survey(uow, _deps(request), token[:200], raw)
    except surveys.UnknownSurvey as exc:
        if is_form:
            return pages.html_page(pages.not_found(), 404)
        raise Problem(404, str(exc)) from None
    except InvalidAnswer as exc:
        errors = [{"field": p.field, "message": p.message} for p in exc.problems]
        if not is_form:
            raise Problem(422, str(exc), errors=errors) from None
        async with pool.acquire() as conn:
            survey = await FeedbackRepository(conn).survey_by_token(token[:200])
            shop = await _shop_name(conn, survey["shop_id"]) if survey else "the shop"
        raw_comment = raw.get("comment") if isinstance(raw, dict) else None
        page = pages.survey_form(
            token,
            shop,
            errors=[f"{e['field']}: {e['message']}" for e in errors],
            comment=raw_comment if isinstance(raw_comment, str) else None,
        )
        return pages.html_page(page, 422)
    if is_form:
        async with pool.acquire() as conn:
            shop = await _shop_name(conn, done.shop_id)
        return pages.html_page(pages.thank_you(shop, again=not done.first))
    return json_response(done.result, 201 if done.first else 200)


def _survey(row: Any, public_url: str) -> dict[str, Any]:
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


@router.get("/v1/surveys", tags=["surveys"], summary="The shop's surveys, newest first")
async def list_surveys(
    request: Request,
    customer_id: str | None = Query(None, max_length=200),
    limit: str | None = Query(None, description="1 to 1000, default 100"),
) -> Response:
    shop = await shop_of(request)
    size = page_limit(limit)
    async with context(request).pool.acquire() as conn:
        rows = await FeedbackRepository(conn).list_surveys(shop, customer_id, size)
    public_url = _deps(request).public_url
    return json_response({"items": [_survey(r, public_url) for r in rows]})


# -- recovery cases ---------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def _case(row: Any, history: list[Any]) -> dict[str, Any]:
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
            for h in history
        ],
    }


async def _cases_json(repo: FeedbackRepository, rows: list[Any]) -> list[dict[str, Any]]:
    history: dict[uuid.UUID, list[Any]] = {r["id"]: [] for r in rows}
    for h in await repo.history(list(history)):
        history[h["case_id"]].append(h)
    return [_case(r, history[r["id"]]) for r in rows]


@router.get(
    "/v1/cases", tags=["cases"], summary="The shop's recovery cases, newest first, with history"
)
async def list_cases(
    request: Request,
    status: str | None = Query(None, description="open, acknowledged or resolved"),
    customer_id: str | None = Query(None, max_length=200),
    limit: str | None = Query(None, description="1 to 1000, default 100"),
) -> Response:
    shop = await shop_of(request)
    if status is not None and status not in set(CaseStatus):
        raise Problem(
            422,
            f"status must be one of {', '.join(CaseStatus)}, got {status[:40]!r}",
            errors=[{"field": "status", "message": "unknown status"}],
        )
    size = page_limit(limit)
    async with context(request).pool.acquire() as conn:
        repo = FeedbackRepository(conn)
        rows = await repo.list_cases(shop, status=status, customer_id=customer_id, limit=size)
        items = await _cases_json(repo, rows)
    return json_response({"items": items})


def _case_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(404, f"no case {raw[:60]!r} in this shop") from None


async def _one_case(conn: asyncpg.Connection, shop: uuid.UUID, case_id: uuid.UUID) -> Any:
    repo = FeedbackRepository(conn)
    row = await repo.case(case_id, shop)
    if row is None:
        raise Problem(404, f"no case {case_id} in this shop")
    return (await _cases_json(repo, [row]))[0]


@router.get("/v1/cases/{case_id}", tags=["cases"], summary="One recovery case, with history")
async def get_case(request: Request, case_id: str) -> Response:
    shop = await shop_of(request)
    cid = _case_id(case_id)
    async with context(request).pool.acquire() as conn:
        return json_response(await _one_case(conn, shop, cid))


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(None, max_length=200, description="the staff id acknowledging")
    note: str | None = Field(None, max_length=10_000)


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(max_length=10_000, description="what was done: required")
    by: str | None = Field(None, max_length=200, description="the staff id resolving")

    @field_validator("outcome")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an outcome note is required to resolve a case")
        return value.strip()


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=10_000)
    by: str | None = Field(None, max_length=200)

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
    request: Request, case_id: str, model: type[B], action: Callable[..., Awaitable[Any]]
) -> Any:
    """Auth, the case id, the body; then ``action(uow, shop, case id, body)`` in one unit
    of work; answered with the case as it is now."""
    shop = await shop_of(request)
    cid = _case_id(case_id)
    body = _validated(model, _json_fields(await request.body()))
    pool = context(request).pool
    try:
        async with context(request).bus.unit_of_work() as uow:
            await action(uow, shop, cid, body)
    except cases.UnknownCase as exc:
        raise Problem(404, str(exc)) from None
    except CaseClosed as exc:
        raise Problem(409, f"case {cid}: {exc}") from None
    async with pool.acquire() as conn:
        return await _one_case(conn, shop, cid)


@router.post(
    "/v1/cases/{case_id}/acknowledge",
    tags=["cases"],
    summary="Acknowledge a case: stops its acknowledgement clock ({by?, note?})",
    responses={401: {}, 404: {}, 409: {}, 422: {}},
)
async def acknowledge(request: Request, case_id: str) -> Response:
    deps = _deps(request)

    async def act(
        uow: FeedbackUnitOfWork, shop: uuid.UUID, cid: uuid.UUID, body: AcknowledgeBody
    ) -> None:
        await cases.acknowledge(
            uow, deps, shop, cid, by=_blank_to_none(body.by), note=_blank_to_none(body.note)
        )

    return json_response(await _command(request, case_id, AcknowledgeBody, act))


@router.post(
    "/v1/cases/{case_id}/resolve",
    tags=["cases"],
    summary="Resolve a case with an outcome note ({outcome, by?}): stops every clock",
    responses={401: {}, 404: {}, 409: {}, 422: {}},
)
async def resolve(request: Request, case_id: str) -> Response:
    deps = _deps(request)

    async def act(
        uow: FeedbackUnitOfWork, shop: uuid.UUID, cid: uuid.UUID, body: ResolveBody
    ) -> None:
        await cases.resolve(uow, deps, shop, cid, outcome=body.outcome, by=_blank_to_none(body.by))

    return json_response(await _command(request, case_id, ResolveBody, act))


@router.post(
    "/v1/cases/{case_id}/comments",
    status_code=201,
    tags=["cases"],
    summary="Add a comment ({text, by?}) to a case's history",
    responses={401: {}, 404: {}, 422: {}},
)
async def add_comment(request: Request, case_id: str) -> Response:
    deps = _deps(request)

    async def act(
        uow: FeedbackUnitOfWork, shop: uuid.UUID, cid: uuid.UUID, body: CommentBody
    ) -> None:
        await cases.comment(uow, deps, shop, cid, text=body.text, by=_blank_to_none(body.by))

    return json_response(await _command(request, case_id, CommentBody, act), 201)
