"""The committed schema.graphql is the GraphQL contract: the code must not drift from it."""

from __future__ import annotations

from pathlib import Path

from schema import schema

SNAPSHOT = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_schema_matches_the_committed_snapshot() -> None:
    printed = schema.as_str().rstrip("\n")
    committed = SNAPSHOT.read_text(encoding="utf-8").rstrip("\n") if SNAPSHOT.exists() else ""
    assert printed == committed, (
        "The GraphQL schema differs from schema.graphql. If the change is intended, run "
        "`make schema` and commit schema.graphql (clients and reviewers read it as the contract)."
    )


def test_snapshot_holds_the_contract_operations() -> None:
    text = SNAPSHOT.read_text(encoding="utf-8")
    for operation in ("health: Health!", "me: User!", "conversation(id: ID!): Conversation",
                      "stats: Stats!", "register(input: RegisterInput!): AuthPayload!",
                      "login(input: LoginInput!): AuthPayload!",
                      "refreshToken(refreshToken: String!): AuthPayload!",
                      "createConversation(input: ConversationInput!): Conversation!",
                      # keepBranches (issue 13) is optional: old documents run unchanged.
                      "updateConversation(id: ID!, input: ConversationInput!, "
                      "keepBranches: Boolean! = true): Conversation!",
                      "deleteConversation(id: ID!): Boolean!"):
        assert operation in text, operation
    assert ("conversations(first: Int! = 50, after: String = null, archived: Boolean = null, "
            "pinned: Boolean = null, tag: String = null): ConversationConnection!") in text
    for operation in ("search(query: String!, first: Int! = 20, after: String = null): "
                      "SearchConnection!", "sharedConversation(token: String!): "
                      "SharedConversation", "patchConversation(id: ID!, input: "
                      "ConversationPatchInput!): Conversation!",
                      "shareConversation(id: ID!): ShareLink!", "revokeShare(id: ID!): Boolean!"):
        assert operation in text, operation
