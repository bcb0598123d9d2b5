"""What intake's endpoints answer, as models: the OpenAPI document's 2xx schemas.

The routes write their JSON themselves (orjson, on the hot path); these say its shape.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from regulars_shop.policy import Policy


class FieldProblem(BaseModel):
    field: str
    message: str


class PostingResult(BaseModel):
    """One posted event's answer; a rejected one says why, as a problem would."""

    status: Literal["accepted", "duplicate", "rejected"]
    id: str | None = Field(None, description="the event's id as the shop sent it")
    event_id: uuid.UUID | None = Field(None, description="the CloudEvents id it became")
    code: int | None = Field(None, description="rejected: the HTTP status it would have alone")
    detail: str | None = None
    errors: list[FieldProblem] | None = None


class BatchAnswer(BaseModel):
    results: list[PostingResult] = Field(description="one per event, in the order posted")


class PolicyAnswer(BaseModel):
    version: int = Field(ge=1)
    policy: Policy
    changed_by: str | None = Field(
        description="the staff member who made this version at the console; null when the"
        " shop's system (its API key) did, and for the shop's first version"
    )


class CustomerAnswer(BaseModel):
    customer_id: str
    name: str
    phone: str | None
    email: str | None
    state: str | None
    timezone: str | None
    birthday: date | None
    consent: dict[str, bool]
    data: dict[str, Any] = Field(description="the customer.upserted data as last posted")
    updated_at: datetime


class WaitingFor(BaseModel):
    kind: Literal["customer", "repair_order", "invoice"]
    id: str = Field(description="the shop's id of what has not arrived")


class WaitingEvent(BaseModel):
    """An accepted event held until what it refers to arrives; never dropped."""

    event_id: uuid.UUID = Field(description="the CloudEvents id it will be published as")
    id: str | None = Field(None, description="the event's id as the shop sent it")
    type: str
    occurred_at: datetime
    received_at: datetime
    waiting_for: WaitingFor


class WaitingPage(BaseModel):
    items: list[WaitingEvent]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


class ConnectorAnswer(BaseModel):
    connector_id: uuid.UUID
    system: str
    hook_path: str = Field(description="where the system posts its webhooks")
    hook_url: str = Field(description="the hook path on this server (Tekmetric: add ?token=)")
    choices: dict[str, Any] = Field(description="what the shop chose; never the secret")


class ConnectorSummary(BaseModel):
    connector_id: uuid.UUID
    system: str
    choices: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_delivery_at: datetime | None
    accepted: int = Field(description="postings accepted (a re-send counts, once applied)")
    rejected: int = Field(description="postings the delivery mapped to that intake refused")
    errors: int = Field(description="signed deliveries that could not be read or completed")
    fetching: int = Field(
        0, description="Jobber: thin events kept, their item not read yet (retried)"
    )
    parked: int = Field(
        0,
        description="Jobber: thin events whose item will not be read (unknown item, token"
        " refused); counted in errors, not retried",
    )


class ConnectorList(BaseModel):
    connectors: list[ConnectorSummary]


class DeliveryAnswer(BaseModel):
    results: list[dict[str, Any]] = Field(
        description="one per event the delivery became, as POST /v1/events answers it"
    )


class KeyAnswer(BaseModel):
    """An API key as the shop sees it after it was issued: never its secret."""

    key_id: str = Field(description="the key's public id: the part after rk_ and before _")
    label: str | None = Field(description="what the key is for, as the shop named it")
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="the hour it was last used on intake (coarse on purpose); null: never"
    )
    revoked_at: datetime | None = Field(description="null while the key works")


class IssuedKeyAnswer(KeyAnswer):
    api_key: str = Field(description="the key itself, shown this once: only its hash is kept")


class KeyPage(BaseModel):
    items: list[KeyAnswer]
    next_cursor: str | None
