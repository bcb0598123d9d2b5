"""Wires settings -> adapters -> handlers for intake: the one place that does."""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import timedelta
from typing import Any, Self

import asyncpg
from fastapi import FastAPI
from pydantic import AliasChoices, Field, SecretStr, TypeAdapter, ValidationError, model_validator
from regulars_events.topics import all_topics, topics_of
from regulars_runtime.bus import MessageBus
from regulars_runtime.clock import Clock, system_clock
from regulars_runtime.limits import Rate
from regulars_runtime.migrations import Migration, service_migrations
from regulars_runtime.service import ServiceContext, ServiceDefinition, Wiring
from regulars_runtime.settings import ServiceSettings
from regulars_shop.policy import Policy

from . import handlers, jobber_handlers, webhook_handlers
from .adapters.connectors import CONNECTOR_SECRETS, JobberApi
from .adapters.readings import read_webhook_deliveries
from .adapters.secret_box import SecretBox
from .adapters.unit_of_work import PostgresIntakeUnitOfWork
from .adapters.webhook_sender import OwnerMail, WebhookSender
from .domain.postings import MAX_REQUEST_BYTES
from .domain.webhooks import DEFAULT_RETRY_SCHEDULE, parse_networks
from .entrypoints import api, connectors, post_event, webhooks_api
from .entrypoints.acceptance import AcceptanceQueue
from .entrypoints.answers import PostingResult
from .entrypoints.front import Front
from .entrypoints.jobber_worker import JobberFetchWorker
from .entrypoints.post_event import PATH as POST_EVENT_PATH
from .entrypoints.post_event import PostEvent
from .entrypoints.webhook_worker import DeliveryWorker
from .handlers import Deps
from .webhook_handlers import WebhookUnitOfWork

NAME = "intake"
#: key requests per shop (every replica together): a person or a rotation script, never a stream
KEY_REQUESTS_PER_SECOND = 1.0
KEY_REQUESTS_BURST = 30.0
#: embedded mode's stand-in when no key is given (tests, a laptop); `make run` passes a
#: key of the machine's own, and outside embedded mode webhooks need one of the operator's
EMBEDDED_WEBHOOK_KEY = "regulars-embedded-webhook-secret-key"
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


class IntakeSettings(ServiceSettings):
    service = NAME

    intake_rate_per_second: float = Field(200.0, gt=0, description="events/s per shop")
    intake_rate_burst: float = Field(1000.0, gt=0, description="events a shop may post at once")
    webhook_secret_key: SecretStr | None = Field(
        None,
        description="encrypts webhook secrets at rest (REGULARS_WEBHOOK_SECRET_KEY)",
        validation_alias=AliasChoices("REGULARS_WEBHOOK_SECRET_KEY"),
    )
    webhook_retry_schedule: str | None = Field(
        None,
        description="waits between webhook tries, ISO-8601 durations: PT5S,PT5M,...",
        validation_alias=AliasChoices("REGULARS_WEBHOOK_RETRY_SCHEDULE"),
    )
    webhook_allowed_networks: str = Field(
        "",
        description="CIDRs webhooks may reach though private or loopback",
        validation_alias=AliasChoices("REGULARS_WEBHOOK_ALLOWED_NETWORKS"),
    )
    smtp_url: str | None = None
    mail_from: str | None = Field(None, description="the From of the owner's notices")

    @model_validator(mode="after")
    def _webhooks(self) -> Self:
        self.retry_schedule()
        parse_networks(self.webhook_allowed_networks)
        if self.smtp_url:
            from regulars_runtime.smtp import parse_smtp_url

            parse_smtp_url(self.smtp_url)
        return self

    def webhooks_on(self) -> bool:
        return self.webhook_secret_key is not None or self.embedded

    def secret_box(self) -> SecretBox | None:
        if self.webhook_secret_key is not None:
            return SecretBox(self.webhook_secret_key.get_secret_value())
        return SecretBox(EMBEDDED_WEBHOOK_KEY) if self.embedded else None

    def retry_schedule(self) -> tuple[timedelta, ...]:
        if not self.webhook_retry_schedule:
            return DEFAULT_RETRY_SCHEDULE
        waits = []
        for part in self.webhook_retry_schedule.split(","):
            try:
                wait = _DURATION.validate_python(part.strip())
            except ValidationError:
                raise ValueError(
                    f"REGULARS_WEBHOOK_RETRY_SCHEDULE: {part.strip()!r} is not an ISO-8601"
                    " duration such as PT5S"
                ) from None
            if wait < timedelta(0):
                raise ValueError("REGULARS_WEBHOOK_RETRY_SCHEDULE: waits are not negative")
            waits.append(wait)
        return tuple(waits)

    hook_rate_per_second: float = Field(
        20.0, gt=0, description="webhook deliveries/s per connector"
    )
    hook_rate_burst: float = Field(
        200.0, gt=0, description="deliveries a connector may send at once"
    )
    #: encrypts connectors' secrets at rest; unset, a key derived from the staff-token key
    connector_key: SecretStr | None = Field(
        None, min_length=32, validation_alias=AliasChoices("REGULARS_CONNECTOR_KEY")
    )
    jobber_api_url: str = Field(
        "https://api.getjobber.com/api/graphql",
        validation_alias=AliasChoices("JOBBER_API_URL"),
        description="Jobber's GraphQL endpoint, where thin Jobber webhooks are completed",
    )

    def connector_secret_key(self) -> str | None:
        if self.connector_key is not None:
            return self.connector_key.get_secret_value()
        staff = self.staff_key()
        return None if staff is None else "derived from the staff-token key\0" + staff


def migrations() -> list[Migration]:
    return service_migrations("regulars_intake", NAME)


def bus(
    deps: Deps, pool: asyncpg.Pool | None = None, box: SecretBox | None = None
) -> MessageBus[WebhookUnitOfWork, Deps]:
    return MessageBus(
        unit_of_work=functools.partial(PostgresIntakeUnitOfWork, box=box),
        deps=deps,
        commands={
            handlers.CreateShop: handlers.open_shop,
            handlers.ChangePolicy: handlers.change_policy,
            handlers.IssueApiKey: handlers.issue_api_key,
            handlers.RevokeApiKey: handlers.revoke_api_key,
            handlers.NoteKeyUse: handlers.note_key_use,
            handlers.AcceptPostings: handlers.accept_postings,
            handlers.ListShops: handlers.list_shops,
            webhook_handlers.CreateWebhook: webhook_handlers.create_webhook,
            webhook_handlers.UpdateWebhook: webhook_handlers.update_webhook,
            webhook_handlers.DeleteWebhook: webhook_handlers.delete_webhook,
            webhook_handlers.RotateSecret: webhook_handlers.rotate_secret,
            webhook_handlers.ReplayDeliveries: webhook_handlers.replay_deliveries,
            webhook_handlers.ClaimDeliveries: webhook_handlers.claim_deliveries,
            webhook_handlers.RecordAnswer: webhook_handlers.record_answer,
            handlers.ConfigureConnector: handlers.configure_connector,
            handlers.AcceptDelivery: handlers.accept_delivery,
            handlers.CountFailedDelivery: handlers.count_failed_delivery,
            jobber_handlers.KeepJobberEvent: jobber_handlers.keep_jobber_event,
            jobber_handlers.ClaimJobberFetches: jobber_handlers.claim_jobber_fetches,
            jobber_handlers.AcceptFetched: jobber_handlers.accept_fetched,
            jobber_handlers.FetchFailedFor: jobber_handlers.fetch_failed_for,
        },
        # intake's own consumer group reads every topic for the webhooks alone: the
        # ingestion path never waits on it
        every_event=webhook_handlers.on_event,
        pool=pool,
    )


def _customize(app: FastAPI) -> None:
    app.add_middleware(PostEvent)
    # for its access log line and its span: a route, though the router never sees it
    app.state.front_routes = {POST_EVENT_PATH}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        # PUT /v1/policy's body is Policy.model_json_schema() as it is; FastAPI renders the
        # same nested models for the answers without their `default: null`, so the
        # policy's own rendering is the one kept for both.
        policy = Policy.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(policy.pop("$defs", {}))
        answer = PostingResult.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        for name, schema in answer.pop("$defs", {}).items():
            schemas.setdefault(name, schema)
        schemas.setdefault(PostingResult.__name__, answer)
        document["paths"].setdefault(post_event.PATH, {})["post"] = post_event.openapi_operation(
            api.EVENT_SCHEMA, {"$ref": f"#/components/schemas/{PostingResult.__name__}"}
        )
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def definition(clock: Clock = system_clock) -> ServiceDefinition[IntakeSettings, Deps]:
    def wire(pool: asyncpg.Pool, settings: IntakeSettings) -> Wiring[Deps]:
        key = settings.connector_secret_key()
        secrets = None if key is None else SecretBox(key, CONNECTOR_SECRETS)
        deps = Deps(clock=clock, sealer=secrets, webhook_retry_schedule=settings.retry_schedule())
        commands = bus(deps, pool, settings.secret_box())
        worker = DeliveryWorker(
            commands,
            WebhookSender(parse_networks(settings.webhook_allowed_networks)),
            OwnerMail(settings.smtp_url, settings.mail_from or "Regulars <no-reply@regulars.local>")
            if settings.smtp_url
            else None,
        )

        async def deliver(_ctx: ServiceContext[Any], stop: asyncio.Event) -> None:
            await worker.run(stop)

        fetcher = JobberFetchWorker(commands, JobberApi(settings.jobber_api_url), secrets)

        async def fetch_jobber(_ctx: ServiceContext[Any], stop: asyncio.Event) -> None:
            await fetcher.run(stop)

        front = Front(
            acceptance=AcceptanceQueue(commands.unit_of_work),
            events=Rate(
                "events per shop", settings.intake_rate_per_second, settings.intake_rate_burst
            ),
            key_requests=Rate("key requests per shop", KEY_REQUESTS_PER_SECOND, KEY_REQUESTS_BURST),
            hook_deliveries=Rate(
                "deliveries per connector", settings.hook_rate_per_second, settings.hook_rate_burst
            ),
            secrets=secrets,
        )

        async def note_key_use(shop_id: uuid.UUID, key_id: str) -> None:
            await commands.handle(handlers.NoteKeyUse(shop_id, key_id))

        return Wiring(
            deps=deps,
            bus=commands,
            workers=[deliver, fetch_jobber],
            front=front,
            on_key_use=note_key_use,
        )

    return ServiceDefinition(
        name=NAME,
        title="Regulars intake",
        description="Event ingestion from shop systems, shops and API keys, policy, customers.",
        settings=IntakeSettings,
        wire=wire,
        routers=[api.router, connectors.router, webhooks_api.router],
        consumes=all_topics(),
        # what its outbox publishes (tests/deploy checks it against the code and its ACLs)
        readings=[read_webhook_deliveries],
        publishes=topics_of(
            "shop",
            "customer",
            "consent",
            "service",
            "appointment",
            "invoice",
            "service_plan",
            "referral",
        ),
        clock=clock,
        body_limit=MAX_REQUEST_BYTES,
        customize=_customize,
    )


DEFINITION = definition()
