"""intake's HTTP API: event ingestion, the shop's policy, the customer directory."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from regulars_events.catalogue import SHOP_EVENTS
from regulars_runtime.auth import parse_key
from regulars_runtime.http import (
    PageCursor,
    PageLimit,
    Problem,
    after_cursor,
    json_response,
    page,
)
from regulars_runtime.service import context, require_api_key, shop_of, staff_of
from regulars_shop.policy import Policy, validation_errors

from ..adapters import queries
from ..adapters.unit_of_work import lost_a_lock_race
from ..domain.acceptance import Outcome
from ..domain.postings import (
    MAX_BATCH,
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    Rejected,
    parse_posting,
)
from ..domain.shop import KeyInUse, LastActiveKey, TooManyKeys, UnknownKey
from ..handlers import AcceptPostings, ChangePolicy, IssueApiKey, RevokeApiKey
from .answers import (
    BatchAnswer,
    CustomerAnswer,
    IssuedKeyAnswer,
    KeyAnswer,
    KeyPage,
    PolicyAnswer,
    WaitingPage,
)
from .front import front
from .guards import check_rate, parse_json, read_body

router = APIRouter()

#: tries of a batch's transaction when PostgreSQL broke a deadlock with it
BATCH_TRIES = 4

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "occurred_at", "data"],
    "properties": {
        "type": {
            "type": "string",
            "enum": list(SHOP_EVENTS),
            "description": "the event type; each maps to the Kafka event of the same name"
            " (invoice.issued -> regulars.invoice.issued.v1)",
            "example": "service.completed",
        },
        "id": {"type": "string", "description": "your idempotency key for this event"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "data": {"type": "object"},
    },
}


async def _limit(request: Request, shop: uuid.UUID, cost: int) -> None:
    await check_rate(context(request), front(request).events, shop, cost)


async def _read_json(request: Request, limit: int = MAX_REQUEST_BYTES) -> Any:
    return parse_json(
        await read_body(request.receive, request.headers.get("content-length"), limit)
    )


@router.post(
    "/v1/events/batch",
    status_code=202,
    tags=["events"],
    summary=f"Post up to {MAX_BATCH} events; one result per event, in order",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["events"],
                        "properties": {
                            "events": {
                                "type": "array",
                                "maxItems": MAX_BATCH,
                                # an item that is not an event is rejected alone, in
                                # its place among the results (the others go on)
                                "items": {"anyOf": [EVENT_SCHEMA, {}]},
                            }
                        },
                    }
                }
            },
        }
    },
    response_model=BatchAnswer,
    responses={400: {}, 401: {}, 403: {}, 413: {}, 422: {}, 429: {}},
)
async def post_batch(request: Request) -> Response:
    shop = await require_api_key(request)
    raw = await _read_json(request)
    if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
        raise Problem(
            422,
            "events: required, a list of events",
            errors=[{"field": "events", "message": "required: a list of events"}],
        )
    events: list[Any] = raw["events"]
    if len(events) > MAX_BATCH:
        raise Problem(
            413,
            f"events: {len(events)} events; a batch holds at most {MAX_BATCH}",
            errors=[{"field": "events", "message": f"at most {MAX_BATCH} events"}],
        )
    await _limit(request, shop, max(1, len(events)))
    results: list[Outcome | None] = [None] * len(events)
    postings = []
    for i, item in enumerate(events):
        try:
            postings.append((i, parse_posting(item, where=f"events[{i}]")))
        except Rejected as rejected:
            client_id = item.get("id") if isinstance(item, dict) else None
            results[i] = Outcome(
                "rejected", None, client_id if isinstance(client_id, str) else None, rejected
            )
    command = AcceptPostings([(shop, posting) for _i, posting in postings])
    for tries_left in range(BATCH_TRIES - 1, -1, -1):
        try:
            outcomes = await context(request).bus.handle(command)
            break
        except Exception as exc:
            # Rolled back whole to break a deadlock with another replica: nothing of it
            # was stored, so it is run again.
            if not tries_left or not lost_a_lock_race(exc):
                raise
    for (i, _posting), outcome in zip(postings, outcomes, strict=True):
        results[i] = outcome
    return json_response({"results": [r.as_dict() for r in results if r is not None]}, 202)


@router.get(
    "/v1/policy",
    tags=["policy"],
    summary="The shop's current policy and its version",
    response_model=PolicyAnswer,
    responses={404: {}},
)
async def get_policy(request: Request) -> Response:
    shop = await shop_of(request)
    found = await queries.latest_policy(context(request).pool, shop)
    if found is None:
        raise Problem(404, "this shop has no policy")
    return json_response(found)


@router.put(
    "/v1/policy",
    tags=["policy"],
    summary="Replace the shop's policy (a new version; applies to work scheduled after it)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": Policy.model_json_schema()}},
        }
    },
    response_model=PolicyAnswer,
    responses={400: {}, 401: {}, 403: {}, 422: {}},
)
async def put_policy(request: Request) -> Response:
    shop = await shop_of(request)
    person = staff_of(request)
    if person is not None and not person.is_owner:
        raise Problem(403, "only an owner changes the shop's settings")
    raw = await _read_json(request, MAX_EVENT_BYTES)
    if (
        isinstance(raw, dict)
        and isinstance(raw.get("policy"), dict)
        and set(raw) <= {"policy", "version", "changed_by"}
    ):
        raw = raw["policy"]  # accept what GET returned, as it was
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        errors = [{"field": e["key"], "message": e["message"]} for e in validation_errors(exc)]
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Problem(422, message, errors=errors) from None
    changed_by = person.staff_id if person is not None else None
    version = await context(request).bus.handle(ChangePolicy(shop, policy, changed_by))
    return json_response(
        {"version": version, "policy": policy.model_dump(mode="json"), "changed_by": changed_by}
    )


@router.get(
    "/v1/customers/{customer_id}",
    tags=["customers"],
    summary="One customer of the shop",
    response_model=CustomerAnswer,
    responses={404: {}},
)
async def get_customer(request: Request, customer_id: str) -> Response:
    shop = await shop_of(request)
    customer = await queries.customer(context(request).pool, shop, customer_id)
    if customer is None:
        raise Problem(404, f"no customer {customer_id!r} in this shop")
    return json_response(customer)


#: a page of the waiting list at most (it is read by people, and by a system's alerting)
MAX_WAITING_PAGE = 200


def _waiting(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(row["id"]),
        "id": row["client_id"],
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "received_at": row["received_at"].isoformat(),
        "waiting_for": {"kind": row["needs_kind"], "id": row["needs_id"]},
    }


@router.get(
    "/v1/waiting",
    tags=["events"],
    summary="Events accepted 7 or more days ago that still wait for their customer,"
    " repair order or invoice, oldest first",
    response_model=WaitingPage,
    responses={401: {}, 422: {}, 429: {}},
)
async def list_waiting(
    request: Request,
    limit: Annotated[
        int, Query(ge=1, le=MAX_WAITING_PAGE, description="items per page, 1 to 200")
    ] = 100,
    cursor: PageCursor = None,
) -> Response:
    shop = await shop_of(request)
    await _limit(request, shop, 1)
    after = after_cursor(cursor)
    rows = await queries.waiting_page(context(request).pool, shop, after=after, limit=limit + 1)
    return json_response(page(rows, limit, at="received_at", item=_waiting))


# -- API keys ---------------------------------------------------------------------------

#: a key request's body is a label at most
KEY_BODY_BYTES = 4 * 1024
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the key's public id")]


async def _key_manager(request: Request) -> uuid.UUID:
    """The shop whose keys are managed: by its system (an API key) or an owner at the
    console; no other staff. Limited apart from events, so a busy shop can still rotate."""
    shop = await shop_of(request)
    person = staff_of(request)
    if person is not None and not person.is_owner:
        raise Problem(403, "only an owner manages the shop's API keys")
    await check_rate(context(request), front(request).key_requests, shop, 1)
    return shop


def _key(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key_id": row["key_id"],
        "label": row["label"],
        "created_at": row["issued_at"].isoformat(),
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


def _key_cursor(row: dict[str, Any]) -> str:
    at: datetime = row["issued_at"]
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row['key_id']}".encode()).decode()


def _after_key(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        at, _, key_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not key_id:
            raise ValueError("not a cursor of this list")
        return when, key_id
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            422,
            "cursor is not one this API gave out",
            errors=[{"field": "cursor", "message": "not a next_cursor of this list"}],
        ) from None


@router.post(
    "/v1/keys",
    status_code=201,
    tags=["keys"],
    summary="Issue a new API key for the shop (shown once)",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "label": {
                                "type": ["string", "null"],
                                "maxLength": 100,
                                "description": "what the key is for, e.g. Tekmetric",
                            }
                        },
                    }
                }
            },
        }
    },
    response_model=IssuedKeyAnswer,
    responses={400: {}, 401: {}, 403: {}, 409: {}, 413: {}, 422: {}, 429: {}},
)
async def issue_key(request: Request) -> Response:
    shop = await _key_manager(request)
    body = await read_body(
        request.receive, request.headers.get("content-length"), KEY_BODY_BYTES, allow_empty=True
    )
    raw = parse_json(body) if body.strip() else {}
    label = raw.get("label") if isinstance(raw, dict) else None
    if (
        not isinstance(raw, dict)
        or set(raw) - {"label"}
        or (label is not None and (not isinstance(label, str) or not 0 < len(label) <= 100))
    ):
        field = "label" if isinstance(raw, dict) and not set(raw) - {"label"} else "body"
        raise Problem(
            422,
            f"{field}: an object with an optional label of 1 to 100 characters",
            errors=[{"field": field, "message": "a label of 1 to 100 characters, or none"}],
        )
    try:
        issued = await context(request).bus.handle(IssueApiKey(shop, label))
    except TooManyKeys as exc:
        raise Problem(409, str(exc)) from None
    row = await queries.key(context(request).pool, shop, issued.key_id)
    assert row is not None
    return json_response({**_key(row), "api_key": issued.api_key}, 201)


@router.get(
    "/v1/keys",
    tags=["keys"],
    summary="The shop's API keys, oldest first: when made, last used, revoked (no secrets)",
    response_model=KeyPage,
    responses={401: {}, 403: {}, 422: {}, 429: {}},
)
async def list_keys(
    request: Request, limit: PageLimit = 100, cursor: PageCursor = None
) -> Response:
    shop = await _key_manager(request)
    rows = await queries.keys(
        context(request).pool, shop, after=_after_key(cursor), limit=limit + 1
    )
    shown = rows[:limit]
    return json_response(
        {
            "items": [_key(r) for r in shown],
            "next_cursor": _key_cursor(shown[-1]) if len(rows) > limit else None,
        }
    )


@router.post(
    "/v1/keys/{key_id}/revoke",
    tags=["keys"],
    summary="Revoke a key: it stops working on every service within 30 seconds",
    description="Revoking a revoked key changes nothing. The shop's last key in use cannot"
    " be revoked (409): issue its replacement first; nor can the key the request is signed"
    " with (409): revoke it with the new one.",
    response_model=KeyAnswer,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 429: {}},
)
async def revoke_key(request: Request, key_id: KeyIdPath) -> Response:
    shop = await _key_manager(request)
    _scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    signed_with = parse_key(token.strip())
    try:
        await context(request).bus.handle(
            RevokeApiKey(shop, key_id, signed_with[0] if signed_with else None)
        )
    except UnknownKey:
        raise Problem(404, f"no API key {key_id!r} in this shop") from None
    except (LastActiveKey, KeyInUse) as exc:
        raise Problem(409, str(exc)) from None
    row = await queries.key(context(request).pool, shop, key_id)
    assert row is not None
    return json_response(_key(row))
