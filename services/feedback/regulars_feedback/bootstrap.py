"""Wires settings -> adapters -> handlers for feedback: the one place that does."""

from __future__ import annotations

import os

from fastapi import FastAPI
from regulars_runtime.auth import KeyRing
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.http import Problem, problem_handler
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceContext, ServiceDefinition, create_app
from regulars_runtime.settings import Settings

from . import handlers

NAME = "feedback"


def migrations() -> list[Migration]:
    return service_migrations("regulars_feedback", NAME)


async def _on_start(ctx: ServiceContext) -> None:
    ctx.extras["keys"] = KeyRing(ctx.pool)


def definition(clock: Clock = system_clock) -> ServiceDefinition:
    return ServiceDefinition(
        name=NAME,
        title="Regulars feedback",
        description=(
            "Surveys, classification, recovery cases with SLAs and escalation,"
            " review and referral asks."
        ),
        routers=[],
        consumes=handlers.TOPICS,
        handle=handlers.message_bus(
            clock, os.environ.get("FEEDBACK_PUBLIC_URL", "http://127.0.0.1:8003")
        ),
        handles_type=handlers.handles,
        on_start=_on_start,
    )


DEFINITION = definition()


def build(settings: Settings) -> FastAPI:
    app = create_app(DEFINITION, settings)
    app.add_exception_handler(Problem, problem_handler)
    return app
