"""Build the FastAPI app: state, error handlers, routers. Run with
`uvicorn api.main:create_app --factory` (or `scenecap api`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import scenecap
from api.auth import KeyCache
from api.errors import BodyLimits, BytesInFlight, install_error_handlers
from api.ratelimit import RateLimiter
from api.routes import (
    categories,
    completions,
    exports,
    health,
    live,
    metrics,
    search,
    uploads,
    usage,
    webhooks,
)
from api.routes.metrics import MetricsCache
from api.server import return_freed_memory
from api.services import links
from api.services.ask import QuestionModel
from api.services.events import Watchers
from api.services.media_check import MediaInspector
from api.services.uploads import UploadSlots
from db.reads import Reads
from db.session import make_engine, make_session_factory
from scenecap.core.settings import Settings, get_settings
from scenecap.store import open_store
from worker.submit import JobQueue

# Starlette runs sync routes and dependencies on anyio's thread pool (40 threads by default).
API_THREADS = 40
READ_CONNECTIONS = 10


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API application for these settings (the environment's by default)."""
    settings = settings or get_settings()
    return_freed_memory()
    # One connection per threadpool thread (anyio's default 40): a request holding a
    # connection while it waits for a thread can then never starve one that waits for a
    # connection (under load that deadlock turned into pool timeouts).
    # No ping per checkout (a round trip on every request): a connection an outage broke
    # fails one request with 503, and that failure discards the whole pool. Reads that need
    # no transaction have pools of their own (autocommit: one round trip each): the hot ones
    # run on the event loop (db.reads), the others in threads. A read never waits for a
    # thread while it holds a connection, so those pools can be small: they only queue.
    # No statement of a request runs for longer than STATEMENT_TIMEOUT_SECONDS.
    timeout = settings.statement_timeout_seconds
    engine = make_engine(
        settings.database_url,
        max_connections=API_THREADS,
        pre_ping=False,
        statement_timeout=timeout,
    )
    orm_reads = make_engine(
        settings.database_url,
        max_connections=READ_CONNECTIONS,
        pre_ping=False,
        autocommit=True,
        statement_timeout=timeout,
    )
    reads = Reads.of(settings.database_url, READ_CONNECTIONS, timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await reads.open()
        yield
        await reads.close()
        await app.state.inspector.aclose()
        for limiter in (app.state.rate_limiter, app.state.share_limiter):
            if limiter is not None:
                await limiter.aclose()
        if app.state.question_model is not None:
            await app.state.question_model.aclose()
        engine.dispose()
        orm_reads.dispose()

    app = FastAPI(
        title="scenecap",
        version=scenecap.__version__,
        summary="Timestamped categories, participants, actions, scenes and tags for any video.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.queue = JobQueue.of(settings)
    app.state.session_factory = make_session_factory(engine, app.state.queue.send)
    app.state.reads = reads
    app.state.reader = make_session_factory(orm_reads)
    app.state.keys = KeyCache(app.state.reader, settings.key_cache_seconds)
    app.state.metrics = MetricsCache(settings.metrics_cache_seconds)
    app.state.inspector = MediaInspector(settings)
    app.state.store = open_store(settings)
    redis_broker = settings.broker_url.startswith("redis")
    limited = settings.rate_limit_per_minute > 0 and redis_broker
    app.state.rate_limiter = (
        RateLimiter(settings.broker_url, settings.rate_limit_per_minute) if limited else None
    )
    # Share links: per token and per client address (the embedded broker has no Redis).
    app.state.share_limiter = (
        RateLimiter(settings.broker_url, settings.share_rate_limit_per_minute, name="share")
        if redis_broker
        else None
    )
    app.state.share_key = links.signing_key(settings)
    app.state.watchers = Watchers(
        reads, per_job=settings.max_streams_per_job, per_key=settings.max_streams_per_key
    )
    app.state.reports = {}  # finished jobs' pages, rendered once (api/routes/live.py)
    app.state.uploads = UploadSlots(settings.max_uploads_per_key)
    app.state.question_model = (
        QuestionModel(settings) if settings.vision_backend == "openai" else None
    )
    install_error_handlers(app)
    app.state.bodies_in_flight = BytesInFlight()
    app.add_middleware(
        BodyLimits,
        in_flight=app.state.bodies_in_flight,
        max_json_bytes=settings.max_json_bytes,
        max_media_bytes=settings.max_request_bytes,
        in_flight_bytes=settings.body_bytes_in_flight,
        idle_seconds=settings.upload_idle_seconds,
        media_paths=(*categories.MEDIA_PATHS, *completions.PATHS),
        streamed=(uploads.PATH,),
    )
    # Routes are matched in order: the ones clients poll come first.
    app.include_router(categories.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(live.router)
    app.include_router(completions.router)
    app.include_router(webhooks.router)
    app.include_router(uploads.router)
    app.include_router(search.router)
    app.include_router(exports.router)
    app.include_router(usage.router)
    return app
