"""Wires settings -> adapters -> handlers for followup: the one place that does."""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI
from regulars_runtime import metrics
from regulars_runtime.auth import KeyRing
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.http import Problem, problem_handler
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceContext, ServiceDefinition, Worker, create_app
from regulars_runtime.settings import Settings
from regulars_runtime.timers import timer_worker

from . import handlers
from .adapters.email import SmtpSender
from .adapters.sms import TwilioCompatibleSms
from .entrypoints import api
from .entrypoints.dispatcher import MessageDispatcher

NAME = "followup"


def migrations() -> list[Migration]:
    return service_migrations("regulars_followup", NAME)


def dispatcher(settings: Settings, ctx: ServiceContext, clock: Clock) -> MessageDispatcher:
    email = (
        SmtpSender(
            settings.smtp_url, os.environ.get("MAIL_FROM", "Regulars <no-reply@regulars.local>")
        )
        if settings.smtp_url
        else None
    )
    sms = (
        TwilioCompatibleSms(
            settings.sms_api_url,
            os.environ.get("SMS_ACCOUNT_SID", "AClocal"),
            # The local stand-in (make run, tests) takes any credentials; a real gateway
            # needs SMS_ACCOUNT_SID and SMS_API_TOKEN.
            os.environ.get("SMS_API_TOKEN", "local"),
            os.environ.get("SMS_FROM", "+15555550000"),
        )
        if settings.sms_api_url
        else None
    )
    public = os.environ.get("FOLLOWUP_PUBLIC_URL", f"http://127.0.0.1:{settings.port}")
    return MessageDispatcher(
        pool=ctx.pool,
        database_url=settings.database_url,
        clock=clock,
        email=email,
        sms=sms,
        public_url=public,
    )


def definition(clock: Clock = system_clock) -> ServiceDefinition:
    async def _on_start(ctx: ServiceContext) -> None:
        ctx.extras["keys"] = KeyRing(ctx.pool)
        ctx.extras["clock"] = clock
        # Built at start-up so a bad SMTP_URL or SMS setting stops the service with its reason.
        ctx.extras["dispatcher"] = dispatcher(ctx.settings, ctx, clock)

    async def _dispatch(ctx: ServiceContext, stop: asyncio.Event) -> None:
        await ctx.extras["dispatcher"].run(stop)

    workers: list[Worker] = [
        timer_worker(
            lambda _ctx: handlers.timer_bus(clock),
            clock=clock,
            on_fired=metrics.TIMER_LAG.labels(NAME).observe,
        ),
        _dispatch,
    ]
    return ServiceDefinition(
        name=NAME,
        title="Regulars followup",
        description="Follow-up call tasks, outbound messages, reminders, consent and quiet hours.",
        routers=[api.router],
        consumes=handlers.TOPICS,
        handle=handlers.message_bus(clock),
        handle_many=handlers.message_bus_many(clock),
        handles_type=handlers.handles,
        on_start=_on_start,
        workers=workers,
    )


DEFINITION = definition()


def build(settings: Settings) -> FastAPI:
    app = create_app(DEFINITION, settings)
    app.add_exception_handler(Problem, problem_handler)
    return app
