"""Wires settings -> adapters -> handlers for intake: the one place that does."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI
from pydantic import AliasChoices, Field, SecretStr
from regulars_runtime.bus import MessageBus
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceDefinition, Wiring
from regulars_runtime.settings import ServiceSettings
from regulars_shop.policy import Policy

from . import handlers
from .adapters.connectors import JobberApi, SecretBox
from .adapters.unit_of_work import PostgresIntakeUnitOfWork
from .domain.postings import MAX_REQUEST_BYTES
from .domain.rate_limit import ShopRateLimits
from .entrypoints import api, connectors, post_event
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
    hook_rate_per_second: float = Field(
        20.0, gt=0, description="webhook deliveries/s per connector"
    )
    hook_rate_burst: float = Field(
        200.0, gt=0, description="deliveries a connector may send at once"
    )
    #: encrypts connectors' secrets at rest; unset, a key derived from the staff-token key
    connector_key: SecretStr | None = Field(
        None, min_length=32, validation_alias=AliasChoices("REGULARS_CONNECTOR_KEY")
    )
    jobber_api_url: str = Field(
        "https://api.getjobber.com/api/graphql",
        validation_alias=AliasChoices("JOBBER_API_URL"),
        description="Jobber's GraphQL endpoint, where thin Jobber webhooks are completed",
    )

    def connector_secret_key(self) -> str | None:
        if self.connector_key is not None:
            return self.connector_key.get_secret_value()
        staff = self.staff_key()
        return None if staff is None else "derived from the staff-token key\0" + staff


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
            handlers.ConfigureConnector: handlers.configure_connector,
            handlers.AcceptDelivery: handlers.accept_delivery,
            handlers.CountFailedDelivery: handlers.count_failed_delivery,
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
        key = settings.connector_secret_key()
        secrets = None if key is None else SecretBox(key)
        deps = Deps(clock=clock, sealer=secrets)
        commands = bus(deps, pool)
        front = Front(
            acceptance=AcceptanceQueue(commands.unit_of_work),
            rate_limits=ShopRateLimits(
                rate=settings.intake_rate_per_second, burst=settings.intake_rate_burst
            ),
            hook_limits=ShopRateLimits(
                rate=settings.hook_rate_per_second, burst=settings.hook_rate_burst
            ),
            secrets=secrets,
            jobber=JobberApi(settings.jobber_api_url),
        )
        return Wiring(deps=deps, bus=commands, front=front)

    return ServiceDefinition(
        name=NAME,
        title="Regulars intake",
        description="Event ingestion from shop systems, shops and API keys, policy, customers.",
        settings=IntakeSettings,
        wire=wire,
        routers=[api.router, connectors.router],
        clock=clock,
        body_limit=MAX_REQUEST_BYTES,
        customize=_customize,
    )


DEFINITION = definition()
