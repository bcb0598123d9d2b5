"""Wires settings -> adapters -> handlers for loyalty: the one place that does."""

from __future__ import annotations

from typing import Self

import asyncpg
from pydantic import Field, model_validator
from regulars_events.topics import topics_of
from regulars_runtime.bus import MessageBus
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceDefinition, Wiring
from regulars_runtime.settings import DEFAULT_PORTS, ServiceSettings
from regulars_runtime.smtp import parse_smtp_url
from regulars_runtime.unit_of_work import UnitOfWorkFactory

from . import handlers
from .adapters.shop_services import ShopServices
from .adapters.sign_in_mail import SignInMail
from .adapters.unit_of_work import PostgresLoyaltyUnitOfWork
from .entrypoints import api, console
from .handlers import console as console_handlers

NAME = "loyalty"


class LoyaltySettings(ServiceSettings):
    service = NAME

    console_public_url: str | None = Field(
        None, description="where staff open the console (CONSOLE_PUBLIC_URL): sign-in links"
    )
    intake_url: str | None = Field(None, description="intake's API, for the console")
    followup_url: str | None = Field(None, description="followup's API, for the console")
    feedback_url: str | None = Field(None, description="feedback's API, for the console")
    smtp_url: str | None = Field(None, description="where sign-in emails go (SMTP_URL)")
    mail_from: str | None = Field(None, description="the From of sign-in emails (MAIL_FROM)")

    @model_validator(mode="after")
    def _console(self) -> Self:
        object.__setattr__(
            self,
            "console_public_url",
            self.public_url(self.console_public_url, "CONSOLE_PUBLIC_URL"),
        )
        for name in ("intake", "followup", "feedback"):
            value = getattr(self, f"{name}_url")
            if value:
                object.__setattr__(self, f"{name}_url", value.rstrip("/"))
            elif self.embedded:
                object.__setattr__(self, f"{name}_url", f"http://127.0.0.1:{DEFAULT_PORTS[name]}")
            else:
                raise ValueError(
                    f"{name.upper()}_URL is not set: the console asks {name} for what it shows"
                )
        if self.staff_key() is None:
            raise ValueError(
                "REGULARS_STAFF_TOKEN_KEY is not set: the console signs staff tokens with it"
                " (the same key in every service)"
            )
        if self.smtp_url:
            parse_smtp_url(self.smtp_url)
            if not self.mail_from:
                if not self.embedded:
                    raise ValueError("MAIL_FROM is not set: sign-in emails need a sender")
                object.__setattr__(self, "mail_from", "Regulars <no-reply@regulars.local>")
        return self


def console_parts(settings: LoyaltySettings, clock: Clock) -> console.ConsoleParts:
    key = settings.staff_key()
    assert key is not None and settings.console_public_url is not None
    assert settings.intake_url and settings.followup_url and settings.feedback_url
    return console.ConsoleParts(
        services=ShopServices(
            intake=settings.intake_url,
            followup=settings.followup_url,
            feedback=settings.feedback_url,
            key=key,
            clock=clock,
        ),
        mail=SignInMail(
            parse_smtp_url(settings.smtp_url) if settings.smtp_url else None,
            settings.mail_from or "Regulars <no-reply@regulars.local>",
        ),
        public_url=settings.console_public_url,
    )


def migrations() -> list[Migration]:
    return service_migrations("regulars_loyalty", NAME)


def bus(
    deps: handlers.Deps,
    pool: asyncpg.Pool | None = None,
    *,
    unit_of_work: UnitOfWorkFactory[handlers.LoyaltyUnitOfWork] = PostgresLoyaltyUnitOfWork,
) -> MessageBus[handlers.LoyaltyUnitOfWork, handlers.Deps]:
    """loyalty's handlers wired to the bus; ``unit_of_work`` is the seam a test fakes."""
    return MessageBus(
        unit_of_work=unit_of_work,
        deps=deps,
        every_run=handlers.project,
        events={"regulars.shop.policy_changed.v1": handlers.on_policy_changed},
        timers={
            handlers.REVIEW: handlers.on_review,
            handlers.REFIT: handlers.on_refit,
            handlers.RESCORE: handlers.on_rescore,
        },
        commands={handlers.RefitRiskModel: handlers.refit_risk_model, **console_handlers.COMMANDS},
        pool=pool,
    )


def definition(clock: Clock = system_clock) -> ServiceDefinition[LoyaltySettings, handlers.Deps]:
    def wire(pool: asyncpg.Pool, settings: LoyaltySettings) -> Wiring[handlers.Deps]:
        deps = handlers.Deps(clock=clock)
        return Wiring(deps=deps, bus=bus(deps, pool), front=console_parts(settings, clock))

    return ServiceDefinition(
        name=NAME,
        title="Regulars loyalty",
        description=(
            "Lifecycle stages, churn risk, the customer journey, retention metrics"
            " and the web console."
        ),
        settings=LoyaltySettings,
        wire=wire,
        routers=[api.router, console.router],
        customize=console.install,
        consumes=handlers.TOPICS,
        # what its outbox publishes (tests/deploy checks it against the code and its ACLs)
        publishes=topics_of("lifecycle"),
        clock=clock,
        # the projection is set-based over a whole run: larger runs, fewer commits
        together=500,
        partition_fetch_bytes=256 * 1024,
    )


DEFINITION = definition()
