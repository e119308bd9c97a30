"""Assembly: create_app(), the lifespan, mounting. Nothing else.

Run: `chat-studio serve`, `python -m server` (both read HOST/PORT/WORKERS), `uvicorn server:app`
(the guide's habit) or `uvicorn server:create_app --factory`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

import compat_branches
import compat_files
import compat_identity
import compat_keys
import compat_openai
import compat_organize
import compat_rest
import compat_tools
import compat_transfer
import compat_ws
import explorers
import middleware
from resolvers.assembly import running_services
from resolvers.kit import metrics
from resolvers.kit.logging import configure_logging, init_sentry
from resolvers.kit.settings import Settings
from resolvers.kit.version import VERSION
from resolvers.services import Services
from schema import build_schema
from schema.http import GraphQLRouter
from schema.protection import Limits

log = logging.getLogger("chat_studio.server")

# uvicorn's --timeout-graceful-shutdown: after the drain, connections still open (readers of
# replies generated elsewhere, idle sockets) get this long before their tasks are cancelled.
# Without it uvicorn waits for them forever, and one client could hold up the shutdown.
SHUTDOWN_GRACE_SECONDS = 5
GRAPHQL_PATH = "/graphql"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def drain_on_signal(services: Services) -> Iterator[None]:
    """SIGTERM/SIGINT: drain the chat (refuse new replies, let running ones finish for
    SHUTDOWN_DRAIN_SECONDS, end the rest as interrupted with their end event sent) *before*
    uvicorn starts its own shutdown, which closes every WebSocket at once (1012). Then hand
    the signal on to uvicorn's handler. A second SIGINT skips the drain.

    Chained onto the handlers uvicorn installed (it does before the lifespan starts), so it
    works under `uvicorn --workers N` and `python -m server` alike. Only the main thread can
    handle signals: servers run in a thread (tests) drain in the lifespan's shutdown.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    tasks: set[asyncio.Task[None]] = set()  # referenced until done
    signalled = False

    def pass_on(sig: int, frame: FrameType | None) -> None:
        handler = previous.get(sig)
        if callable(handler):
            handler(sig, frame)
        else:  # no handler of uvicorn's: the default action (exit)
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    async def drain_then_exit(sig: int, frame: FrameType | None) -> None:
        started = time.perf_counter()
        try:
            await services.chat.drain(services.settings.shutdown_drain_seconds)
        except Exception:
            log.exception("draining the replies failed")
        log.info("replies drained in %.1fs; shutting down", time.perf_counter() - started)
        pass_on(sig, frame)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal signalled
        if signalled:
            # A second Ctrl-C: no more waiting (as uvicorn does). A repeated SIGTERM is
            # ignored: a supervisor and systemd may each send one to a worker.
            if sig == signal.SIGINT:
                pass_on(sig, frame)
            return
        signalled = True
        log.info("%s: draining the running replies", signal.Signals(sig).name)

        def start() -> None:
            task = loop.create_task(drain_then_exit(sig, frame), name="drain")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        # Signal handlers run between bytecodes: schedule, and wake the loop up.
        loop.call_soon_threadsafe(start)

    for sig in _SIGNALS:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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
            with drain_on_signal(services):
                yield

    app = FastAPI(
        title="AI Chat Studio API",
        version=VERSION,
        description="The documented REST contract. GraphQL (with GraphiQL) is at /graphql.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from explorers.install: no CDN
        redoc_url=None,
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
    middleware.install(app, max_body_bytes=settings.max_body_bytes,
                       larger={compat_transfer.IMPORT_PATH: compat_transfer.import_limit(settings),
                               compat_files.FILES_PATH: compat_files.upload_limit(settings)},
                       # GraphQL multipart requests carry uploads (schema/files.py): the
                       # upload limit; their `operations` field stays bounded (schema/http.py).
                       multipart={GRAPHQL_PATH: compat_files.upload_limit(settings)})
    compat_rest.install(app)
    compat_identity.install(app)
    compat_keys.install(app)
    compat_tools.install(app)
    compat_files.install(app)
    compat_openai.install(app)
    compat_branches.install(app)
    compat_transfer.install(app)
    compat_organize.install(app)
    compat_ws.install(app)
    explorers.install(app)
    schema = build_schema(limits=Limits.from_settings(settings))
    # path= rather than prefix=: the route keeps its full template (/graphql) for metrics.
    # multipart: file uploads (the GraphQL multipart request spec; schema/files.py).
    app.include_router(GraphQLRouter(schema, settings, path=GRAPHQL_PATH,
                                     ide_html=explorers.graphiql_html,
                                     multipart_uploads_enabled=True))
    return app


def __getattr__(name: str) -> FastAPI:
    """`server.app`, built from the environment on first access (`uvicorn server:app`).

    Importing this module builds nothing: tests and `create_app(settings)` callers never pay
    for (or depend on) an app made from the environment.
    """
    if name == "app":
        app = create_app()
        globals()["app"] = app  # later lookups find it without coming back here
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SERVE_LOOP = "uvloop"
SERVE_HTTP = "httptools"


def main() -> None:
    import uvicorn

    settings = Settings()
    configure_logging(settings)
    # The protocol-level cap sits well above WS_MAX_MESSAGE_BYTES, so an oversized /ws message
    # gets the contract's `message_too_large` error instead of a dropped connection.
    # uvloop and httptools by name (both come with uvicorn[standard]): uvicorn's "auto" falls
    # back silently to asyncio and h11, which cost more CPU per request (docs/BENCHMARKS.md).
    uvicorn.run("server:create_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level.lower(),
                loop=SERVE_LOOP, http=SERVE_HTTP,
                ws_max_size=max(16 * settings.ws_max_message_bytes, 1024 * 1024),
                timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)


if __name__ == "__main__":
    main()
