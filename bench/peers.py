"""Peers in the same run: the LiteLLM proxy and Open WebUI beside our server (`make bench-peers`).

    python -m bench.peers install        # one venv per peer under bench/.peers/ (ignored by git)
    python -m bench peers [--quick]      # their rows beside ours, in one run

Each peer is installed at a pinned version into its own venv (they pin libraries that clash with
ours and with each other) and started like a user would run it in production: its own CLI, one
worker, no debug, logs at WARNING, on CPU 0 (`taskset`) where our server runs, pointed at the
same fake upstream (`bench/upstream.py`) on 127.0.0.1. Open WebUI runs offline: no telemetry, no
update checks, no model-hub downloads (the embedding engine is not the local one, so no
sentence-transformers model is loaded). Every peer process is stopped at the end of its figure,
its whole process group, on an error or Ctrl-C too (and on SIGTERM: `cli.main` turns it into
KeyboardInterrupt).

Rows (figure, face):
- stream, "LiteLLM proxy": `POST /v1/chat/completions` (stream, master key), 50-token replies
  at 0 and 5 ms spacing, c = the plan's concurrency. Not stored (no database configured).
- stream, "Open WebUI API": `POST /api/chat/completions` (stream, a user's JWT). This is Open
  WebUI's OpenAI-compatible endpoint; called without `chat_id` (as an API client does) it relays
  the upstream's SSE and stores nothing. Its browser flow (with `chat_id`, `id`, `session_id`)
  answers `{"status": true, "task_id"}` and pushes the reply over Socket.IO while saving it: not
  measured here.
- sidebar, "Open WebUI" (op "titles"): `GET /api/v1/chats/?page=1` for a user with 200 chats (seeded
  through `POST /api/v1/chats/new`, two messages each), 60 titles per page, c = 1, 10, 50.
Our rows beside them: the streaming faces (figure `stream`) and the sidebar (figure `sidebar`:
"REST summary" `GET /api/conversations?view=summary&limit=60` and "GraphQL titles"
`conversations(first: 60) { edges { node { id title updatedAt createdAt } } }`, a user with 200
conversations of two messages). `report.evaluate` gives each peer row our ratio to it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procs

if TYPE_CHECKING:
    from bench.cli import Run

PEERS_DIR = procs.ROOT / "bench" / ".peers"
# Verified together on this machine (Python 3.11, 2026-11-30). litellm 1.107.0 was a
# compromised release (withdrawn); 1.108+ need `litellm-proxy`/extras builds the registry
# mirror here lacks, so the proxy is the 1.106 line's last patch.
LITELLM_VERSION = "1.106.12"
OPENWEBUI_VERSION = "0.12.4"
TORCH_VERSION = "2.13.0"  # the CPU wheel, installed first, else open-webui pulls a CUDA build

LITELLM_KEY = "sk-bench-" + secrets.token_hex(8)
OWUI_EMAIL, OWUI_PASSWORD = "bench@bench.example", "bench-Password-1234"
REPLY_TOKENS = 50  # as bench.cli's
SIDEBAR_CHATS = 200
SIDEBAR_LEVELS = (1, 10, 50)
STREAM_PEERS = ("LiteLLM proxy", "Open WebUI API")
# A peer may go on relaying replies whose client gave up (Open WebUI stayed busy after the c=200
# points in trials on a loaded machine): wait longer than for our server before the next point.
PEER_SETTLE = 120.0
SIDEBAR_PEER = "Open WebUI"  # its `GET /api/v1/chats/?page=1`


# ---------------------------------------------------------------- install


def venv(name: str) -> Path:
    return PEERS_DIR / name


def installed(name: str, version: str) -> bool:
    return (venv(name) / f".installed-{version}").exists()


def _pip(name: str, *args: str) -> None:
    cmd = [str(venv(name) / "bin" / "python"), "-m", "pip", "install", "--quiet", *args]
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _install_one(name: str, version: str, requirements: list[list[str]]) -> None:
    if installed(name, version):
        print(f"{name} {version}: installed", flush=True)
        return
    print(f"{name} {version}: installing into {venv(name)} (minutes)", flush=True)
    if venv(name).exists():
        shutil.rmtree(venv(name))
    subprocess.run([_base_python(), "-m", "venv", str(venv(name))], check=True)
    for step in requirements:
        _pip(name, *step)
    (venv(name) / f".installed-{version}").write_text(version + "\n")


def _base_python() -> str:
    """The interpreter our venv was made from (a venv's `python -m venv` nests oddly)."""
    base = getattr(sys, "_base_executable", sys.executable)
    return base if os.path.exists(base) else sys.executable


def install() -> None:
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    _install_one("litellm", LITELLM_VERSION, [[f"litellm[proxy]=={LITELLM_VERSION}"]])
    _install_one("openwebui", OPENWEBUI_VERSION, [
        [f"torch=={TORCH_VERSION}"],
        [f"open-webui=={OPENWEBUI_VERSION}"],
    ])


# ---------------------------------------------------------------- processes

# Settings of ours (or of the shell) that a peer would read as its own: a peer gets only what
# its start function gives it. (LiteLLM refuses to start with any DATABASE_URL but PostgreSQL.)
NOT_INHERITED = frozenset({
    "DATABASE_URL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "SECRET_KEY",
    "DATA_DIR", "PORT", "HOST", "WORKERS", "LOG_LEVEL", "ENVIRONMENT", "OPENAI_API_KEY",
    "OPENAI_BASE_URL", "OPENAI_API_BASE_URL", "ANTHROPIC_API_KEY", "CORS_ALLOW_ORIGIN",
})


class PeerProc(procs.Proc):
    """A peer server: stopped with its whole process group (a peer may fork helpers), and
    sent SIGTERM by the kernel if the bench itself dies without unwinding (SIGKILL)."""

    def __init__(self, name: str, cmd: list[str], *, env: dict[str, str] | None = None,
                 core: int, logdir: Path, cwd: Path = procs.ROOT) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        inherited = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        self.popen = subprocess.Popen(procs.pinned(cmd, core), cwd=cwd,
                                      env={**inherited, **(env or {})}, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_parent)
        self.pid = self.popen.pid

    def stop(self) -> None:
        try:
            pgid = os.getpgid(self.pid)
        except ProcessLookupError:
            pgid = None
        if self.popen.poll() is None and pgid is not None:
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.popen.wait()
        if pgid is not None:  # helpers left behind by the leader
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


def _die_with_parent() -> None:
    """In the child before exec: PR_SET_PDEATHSIG(SIGTERM) (Linux; kept across exec)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _start(run: Run, name: str, cmd: list[str], env: dict[str, str], health: str,
           cwd: Path, timeout: float = 300.0) -> PeerProc:
    proc = PeerProc(name, cmd, env=env, core=procs.SERVER_CORE, logdir=run.logdir, cwd=cwd)
    run.running.append(proc)
    proc.wait_http(health, timeout=timeout)
    return proc


def start_litellm(run: Run, data_dir: Path) -> tuple[PeerProc, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "litellm.yaml"
    models = "".join(
        f"  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n"
        f"      api_base: {run.upstream}\n      api_key: sk-bench\n"
        for m in ("bench-0ms", "bench-5ms"))
    config.write_text(
        "model_list:\n" + models +
        "litellm_settings:\n  telemetry: false\n  set_verbose: false\n"
        "  turn_off_message_logging: true\n  drop_params: true\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n")
    port = procs.free_port()
    env = {
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at import
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
        "DISABLE_SCHEMA_UPDATE": "true",
        "NO_DOCS": "True",
        "HOME": str(data_dir),
    }
    cmd = [str(venv("litellm") / "bin" / "litellm"), "--config", str(config), "--host",
           "127.0.0.1", "--port", str(port), "--num_workers", "1", "--telemetry", "False"]
    base = f"http://127.0.0.1:{port}"
    proc = _start(run, "peer-litellm", cmd, env, f"{base}/health/liveliness", data_dir)
    return proc, base


def openwebui_env(run: Run, data_dir: Path) -> dict[str, str]:
    """Production-ish and offline: nothing may leave 127.0.0.1."""
    return {
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": secrets.token_urlsafe(48),
        "ENV": "prod",
        "GLOBAL_LOG_LEVEL": "WARNING",
        "UVICORN_WORKERS": "1",
        "WEBUI_AUTH": "true",
        "ENABLE_SIGNUP": "true",
        "ENABLE_OLLAMA_API": "false",
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URL": run.upstream,
        "OPENAI_API_BASE_URLS": run.upstream,
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_API_KEYS": "sk-bench",
        # offline: no telemetry, update checks, hub downloads or default-model fetches
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "false",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ENABLE_COMMUNITY_SHARING": "false",
        "ENABLE_EVALUATION_ARENA_MODELS": "false",
        "ENABLE_WEB_SEARCH": "false",
        "ENABLE_IMAGE_GENERATION": "false",
        "ENABLE_CODE_INTERPRETER": "false",
        "ENABLE_TITLE_GENERATION": "false",
        "ENABLE_TAGS_GENERATION": "false",
        "ENABLE_FOLLOW_UP_GENERATION": "false",
        "ENABLE_AUTOCOMPLETE_GENERATION": "false",
        "ENABLE_RETRIEVAL_QUERY_GENERATION": "false",
        "ENABLE_SEARCH_QUERY_GENERATION": "false",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
        "WHISPER_MODEL_AUTO_UPDATE": "false",
        "AUDIO_STT_ENGINE": "openai",
        "RAG_EMBEDDING_ENGINE": "openai",  # no local sentence-transformers model to load
        "RAG_OPENAI_API_BASE_URL": run.upstream,
        "RAG_OPENAI_API_KEY": "sk-bench",
        "BYPASS_EMBEDDING_AND_RETRIEVAL": "true",
        "USER_AGENT": "chat-studio-bench",
        "HOME": str(data_dir),
    }


def start_openwebui(run: Run, data_dir: Path) -> tuple[PeerProc, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    cmd = [str(venv("openwebui") / "bin" / "open-webui"), "serve", "--host", "127.0.0.1",
           "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    proc = _start(run, "peer-openwebui", cmd, openwebui_env(run, data_dir), f"{base}/health",
                  data_dir, timeout=600)
    return proc, base


# ---------------------------------------------------------------- the figure


def stream_body(spacing: int) -> dict[str, Any]:
    return {"model": f"bench-{spacing}ms", "stream": True, "max_tokens": REPLY_TOKENS,
            "messages": [{"role": "user", "content": "Say hi"}]}


def warm_up(url: str, token: str) -> None:
    """One whole reply per model before any point: a peer's first request imports and caches
    lazily (LiteLLM's provider modules, Open WebUI's model list), seconds of one-off work."""
    for spacing in (0, 5):
        request = urllib.request.Request(url, data=json.dumps(stream_body(spacing)).encode(),
                                         method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=120) as resp:
            body = resp.read()
        if b"[DONE]" not in body:
            raise RuntimeError(f"{url} answered no whole stream: {body[:300]!r}")


def _streams(run: Run, face: str, url: str, token: str, pid: int) -> None:
    warm_up(url, token)
    for spacing in (0, 5):
        for c in run.plan.concurrency:
            run.settle(pid, PEER_SETTLE)
            run.add("stream", "-", face, f"{spacing}ms", c, run.measure(
                {"kind": "sse", "concurrency": c, "url": url,
                 "headers": {"Authorization": f"Bearer {token}"},
                 "body": stream_body(spacing), "marker": '"content":" w',
                 "done": "[DONE]"}, pid))


def _note_all(run: Run, face: str, figure: str, ops: list[tuple[str, list[int]]],
              note: str) -> None:
    note = " ".join(note.split())[:160]  # one table cell
    for op, levels in ops:
        for c in levels:
            run.add(figure, "-", face, op, c, {"note": note})


def figure(run: Run) -> None:
    """Each peer in turn on CPU 0: start, seed, measure, stop."""
    stream_ops = [(f"{s}ms", list(run.plan.concurrency)) for s in (0, 5)]
    missing = [n for n, v in (("litellm", LITELLM_VERSION), ("openwebui", OPENWEBUI_VERSION))
               if not installed(n, v)]
    if missing:
        run.say(f"peers: {', '.join(missing)} not installed (run `python -m bench.peers "
                "install` or `make bench-peers`)")
    if "litellm" in missing:
        _note_all(run, "LiteLLM proxy", "stream", stream_ops, "not installed")
    else:
        litellm_figure(run, stream_ops)
    if "openwebui" in missing:
        _note_all(run, "Open WebUI API", "stream", stream_ops, "not installed")
        _note_all(run, SIDEBAR_PEER, "sidebar", [("titles", list(SIDEBAR_LEVELS))],
                  "not installed")
    else:
        openwebui_figure(run, stream_ops)


def litellm_figure(run: Run, stream_ops: list[tuple[str, list[int]]]) -> None:
    run.say(f"peers: LiteLLM proxy {LITELLM_VERSION}")
    proc = None
    try:
        proc, base = start_litellm(run, run.tmp / "litellm")
        _streams(run, "LiteLLM proxy", f"{base}/v1/chat/completions", LITELLM_KEY, proc.pid)
    except Exception as exc:  # a peer that will not start is a row, not a crashed run
        run.say(f"peers: LiteLLM failed: {exc}")
        _note_all(run, "LiteLLM proxy", "stream", stream_ops, _failure(exc))
    finally:
        if proc is not None:
            run.stop(proc)


def openwebui_figure(run: Run, stream_ops: list[tuple[str, list[int]]]) -> None:
    run.say(f"peers: Open WebUI {OPENWEBUI_VERSION} (starts slowly)")
    proc = None
    try:
        proc, base = start_openwebui(run, run.tmp / "openwebui")
        token = procs.call("POST", f"{base}/api/v1/auths/signup",
                     {"name": "Bench", "email": OWUI_EMAIL, "password": OWUI_PASSWORD})["token"]
        seed_chats(base, token)
        for c in SIDEBAR_LEVELS:
            run.settle(proc.pid, PEER_SETTLE)
            run.add("sidebar", "-", SIDEBAR_PEER, "titles", c, run.measure(
                {"kind": "http", "concurrency": c, "url": f"{base}/api/v1/chats/?page=1",
                 "headers": {"Authorization": f"Bearer {token}"}}, proc.pid))
        _streams(run, "Open WebUI API", f"{base}/api/chat/completions", token, proc.pid)
    except Exception as exc:
        run.say(f"peers: Open WebUI failed: {exc}")
        if proc is not None:
            run.say(proc.tail())
        if not any(r["face"] == SIDEBAR_PEER for r in run.rows):
            _note_all(run, SIDEBAR_PEER, "sidebar", [("titles", list(SIDEBAR_LEVELS))],
                      _failure(exc))
        if not any(r["face"] == "Open WebUI API" for r in run.rows):
            _note_all(run, "Open WebUI API", "stream", stream_ops, _failure(exc))
    finally:
        if proc is not None:
            run.stop(proc)


def _failure(exc: Exception) -> str:
    """The first line of the error: the log it names has the rest."""
    return "failed: " + str(exc).splitlines()[0] if str(exc) else f"failed: {exc!r}"


def seed_chats(base: str, token: str) -> None:
    """200 chats of two messages each, in the shape Open WebUI's own client saves."""
    for i in range(SIDEBAR_CHATS):
        user_id, reply_id = f"u{i}", f"a{i}"
        now = int(time.time())
        user = {"id": user_id, "parentId": None, "childrenIds": [reply_id], "role": "user",
                "content": f"Message 0 of conversation {i}: " + "lorem ipsum dolor sit " * 5,
                "timestamp": now, "models": ["bench-0ms"]}
        reply = {"id": reply_id, "parentId": user_id, "childrenIds": [], "role": "assistant",
                 "content": f"Message 1 of conversation {i}: " + "lorem ipsum dolor sit " * 5,
                 "timestamp": now, "model": "bench-0ms", "done": True}
        procs.call("POST", f"{base}/api/v1/chats/new", {"chat": {
            "title": f"Bench conversation {i}", "models": ["bench-0ms"],
            "messages": [user, reply],
            "history": {"messages": {user_id: user, reply_id: reply}, "currentId": reply_id},
            "tags": [], "timestamp": now * 1000}}, token=token)
    page = procs.call("GET", f"{base}/api/v1/chats/?page=1", token=token)
    if len(page) != 60:
        raise RuntimeError(f"Open WebUI's ?page=1 answered {len(page)} chats, not 60")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("action", choices=("install",))
    parser.parse_args()
    install()


if __name__ == "__main__":
    main()
