"""What every write request to intake passes, on either path (FastAPI routes and the bare
``POST /v1/events``): the shop's rate limit, the size limit, a JSON body."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from regulars_runtime.http import Problem, not_utf8_fields
from regulars_runtime.limits import Rate
from regulars_runtime.service import ServiceContext

from ..domain.postings import MAX_REQUEST_BYTES

Receive = Any  # the ASGI receive callable


async def check_rate(ctx: ServiceContext[Any], rate: Rate, key: uuid.UUID, cost: int) -> None:
    """429 (Retry-After, the limit named) when ``key`` is over ``rate`` on every replica
    together."""
    if ctx.limits is not None:
        await ctx.limits.enforce(rate, str(key), cost)


async def read_body(
    receive: Receive,
    declared: str | None,
    limit: int = MAX_REQUEST_BYTES,
    *,
    allow_empty: bool = False,
) -> bytes:
    """The whole request body, refused (413) as soon as it is known to be over ``limit``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"request body is {declared} bytes; the limit is {limit} bytes")
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, "the client went away before sending the whole body")
        body += message.get("body", b"")
        if len(body) > limit:
            raise Problem(413, f"request body is over the limit of {limit} bytes")
        more = message.get("more_body", False)
    if not body and not allow_empty:
        raise Problem(400, "request body is empty; send a JSON object")
    return body


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):
            # Well-formed JSON whose text is not UTF-8: the fields it is in are named,
            # as every other service does for a body (RequestGuard).
            fields = not_utf8_fields(body)
            raise Problem(
                422,
                "; ".join(f"{f}: not valid UTF-8" for f in fields),
                errors=[{"field": f, "message": "not valid UTF-8"} for f in fields],
            ) from None
        raise Problem(400, f"request body is not valid JSON: {exc}") from None
