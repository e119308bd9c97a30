"""Mutation fields: thin wrappers over resolvers/ operations."""

from __future__ import annotations

import strawberry

from resolvers import auth, conversations
from schema.queries import ctx
from schema.types import AuthPayload, Conversation, ConversationInput, LoginInput, RegisterInput


def to_operation_input(
    data: ConversationInput, *, with_id: bool
) -> conversations.ConversationInput:
    return conversations.ConversationInput(
        title=data.title,
        model=data.model,
        system_prompt=data.system_prompt,
        id=str(data.id) if with_id and data.id is not None else None,
        created_at=int(data.created_at) if data.created_at is not None else None,
        messages=[
            conversations.MessageInput(
                content=message.content, role=message.role.value,
                id=str(message.id) if message.id is not None else None,
                timestamp=int(message.timestamp) if message.timestamp is not None else None,
            )
            for message in data.messages
        ],
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an account; returns tokens.")
    async def register(self, info: strawberry.Info, input: RegisterInput) -> AuthPayload:
        context = ctx(info)
        async with context.session() as session:
            pair = await auth.register(
                session, context.services.security,
                username=input.username, email=input.email, password=input.password,
                limiter=context.services.limiter, address=context.client_address(),
                invite_code=input.invite_code,
            )
        return AuthPayload.from_pair(pair)

    @strawberry.mutation(description="Sign in; unknown user and wrong password answer alike. "
                         "With 2FA on: error MFA_REQUIRED with extensions.mfaToken.")
    async def login(self, info: strawberry.Info, input: LoginInput) -> AuthPayload:
        context = ctx(info)
        async with context.session() as session:
            result = await auth.login(
                session, context.services.security,
                username=input.username, password=input.password,
                limiter=context.services.limiter, address=context.client_address(),
            )
        if isinstance(result, auth.MfaChallenge):
            # No tokens without the second factor: extensions.mfaToken → verifyTwoFactor.
            raise auth.MfaRequired(mfa_token=result.mfa_token)
        return AuthPayload.from_pair(result)

    @strawberry.mutation(description="Rotate a refresh token (each can be used once).")
    async def refresh_token(self, info: strawberry.Info, refresh_token: str) -> AuthPayload:
        context = ctx(info)
        async with context.session() as session:
            pair = await auth.refresh(
                session, context.services.security, refresh_token=refresh_token
            )
        return AuthPayload.from_pair(pair)

    @strawberry.mutation(description="Revoke a refresh token, or every session of yours.")
    async def logout(
        self, info: strawberry.Info, refresh_token: str | None = None, everywhere: bool = False
    ) -> bool:
        context = ctx(info)
        async with context.session() as session:
            await auth.logout(
                session, context.services.security, await context.actor("account"),
                refresh_token=refresh_token, everywhere=everywhere, broker=context.services.broker,
            )
        return True

    @strawberry.mutation(description="Delete your account and everything in it (needs your "
                         "password); your open connections close.")
    async def delete_account(self, info: strawberry.Info, password: str) -> bool:
        context = ctx(info)
        async with context.session() as session:
            await auth.delete_account(
                session, context.services.security, await context.actor("account"),
                password=password, broker=context.services.broker,
            )
        return True

    @strawberry.mutation
    async def create_conversation(
        self, info: strawberry.Info, input: ConversationInput
    ) -> Conversation:
        context = ctx(info)
        async with context.session() as session:
            stored = await conversations.create(
                session, await context.actor(),
                data=to_operation_input(input, with_id=True),
            )
        # Messages through the loader: the whole tree, for parent and siblings.
        return Conversation.from_model(stored.conversation)

    @strawberry.mutation(description="Replace title, model, system prompt and messages. "
                         "`messages` becomes the active path: listed messages keep their "
                         "alternatives, active ones left out are removed, other branches are "
                         "kept unless keepBranches is false.")
    async def update_conversation(
        self, info: strawberry.Info, id: strawberry.ID, input: ConversationInput,
        keep_branches: bool = True,
    ) -> Conversation:
        context = ctx(info)
        async with context.session() as session:
            stored = await conversations.replace(
                session, await context.actor(), conversation_id=str(id),
                data=to_operation_input(input, with_id=False), keep_branches=keep_branches,
            )
        # Messages through the loader: the whole tree, for parent and siblings.
        return Conversation.from_model(stored.conversation)

    @strawberry.mutation
    async def delete_conversation(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        context = ctx(info)
        async with context.session() as session:
            await conversations.remove(
                session, await context.actor(), conversation_id=str(id)
            )
        return True
