"""Wires settings -> adapters -> handlers for followup: the one place that does."""

from __future__ import annotations

from fastapi import FastAPI
from regulars_runtime.auth import KeyRing
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.http import Problem, problem_handler
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceContext, ServiceDefinition, create_app
from regulars_runtime.settings import Settings

from . import handlers
from .entrypoints import api

NAME = "followup"


def migrations() -> list[Migration]:
    return service_migrations("regulars_followup", NAME)


def definition(clock: Clock = system_clock) -> ServiceDefinition:
    async def _on_start(ctx: ServiceContext) -> None:
        ctx.extras["keys"] = KeyRing(ctx.pool)
        ctx.extras["clock"] = clock

    return ServiceDefinition(
        name=NAME,
        title="Regulars followup",
        description="Follow-up call tasks, outbound messages, reminders, consent and quiet hours.",
        routers=[api.router],
        consumes=handlers.TOPICS,
        handle=handlers.message_bus(clock),
        handles_type=handlers.handles,
        on_start=_on_start,
    )


DEFINITION = definition()


def build(settings: Settings) -> FastAPI:
    app = create_app(DEFINITION, settings)
    app.add_exception_handler(Problem, problem_handler)
    return app
