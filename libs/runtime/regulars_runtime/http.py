"""What every service's HTTP API shares: JSON answers, errors that name the problem,
and the shop a request speaks for (from its API key)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from .auth import KeyRing
from .service import ServiceContext


class Problem(Exception):
    """An HTTP error answer: status, a message naming the problem, optional headers."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers or {}, extra


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def problem_body(problem: Problem) -> bytes:
    return orjson.dumps({"error": problem.message, **problem.extra})


def problem_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return Response(problem_body(exc), exc.status, exc.headers, media_type="application/json")


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def shop_of(request: Request) -> uuid.UUID:
    """The shop whose API key signed the request; 401 otherwise."""
    return await authorized_shop(context(request), request.headers.get("authorization"))


async def authorized_shop(ctx: ServiceContext, authorization: str | None) -> uuid.UUID:
    """The shop an ``Authorization`` header's API key belongs to; 401 otherwise."""
    keys: KeyRing = ctx.extras["keys"]
    shop = await keys.shop_for(authorization)
    if shop is None:
        raise Problem(401, "missing or invalid API key: send Authorization: Bearer <shop API key>")
    return shop


def page_limit(raw: str | None, default: int = 100, maximum: int = 1000) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise Problem(
            422,
            f"limit must be a whole number from 1 to {maximum}, got {raw[:20]!r}",
            errors=[{"field": "limit", "message": f"1 to {maximum}"}],
        )
    return int(raw)
