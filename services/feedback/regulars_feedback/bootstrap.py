"""Wires settings -> adapters -> handlers for feedback: the one place that does."""

from __future__ import annotations

from typing import Self

import asyncpg
from pydantic import Field, model_validator
from regulars_events.topics import topics_of
from regulars_runtime.bus import MessageBus
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceDefinition, Wiring
from regulars_runtime.settings import ServiceSettings

from . import handlers
from .adapters.unit_of_work import PostgresFeedbackUnitOfWork
from .entrypoints import api
from .handlers import Deps, FeedbackUnitOfWork, cases, surveys
from .handlers.commands import AcknowledgeCase, AnswerSurvey, CommentOnCase, ResolveCase

NAME = "feedback"


class FeedbackSettings(ServiceSettings):
    service = NAME

    feedback_public_url: str | None = Field(
        None, description="where customers open survey links (FEEDBACK_PUBLIC_URL)"
    )

    @model_validator(mode="after")
    def _customer_facing(self) -> Self:
        url = self.public_url(self.feedback_public_url, "FEEDBACK_PUBLIC_URL")
        object.__setattr__(self, "feedback_public_url", url)
        if self.survey_key() is None:
            raise ValueError(
                "REGULARS_SURVEY_LINK_KEY (or REGULARS_STAFF_TOKEN_KEY, which it is derived"
                " from when unset) is not set: survey links are made with it"
            )
        return self


def migrations() -> list[Migration]:
    return service_migrations("regulars_feedback", NAME)


def bus(deps: Deps, pool: asyncpg.Pool | None = None) -> MessageBus[FeedbackUnitOfWork, Deps]:
    return MessageBus(
        unit_of_work=PostgresFeedbackUnitOfWork,
        deps=deps,
        events=handlers.EVENTS,
        timers=handlers.TIMERS,
        commands={
            AnswerSurvey: surveys.answer_survey,
            AcknowledgeCase: cases.acknowledge,
            ResolveCase: cases.resolve,
            CommentOnCase: cases.comment,
        },
        every_event=handlers.remember,
        pool=pool,
    )


def definition(clock: Clock = system_clock) -> ServiceDefinition[FeedbackSettings, Deps]:
    def wire(pool: asyncpg.Pool, settings: FeedbackSettings) -> Wiring[Deps]:
        key = settings.survey_key()
        assert key is not None  # the settings refuse to start without one
        deps = Deps(clock=clock, public_url=settings.feedback_public_url or "", survey_key=key)
        return Wiring(deps=deps, bus=bus(deps, pool))

    return ServiceDefinition(
        name=NAME,
        title="Regulars feedback",
        description=(
            "Surveys, classification, recovery cases with SLAs and escalation,"
            " review and referral asks."
        ),
        settings=FeedbackSettings,
        wire=wire,
        routers=[api.router],
        consumes=handlers.TOPICS,
        # what its outbox publishes (tests/deploy checks it against the code and its ACLs)
        publishes=topics_of("feedback", "recovery_case", "referral", "review", "staff", "survey"),
        clock=clock,
    )


DEFINITION = definition()
