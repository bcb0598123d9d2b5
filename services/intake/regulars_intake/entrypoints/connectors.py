"""Connectors: a shop configures one for its management system, which then posts its own
webhooks to ``/hooks/{system}/{connector_id}``, checked with that system's scheme.

A delivery is answered 200 once what it maps to is committed (the same acceptance as
``POST /v1/events``); a bad or missing signature is 403 and records nothing. Jobber's thin
events that need their item read are kept and answered 202 at once (Jobber wants an answer
within a second); the fetch worker reads and accepts them afterwards.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from regulars_runtime.http import Problem, json_response
from regulars_runtime.openapi import PUBLIC
from regulars_runtime.service import context, shop_of, staff_of

from ..adapters import connectors as stored
from ..domain.acceptance import Outcome
from ..domain.connectors import SYSTEMS, Delivery, MappingFailed
from ..domain.connectors import jobber as jobber_mapping
from ..domain.connectors.setup import ConnectorSetup
from ..domain.postings import MAX_REQUEST_BYTES, Rejected, parse_posting
from ..handlers import AcceptDelivery, ConfigureConnector, CountFailedDelivery
from ..jobber_handlers import KeepJobberEvent
from .answers import ConnectorAnswer, ConnectorList, DeliveryAnswer
from .front import front
from .guards import check_rate, parse_json, read_body

router = APIRouter()

#: a webhook body is a record or two: far less than a batch of events
MAX_HOOK_BYTES = 256 * 1024
MAX_SETUP_BYTES = 16 * 1024


class System(StrEnum):
    shopmonkey = "shopmonkey"
    tekmetric = "tekmetric"
    housecall_pro = "housecall_pro"
    jobber = "jobber"
    servicetitan = "servicetitan"


def _hook_path(system: str, connector_id: uuid.UUID) -> str:
    return f"/hooks/{system}/{connector_id}"


@router.put(
    "/v1/connectors/{system}",
    tags=["connectors"],
    summary="Configure the shop's connector for a shop system; answers its hook URL",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ConnectorSetup.model_json_schema()}},
        }
    },
    response_model=ConnectorAnswer,
    responses={400: {}, 401: {}, 403: {}, 413: {}, 422: {}},
)
async def put_connector(request: Request, system: System) -> Response:
    shop = await shop_of(request)
    person = staff_of(request)
    if person is not None and not person.is_owner:
        raise Problem(403, "only an owner changes the shop's connectors")
    raw = parse_json(
        await read_body(request.receive, request.headers.get("content-length"), MAX_SETUP_BYTES)
    )
    try:
        setup = ConnectorSetup.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        raise Problem(
            422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        ) from None
    if system is System.jobber and not setup.access_token:
        raise Problem(
            422,
            "access_token: Jobber's webhooks name only the item; its API is read with this token",
            errors=[{"field": "access_token", "message": "required for jobber"}],
        )
    connector = await context(request).bus.handle(ConfigureConnector(shop, system.value, setup))
    path = _hook_path(system.value, connector.id)
    base = str(request.base_url).rstrip("/")
    url = base + path + ("?token=<secret>" if system is System.tekmetric else "")
    return json_response(
        {
            "connector_id": str(connector.id),
            "system": system.value,
            "hook_path": path,
            "hook_url": url,
            "choices": connector.choices,
        }
    )


@router.get(
    "/v1/connectors",
    tags=["connectors"],
    summary="The shop's connectors, their last delivery and counts",
    response_model=ConnectorList,
    responses={401: {}},
)
async def get_connectors(request: Request) -> Response:
    shop = await shop_of(request)
    return json_response({"connectors": await stored.listed(context(request).pool, shop)})


def _refused() -> Problem:
    # Unknown connector and bad signature look the same: the URL alone proves nothing.
    return Problem(403, "the delivery's signature does not verify for this connector")


@router.post(
    "/hooks/{system}/{connector_id}",
    tags=["connectors"],
    summary="A shop system's own webhook (authenticated by that system's signature scheme)",
    description="Public: the credential is the system's own signature (Shopmonkey"
    " webhook-signature, Housecall Pro Api-Signature, Jobber X-Jobber-Hmac-SHA256,"
    " ServiceTitan X-ServiceTitan-Signature) or, for Tekmetric, ?token=. A bad or missing"
    " one, or an unknown connector, is 403 and records nothing.",
    openapi_extra={
        **PUBLIC,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
    response_model=DeliveryAnswer,
    responses={
        202: {
            "model": DeliveryAnswer,
            "description": "Jobber: the thin event is kept (queued, or a duplicate of one"
            " kept); its item is read and accepted afterwards",
        },
        400: {},
        403: {},
        413: {},
        422: {},
        429: {},
    },
)
async def post_hook(request: Request, system: System, connector_id: uuid.UUID) -> Response:
    ctx = context(request)
    the_front = front(request)
    body = await read_body(request.receive, request.headers.get("content-length"), MAX_HOOK_BYTES)
    ctx.refuse_known_guesser(request.scope)
    target = await stored.hook_target(ctx.pool, connector_id, system.value)
    if target is None or the_front.secrets is None:
        await ctx.count_failure(request.scope)
        raise _refused()
    secret = the_front.secrets.open(target["sealed_secret"])
    delivery = Delivery(
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        body=body,
        received_at=datetime.now(UTC),
    )
    module = SYSTEMS[system.value]
    if secret is None or not module.verify(delivery, secret):
        await ctx.count_failure(request.scope)
        raise _refused()
    # Counted once signed: forged deliveries cannot use up the system's own allowance.
    await check_rate(ctx, the_front.hook_deliveries, connector_id, 1)
    connector = target["connector"]
    choices = connector.reading(target["timezone"])
    try:
        payload = parse_json(body)
        if system is System.jobber:
            event = jobber_mapping.thin(payload, choices)
            if jobber_mapping.query_for(event) is not None:
                # Jobber wants an answer within a second: keep the event, read it later
                fresh = await ctx.bus.handle(
                    KeepJobberEvent(connector.id, connector.shop_id, event, payload)
                )
                return json_response(
                    {
                        "results": [
                            {
                                "status": "queued" if fresh else "duplicate",
                                "topic": event.topic,
                                "item_id": event.item_id,
                            }
                        ]
                    },
                    202,
                )
            raws = jobber_mapping.map_event(event, None, choices, delivery.received_at)
        else:
            raws = module.map_delivery(payload, choices, delivery)
    except (MappingFailed, Problem) as failed:
        await ctx.bus.handle(CountFailedDelivery(connector.id))
        if isinstance(failed, Problem):
            raise
        raise Problem(422, f"{system.value}: {failed}") from None
    postings = []
    results: list[dict[str, Any]] = []
    for i, raw in enumerate(raws):
        try:
            postings.append(parse_posting(raw, where=f"mapped[{i}]"))
        except Rejected as rejected:
            results.append({"status": "rejected", "id": raw.get("id"), **rejected.as_dict()})
    outcomes = await ctx.bus.handle(
        AcceptDelivery(connector.id, connector.shop_id, postings, rejected=len(results))
    )
    results = [
        {"type": p.short_type, **_answer(o)} for p, o in zip(postings, outcomes, strict=True)
    ] + results
    return json_response({"results": results})


def _answer(outcome: Outcome) -> dict[str, Any]:
    # The same id with other details is a later version of something already taken (an
    # order updated after completion): for the system, a duplicate, not its mistake.
    if outcome.rejection is not None and outcome.rejection.status == 409:
        return Outcome("duplicate", outcome.event_id, outcome.client_id).as_dict()
    return outcome.as_dict()


__all__ = ["MAX_REQUEST_BYTES", "router"]
