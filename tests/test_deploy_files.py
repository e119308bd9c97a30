"""What an operator relies on in the deployment files, and that the tools accept them.

The external validators (docker-compose, nginx, systemd-analyze) run when they are on PATH.
docker-compose is installed in CI, so there a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
NGINX = ROOT / "deploy" / "nginx.conf"
UNIT = ROOT / "deploy" / "chat-studio.service"
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _needs_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_has_the_four_services_and_no_version_key() -> None:
    compose = _compose()
    assert "version" not in compose, "Compose spec format: no top-level `version:`"
    assert {"app", "migrate", "postgres", "redis"} <= set(compose["services"])
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")


def test_compose_long_running_services_have_healthchecks() -> None:
    services = _compose()["services"]
    for name in ("app", "postgres", "redis"):
        healthcheck = services[name].get("healthcheck") or {}
        assert healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name}'s healthcheck is disabled"
    # Liveness: restarting the app during a database outage would not help (README).
    assert "/health/live" in " ".join(services["app"]["healthcheck"]["test"])


def test_compose_migrates_before_the_app_starts() -> None:
    services = _compose()["services"]
    migrate, app = services["migrate"], services["app"]
    command = migrate["command"]
    command = " ".join(command) if isinstance(command, list) else command
    assert command in ("chat-studio migrate", "python -m resolvers.kit.migrate")
    assert migrate["image"] == app["image"], "migrate must run the app's own image"
    assert migrate.get("restart", "no") == "no", "a one-shot service must not restart"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    depends = app["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_compose_keeps_data_in_named_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    named = set(compose.get("volumes") or {})
    postgres_volumes = [v.split(":") for v in services["postgres"]["volumes"]]
    assert any(src in named and dst == "/var/lib/postgresql/data"
               for src, dst, *_ in postgres_volumes)
    data_dir = _environment(services["app"])["DATA_DIR"]
    app_volumes = [v.split(":") for v in services["app"]["volumes"]]
    assert any(src in named and dst == data_dir for src, dst, *_ in app_volumes)


def test_compose_production_environment() -> None:
    env = _environment(_compose()["services"]["app"])
    assert env["ENVIRONMENT"] == "production"
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"]), "SECRET_KEY required"
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["WORKERS"] == "${WORKERS:-4}"


def _compose_config(tmp_path: Path, dotenv: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config -q` in a copy of the project, with the given .env."""
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed; CI must install it "
                        "(apt-get install -y docker-compose) to validate docker-compose.yml")
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose)")
    for path in (COMPOSE, DOCKERFILE):  # v1 checks that the build context exists
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / ".env").write_text(dotenv)
    env = {k: v for k, v in os.environ.items()
           if k not in {"SECRET_KEY", "POSTGRES_PASSWORD", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}}
    return subprocess.run([binary, "config", "-q"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_compose_config_is_valid(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, "SECRET_KEY=test-secret\nPOSTGRES_PASSWORD=test-pw\n")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, "POSTGRES_PASSWORD=test-pw\n")
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


# --- Dockerfile --------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    pairs = [[*line.split(None, 1), ""] for line in lines if line and not line.startswith("#")]
    return [(op.upper(), arg) for op, arg, *_ in pairs]


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert len(froms) >= 2, "builder + runtime stages"
    assert any(" AS builder" in f or " as builder" in f for f in froms)
    assert any(arg.startswith("--from=builder") for op, arg in instructions if op == "COPY")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the final USER is root"
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    assert any(op == "USER" for op, _ in instructions[last_from:]), "runtime stage sets USER"


def test_dockerfile_builds_llama_cpp_portably() -> None:
    text = DOCKERFILE.read_text()
    assert PORTABLE_CMAKE_ARGS in text
    assert "CMAKE_ARGS" in text
    assert "build-essential" in text and "cmake" in text


def test_dockerfile_healthcheck_expose_and_cmd() -> None:
    instructions = dict(_dockerfile_instructions())
    healthcheck = instructions["HEALTHCHECK"]
    assert "/health/live" in healthcheck and "urllib" in healthcheck, "slim has no curl"
    assert instructions["EXPOSE"].split()[0] == "8000"
    # `chat-studio serve` reads HOST/PORT/WORKERS from the environment the image sets.
    assert json.loads(instructions["CMD"]) == ["chat-studio", "serve"]
    assert "WORKERS=1" in instructions["ENV"] and "HOST=0.0.0.0" in instructions["ENV"]


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".git", ".venv", "data"):
        assert entry in ignored


# --- nginx -------------------------------------------------------------------------------------


def _nginx_locations() -> dict[str, str]:
    """`location [=] path { ... }` bodies by path (the config has no nested blocks in them)."""
    text = re.sub(r"#[^\n]*", "", NGINX.read_text())
    return {m["path"]: m["body"] for m in re.finditer(
        r"location\s+(?:=\s*)?(?P<path>\S+)\s*\{(?P<body>[^}]*)\}", text)}


def test_nginx_upgrades_websockets_for_ws_and_graphql() -> None:
    text = re.sub(r"#[^\n]*", "", NGINX.read_text())
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade\s*\{", text)
    # The upgrade headers are set once at server level and inherited by every location,
    # which works only while no location sets a proxy_set_header of its own.
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", text)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", text)
    assert "proxy_http_version 1.1;" in text
    locations = _nginx_locations()
    for path in ("/ws/", "/graphql"):
        assert path in locations, f"no location for {path}"
        body = locations[path]
        assert "proxy_pass" in body
        assert "proxy_set_header" not in body, f"{path} would lose the upgrade headers"
        timeout = re.search(r"proxy_read_timeout\s+(\d+)s?;", body)
        assert timeout and int(timeout[1]) >= 3600, f"{path} needs a long read timeout"


def test_nginx_streams_sse_and_limits_bodies() -> None:
    text = re.sub(r"#[^\n]*", "", NGINX.read_text())
    chat = _nginx_locations()["/api/chat"]
    assert "proxy_buffering off;" in chat
    assert "proxy_set_header" not in chat
    assert "client_max_body_size 1m;" in text
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP", "Host"):
        assert re.search(rf"proxy_set_header\s+{header}\s", text), header


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = _needs_tool("nginx")
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp_path / kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(f"pid {tmp_path / 'nginx.pid'};\nerror_log stderr;\nevents {{}}\n"
                       f"http {{\n    access_log off;\n{temp_paths}\n    include {NGINX};\n}}\n")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(wrapper)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


# --- systemd -----------------------------------------------------------------------------------


def _unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_runs_migrations_then_uvicorn_as_a_dedicated_user() -> None:
    service = _unit()["Service"]
    assert service["User"][0] not in {"root", "www-data", "nobody"}
    assert service["WorkingDirectory"][0].startswith("/")
    assert service["EnvironmentFile"]
    assert service["ExecStartPre"][0].endswith("/.venv/bin/chat-studio migrate")
    assert service["ExecStart"][0].endswith("/.venv/bin/chat-studio serve")
    # serve reads these from the environment: the unit must set them.
    environment = " ".join(service["Environment"]).split()
    for name in ("HOST", "PORT", "WORKERS"):
        assert any(item.startswith(f"{name}=") for item in environment), name
    assert service["Restart"] == ["on-failure"]
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_is_hardened_and_can_write_only_its_data_dir() -> None:
    service = _unit()["Service"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    data_dir = next(v.split("=", 1)[1] for line in service["Environment"]
                    for v in line.split() if v.startswith("DATA_DIR="))
    assert data_dir in service["ReadWritePaths"][0].split()


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    systemd_analyze = _needs_tool("systemd-analyze")
    # verify insists that the Exec paths exist: point them at stand-ins under tmp_path.
    app_dir = tmp_path / "opt" / "chat-studio"
    (app_dir / ".venv" / "bin").mkdir(parents=True)
    true = shutil.which("true") or "/bin/true"
    for name in ("python", "chat-studio"):
        (app_dir / ".venv" / "bin" / name).symlink_to(true)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/chat-studio", str(app_dir)))
    result = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    # Unknown keys and bad values are only warnings (exit 0): any line naming the unit counts.
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if UNIT.name in line]
    if result.returncode != 0 and not problems and "Failed to" in result.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0 and not problems, result.stderr


# --- test_api.py (the smoke-test client; run against a live server elsewhere) ------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_smoke_client_reports_every_check_failed_when_no_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import test_api

    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    code = test_api.main(["--base-url", f"http://127.0.0.1:{_closed_port()}",
                          "--timeout", "2"], out=out)
    lines = out.getvalue().splitlines()
    assert code == 1
    assert lines[-1] == f"0 passed, {len(test_api.CHECKS)} failed"
    assert sum(line.startswith("✗ ") for line in lines) == len(test_api.CHECKS)
    assert "\033[" not in out.getvalue()


def test_smoke_client_skip_chat_skips_only_generating_checks() -> None:
    import test_api

    names = [c.name for c in test_api.CHECKS]
    assert len(names) == len(set(names))
    chat = {c.name for c in test_api.CHECKS if c.needs_chat}
    assert chat and len(chat) < len(names)
    assert "chatStream" in test_api.GRAPHQL_CHAT_STREAM_SUBSCRIPTION


# --- shutdown: drain, then uvicorn's grace, inside the kill timeout ----------------------------


def _seconds(value: str) -> float:
    match = re.fullmatch(r"\s*(\d+)\s*s?\s*", value)
    assert match, f"unexpected duration {value!r}"
    return float(match[1])


def test_kill_timeouts_leave_room_for_the_drain_and_the_grace_period() -> None:
    """SIGTERM drains replies for SHUTDOWN_DRAIN_SECONDS, uvicorn then waits at most its
    graceful-shutdown timeout; a SIGKILL before both are over cuts replies mid-way (they
    would be closed as interrupted only by another worker, seconds later)."""
    from resolvers.kit.settings import Settings
    from server import SHUTDOWN_GRACE_SECONDS

    drain = Settings.model_fields["shutdown_drain_seconds"].default
    app = _compose()["services"]["app"]
    compose_drain = _environment(app)["SHUTDOWN_DRAIN_SECONDS"]
    assert compose_drain == f"${{SHUTDOWN_DRAIN_SECONDS:-{int(drain)}}}"
    needed = drain + SHUTDOWN_GRACE_SECONDS + 10  # + the lifespan's own shutdown
    assert _seconds(app["stop_grace_period"]) >= needed
    assert _seconds(_unit()["Service"]["TimeoutStopSec"][0]) >= needed
    # Both start through `chat-studio serve`, i.e. server.main(), which gives uvicorn the
    # graceful-shutdown timeout (checked below against what it really passes).
    assert _unit()["Service"]["ExecStart"][0].endswith("chat-studio serve")
    assert "chat-studio" in dict(_dockerfile_instructions())["CMD"]
    assert "serve" in dict(_dockerfile_instructions())["CMD"]


def test_serve_gives_uvicorn_the_graceful_shutdown_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import server

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    server.main()
    assert seen["timeout_graceful_shutdown"] == server.SHUTDOWN_GRACE_SECONDS
