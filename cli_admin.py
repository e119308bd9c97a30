"""`chat-studio admin …`: administration from the command line (a face: it parses arguments,
calls resolvers/ and prints). The first admin is made here, by whoever runs the server:

    chat-studio admin promote USERNAME

Wired into the console script (`chat_studio_cli.py`, branch habits) with
`cli_admin.register(subparsers)`: like `serve` and `migrate` it sets `run(args) -> int` on its
parser. Also runnable alone from the repository: `python cli_admin.py promote NAME`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from resolvers import admin
from resolvers.kit import usercache
from resolvers.kit.broker import make_broker
from resolvers.kit.db import Database
from resolvers.kit.errors import AppError
from resolvers.kit.migrate import upgrade
from resolvers.kit.settings import Settings


async def _promote(username: str, settings: Settings) -> str:
    db = Database(settings.effective_database_url)
    try:
        await upgrade(db.engine)  # a fresh install has no tables yet
        async with db.session() as session:
            user = await admin.promote(session, username=username)
        if settings.redis_url:  # workers drop the user from their token caches at once
            broker = make_broker(settings.redis_url)
            try:
                await broker.publish(usercache.CHANNEL, {"user_id": user.id})
            except Exception as exc:  # the role is stored: workers see it within the TTL
                print(f"warning: could not tell the workers ({exc}); they see the new role "
                      "within USER_CACHE_SECONDS", file=sys.stderr)
            finally:
                await broker.aclose()
        return f"{user.username} ({user.id}) is now an admin"
    finally:
        await db.dispose()


def promote(args: argparse.Namespace, settings: Settings | None = None) -> int:
    try:
        print(asyncio.run(_promote(args.username, settings or Settings())))
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `admin` (with `promote USERNAME`) to a console script's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "admin", help="administration (make the first admin)")
    commands = parser.add_subparsers(dest="admin_command", required=True)
    make = commands.add_parser("promote", help="give USERNAME the admin role")
    make.add_argument("username")
    make.set_defaults(run=promote)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-studio")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["admin", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
