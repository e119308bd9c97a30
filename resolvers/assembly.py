"""Build and tear down the service container (used by server.py's lifespan and by tests)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from resolvers import billing
from resolvers.billing import Billing, PriceTable, to_micros
from resolvers.chat import Chat
from resolvers.chat.limits import ChatLimits
from resolvers.files import Files
from resolvers.files.remote import RemoteImages
from resolvers.files.vectors import Vectors
from resolvers.kit.broker import make_broker
from resolvers.kit.db import Database
from resolvers.kit.migrate import upgrade
from resolvers.kit.outbound import Outbound
from resolvers.kit.ratelimit import make_limiter
from resolvers.kit.security import Security
from resolvers.kit.settings import Settings
from resolvers.kit.usercache import UserCache
from resolvers.llm.base import Provider
from resolvers.llm.embeddings import Embeddings
from resolvers.llm.registry import LLMConfig, ProviderRegistry
from resolvers.services import Services
from resolvers.sso import SignOn
from resolvers.titles import Titles
from resolvers.tools import Tools

log = logging.getLogger("chat_studio.server")


def llm_config(settings: Settings) -> LLMConfig:
    return LLMConfig(
        openai_api_key=settings.openai_api_key or None,
        openai_base_url=settings.openai_base_url,
        openai_models=settings.openai_models,
        anthropic_api_key=settings.anthropic_api_key or None,
        anthropic_base_url=settings.anthropic_base_url,
        anthropic_models=settings.anthropic_models,
        gemini_api_key=settings.gemini_api_key or None,
        gemini_base_url=settings.gemini_base_url,
        gemini_models=settings.gemini_models,
        embedded_enabled=settings.embedded_model_enabled,
        embedded_model_path=settings.embedded_model_path or None,
        embedded_threads=settings.embedded_threads or None,
        default_model=settings.default_model or None,
        model_aliases=settings.model_aliases,
        connect_timeout=settings.provider_connect_timeout,
        stall_timeout=settings.provider_stall_timeout,
    )


def vectors_of(settings: Settings, db: Database) -> Vectors | None:
    """Vectors of passages when EMBEDDING_MODEL is set (base URL and key default to
    OPENAI_*'s: the same OpenAI-compatible server usually serves both)."""
    if not settings.embedding_model:
        return None
    embedder = Embeddings(model=settings.embedding_model,
                          dimensions=settings.embedding_dimensions,
                          timeout=settings.embedding_timeout,
                          api_key=settings.embedding_api_key or settings.openai_api_key or None,
                          base_url=settings.embedding_base_url or settings.openai_base_url)
    return Vectors(db=db, embedder=embedder, batch=settings.embedding_batch,
                   retry_seconds=settings.embedding_retry_seconds)


@asynccontextmanager
async def running_services(
    settings: Settings, *, providers: Iterable[Provider] | None = None
) -> AsyncIterator[Services]:
    """Database (migrated), broker, security, model registry and chat for one process."""
    db = Database(settings.effective_database_url, echo=settings.db_echo)
    broker = make_broker(settings.redis_url or None,
                         retention_seconds=settings.reply_retention_seconds)
    registry = ProviderRegistry(llm_config(settings), providers=providers)
    limiter = make_limiter(settings.redis_url or None)
    outbound = Outbound(allow=tuple(settings.outbound_allow))  # MCP servers and image URLs
    chat = Chat(db=db, broker=broker, registry=registry, limiter=limiter,
                lease_seconds=settings.reply_lease_seconds,
                limits=ChatLimits(per_minute=settings.rate_limit_chat_per_minute,
                                  daily_tokens=settings.daily_token_quota),
                billing=Billing(
                    prices=PriceTable.load(settings.model_prices or None),
                    default_monthly_budget_micros=to_micros(
                        settings.default_monthly_budget_usd)),
                titles=Titles(db=db, broker=broker, registry=registry,
                              model=settings.title_model, enabled=settings.auto_title),
                tools=Tools(db=db, outbound=outbound,
                            max_steps=settings.max_tool_steps, timeout=settings.tool_timeout))
    chat.retrieval_chars = settings.retrieval_context_chars
    files = Files(db=db, directory=settings.data_dir / "files",
                  max_bytes=int(settings.max_upload_mb * 1024 * 1024),
                  vectors=vectors_of(settings, db))
    chat.uploads = files  # images of messages are kept as files
    chat.remote_images = RemoteImages(  # image URLs of messages, through the guard
        outbound=outbound, timeout=settings.image_fetch_timeout,
        max_bytes=int(min(settings.image_fetch_max_mb, settings.max_upload_mb) * 1024 * 1024))
    sign_on = SignOn(settings)
    users = UserCache(broker, ttl=settings.user_cache_seconds)
    try:
        await upgrade(db.engine)
        try:  # holds of replies whose worker died (a crash, a kill) before they settled
            await billing.release_stale(db)
        except Exception:
            log.exception("could not release stale budget reservations")
        embedded = registry.providers.get("embedded")
        load = getattr(embedded, "load", None)
        if load is not None:
            seconds = await load()
            log.info("embedded model loaded in %.2fs", seconds)
        swept = await files.sweep()  # bytes of deleted accounts, uploads cut off mid-way
        if swept:
            log.info("removed %d stored files nobody owns", swept)
        if files.vectors is not None and await files.vectors.prepare():
            files.vectors.start_filling()  # passages an outage or a new model left without
        resumed = await files.resume()  # extractions a stopped process left unfinished
        if resumed:
            log.info("resumed the extraction of %d files", resumed)
        await users.start()
        yield Services(settings=settings, db=db, security=Security(settings), broker=broker,
                       chat=chat, limiter=limiter, sign_on=sign_on, files=files, users=users)
    finally:
        await users.aclose()
        await files.aclose()
        if files.vectors is not None:
            await files.vectors.aclose()
        await sign_on.aclose()
        await chat.aclose()
        await broker.aclose()
        await limiter.aclose()
        await db.dispose()
