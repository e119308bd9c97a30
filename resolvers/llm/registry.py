"""Which providers are active, which models they serve, and which one answers a model id.

    registry = ProviderRegistry(LLMConfig(openai_api_key="sk-...", default_model=None))
    provider, model = await registry.resolve("openai/gpt-4o-mini")   # -> (OpenAIProvider, ...)
    request = GenerationRequest(model, messages, temperature=0.7, max_tokens=256)
    async for item in provider.stream(request, stop): ...
    await registry.aclose()

Model ids may be plain ("gpt-4o-mini") or prefixed with the provider ("openai/gpt-4o-mini").
A plain id that itself contains a slash (OpenRouter's "meta-llama/llama-3-8b") is looked up
as a whole first, so such ids keep working. An alias (`model_aliases`, from MODEL_ALIASES) is
another name for one of those ids, resolved here for every face: the guide's frontend asks for
"gpt-3.5-turbo", the operator maps it onto a model they serve, and the reply names the real
model. Aliases are one hop (an alias's target is never itself looked up as an alias).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .anthropic import DEFAULT_BASE_URL as ANTHROPIC_URL
from .anthropic import AnthropicProvider
from .base import ModelInfo, Provider
from .embedded import MODEL_ID as EMBEDDED_MODEL_ID
from .embedded import EmbeddedProvider
from .gemini import DEFAULT_BASE_URL as GEMINI_URL
from .gemini import GeminiProvider
from .openai import DEFAULT_BASE_URL as OPENAI_URL
from .openai import OpenAIProvider

logger = logging.getLogger("chat_studio.llm")


@dataclass
class LLMConfig:
    """Provider settings (resolvers/assembly.py builds one from the app settings)."""

    openai_api_key: str | None = None
    openai_base_url: str = OPENAI_URL
    openai_models: list[str] = field(default_factory=list)
    anthropic_api_key: str | None = None
    anthropic_base_url: str = ANTHROPIC_URL
    anthropic_models: list[str] = field(default_factory=list)
    gemini_api_key: str | None = None
    gemini_base_url: str = GEMINI_URL
    gemini_models: list[str] = field(default_factory=list)
    embedded_enabled: bool = True
    embedded_model_path: str | None = None
    embedded_threads: int | None = None
    default_model: str | None = None
    model_aliases: dict[str, str] = field(default_factory=dict)  # name -> served model id
    connect_timeout: float = 10.0
    stall_timeout: float = 60.0
    models_cache_seconds: float = 60.0
    models_timeout: float = 10.0  # a model list slower than this falls back to the config


class UnknownModel(LookupError):
    """No active provider serves the requested model id."""

    def __init__(self, requested: str, available: list[str]) -> None:
        shown = ", ".join(available) if available else "none"
        super().__init__(f"Unknown model {requested!r}. Available models: {shown}")
        self.requested = requested
        self.available = available


class ProviderRegistry:
    """The active providers, their (briefly cached) model lists, and model-id resolution."""

    def __init__(self, config: LLMConfig, *, session: aiohttp.ClientSession | None = None,
                 providers: Iterable[Provider] | None = None) -> None:
        """`session` is shared by the HTTP providers (their owner closes it); `providers`
        replaces the ones the config would build (tests, or a custom provider)."""
        self.config = config
        self.providers: dict[str, Provider] = {}
        for provider in providers if providers is not None else self._build(config, session):
            self.providers[provider.name] = provider
        self._cache: dict[str, tuple[float, list[ModelInfo]]] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def _build(config: LLMConfig, session: aiohttp.ClientSession | None) -> list[Provider]:
        def common(models: list[str]) -> dict[str, Any]:
            return {"models": models, "session": session,
                    "connect_timeout": config.connect_timeout,
                    "stall_timeout": config.stall_timeout}

        built: list[Provider] = []
        if config.embedded_enabled:
            built.append(EmbeddedProvider(model_path=config.embedded_model_path,
                                          n_threads=config.embedded_threads))
        openai_url = (config.openai_base_url or OPENAI_URL).rstrip("/")
        # A local OpenAI-compatible server (Ollama, vLLM, llama.cpp) needs no key.
        if config.openai_api_key or openai_url != OPENAI_URL:
            built.append(OpenAIProvider(api_key=config.openai_api_key, base_url=openai_url,
                                        **common(config.openai_models)))
        if config.anthropic_api_key:
            built.append(AnthropicProvider(api_key=config.anthropic_api_key,
                                           base_url=config.anthropic_base_url,
                                           **common(config.anthropic_models)))
        if config.gemini_api_key:
            built.append(GeminiProvider(api_key=config.gemini_api_key,
                                        base_url=config.gemini_base_url,
                                        **common(config.gemini_models)))
        return built

    async def _models_of(self, provider: Provider) -> list[ModelInfo]:
        cached = self._cache.get(provider.name)
        now = time.monotonic()
        if cached and now - cached[0] < self.config.models_cache_seconds:
            return cached[1]
        try:
            async with asyncio.timeout(self.config.models_timeout):
                models = await provider.list_models()
        except Exception:
            # Providers fall back to their configured list themselves; this is the last guard
            # so that one broken provider never hides the others.
            logger.exception("listing models of %s failed", provider.name)
            models = [ModelInfo(id=m, provider=provider.name, name=m)
                      for m in getattr(provider, "configured_models", [])]
        self._cache[provider.name] = (now, models)
        return models

    async def list_models(self) -> list[ModelInfo]:
        """Every model chat can use now: the embedded one first, then each provider's."""
        async with self._lock:  # one refresh at a time; waiters then read the fresh cache
            lists = await asyncio.gather(*(self._models_of(p) for p in self.providers.values()))
        return [m for models in lists for m in models]

    async def resolve(self, model: str | None) -> tuple[Provider, str]:
        """The provider serving `model` and the provider's own name for it.

        None (or "") means the configured default model, else the embedded one. An alias
        resolves to its target; an alias whose target is not served is unknown like any name.
        """
        requested = model or self.config.default_model or EMBEDDED_MODEL_ID
        requested = self.config.model_aliases.get(requested, requested)
        models = await self.list_models()
        for info in models:  # exact public id first: OpenRouter ids contain slashes too
            if info.id == requested:
                return self.providers[info.provider], info.id
        prefix, sep, rest = requested.partition("/")
        if sep and prefix in self.providers:
            for info in models:
                if info.provider == prefix and info.id == rest:
                    return self.providers[prefix], rest
        raise UnknownModel(requested, [m.id for m in models])

    async def aclose(self) -> None:
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except Exception:
                logger.exception("closing provider %s failed", provider.name)
