"""Wires settings -> adapters -> handlers for loyalty: the one place that does."""

from __future__ import annotations

import asyncpg
from regulars_runtime.bus import MessageBus
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceDefinition, Wiring
from regulars_runtime.settings import ServiceSettings
from regulars_runtime.unit_of_work import UnitOfWorkFactory

from . import handlers
from .adapters.unit_of_work import PostgresLoyaltyUnitOfWork
from .entrypoints import api

NAME = "loyalty"


class LoyaltySettings(ServiceSettings):
    service = NAME


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
        commands={handlers.RefitRiskModel: handlers.refit_risk_model},
        pool=pool,
    )


def definition(clock: Clock = system_clock) -> ServiceDefinition[LoyaltySettings, handlers.Deps]:
    def wire(pool: asyncpg.Pool, settings: LoyaltySettings) -> Wiring[handlers.Deps]:
        deps = handlers.Deps(clock=clock)
        return Wiring(deps=deps, bus=bus(deps, pool))

    return ServiceDefinition(
        name=NAME,
        title="Regulars loyalty",
        description=(
            "Lifecycle stages, churn risk, the customer journey, retention metrics"
            " and the web console."
        ),
        settings=LoyaltySettings,
        wire=wire,
        routers=[api.router],
        consumes=handlers.TOPICS,
        clock=clock,
        # the projection is set-based over a whole run: larger runs, fewer commits
        together=500,
        partition_fetch_bytes=256 * 1024,
    )


DEFINITION = definition()
