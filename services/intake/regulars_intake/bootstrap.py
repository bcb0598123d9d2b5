"""Wires settings -> adapters -> handlers for intake: the one place that does."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI
from pydantic import Field
from regulars_events.topics import topics_of
from regulars_runtime.bus import MessageBus
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceDefinition, Wiring
from regulars_runtime.settings import ServiceSettings
from regulars_shop.policy import Policy

from . import handlers
from .adapters.unit_of_work import PostgresIntakeUnitOfWork
from .domain.postings import MAX_REQUEST_BYTES
from .domain.rate_limit import ShopRateLimits
from .entrypoints import api, post_event
from .entrypoints.acceptance import AcceptanceQueue
from .entrypoints.answers import PostingResult
from .entrypoints.front import Front
from .entrypoints.post_event import PostEvent
from .handlers import Deps, IntakeUnitOfWork

NAME = "intake"


class IntakeSettings(ServiceSettings):
    service = NAME

    intake_rate_per_second: float = Field(200.0, gt=0, description="events/s per shop")
    intake_rate_burst: float = Field(1000.0, gt=0, description="events a shop may post at once")


def migrations() -> list[Migration]:
    return service_migrations("regulars_intake", NAME)


def bus(deps: Deps, pool: asyncpg.Pool | None = None) -> MessageBus[IntakeUnitOfWork, Deps]:
    return MessageBus(
        unit_of_work=PostgresIntakeUnitOfWork,
        deps=deps,
        commands={
            handlers.CreateShop: handlers.open_shop,
            handlers.ChangePolicy: handlers.change_policy,
            handlers.IssueApiKey: handlers.issue_api_key,
            handlers.AcceptPostings: handlers.accept_postings,
            handlers.ListShops: handlers.list_shops,
        },
        pool=pool,
    )


def _customize(app: FastAPI) -> None:
    app.add_middleware(PostEvent)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        # PUT /v1/policy's body is Policy.model_json_schema() as it is; FastAPI renders the
        # same nested models for the answers without their `default: null`, so the
        # policy's own rendering is the one kept for both.
        policy = Policy.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(policy.pop("$defs", {}))
        answer = PostingResult.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        for name, schema in answer.pop("$defs", {}).items():
            schemas.setdefault(name, schema)
        schemas.setdefault(PostingResult.__name__, answer)
        document["paths"].setdefault(post_event.PATH, {})["post"] = post_event.openapi_operation(
            api.EVENT_SCHEMA, {"$ref": f"#/components/schemas/{PostingResult.__name__}"}
        )
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def definition(clock: Clock = system_clock) -> ServiceDefinition[IntakeSettings, Deps]:
    def wire(pool: asyncpg.Pool, settings: IntakeSettings) -> Wiring[Deps]:
        deps = Deps(clock=clock)
        commands = bus(deps, pool)
        front = Front(
            acceptance=AcceptanceQueue(commands.unit_of_work),
            rate_limits=ShopRateLimits(
                rate=settings.intake_rate_per_second, burst=settings.intake_rate_burst
            ),
        )
        return Wiring(deps=deps, bus=commands, front=front)

    return ServiceDefinition(
        name=NAME,
        title="Regulars intake",
        description="Event ingestion from shop systems, shops and API keys, policy, customers.",
        settings=IntakeSettings,
        wire=wire,
        routers=[api.router],
        # what its outbox publishes (tests/deploy checks it against the code and its ACLs)
        publishes=topics_of(
            "shop",
            "customer",
            "consent",
            "service",
            "appointment",
            "invoice",
            "service_plan",
            "referral",
        ),
        clock=clock,
        body_limit=MAX_REQUEST_BYTES,
        customize=_customize,
    )


DEFINITION = definition()
