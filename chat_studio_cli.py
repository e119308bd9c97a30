"""`chat-studio`: the server's command line (installed by `pip install -e .`).

    chat-studio serve [--host H] [--port P] [--workers N]   migrate, then serve (uvicorn)
    chat-studio migrate                                      apply the database migrations

The application is not a package in site-packages (pyproject installs this one module only, so
generic names like `models` and `schema` never land there): it runs from its repository, the
folder with server.py. `chat-studio` uses the current directory when server.py is there, else
the repository this module was installed from (`pip install -e .`), or `--app-dir` /
CHAT_STUDIO_APP_DIR. It changes into that folder, so `.env` and the default `DATA_DIR` are the
repository's, wherever it is called from. `python -m chat_studio_cli ...` is the same command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

MARKER = "server.py"


def find_app_dir(explicit: str | None = None) -> Path:
    """The folder holding the application (server.py, resolvers/ ...)."""
    candidates = [Path(explicit)] if explicit else []
    env = os.environ.get("CHAT_STUDIO_APP_DIR")
    if env and not explicit:
        candidates.append(Path(env))
    if not candidates:
        candidates = [Path.cwd(), Path(__file__).resolve().parent]
    for candidate in candidates:
        if (candidate / MARKER).is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise SystemExit(f"chat-studio: no {MARKER} in {tried}: run it from the repository root, "
                     "or pass --app-dir (or set CHAT_STUDIO_APP_DIR)")


def _enter(app_dir: Path) -> None:
    os.chdir(app_dir)
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))


def _serve(args: argparse.Namespace) -> int:
    # The settings are read from the environment (and .env) by server.main(); flags win.
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            os.environ[name.upper()] = str(value)
    import server

    server.main()
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    import runpy

    # Exactly `python -m resolvers.kit.migrate` (alembic upgrade head), in this process.
    runpy.run_module("resolvers.kit.migrate", run_name="__main__", alter_sys=True)
    return 0


def _admin_promote(args: argparse.Namespace) -> int:
    import cli_admin  # the app's module: importable once _enter() put the app on sys.path

    result: int = cli_admin.promote(args)
    return result


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="chat-studio", description="AI Chat Studio API server")
    root.add_argument("--app-dir", help="the repository to run (default: the current folder "
                      "if it has server.py, else the one chat-studio was installed from)")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="migrate the database, then serve the API "
                                "(HOST, PORT and WORKERS from the environment or .env)")
    serve.add_argument("--host", help="overrides HOST")
    serve.add_argument("--port", type=int, help="overrides PORT")
    serve.add_argument("--workers", type=int, help="overrides WORKERS (>1 needs REDIS_URL)")
    serve.set_defaults(run=_serve)
    migrate = commands.add_parser("migrate", help="apply the database migrations and exit")
    migrate.set_defaults(run=_migrate)
    admin = commands.add_parser("admin", help="administration from the server's shell")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    promote = admin_commands.add_parser("promote", help="give USERNAME the admin role (how the "
                                        "first admin is made)")
    promote.add_argument("username")
    promote.set_defaults(run=_admin_promote)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _enter(find_app_dir(args.app_dir))
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
