"""Wires settings -> adapters -> handlers for feedback: the one place that does."""

from __future__ import annotations

import os

from fastapi import FastAPI
from regulars_runtime import metrics
from regulars_runtime.auth import KeyRing
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.http import Problem, problem_handler
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceContext, ServiceDefinition, create_app
from regulars_runtime.settings import Settings
from regulars_runtime.timers import timer_worker

from . import handlers
from .entrypoints import api

NAME = "feedback"


def migrations() -> list[Migration]:
    return service_migrations("regulars_feedback", NAME)


def public_url() -> str:
    """Where customers open survey links (FEEDBACK_PUBLIC_URL; this service by default)."""
    port = os.environ.get("PORT", "8003")
    return os.environ.get("FEEDBACK_PUBLIC_URL", f"http://127.0.0.1:{port}")


def definition(clock: Clock = system_clock, url: str | None = None) -> ServiceDefinition:
    deps = handlers.Deps(clock=clock, public_url=url or public_url())

    async def _on_start(ctx: ServiceContext) -> None:
        ctx.extras["keys"] = KeyRing(ctx.pool)
        ctx.extras["clock"] = clock
        ctx.extras["deps"] = deps

    return ServiceDefinition(
        name=NAME,
        title="Regulars feedback",
        description=(
            "Surveys, classification, recovery cases with SLAs and escalation,"
            " review and referral asks."
        ),
        routers=[api.router],
        consumes=handlers.TOPICS,
        handle=handlers.message_bus(deps),
        handles_type=handlers.handles,
        on_start=_on_start,
        workers=[
            timer_worker(
                lambda _ctx: handlers.timer_bus(deps),
                clock=clock,
                on_fired=metrics.TIMER_LAG.labels(NAME).observe,
            )
        ],
    )


DEFINITION = definition()


def build(settings: Settings) -> FastAPI:
    app = create_app(DEFINITION, settings)
    app.add_exception_handler(Problem, problem_handler)
    return app
