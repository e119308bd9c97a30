"""The GraphQL context: a FastAPI dependency, built per request with its own DataLoaders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from fastapi import Depends
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from models import Message, User
from resolvers import auth, conversations
from resolvers.security import bearer_token
from resolvers.services import Services


@dataclass
class Loaders:
    messages: DataLoader[str, list[Message]]


class Context(BaseContext):
    def __init__(self, services: Services, connection: HTTPConnection,
                 stack: AsyncExitStack) -> None:
        super().__init__()
        self.services = services
        self.connection = connection
        self._stack = stack
        self._session: AsyncSession | None = None
        self._user: User | None = None
        # Set by the WebSocket handler from connection_init (subscriptions).
        self.ws_token: str | None = None
        # Tags this connection's typing events, so that it never hears itself.
        self.connection_id = uuid.uuid4().hex
        self.loaders = Loaders(messages=DataLoader(load_fn=self._load_messages))

    async def session(self) -> AsyncSession:
        """One short session per HTTP request, opened on first use, closed after the response.

        Subscriptions must not use it (a stream holds no session for its whole life): they
        open short sessions through services.db.session().
        """
        if self._session is None:
            self._session = await self._stack.enter_async_context(self.services.db.session())
        return self._session

    def authenticated(self, user: User, token: str) -> None:
        """A WebSocket authenticated at connect time (connection_init)."""
        self._user, self.ws_token = user, token

    def token(self) -> str | None:
        return self.ws_token or bearer_token(self.connection.headers.get("authorization"))

    async def actor(self) -> User:
        """The authenticated caller; raises Unauthenticated otherwise."""
        if self._user is None:
            self._user = await auth.authenticate(
                await self.session(), self.services.security, self.token()
            )
        return self._user

    async def _load_messages(self, keys: Sequence[str]) -> list[list[Message]]:
        grouped = await conversations.messages_for(await self.session(), keys)
        return [grouped.get(key, []) for key in keys]


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def get_context(
    connection: HTTPConnection, services: Services = Depends(services_of)
) -> AsyncIterator[Context]:
    async with AsyncExitStack() as stack:
        yield Context(services, connection, stack)
