"""What every service process is: an HTTP API plus its workers (relay, consumer, timers).

A service's bootstrap hands this its routers and its event handler; this owns the
lifecycle (pool, workers, drain on SIGTERM) and the endpoints every service has:
``/healthz``, ``/readyz``, ``/metrics`` and OpenAPI at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from regulars_events.consumer import BatchHandler, EventConsumer, Handler
from regulars_events.kafka import KafkaConfig, admin_client, ensure_topics
from regulars_events.relay import OutboxRelay, backlog
from regulars_events.topics import all_topics, dead_letter_topic

from . import metrics
from .db import create_pool
from .settings import Settings

log = logging.getLogger(__name__)

Worker = Callable[["ServiceContext", asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceContext:
    """What a running service holds: handed to routes (app.state.ctx) and workers."""

    settings: Settings
    pool: asyncpg.Pool
    relay: OutboxRelay | None = None
    consumer: EventConsumer | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    title: str
    description: str
    routers: Sequence[APIRouter] = ()
    #: topics this service consumes, and the event handler (None: consumes nothing)
    consumes: Sequence[str] = ()
    handle: Handler | None = None
    #: optional: several new events at once, in order, in one transaction (set-based)
    handle_many: BatchHandler | None = None
    handles_type: Callable[[str], bool] = lambda _t: True
    workers: Sequence[Worker] = ()
    on_start: Callable[[ServiceContext], Awaitable[None]] | None = None


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


async def _validation_problem(_request: Request, exc: Exception) -> Response:
    """422 in the same shape as every other error: a message naming each bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        errors.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", ""))})
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse({"error": message, "errors": errors}, status_code=422)


def create_app(definition: ServiceDefinition, settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url, definition.name, max_size=settings.db_pool_size
        )
        ctx = ServiceContext(settings=settings, pool=pool)
        app.state.ctx = ctx
        if definition.on_start is not None:
            await definition.on_start(ctx)
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

    app = FastAPI(
        title=definition.title,
        description=definition.description,
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.add_middleware(_HttpMetrics, service=definition.name)
    app.add_exception_handler(RequestValidationError, _validation_problem)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": definition.name}

    @app.get("/readyz", tags=["operations"], summary="Readiness: database and workers are up")
    async def readyz() -> JSONResponse:
        ctx: ServiceContext = app.state.ctx
        checks: dict[str, str] = {}
        try:
            async with ctx.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
                if settings.run_workers:
                    metrics.OUTBOX_BACKLOG.labels(definition.name).set(await backlog(conn))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if settings.run_workers and definition.handle is not None:
            running = ctx.consumer is not None and ctx.consumer.running
            checks["consumer"] = "ok" if running else "starting"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in definition.routers:
        app.include_router(router)
    return app


async def _start_workers(
    definition: ServiceDefinition, ctx: ServiceContext, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    settings = ctx.settings
    kafka = settings.kafka
    name = definition.name
    await _ensure_topics_soon(kafka, name)
    relay = OutboxRelay(
        database_url=settings.database_url,
        pool=ctx.pool,
        schema=name,
        kafka=kafka,
        retention=settings.outbox_retention,
        on_published=metrics.OUTBOX_PUBLISHED.labels(name).inc,
        on_backlog=metrics.OUTBOX_BACKLOG.labels(name).set,
        on_cluster_change=metrics.BROKER_CHANGES.labels(name).inc,
    )
    ctx.relay = relay
    tasks = [asyncio.create_task(relay.run(stop), name=f"{name}-relay")]
    if definition.handle is not None:
        consumer = EventConsumer(
            service=name,
            pool=ctx.pool,
            kafka=kafka,
            topics=list(definition.consumes),
            handle=definition.handle,
            handle_many=definition.handle_many,
            wants=definition.handles_type,
            on_result=lambda t, r: metrics.EVENTS_CONSUMED.labels(name, t, r).inc(),
            on_dead_letter=lambda topic: metrics.DEAD_LETTERS.labels(name, topic).inc(),
        )
        ctx.consumer = consumer
        tasks.append(asyncio.create_task(consumer.run(stop), name=f"{name}-consumer"))
    for worker in definition.workers:
        tasks.append(asyncio.create_task(worker(ctx, stop), name=f"{name}-worker"))
    return tasks


async def _ensure_topics_soon(kafka: KafkaConfig, service: str) -> None:
    """Create the topics at start-up; if the broker is not up yet, the relay does it later."""
    admin = admin_client(kafka, f"regulars-{service}-startup")
    try:
        await asyncio.wait_for(admin.start(), 10)
        await ensure_topics(admin, kafka, [*all_topics(), dead_letter_topic(service)])
    except Exception as exc:
        log.warning("could not create topics at start-up", extra={"error": repr(exc)})
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def serve(
    definition: ServiceDefinition, build: Callable[[Settings], FastAPI] | None = None
) -> None:
    """``python -m regulars_<service>``: run the API and the workers under uvicorn."""
    import uvicorn

    from .logging import configure

    settings = Settings.from_env(definition.name)
    configure(definition.name, settings.log_level)
    app = (build or (lambda s: create_app(definition, s)))(settings)
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
