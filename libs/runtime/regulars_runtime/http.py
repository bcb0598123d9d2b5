"""The HTTP conventions every endpoint of every service follows, implemented once.

- Errors are RFC 9457 ``application/problem+json``: ``type``, ``title``, ``status``,
  ``detail``, and ``errors``, a list whose items name the field (``field``, dotted, as
  the request spells it) and say what is wrong with it (``message``).
- 401 carries ``WWW-Authenticate: Bearer``.
- Every request body is bounded (:class:`RequestGuard`): refused with 413 from its
  Content-Length, or as soon as it streams past the limit, before anything parses it.
- NUL and invalid UTF-8 in a path, a query or a body are a 422 naming the parameter:
  PostgreSQL text cannot hold a NUL, and nothing a shop or a customer sends needs one.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
#: a request body's limit unless the service says otherwise (a staff command is small)
DEFAULT_BODY_LIMIT = 64 * 1024
BEARER = {"WWW-Authenticate": 'Bearer realm="regulars"'}

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class FieldError(BaseModel):
    field: str = Field(description="the field or parameter, dotted as the request spells it")
    message: str = Field(description="what is wrong with it")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, with the fields named."""

    type: str = Field("about:blank", description="a URI for the kind of problem")
    title: str = Field(description="the HTTP status' phrase")
    status: int
    detail: str = Field(description="what went wrong, for a person")
    errors: list[FieldError] = Field(default_factory=list, description="one per bad field")
    limit: str | None = Field(None, description="a 429's limit, by name")
    retry_after: int | None = Field(None, description="a 429's wait in seconds, as Retry-After")


class Problem(Exception):
    """An HTTP error answer: status, a message naming the problem, optional headers."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = headers or {}
        self.errors = errors or []
        self.extra = extra


def unauthorized(message: str = "") -> Problem:
    return Problem(
        401,
        message or "missing or invalid API key: send Authorization: Bearer <shop API key>",
        BEARER,
    )


def problem_document(problem: Problem) -> dict[str, Any]:
    try:
        title = HTTPStatus(problem.status).phrase
    except ValueError:
        title = "Error"
    return {
        "type": "about:blank",
        "title": title,
        "status": problem.status,
        "detail": _shown(problem.message),
        "errors": [{k: _shown(v) for k, v in e.items()} for e in problem.errors],
        **problem.extra,
    }


def _shown(text: str) -> str:
    """A message names what it refuses, and may quote a NUL the request held: spelled out,
    so that no answer carries the character it refuses."""
    return text.replace("\x00", "\\u0000")


def problem_body(problem: Problem) -> bytes:
    return orjson.dumps(problem_document(problem))


def problem_response(problem: Problem) -> Response:
    return Response(problem_body(problem), problem.status, problem.headers, media_type=PROBLEM_JSON)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


# -- exception handlers (registered on every service's app) -----------------------------


def problem_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc)


def validation_problem(_request: Request, exc: Exception) -> Response:
    """422 naming each bad field, in the same shape as every other error."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", ""))})
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(Problem(422, message or "invalid request", errors=errors))


def http_problem(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) as problems too."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route matching the path alone; a path
        # served by several routes (GET shows a page, POST acts) allows all of theirs.
        headers["Allow"] = ", ".join(sorted(_methods_for(request)))
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(Problem(exc.status_code, detail, headers))


def _methods_for(request: Request) -> set[str]:
    return _methods(request.app.router.routes, request.scope)


def _methods(routes: Iterable[Any], scope: MutableMapping[str, Any]) -> set[str]:
    methods: set[str] = set()
    for route in routes:
        match, _child = route.matches(scope)
        if match is Match.NONE:
            continue
        included = getattr(route, "original_router", None)  # an included router's routes
        if included is not None:
            methods |= _methods(included.routes, scope)
        else:
            methods.update(getattr(route, "methods", None) or ())
    return methods


def server_problem(_request: Request, _exc: Exception) -> Response:
    return problem_response(Problem(500, "internal error; it has been logged"))


# -- paging ------------------------------------------------------------------------------


#: a list's page size, as a route parameter (``limit: PageLimit = 100``)
PageLimit = Annotated[int, Query(ge=1, le=1000, description="items per page, 1 to 1000")]
#: where a list's next page starts, as a route parameter (``cursor: PageCursor = None``)
PageCursor = Annotated[
    str | None, Query(max_length=500, description="the next_cursor of the page before")
]


def page_cursor(at: datetime, item_id: uuid.UUID) -> str:
    """Where the next page starts: the last item's time and id (ties broken by the id)."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{item_id}".encode()).decode()


def after_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The position a ``page_cursor`` names; 422 for one this API did not give out."""
    if not cursor:
        return None
    try:
        at, _, item = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("a cursor's time is aware")
        return when, uuid.UUID(item)
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            422,
            "cursor is not one this API gave out",
            errors=[{"field": "cursor", "message": "not a next_cursor of this list"}],
        ) from None


def page(rows: Sequence[Any], limit: int, *, at: str, item: Callable[[Any], Any]) -> dict[str, Any]:
    """A page of a list read with ``limit + 1`` rows (keyset on ``at`` then ``id``): its
    items, and the cursor of the next page (None on the last one)."""
    shown = rows[:limit]
    last = shown[-1] if len(rows) > limit else None
    return {
        "items": [item(r) for r in shown],
        "next_cursor": None if last is None else page_cursor(last[at], last["id"]),
    }


# -- the request guard -------------------------------------------------------------------


def _bad_text(raw: bytes) -> str | None:
    """Why ``raw`` cannot be text we keep (None if it can)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    if "\x00" in text:
        return "NUL character"
    return None


def check_text(scope: dict[str, Any], body: bytes) -> None:
    """422 for a NUL or invalid UTF-8 in the path, the query or the body, naming where."""
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    problem = _bad_text(unquote_to_bytes(raw_path))
    if problem:
        raise Problem(422, f"the path: {problem}", errors=[{"field": "path", "message": problem}])
    errors = []
    query = scope.get("query_string", b"").decode("latin-1")
    # latin-1 both ways: each byte, raw or %XX-escaped, becomes one character and back
    for key, value in parse_qsl(query, keep_blank_values=True, encoding="latin-1"):
        name = key.encode("latin-1").decode("utf-8", "replace").replace("\x00", "")
        problem = _bad_text(key.encode("latin-1")) or _bad_text(value.encode("latin-1"))
        if problem:
            errors.append({"field": name or "query", "message": problem})
    if body:
        content_type = _header(scope, b"content-type")
        if b"json" in content_type:
            errors += _json_body_errors(body)
        elif b"x-www-form-urlencoded" in content_type:
            form = body.decode("latin-1")
            for key, value in parse_qsl(form, keep_blank_values=True, encoding="latin-1"):
                problem = _bad_text(key.encode("latin-1")) or _bad_text(value.encode("latin-1"))
                if problem:
                    errors.append({"field": key.replace("\x00", "") or "body", "message": problem})
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Problem(422, detail, errors=errors)


def _json_body_errors(body: bytes) -> list[dict[str, str]]:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return [{"field": f, "message": "not valid UTF-8"} for f in not_utf8_fields(body)]
    if b"\\u0000" not in body:
        return []  # JSON carries a NUL only as that escape: no need to parse
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []  # the route's parser names what is wrong with it
    nul = _json_paths(document, lambda s: "\x00" in s)
    return [{"field": path, "message": "NUL character"} for path in nul]


def not_utf8_fields(body: bytes) -> list[str]:
    """Where a JSON body that is not valid UTF-8 goes wrong: the dotted paths of the
    strings holding the bad bytes (``body`` when it cannot be read that far)."""
    try:
        document = json.loads(body.decode("utf-8", "surrogateescape"))
    except ValueError:
        return ["body"]
    found = list(_json_paths(document, lambda s: any("\udc80" <= c <= "\udcff" for c in s)))
    return [f.encode("utf-8", "replace").decode() for f in found] or ["body"]


def _json_paths(value: Any, bad: Callable[[str], bool], path: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if bad(value):
            yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if bad(str(key)):
                yield here
            yield from _json_paths(item, bad, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_paths(item, bad, f"{path}.{i}" if path else str(i))


def _header(scope: dict[str, Any], name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).lower()
    return b""


class RequestGuard:
    """Pure ASGI middleware: a body limit on every endpoint, and the text checks.

    The body is read here up to ``limit`` (413 from Content-Length, or as soon as it
    streams past it), checked, and handed on whole; nothing parses it before that.
    """

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            check_text(scope, body)
        except Problem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()  # type: ignore[no-any-return]
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, scope: dict[str, Any], receive: Any) -> bytes:
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.limit:
            raise Problem(
                413, f"request body is {int(declared)} bytes; the limit is {self.limit} bytes"
            )
        if (
            scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS")
            and not declared
            and not _header(scope, b"transfer-encoding")
        ):
            return b""  # no body framed: nothing to wait for
        # A body streamed to a GET is read to the limit like any other: answered 413, not
        # left unread behind an answer of the route's (which would say it was taken).
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Problem(400, "the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise Problem(413, f"request body is over the limit of {self.limit} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)
