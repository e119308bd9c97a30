"""The GraphQL context: a FastAPI dependency, built per request with its own DataLoaders."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from fastapi import Depends
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from models import ApiKey, User
from resolvers import conversations, keys, organize
from resolvers.conversations import MessageView
from resolvers.kit import ratelimit
from resolvers.kit.security import bearer_token
from resolvers.services import Services


@dataclass
class Loaders:
    messages: DataLoader[str, list[MessageView]]
    tags: DataLoader[str, list[str]]


class Context(BaseContext):
    def __init__(self, services: Services, connection: HTTPConnection) -> None:
        super().__init__()
        self.services = services
        self.connection = connection
        self._user: User | None = None
        self._key: ApiKey | None = None  # the API key the caller used, if any
        self._actor_lock = asyncio.Lock()
        # Set by the WebSocket handler from connection_init (subscriptions).
        self.ws_token: str | None = None
        # Tags this connection's typing events, so that it never hears itself.
        self.connection_id = uuid.uuid4().hex
        self.loaders = Loaders(messages=DataLoader(load_fn=self._load_messages),
                               tags=DataLoader(load_fn=self._load_tags))

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A short session for one field: `async with context.session() as session:`.

        Strawberry resolves root fields concurrently and a SQLAlchemy session allows one
        operation at a time, so fields never share one; and a GraphQL WebSocket context lives
        as long as its connection, so nothing here may hold a session that long either.
        """
        return self.services.db.session()

    def authenticated(self, user: User, token: str, key: ApiKey | None = None) -> None:
        """A WebSocket authenticated at connect time (connection_init)."""
        self._user, self.ws_token, self._key = user, token, key

    def client_address(self) -> str:
        """Who is asking, for rate limits: the connection's peer, or X-Forwarded-For when the
        peer is one of TRUSTED_PROXIES."""
        client = self.connection.client
        return ratelimit.client_address(
            client.host if client else None, self.connection.headers.get("x-forwarded-for"),
            self.services.settings.trusted_proxies,
        )

    def token(self) -> str | None:
        return self.ws_token or bearer_token(self.connection.headers.get("authorization"))

    async def actor(self, *scopes: keys.Scope) -> User:
        """The authenticated caller, allowed to do something that needs `scope` (an API key
        must hold one; `account` no key holds); raises Unauthenticated / Forbidden otherwise.
        Every field names its scopes (any one suffices); none named means `write`."""
        return (await self.caller(*scopes)).user

    async def caller(self, *scopes: keys.Scope) -> keys.Caller:
        """The caller and the API key used, if any (chat bills the key)."""
        # Concurrent fields ask at once: look the user up once.
        async with self._actor_lock:
            if self._user is None:
                async with self.session() as session:
                    caller = await keys.authenticate(
                        session, self.services.security, self.token(), scopes=keys.KEY_SCOPES,
                        cache=self.services.users)
                self._user, self._key = caller.user, caller.key
        keys.require(self._key, scopes or ("write",))
        return keys.Caller(user=self._user, key=self._key)

    async def _load_messages(self, keys: Sequence[str]) -> list[list[MessageView]]:
        async with self.session() as session:
            # Every branch: a message's siblings and parent may be off the active path.
            grouped = await conversations.messages_for(session, keys, whole_tree=True)
        return [grouped.get(key, []) for key in keys]

    async def _load_tags(self, keys: Sequence[str]) -> list[list[str]]:
        async with self.session() as session:
            grouped = await organize.tags_for(session, keys)
        return [grouped.get(key, []) for key in keys]


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def get_context(
    connection: HTTPConnection, services: Services = Depends(services_of)
) -> Context:
    return Context(services, connection)
