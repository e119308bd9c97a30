"""Automatic titles: after the first reply of a conversation whose title is empty or a client's
default ("新对话", "New Chat" …), a short title is generated and stored, and the owner's live
connections hear `conversation_updated`.

It runs in a task of its own after the reply's terminal event, so it never delays a reply.
The model: TITLE_MODEL when set (falling back to the reply's model when that id is unknown),
else the embedded model when it is enabled, else the model that wrote the reply. A title
the user set is never replaced: the title is written only if it is still the default one it
replaced (compare-and-set), so a rename during generation wins. AUTO_TITLE=false turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from resolvers import conversations
from resolvers.llm.base import ChatMessage, GenerationRequest, Provider, StopSignal, TextChunk
from resolvers.llm.embedded import MODEL_ID as EMBEDDED_MODEL_ID
from resolvers.llm.registry import ProviderRegistry, UnknownModel

if TYPE_CHECKING:
    from models import User
    from resolvers.kit.broker import Broker, OnMessage, Subscription
    from resolvers.kit.db import Database

log = logging.getLogger("chat_studio.titles")

# Titles clients give a conversation before it has one (the guide's client: "新对话").
DEFAULT_TITLES = frozenset({"", "新对话", "新的对话", "新建对话", "新会话", "new chat",
                            "new conversation", "untitled", "untitled conversation"})
TITLE_MAX_CHARS = 60
TITLE_MAX_WORDS = 8  # small models ramble: a title is its first sentence's first words
PROMPT_CHARS = 2000  # of the user's message and of the reply
INSTRUCTION = ("Write a short title (at most six words) for the conversation below, in the "
               "language of the user's message. Answer with the title only: no quotes, no "
               "punctuation at the end.")


def is_default(title: str) -> bool:
    return title.strip().lower() in DEFAULT_TITLES


def cleaned(text: str) -> str:
    """The model's answer as a title: its first line, without quotes, labels or markdown."""
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    line = re.sub(r"^(title|标题)\s*[:：]\s*", "", line.strip(), flags=re.IGNORECASE)
    line = line.strip().strip("\"'“”‘’「」《》*#`").strip()
    line = re.split(r"(?<=[.!?])\s+|(?<=[。！？])", line, maxsplit=1)[0]
    return short(line.rstrip("。.!！?？"))


def short(text: str) -> str:
    """At most TITLE_MAX_WORDS words and TITLE_MAX_CHARS characters."""
    words = text.split()[:TITLE_MAX_WORDS]
    return " ".join(words)[:TITLE_MAX_CHARS].strip()


def fallback(content: str) -> str:
    """A title from the user's own words, when the model gives nothing usable."""
    return short(content)


@dataclass(frozen=True, slots=True)
class ConversationUpdated:
    """A conversation of the user changed outside their own request (a generated title)."""

    type: ClassVar[str] = "conversation_updated"
    conversation_id: str
    title: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "conversation_id": self.conversation_id, "title": self.title}


def updates_channel(user_id: str) -> str:
    return f"conversation-updates:{user_id}"


async def publish_updated(broker: Broker, user_id: str, event: ConversationUpdated) -> None:
    await broker.publish(updates_channel(user_id), event.to_wire())


def subscribe_updates(broker: Broker, actor: User, *,
                      on_message: OnMessage | None = None) -> Subscription:
    """The raw subscription to the actor's conversation updates (enter with `async with`
    or `await ready()`); read it with `updates()`, or give `on_message` for a listener (see
    `Subscription`) and decode each message with `update_of()`."""
    return broker.subscribe(updates_channel(actor.id), on_message=on_message)


def update_of(message: dict[str, Any]) -> ConversationUpdated | None:
    """A message of the updates channel → its event (None: not one this version knows)."""
    if message.get("type") != ConversationUpdated.type:
        return None
    return ConversationUpdated(conversation_id=str(message["conversation_id"]),
                               title=str(message["title"]))


async def updates(subscription: Subscription) -> AsyncIterator[ConversationUpdated]:
    async for message in subscription:
        event = update_of(message)
        if event is not None:
            yield event


@dataclass
class Titles:
    """The title service of one process (built by assembly.py, called by chat)."""

    db: Database
    broker: Broker
    registry: ProviderRegistry
    model: str = ""  # TITLE_MODEL
    enabled: bool = True  # AUTO_TITLE
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def after_reply(self, actor: User, conversation_id: str, reply_model: str) -> None:
        """Title the conversation in the background if it is its first reply."""
        if not self.enabled:
            return
        task = asyncio.create_task(self._run(actor, conversation_id, reply_model),
                                   name=f"title {conversation_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, actor: User, conversation_id: str, reply_model: str) -> None:
        try:
            await self.generate(actor, conversation_id=conversation_id, reply_model=reply_model)
        except Exception:  # a title is a nicety: log, never disturb anything else
            log.exception("titling conversation %s failed", conversation_id)

    async def _provider(self, reply_model: str) -> tuple[Provider, str]:
        if self.model:
            try:
                return await self.registry.resolve(self.model)
            except UnknownModel:
                log.warning("TITLE_MODEL %r is not available; using %r", self.model,
                            reply_model)
        elif "embedded" in self.registry.providers:
            return await self.registry.resolve(EMBEDDED_MODEL_ID)
        return await self.registry.resolve(reply_model)

    async def generate(self, actor: User, *, conversation_id: str,
                       reply_model: str) -> str | None:
        """Generate, store and announce a title; None when the conversation is not due one
        (a title of its own, not its first reply, gone)."""
        async with self.db.session() as session:
            conversation = await conversations.find(session, actor,
                                                    conversation_id=conversation_id)
            if conversation is None or not is_default(conversation.title):
                return None
            messages = (await conversations.get(session, actor,
                                                conversation_id=conversation_id)).messages
            old_title = conversation.title
        replies = [m for m in messages if m.role == "assistant" and m.content]
        asked = [m for m in messages if m.role == "user" and m.content.strip()]
        if len(replies) != 1 or not asked:
            return None
        provider, model = await self._provider(reply_model)
        request = GenerationRequest(model=model, temperature=0.2, max_tokens=32, messages=[
            ChatMessage(role="system", content=INSTRUCTION),
            ChatMessage(role="user", content=f"User: {asked[0].content[:PROMPT_CHARS]}\n\n"
                                             f"Assistant: {replies[0].content[:PROMPT_CHARS]}"),
        ])
        parts: list[str] = []
        try:
            async for item in provider.stream(request, StopSignal()):
                if isinstance(item, TextChunk):
                    parts.append(item.text)
        except Exception:
            log.warning("the title model failed for %s; using the user's words",
                        conversation_id, exc_info=True)
            parts = []
        title = cleaned("".join(parts)) or fallback(asked[0].content)
        async with self.db.session() as session:
            stored = await conversations.set_generated_title(
                session, actor, conversation_id=conversation_id, title=title,
                replacing=old_title)
        if not stored:
            return None
        await publish_updated(self.broker, actor.id,
                              ConversationUpdated(conversation_id=conversation_id, title=title))
        return title

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
