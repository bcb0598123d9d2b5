"""The shop's outbound webhooks over HTTP: subscribe, change, rotate, see and replay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator
from regulars_runtime.http import Problem, after_cursor, json_response, page_cursor
from regulars_runtime.service import ShopApiKey, context

from ..adapters import webhooks as reads
from ..domain.webhooks import (
    MAX_DESCRIPTION_LENGTH,
    MAX_URL_LENGTH,
    OLD_SECRET_KEPT,
    WebhookRejected,
)
from ..webhook_handlers import (
    CreateWebhook,
    DeleteWebhook,
    ReplayDeliveries,
    RotateSecret,
    UpdateWebhook,
    Webhook,
    offered_event_types,
)
from .front import front
from .guards import check_rate

router = APIRouter(tags=["webhooks"])

MAX_EVENT_TYPES = 200
#: what check_url takes, as a schema can say it: http(s), a host, no user, an optional port
URL_PATTERN = (
    r"^https?://[^\x00-\x20/?#@:\[\]\\]+"
    r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"([/?#][^\x00-\x20]*)?$"
)
#: documented as the catalogue's names; checked by the handler, which names an unknown one
EventType = Annotated[str, Field(max_length=200, json_schema_extra={"enum": offered_event_types()})]
_ERRORS: dict[int | str, dict[str, Any]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 429: {}}


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=MAX_URL_LENGTH, pattern=URL_PATTERN, description="an http or https address"
    )
    event_types: list[EventType] = Field(
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        description="event types from GET /v1/webhooks/event-types",
    )
    description: str | None = Field(None, max_length=MAX_DESCRIPTION_LENGTH)


class WebhookChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=MAX_URL_LENGTH, pattern=URL_PATTERN)
    event_types: list[EventType] | None = Field(None, min_length=1, max_length=MAX_EVENT_TYPES)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION_LENGTH)
    enabled: StrictBool | None = Field(None, description="false pauses deliveries; true resumes")

    def changes(self) -> dict[str, Any]:
        """The fields given; a null url, event_types or enabled leaves it as it is."""
        given = self.model_dump(exclude_unset=True)
        return {k: v for k, v in given.items() if v is not None or k == "description"}


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(description="re-send every delivery recorded since then")

    @field_validator("since", mode="before")
    @classmethod
    def _a_time_in_words(cls, value: object) -> object:
        # not a number of seconds: the document says an ISO 8601 time with its offset
        if not isinstance(value, str | datetime):
            raise ValueError("an ISO 8601 time with its offset, such as 2026-11-20T10:00:00Z")
        return value


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class NewWebhookOut(WebhookOut):
    secret: str = Field(description="whsec_...: shown once; verify deliveries with it")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class SecretOut(BaseModel):
    secret: str
    previous_secret_valid_hours: int


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


class Deleted(BaseModel):
    deleted: uuid.UUID


class Replayed(BaseModel):
    replayed: int


class EventTypes(BaseModel):
    event_types: list[str]


def _as_dict(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": str(webhook.id),
        "url": webhook.url,
        "event_types": list(webhook.event_types),
        "description": webhook.description,
        "enabled": webhook.enabled,
        "disabled_reason": webhook.disabled_reason,
        "created_at": webhook.created_at.isoformat(),
        "updated_at": webhook.updated_at.isoformat(),
    }


async def _limit(request: Request, shop: uuid.UUID) -> None:
    await check_rate(context(request), front(request).events, shop, 1)


def _rejected(exc: WebhookRejected) -> Problem:
    # a shop at its limit of webhooks is a conflict with what it has, not a bad field
    status = 409 if exc.field == "webhooks" else 422
    return Problem(status, str(exc), errors=[{"field": exc.field, "message": exc.message}])


def _not_found(webhook_id: uuid.UUID) -> Problem:
    return Problem(404, f"no webhook {webhook_id} in this shop")


def _secrets_on(request: Request) -> None:
    if not context(request).settings.webhooks_on():  # type: ignore[attr-defined]
        raise Problem(503, "webhooks are off: REGULARS_WEBHOOK_SECRET_KEY is not set")


@router.get(
    "/v1/webhooks/event-types",
    summary="The event types a webhook may subscribe to",
    response_model=EventTypes,
    responses=_ERRORS,
)
async def event_types(request: Request, shop: ShopApiKey) -> Response:
    await _limit(request, shop)
    return json_response({"event_types": offered_event_types()})


@router.post(
    "/v1/webhooks",
    status_code=201,
    summary="Subscribe an endpoint to event types; the answer holds its secret, once",
    response_model=NewWebhookOut,
    responses={**_ERRORS, 503: {}},
)
async def create(request: Request, shop: ShopApiKey, body: WebhookIn) -> Response:
    await _limit(request, shop)
    _secrets_on(request)
    try:
        webhook, secret = await context(request).bus.handle(
            CreateWebhook(shop, body.url, body.event_types, body.description)
        )
    except WebhookRejected as exc:
        raise _rejected(exc) from None
    return json_response({**_as_dict(webhook), "secret": secret}, 201)


@router.get(
    "/v1/webhooks",
    summary="The shop's webhooks",
    response_model=WebhookList,
    responses=_ERRORS,
)
async def list_all(request: Request, shop: ShopApiKey) -> Response:
    await _limit(request, shop)
    async with context(request).pool.acquire() as conn:
        found = await reads.list_webhooks(conn, shop)
    return json_response({"webhooks": [_as_dict(w) for w in found]})


@router.get(
    "/v1/webhooks/{webhook_id:uuid}",
    summary="One webhook of the shop",
    response_model=WebhookOut,
    responses=_ERRORS,
)
async def get_one(request: Request, shop: ShopApiKey, webhook_id: uuid.UUID) -> Response:
    await _limit(request, shop)
    async with context(request).pool.acquire() as conn:
        found = await reads.webhook(conn, shop, webhook_id)
    if found is None:
        raise _not_found(webhook_id)
    return json_response(_as_dict(found))


@router.patch(
    "/v1/webhooks/{webhook_id:uuid}",
    summary="Change a webhook's url, event types, description, or switch it on or off",
    response_model=WebhookOut,
    responses=_ERRORS,
)
async def update(
    request: Request, shop: ShopApiKey, webhook_id: uuid.UUID, body: WebhookChange
) -> Response:
    await _limit(request, shop)
    changes = body.changes()
    try:
        found = await context(request).bus.handle(UpdateWebhook(shop, webhook_id, changes))
    except WebhookRejected as exc:
        raise _rejected(exc) from None
    if found is None:
        raise _not_found(webhook_id)
    return json_response(_as_dict(found))


@router.delete(
    "/v1/webhooks/{webhook_id:uuid}",
    summary="Remove a webhook and its deliveries",
    response_model=Deleted,
    responses=_ERRORS,
)
async def delete(request: Request, shop: ShopApiKey, webhook_id: uuid.UUID) -> Response:
    await _limit(request, shop)
    if not await context(request).bus.handle(DeleteWebhook(shop, webhook_id)):
        raise _not_found(webhook_id)
    return json_response({"deleted": str(webhook_id)})


@router.post(
    "/v1/webhooks/{webhook_id:uuid}/rotate-secret",
    summary="A new secret (shown once); the old one keeps signing for 24 hours beside it",
    response_model=SecretOut,
    responses={**_ERRORS, 503: {}},
)
async def rotate(request: Request, shop: ShopApiKey, webhook_id: uuid.UUID) -> Response:
    await _limit(request, shop)
    _secrets_on(request)
    secret = await context(request).bus.handle(RotateSecret(shop, webhook_id))
    if secret is None:
        raise _not_found(webhook_id)
    hours = int(OLD_SECRET_KEPT.total_seconds() // 3600)
    return json_response({"secret": secret, "previous_secret_valid_hours": hours})


@router.get(
    "/v1/webhooks/{webhook_id:uuid}/deliveries",
    summary="The webhook's deliveries, oldest first: status, attempts, last answer, next try",
    response_model=DeliveryPage,
    responses=_ERRORS,
)
async def deliveries(
    request: Request,
    shop: ShopApiKey,
    webhook_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=reads.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    await _limit(request, shop)
    after = after_cursor(cursor)
    async with context(request).pool.acquire() as conn:
        if await reads.webhook(conn, shop, webhook_id) is None:
            raise _not_found(webhook_id)
        rows = await reads.deliveries(conn, shop, webhook_id, after=after, limit=limit)
    page = [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        for row in rows
    ]
    for item in page:
        item["id"], item["event_id"] = str(item["id"]), str(item["event_id"])
    next_cursor = (
        page_cursor(rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == limit else None
    )
    return json_response({"deliveries": page, "next_cursor": next_cursor})


@router.post(
    "/v1/webhooks/{webhook_id:uuid}/deliveries/{delivery_id:uuid}/replay",
    status_code=202,
    summary="Send one delivery again (same webhook-id), with a fresh retry ladder",
    response_model=Replayed,
    responses=_ERRORS,
)
async def replay_one(
    request: Request, shop: ShopApiKey, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> Response:
    await _limit(request, shop)
    count = await context(request).bus.handle(
        ReplayDeliveries(shop, webhook_id, delivery_id=delivery_id)
    )
    if count is None:
        raise _not_found(webhook_id)
    if count == 0:
        raise Problem(404, f"no delivery {delivery_id} of webhook {webhook_id}")
    return json_response({"replayed": count}, 202)


@router.post(
    "/v1/webhooks/{webhook_id:uuid}/replay",
    status_code=202,
    summary="Send again every delivery recorded since a time (at most 10,000 at once)",
    response_model=Replayed,
    responses=_ERRORS,
)
async def replay_since(
    request: Request, shop: ShopApiKey, webhook_id: uuid.UUID, body: ReplayIn
) -> Response:
    await _limit(request, shop)
    count = await context(request).bus.handle(ReplayDeliveries(shop, webhook_id, since=body.since))
    if count is None:
        raise _not_found(webhook_id)
    return json_response({"replayed": count}, 202)
