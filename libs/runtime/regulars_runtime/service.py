"""What every service process is: an HTTP API plus its workers (relay, consumer, timers).

A service's bootstrap hands this a :class:`ServiceDefinition`: its settings class, its
routers, the topics it consumes, and ``wire``, which builds the service's dependencies
and message bus once the pool exists. This owns the lifecycle (pool, workers, drain on
SIGTERM), the HTTP conventions (:mod:`regulars_runtime.http`) and the endpoints every
service has: ``/healthz``, ``/readyz``, ``/metrics`` and OpenAPI at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from regulars_bus.consumer import PARTITION_FETCH_BYTES, TOGETHER, EventConsumer
from regulars_bus.kafka import KafkaConfig, admin_client, ensure_topics
from regulars_bus.relay import OutboxRelay, backlog
from regulars_events.topics import dead_letter_topic
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import metrics, openapi, staff, telemetry
from .auth import KeyRing, KeyUse
from .bus import MessageBus
from .clock import Clock, system_clock
from .db import create_pool
from .http import (
    DEFAULT_BODY_LIMIT,
    Problem,
    RequestGuard,
    http_problem,
    problem_handler,
    server_problem,
    unauthorized,
    validation_problem,
)
from .limit_store import SharedLimits
from .limits import Rate, too_many
from .logging import RequestLog, work
from .settings import ServiceSettings, load
from .staff import StaffPrincipal
from .timers import TimerScheduler

log = logging.getLogger(__name__)

D = TypeVar("D")
S = TypeVar("S", bound=ServiceSettings)

Worker = Callable[["ServiceContext[Any]", asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class Wiring(Generic[D]):
    """What a service's bootstrap builds once the pool exists."""

    deps: D
    bus: MessageBus[Any, D]
    workers: Sequence[Worker] = ()
    #: what the service's entrypoints alone hold (intake's group commit, rate limits);
    #: each service reads it through a typed accessor of its own
    front: object | None = None
    #: told when an API key is checked against the table (intake keeps its last use)
    on_key_use: KeyUse | None = None


@dataclass
class ServiceContext(Generic[D]):
    """What a running service holds: handed to routes (``app.state.ctx``) and workers."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    keys: KeyRing
    deps: D
    bus: MessageBus[Any, D]
    relay: OutboxRelay | None = None
    consumer: EventConsumer | None = None
    timers: TimerScheduler | None = None
    workers: Sequence[Worker] = field(default_factory=tuple)
    front: object | None = None
    #: the service's clock: a staff token expires by it (a test's fake clock included)
    clock: Clock = system_clock
    #: rate limits every replica shares (PostgreSQL), and the one on each shop's requests
    limits: SharedLimits | None = None
    shop_requests: Rate | None = None
    failed_auth: Rate | None = None
    public_requests: Rate | None = None

    async def limit_shop(self, shop: uuid.UUID) -> None:
        """429 when the shop is over its rate of API requests (every replica together)."""
        if self.limits is not None and self.shop_requests is not None:
            await self.limits.enforce(self.shop_requests, str(shop))

    async def limit_client(self, scope: Any) -> None:
        """429 when the caller's address is over its rate of requests to public pages
        (a survey, the console's sign-in), every replica together."""
        client = client_address(scope)
        if self.limits is not None and self.public_requests is not None and client is not None:
            await self.limits.enforce(self.public_requests, client)

    def refuse_known_guesser(self, scope: Any) -> None:
        """Before looking up a public credential (a hook's signature, a survey's or a
        sign-in link's token): 429 for a client this replica knows is over its limit of
        failures, so a flood of guesses costs no lookups."""
        client = client_address(scope)
        if self.limits is None or self.failed_auth is None or client is None:
            return
        verdict = self.limits.refused_here(self.failed_auth, client)
        if verdict is not None:
            raise too_many(self.failed_auth, verdict)

    async def count_failure(self, scope: Any) -> None:
        """A public credential did not check out: counted against the client's address on
        every replica together; 429 once it is over."""
        client = client_address(scope)
        if self.limits is not None and self.failed_auth is not None and client is not None:
            await self.limits.enforce(self.failed_auth, client)

    readings: metrics.TableReadings | None = None
    #: the partitions whose lag this replica shows (metrics.set_lags)
    lag_shown: set[tuple[str, int]] = field(default_factory=set)


@dataclass(frozen=True)
class ServiceDefinition(Generic[S, D]):
    name: str
    title: str
    description: str
    settings: type[S]
    #: builds the dependencies and the bus from the pool and the settings (bootstrap)
    wire: Callable[[asyncpg.Pool, S], Wiring[D]]
    routers: Sequence[APIRouter] = ()
    #: topics this service consumes (none: it runs no consumer)
    consumes: Sequence[str] = ()
    #: topics this service's outbox publishes to. With it, consumes and the service's own
    #: dead-letter topic, the only topics it checks for or creates: under Kafka ACLs (a
    #: KafkaUser per service) every other topic looks missing and is not its to create
    publishes: Sequence[str] = ()
    clock: Clock = system_clock
    #: the largest request body any endpoint of this service takes
    body_limit: int = DEFAULT_BODY_LIMIT
    #: last touches on the app (an ASGI endpoint in front, the OpenAPI document)
    customize: Callable[[FastAPI], None] | None = None
    #: gauges read from the service's own tables at scrape time, beside the outbox,
    #: dead-letter and timer readings every service has (metrics.TableReadings)
    readings: Sequence[metrics.Reading] = ()
    #: events of one partition applied in one transaction at most, and the bytes fetched
    #: per partition at once (larger for a handler that is set-based over a whole run)
    together: int = TOGETHER
    partition_fetch_bytes: int = PARTITION_FETCH_BYTES


def context(request: Request) -> ServiceContext[Any]:
    ctx: ServiceContext[Any] = request.app.state.ctx
    return ctx


async def shop_of(request: Request) -> uuid.UUID:
    """The shop the request acts for: the one its API key belongs to, or the one its staff
    token names (the staff member is then kept for :func:`staff_of`); 401 otherwise."""
    ctx = context(request)
    authorization = request.headers.get("authorization")
    token = _bearer(authorization)
    if token is not None and staff.looks_like_staff_token(token):
        principal = staff_principal(ctx, token)
        request.state.staff = principal
        shop = principal.shop_id
    else:
        found = await ctx.keys.shop_for(authorization, client_address(request.scope))
        if found is None:
            raise unauthorized()
        shop = found
    await ctx.limit_shop(shop)
    return acting_for(shop)


def acting_for(shop: uuid.UUID) -> uuid.UUID:
    """The shop a request acts for, named from here on by its log lines and its span."""
    at_hand = work.get()
    if at_hand is not None:
        at_hand.shop_id = str(shop)
    telemetry.note_shop(shop)
    return shop


def client_address(scope: Any) -> str | None:
    """The caller's address (behind a proxy trusted by FORWARDED_ALLOW_IPS, the one it
    forwards for, as uvicorn sets it)."""
    client = scope.get("client")
    return str(client[0])[:100] if client else None


#: a route parameter: the shop the request's key or staff token belongs to. As a
#: dependency it is checked before the body and the query are, so a request without
#: credentials is 401, never 422.
ShopId = Annotated[uuid.UUID, Depends(shop_of)]


def staff_of(request: Request) -> StaffPrincipal | None:
    """The staff member a request acts for (after :func:`shop_of`); None for an API key."""
    principal: StaffPrincipal | None = getattr(request.state, "staff", None)
    return principal


async def require_api_key(request: Request) -> uuid.UUID:
    """The shop whose API key signed the request, for what only the shop's own system
    calls; a staff token is 403 there (401 if it is not a good one)."""
    endpoint = f"{request.method} {request.url.path}"
    ctx = context(request)
    shop = await authorized_shop(
        ctx, request.headers.get("authorization"), endpoint, client_address(request.scope)
    )
    await ctx.limit_shop(shop)
    return shop


#: a route parameter: the shop whose API key signed the request (never a staff token)
ShopApiKey = Annotated[uuid.UUID, Depends(require_api_key)]


async def authorized_shop(
    ctx: ServiceContext[Any],
    authorization: str | None,
    endpoint: str = "this endpoint",
    client: str | None = None,
) -> uuid.UUID:
    """The shop an ``Authorization`` header's API key belongs to; 401 otherwise, and 403
    for a staff token: a person at the console does not post the shop system's events."""
    token = _bearer(authorization)
    if token is not None and staff.looks_like_staff_token(token):
        staff_principal(ctx, token)
        raise Problem(403, f"{endpoint} takes the shop's API key, not a staff token")
    shop = await ctx.keys.shop_for(authorization, client)
    if shop is None:
        raise unauthorized()
    return acting_for(shop)


def staff_principal(ctx: ServiceContext[Any], token: str) -> StaffPrincipal:
    """The staff member a token names, verified with this installation's key; 401 for a
    bad, expired or forged token, or where no key is configured."""
    key = ctx.settings.staff_key()
    if key is None:
        raise unauthorized(
            "staff tokens are not accepted here: REGULARS_STAFF_TOKEN_KEY is not set for"
            " this service; send the shop's API key"
        )
    principal = staff.verify(key, token, ctx.clock())
    if principal is None:
        raise unauthorized("staff token: expired or not signed by this installation")
    return principal


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class _HttpMetrics:
    """Pure ASGI middleware: counts and times requests by route template (not raw path)."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(self.service, name, str(status["code"])).inc()
            metrics.HTTP_LATENCY.labels(self.service, name).observe(time.perf_counter() - started)


def failed_auth_rate(settings: ServiceSettings) -> Rate:
    return Rate(
        "failed authentications per client address",
        settings.failed_auth_per_minute / 60.0,
        settings.failed_auth_burst,
    )


def create_app(definition: ServiceDefinition[S, D], settings: S) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url, definition.name, max_size=settings.db_pool_size
        )
        # Built at start-up so that a bad SMTP_URL or SMS setting stops the service.
        wiring = definition.wire(pool, settings)
        limits = SharedLimits(pool, definition.name)
        ctx: ServiceContext[D] = ServiceContext(
            settings=settings,
            pool=pool,
            keys=KeyRing(
                pool,
                on_use=wiring.on_key_use,
                service=definition.name,
                limits=limits,
                failed_auth=failed_auth_rate(settings),
            ),
            limits=limits,
            failed_auth=failed_auth_rate(settings),
            public_requests=Rate(
                "public requests per client address",
                settings.public_requests_per_second,
                settings.public_requests_burst,
            ),
            shop_requests=Rate(
                "API requests per shop",
                settings.shop_requests_per_second,
                settings.shop_requests_burst,
            ),
            deps=wiring.deps,
            bus=wiring.bus,
            workers=wiring.workers,
            front=wiring.front,
            clock=definition.clock,
        )
        ctx.readings = metrics.TableReadings(
            definition.name,
            pool,
            definition.clock,
            readings=(*metrics.COMMON_READINGS, *definition.readings),
        )
        app.state.ctx = ctx
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if settings.run_workers:
            tasks = await _start_workers(definition, ctx, stop)
        try:
            yield
        finally:
            # SIGTERM: uvicorn stops taking requests, then we drain the workers.
            stop.set()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=20)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            await pool.close()
            telemetry.shutdown()

    metrics.build_info(definition.name, _version(definition.name), settings.build_commit)
    app = FastAPI(
        title=definition.title,
        description=definition.description,
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.add_middleware(RequestGuard, limit=definition.body_limit)
    app.add_middleware(_HttpMetrics, service=definition.name)
    app.add_exception_handler(Problem, problem_handler)
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(Exception, server_problem)

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness: the process answers",
        response_model=openapi.Health,
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": definition.name}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: database and workers are up",
        response_model=openapi.Readiness,
        responses={503: {"model": openapi.Readiness, "description": "not ready yet"}},
    )
    async def readyz() -> JSONResponse:
        ctx: ServiceContext[Any] = app.state.ctx
        checks: dict[str, str] = {}
        try:
            async with ctx.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
                if settings.run_workers:
                    metrics.OUTBOX_BACKLOG.labels(definition.name).set(await backlog(conn))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if settings.run_workers and definition.consumes:
            running = ctx.consumer is not None and ctx.consumer.running
            checks["consumer"] = "ok" if running else "starting"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "the Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus_metrics() -> Response:
        await _read_metrics(definition.name, app.state.ctx)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in definition.routers:
        app.include_router(router)
    if definition.customize is not None:
        definition.customize(app)
    # outermost of ours: it also sees what an endpoint in front (customize) answers
    app.add_middleware(RequestLog)
    openapi.install(app)
    telemetry.instrument_app(app)
    return app


async def _read_metrics(service: str, ctx: ServiceContext[Any]) -> None:
    """What ``/metrics`` reads before it answers: tables (throttled) and the consumer."""
    # which replica publishes: what on-call (and the fault suite) needs to find it
    leads = ctx.relay is not None and ctx.relay.is_leader
    metrics.RELAY_LEADER.labels(service).set(1 if leads else 0)
    if ctx.readings is not None:
        await ctx.readings.refresh()
    # a consumer between sessions (restarting after a fault) keeps its last lag shown:
    # its partitions are still behind, and an alert on them must not see a gap
    if ctx.consumer is not None and ctx.consumer.running:
        lags = {
            tp: lag
            for tp, (highwater, position) in (await ctx.consumer.watermarks()).items()
            if (lag := metrics.partition_lag(highwater, position)) is not None
        }
        ctx.lag_shown = metrics.set_lags(service, lags, ctx.lag_shown)


def _version(service: str) -> str:
    try:
        return importlib.metadata.version(f"regulars-{service}")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def _start_workers(
    definition: ServiceDefinition[S, D], ctx: ServiceContext[D], stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    settings = ctx.settings
    kafka = settings.kafka
    name = definition.name
    topics = needed_topics(definition)
    await _ensure_topics_soon(kafka, name, topics)
    relay = OutboxRelay(
        database_url=settings.database_url,
        pool=ctx.pool,
        schema=name,
        kafka=kafka,
        retention=settings.outbox_retention,
        inbox_retention=settings.inbox_retention,
        dead_letter_retention=settings.dead_letter_retention,
        on_published=metrics.OUTBOX_PUBLISHED.labels(name).inc,
        on_parked=metrics.OUTBOX_PARKED.labels(name).inc,
        on_backlog=metrics.OUTBOX_BACKLOG.labels(name).set,
        on_cluster_change=metrics.BROKER_CHANGES.labels(name).inc,
        topics=topics,
        tracer=telemetry.tracer(),
    )
    ctx.relay = relay
    tasks = [asyncio.create_task(relay.run(stop), name=f"{name}-relay")]
    bus = ctx.bus
    if definition.consumes:
        consumer = EventConsumer(
            service=name,
            pool=ctx.pool,
            kafka=kafka,
            topics=list(definition.consumes),
            handle=bus.handle_event,
            handle_many=bus.handle_events,
            wants=bus.handles,
            on_result=lambda t, r: metrics.EVENTS_CONSUMED.labels(name, t, r).inc(),
            on_dead_letter=lambda topic: metrics.DEAD_LETTERS.labels(name, topic).inc(),
            together=definition.together,
            partition_fetch_bytes=definition.partition_fetch_bytes,
            tracer=telemetry.tracer(),
        )
        ctx.consumer = consumer
        tasks.append(asyncio.create_task(consumer.run(stop), name=f"{name}-consumer"))
    if bus.timers:
        scheduler = TimerScheduler(
            database_url=settings.database_url,
            pool=ctx.pool,
            schema=name,
            handle=bus.handle_timer,
            clock=definition.clock,
            alone=bus.timers_alone,
            on_fired=metrics.TIMER_LAG.labels(name).observe,
        )
        ctx.timers = scheduler
        tasks.append(asyncio.create_task(scheduler.run(stop), name=f"{name}-timers"))
    for worker in ctx.workers:
        tasks.append(asyncio.create_task(worker(ctx, stop), name=f"{name}-worker"))
    return tasks


def needed_topics(definition: ServiceDefinition[Any, Any]) -> list[str]:
    """The topics the service reads or writes: all it may see under its Kafka ACLs."""
    return sorted({*definition.consumes, *definition.publishes, dead_letter_topic(definition.name)})


async def _ensure_topics_soon(kafka: KafkaConfig, service: str, topics: Sequence[str]) -> None:
    """Create the topics at start-up; if the broker is not up yet, the relay does it later."""
    admin = admin_client(kafka, f"regulars-{service}-startup")
    try:
        await asyncio.wait_for(admin.start(), 10)
        await ensure_topics(admin, kafka, topics)
    except Exception as exc:
        log.warning("could not create topics at start-up", extra={"error": repr(exc)})
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def serve(definition: ServiceDefinition[Any, Any]) -> None:
    """``python -m regulars_<service>``: read the settings, run the API and the workers."""
    import uvicorn

    from .logging import configure

    settings = load(definition.settings)
    configure(definition.name, settings.log_level)
    # before the app is built: its server spans are wired in as it is
    telemetry.configure(definition.name)
    app = create_app(definition, settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        loop="uvloop",
        http="httptools",
    )
