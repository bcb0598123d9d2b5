"""Wires settings -> adapters -> handlers for intake: the one place that does."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from regulars_runtime.auth import KeyRing
from regulars_runtime.http import Problem, problem_handler
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceContext, ServiceDefinition, create_app
from regulars_runtime.settings import Settings

from .domain.rate_limit import ShopRateLimits
from .entrypoints import api, post_event
from .entrypoints.acceptance import AcceptanceQueue
from .entrypoints.post_event import PostEvent

NAME = "intake"


def migrations() -> list[Migration]:
    return service_migrations("regulars_intake", NAME)


async def _on_start(ctx: ServiceContext) -> None:
    ctx.extras["keys"] = KeyRing(ctx.pool)
    ctx.extras["acceptance"] = AcceptanceQueue(ctx.pool)
    ctx.extras["rate_limits"] = ShopRateLimits(
        rate=float(os.environ.get("INTAKE_RATE_PER_SECOND", "200")),
        burst=float(os.environ.get("INTAKE_RATE_BURST", "1000")),
    )


DEFINITION = ServiceDefinition(
    name=NAME,
    title="Regulars intake",
    description="Event ingestion from shop systems, shops and API keys, policy, customers.",
    routers=[api.router],
    on_start=_on_start,
)


def build(settings: Settings) -> FastAPI:
    app = create_app(DEFINITION, settings)
    app.add_exception_handler(Problem, problem_handler)
    app.add_middleware(PostEvent)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()  # generated once, then FastAPI's cached copy
        document["paths"].setdefault(post_event.PATH, {})["post"] = post_event.openapi_operation(
            api.EVENT_SCHEMA
        )
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app
