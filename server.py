"""Assembly: create_app(), the lifespan, mounting. Nothing else.

Run: `uvicorn server:create_app --factory` or `python -m server` (reads HOST/PORT/WORKERS).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

import compat_organize
import compat_rest
import compat_ws
import middleware
from resolvers.assembly import running_services
from resolvers.kit import metrics
from resolvers.kit.logging import configure_logging, init_sentry
from resolvers.kit.settings import Settings
from resolvers.kit.version import VERSION
from schema import build_schema
from schema.http import GraphQLRouter
from schema.protection import Limits

log = logging.getLogger("chat_studio.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    init_sentry(settings, version=VERSION)
    if settings.workers > 1 and not metrics.MULTIPROCESS:
        log.warning("WORKERS=%d without PROMETHEUS_MULTIPROC_DIR: /metrics shows only the "
                    "worker that answers the scrape", settings.workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        async with running_services(settings) as services:
            app.state.services = services
            log.info("ready in %.2fs (database: %s)", time.perf_counter() - started,
                     services.db.dialect)
            yield

    app = FastAPI(
        title="AI Chat Studio API",
        version=VERSION,
        description="The documented REST contract. GraphQL (with GraphiQL) is at /graphql.",
        lifespan=lifespan,
    )
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    # Outermost: request ids and HTTP metrics, then the body limit (413 before any parsing).
    middleware.install(app, max_body_bytes=settings.max_body_bytes)
    compat_rest.install(app)
    compat_organize.install(app)
    compat_ws.install(app)
    schema = build_schema(limits=Limits.from_settings(settings))
    # path= rather than prefix=: the route keeps its full template (/graphql) for metrics.
    app.include_router(GraphQLRouter(schema, settings, path="/graphql"))
    return app


def main() -> None:
    import uvicorn

    settings = Settings()
    configure_logging(settings)
    # The protocol-level cap sits well above WS_MAX_MESSAGE_BYTES, so an oversized /ws message
    # gets the contract's `message_too_large` error instead of a dropped connection.
    uvicorn.run("server:create_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level.lower(),
                ws_max_size=max(16 * settings.ws_max_message_bytes, 1024 * 1024))


if __name__ == "__main__":
    main()
