"""Wires settings -> adapters -> handlers for followup: the one place that does."""

from __future__ import annotations

import asyncio
from typing import Any, Self

import asyncpg
from pydantic import Field, model_validator
from regulars_events.topics import topics_of
from regulars_runtime.bus import MessageBus
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceContext, ServiceDefinition, Wiring
from regulars_runtime.settings import ServiceSettings

from . import handlers
from .adapters.email import SmtpSender
from .adapters.readings import read_messages
from .adapters.sms import TwilioCompatibleSms
from .adapters.twilio_signature import TwilioSignatures
from .adapters.unit_of_work import PostgresFollowUpUnitOfWork
from .adapters.wakeups import PostgresWakeups
from .entrypoints import api, sms_hooks
from .entrypoints.dispatcher import MessageDispatcher
from .handlers import Deps, FollowUpUnitOfWork

NAME = "followup"


class FollowUpSettings(ServiceSettings):
    service = NAME

    smtp_url: str | None = None
    mail_from: str | None = Field(None, description="the From of every email (MAIL_FROM)")
    sms_api_url: str | None = None
    sms_account_sid: str | None = None
    sms_api_token: str | None = None
    sms_from: str | None = None
    sms_provider_confirms_opt_out: bool = Field(
        True,
        description=(
            "the SMS provider answers STOP and HELP itself, as Twilio does by default"
            " (SMS_PROVIDER_CONFIRMS_OPT_OUT): then we send no confirmation or HELP answer"
        ),
    )
    monthly_check_page_size: int = Field(
        500,
        ge=1,
        le=10_000,
        description=(
            "customers per page of the monthly check, one transaction each"
            " (MONTHLY_CHECK_PAGE_SIZE)"
        ),
    )
    followup_public_url: str | None = Field(
        None, description="where customers open unsubscribe links (FOLLOWUP_PUBLIC_URL)"
    )

    @model_validator(mode="after")
    def _customer_facing(self) -> Self:
        # A customer sees these: outside embedded mode they must be the shop's own.
        object.__setattr__(
            self,
            "followup_public_url",
            self.public_url(self.followup_public_url, "FOLLOWUP_PUBLIC_URL"),
        )
        if self.survey_key() is None:
            raise ValueError(
                "REGULARS_SURVEY_LINK_KEY (or REGULARS_STAFF_TOKEN_KEY, which it is derived"
                " from when unset) is not set: survey links are made with it"
            )
        if self.smtp_url and not self.mail_from:
            if not self.embedded:
                raise ValueError("MAIL_FROM is not set: every email needs a sender")
            object.__setattr__(self, "mail_from", "Regulars <no-reply@regulars.local>")
        if self.sms_api_url:
            missing = [
                name
                for name, value in (
                    ("SMS_ACCOUNT_SID", self.sms_account_sid),
                    ("SMS_API_TOKEN", self.sms_api_token),
                    ("SMS_FROM", self.sms_from),
                )
                if not value
            ]
            if missing and not self.embedded:
                raise ValueError(f"{', '.join(missing)} not set: the SMS gateway needs them")
            # The local stand-in (make run, tests) takes any credentials.
            object.__setattr__(self, "sms_account_sid", self.sms_account_sid or "AClocal")
            object.__setattr__(self, "sms_api_token", self.sms_api_token or "local")
            object.__setattr__(self, "sms_from", self.sms_from or "+15555550000")
        return self


def migrations() -> list[Migration]:
    return service_migrations("regulars_followup", NAME)


def bus(deps: Deps, pool: asyncpg.Pool | None = None) -> MessageBus[FollowUpUnitOfWork, Deps]:
    return MessageBus(
        unit_of_work=PostgresFollowUpUnitOfWork,
        deps=deps,
        events=handlers.EVENTS,
        batches=handlers.BATCHES,
        timers=handlers.TIMERS,
        commands=handlers.COMMANDS,
        pool=pool,
        timers_alone=handlers.TIMERS_ALONE,
    )


def dispatcher(
    settings: FollowUpSettings, sending: MessageBus[FollowUpUnitOfWork, Deps]
) -> MessageDispatcher:
    email = SmtpSender(settings.smtp_url, settings.mail_from or "") if settings.smtp_url else None
    sms = (
        TwilioCompatibleSms(
            settings.sms_api_url,
            settings.sms_account_sid or "",
            settings.sms_api_token or "",
            settings.sms_from or "",
        )
        if settings.sms_api_url
        else None
    )
    return MessageDispatcher(
        bus=sending,
        wakeups=PostgresWakeups(settings.database_url),
        email=email,
        sms=sms,
        public_url=settings.followup_public_url or "",
    )


def hooks(settings: FollowUpSettings) -> sms_hooks.SmsHooks:
    """The provider signs its webhooks with the account's auth token, for the public URL
    it was given: without a token nothing here can tell its posts from anyone's."""
    token = settings.sms_api_token
    signatures = TwilioSignatures(token, settings.followup_public_url or "") if token else None
    return sms_hooks.SmsHooks(signatures)


def definition(clock: Clock = system_clock) -> ServiceDefinition[FollowUpSettings, Deps]:
    def wire(pool: asyncpg.Pool, settings: FollowUpSettings) -> Wiring[Deps]:
        deps = Deps(
            clock=clock,
            provider_answers_keywords=settings.sms_provider_confirms_opt_out,
            survey_key=settings.survey_key(),
            monthly_check_page=settings.monthly_check_page_size,
        )
        messages = bus(deps, pool)
        sender = dispatcher(settings, messages)

        async def dispatch(_ctx: ServiceContext[Any], stop: asyncio.Event) -> None:
            await sender.run(stop)

        return Wiring(deps=deps, bus=messages, workers=[dispatch], front=hooks(settings))

    return ServiceDefinition(
        name=NAME,
        title="Regulars followup",
        description="Follow-up call tasks, outbound messages, reminders, consent and quiet hours.",
        settings=FollowUpSettings,
        wire=wire,
        routers=[api.router, sms_hooks.router],
        consumes=handlers.TOPICS,
        # what its outbox publishes (tests/deploy checks it against the code and its ACLs)
        readings=[read_messages],
        publishes=topics_of("customer", "followup", "message", "reminder"),
        clock=clock,
    )


DEFINITION = definition()
