"""Jobber's thin events kept and read later: the decisions, and the handlers on the seam."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from regulars_intake import handlers, jobber_handlers
from regulars_intake.domain.connectors import Choices, jobber
from regulars_intake.domain.connectors.jobber_fetches import (
    GIVE_UP_AFTER,
    LONGEST_WAIT,
    FetchStatus,
    after_failure,
    dedupe_key,
)
from regulars_intake.domain.connectors.setup import ConnectorSetup, Tally
from regulars_intake.handlers import ConfigureConnector, CreateShop
from regulars_intake.jobber_handlers import (
    AcceptFetched,
    ClaimJobberFetches,
    FetchFailedFor,
    KeepJobberEvent,
)

from services.intake.tests.connectors.support import NOW, payload, postings
from services.intake.tests.fakes import Intake

CHOICES = Choices(timezone="America/Chicago")
LEASE = timedelta(seconds=60)


def test_a_resent_event_is_the_same_and_a_later_change_is_not() -> None:
    thin = payload("jobber", "webhook_job_closed")
    first = jobber.thin(thin, CHOICES)
    again = jobber.thin(payload("jobber", "webhook_job_closed"), CHOICES)
    assert dedupe_key(first) == dedupe_key(again)
    thin["data"]["webHookEvent"]["occurredAt"] = "2030-01-01T00:00:00Z"
    assert dedupe_key(jobber.thin(thin, CHOICES)) != dedupe_key(first)
    assert dedupe_key(first)[:2] == ("JOB_CLOSED", first.item_id)


def test_transient_failures_wait_longer_each_time_and_others_park() -> None:
    waits = [
        after_failure(transient=True, attempts=n, received_at=NOW, now=NOW).retry_in
        for n in (1, 2, 3, 4)
    ]
    assert waits == [timedelta(seconds=s) for s in (1, 2, 4, 8)]
    late = after_failure(transient=True, attempts=40, received_at=NOW, now=NOW)
    assert late.status is FetchStatus.pending and late.retry_in == LONGEST_WAIT
    refused = after_failure(transient=False, attempts=1, received_at=NOW, now=NOW)
    assert refused.status is FetchStatus.parked and refused.retry_in is None
    stale = after_failure(transient=True, attempts=9, received_at=NOW, now=NOW + GIVE_UP_AFTER)
    assert stale.status is FetchStatus.parked


class Sealer:
    def seal(self, secret: str) -> bytes:
        return b"sealed:" + secret.encode()


async def _connected(intake: Intake) -> tuple[handlers.Deps, handlers.Connector]:
    deps = handlers.Deps(clock=intake.clock, sealer=Sealer())
    uow = intake.unit_of_work()
    shop = await handlers.open_shop(CreateShop("Garage", "America/Chicago"), uow, deps)
    await uow.flush()
    connector = await handlers.configure_connector(
        ConfigureConnector(
            shop.shop_id, "jobber", ConnectorSetup(secret="s" * 20, access_token="t" * 20)
        ),
        intake.unit_of_work(),
        deps,
    )
    return deps, connector


async def _keep(intake: Intake, deps: handlers.Deps, connector: handlers.Connector) -> bool:
    thin = payload("jobber", "webhook_job_closed")
    return await jobber_handlers.keep_jobber_event(
        KeepJobberEvent(connector.id, connector.shop_id, jobber.thin(thin, CHOICES), thin),
        intake.unit_of_work(),
        deps,
    )


async def test_a_kept_event_is_read_once_and_its_visit_accepted_with_marking_it_done() -> None:
    intake = Intake()
    deps, connector = await _connected(intake)
    assert await _keep(intake, deps, connector) is True
    assert await _keep(intake, deps, connector) is False, "a re-send keeps no second row"
    claim = ClaimJobberFetches(10, LEASE)
    [claimed] = await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps)
    assert await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps) == []
    item = payload("jobber", "graphql_job")["data"]["job"]
    event = jobber.thin(claimed.payload, claimed.connector.reading(claimed.timezone))
    mapped = postings(jobber.map_event(event, item, CHOICES, NOW))
    uow = intake.unit_of_work()
    outcomes = await jobber_handlers.accept_fetched(AcceptFetched(claimed, mapped), uow, deps)
    await uow.flush()
    assert outcomes is not None and {o.status for o in outcomes} == {"accepted"}
    assert len(intake.emitted("regulars.service.completed.v1")) == 1
    assert intake.jobber_fetches.rows[claimed.id].status == "done"
    assert intake.connectors.tallies[connector.id].accepted == len(mapped)
    # a replica whose lease was taken over accepts nothing
    again = await jobber_handlers.accept_fetched(
        AcceptFetched(claimed, mapped), intake.unit_of_work(), deps
    )
    assert again is None


async def test_a_slow_jobber_is_asked_again_and_a_refusal_is_parked_on_the_errors() -> None:
    intake = Intake()
    deps, connector = await _connected(intake)
    await _keep(intake, deps, connector)
    claim = ClaimJobberFetches(10, LEASE)
    [first] = await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps)
    verdict = await jobber_handlers.fetch_failed_for(
        FetchFailedFor(first, "Jobber's API answered 503", transient=True),
        intake.unit_of_work(),
        deps,
    )
    assert verdict is not None and verdict.retry_in == timedelta(seconds=1)
    row = intake.jobber_fetches.rows[first.id]
    assert row.status == "pending" and row.error == "Jobber's API answered 503"
    assert intake.connectors.tallies[connector.id] == Tally()
    [second] = await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps)
    assert second.attempts == 2
    parked = await jobber_handlers.fetch_failed_for(
        FetchFailedFor(second, "job not found", transient=False), intake.unit_of_work(), deps
    )
    assert parked is not None and parked.status is FetchStatus.parked
    assert intake.jobber_fetches.rows[first.id].status == "parked"
    assert intake.connectors.tallies[connector.id].errors == 1
    assert await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps) == []


def test_times_are_the_databases() -> None:
    # the verdict depends only on the times it is given (the claim's now()), not a clock
    received = datetime(2026, 1, 1, tzinfo=UTC)
    early = after_failure(transient=True, attempts=1, received_at=received, now=received)
    assert early.status is FetchStatus.pending


async def test_putting_the_connector_again_asks_jobber_again_for_what_was_parked() -> None:
    intake = Intake()
    deps, connector = await _connected(intake)
    await _keep(intake, deps, connector)
    claim = ClaimJobberFetches(10, LEASE)
    [first] = await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps)
    await jobber_handlers.fetch_failed_for(
        FetchFailedFor(first, "Jobber refused the token (401)", transient=False),
        intake.unit_of_work(),
        deps,
    )
    assert await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps) == []
    await handlers.configure_connector(
        ConfigureConnector(
            connector.shop_id, "jobber", ConnectorSetup(secret="s" * 20, access_token="u" * 20)
        ),
        intake.unit_of_work(),
        deps,
    )
    [again] = await jobber_handlers.claim_jobber_fetches(claim, intake.unit_of_work(), deps)
    assert again.id == first.id and again.attempts == 2
