"""The server's version: written here once. pyproject.toml reads it (`dynamic = ["version"]`),
and `/`, `/health`, GraphQL's `health`, OpenAPI and Sentry report it."""

VERSION = "2.0.0"
