"""`python -m bench [figure ...]`: run the figures, print the table, write JSON + PNG."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peers, procs, report
from bench import search as search_figure

FIGURES = ("rest", "graphql", "stream", "persist", "sidebar", "connections", "fanout",
           "memory", "embedded", "search", "retrieval")
# Optional, never in the default run: `peers` installs nothing itself (`make bench-peers` does)
# and brings `stream` and `sidebar` along, so our rows stand beside the peers' (bench/peers.py).
OPTIONAL = ("peers",)
SIDEBAR_CONVERSATIONS, SIDEBAR_PAGE, SIDEBAR_LEVELS = 200, 60, (1, 10, 50)
DBS = ("sqlite", "postgres")
PASSWORD = "bench-Password-1234"
REPLY_TOKENS = 50
EMBEDDED_MODEL = "smollm2-135m-instruct"
GRAPHQL_TITLES = "{ conversations(first: %d) { edges { node { id title updatedAt } } } }"
EMBEDDED_PROMPT = "Write three sentences about the sea."
EMBEDDED_TOKENS = 64
PERSIST_CONCURRENCY = 50


@dataclass
class Plan:
    duration: float
    warmup: float
    concurrency: tuple[int, ...]
    login_count: int
    ws_levels: tuple[int, ...]
    fanout_subscribers: int
    fanout_rounds: int
    embedded_runs: int
    memory_rounds: int = 10
    memory_idle: float = 60.0  # seconds of idleness before the last RSS reading

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(1.5, 0.5, (1, 50, 200), 60, (1000, 5000), 1000, 4, 2, 5, 20.0)
        return cls(3.0, 1.0, (1, 50, 200), 100, (1000, 5000), 1000, 10, 4)


# ---------------------------------------------------------------- small HTTP client for seeding


@dataclass
class Account:
    username: str
    token: str
    user_id: str


def register(base: str, name: str) -> Account:
    pair = procs.call("POST", f"{base}/api/auth/register",
                {"username": name, "email": f"{name}@bench.example", "password": PASSWORD})
    me = procs.call("GET", f"{base}/api/auth/me", token=pair["access_token"])
    return Account(name, pair["access_token"], me["id"])


def conversation_body(index: int, messages: int) -> dict[str, Any]:
    return {
        "title": f"Bench conversation {index}",
        "model": "bench-0ms",
        "messages": [
            {"role": "user" if i % 2 == 0 else "assistant",
             "content": f"Message {i} of conversation {index}: " + "lorem ipsum dolor sit " * 5}
            for i in range(messages)
        ],
    }


# ---------------------------------------------------------------- the run


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = Plan.make(args.quick)
        self.rows: list[dict[str, Any]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-"))
        self.logdir = self.tmp / "logs"
        self.logdir.mkdir()
        self.load: procs.Load | None = None
        self.running: list[procs.Proc] = []
        self.upstream = ""

    # -- plumbing
    def say(self, text: str) -> None:
        print(text, flush=True)

    def add(self, figure: str, db: str, face: str, op: str, concurrency: int | None,
            result: dict[str, Any], **extra: Any) -> dict[str, Any]:
        row = {"figure": figure, "db": db, "face": face, "op": op,
               "concurrency": concurrency, **result, **extra}
        self.rows.append(row)
        self.say("  " + report.line(row))
        return row

    def start(self, name: str, app: str, env: dict[str, str], *, factory: bool = False,
              health: str = "/") -> tuple[procs.Proc, str]:
        proc, base = procs.start_uvicorn(name, app, env=env, logdir=self.logdir,
                                         factory=factory, health=health)
        self.running.append(proc)
        return proc, base

    def stop(self, proc: procs.Proc) -> None:
        proc.stop()
        self.running.remove(proc)

    def settle(self, pid: int | None, limit: float = 30.0) -> None:
        """Wait until the process is idle: work a previous point gave up on (requests the
        client abandoned) must not be billed to the next point."""
        if not pid:
            return
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = procs.cpu_seconds(pid)
            time.sleep(0.25)
            if procs.cpu_seconds(pid) - before < 0.025:  # under 10% of a core
                return

    def measure(self, spec: dict[str, Any], pid: int | None) -> dict[str, Any]:
        assert self.load is not None
        self.settle(pid)
        base = {"duration": self.plan.duration, "warmup": self.plan.warmup,
                "server_pid": pid}
        return self.load.run({**base, **spec})

    # -- whole run
    def execute(self) -> None:
        figures = self.args.figures or list(FIGURES)
        if "peers" in figures:
            figures = [*figures, *(f for f in ("stream", "sidebar") if f not in figures)]
        procs.raise_fd_limit()
        self.load = procs.Load(self.logdir)
        up_port = procs.free_port()
        upstream = procs.Proc("upstream", [procs.PY, "-m", "bench.upstream", "--port",
                                           str(up_port), "--tokens", str(REPLY_TOKENS)],
                              core=procs.LOAD_CORE, logdir=self.logdir)
        self.running.append(upstream)
        upstream.wait_http(f"http://127.0.0.1:{up_port}/health")
        self.upstream = f"http://127.0.0.1:{up_port}/v1"
        try:
            server_figures = [f for f in figures if f not in ("embedded", "retrieval", "peers")]
            if "stream" in figures:
                self.relay_floors()
            for db in self.args.db:
                if server_figures:
                    self.server_figures(db, server_figures)
            if "embedded" in figures:
                self.embedded()
            if "retrieval" in figures:
                self.retrieval()
            if "peers" in figures:
                peers.figure(self)
        finally:
            for proc in list(self.running):
                proc.stop()
            self.load.stop()

    # -- floors for streaming (independent of the database)
    def relay_floors(self) -> None:
        self.say("floors: direct upstream reads, minimal relay")
        relay, relay_base = self.start("relay", "bench.relay:app", {"UPSTREAM": self.upstream},
                                       health="/none")
        for spacing in (0, 5):
            body = {"model": f"bench-{spacing}ms", "stream": True, "max_tokens": REPLY_TOKENS,
                    "messages": [{"role": "user", "content": "Say hi"}],
                    "stream_options": {"include_usage": True}}
            for c in self.plan.concurrency:
                sse = {"kind": "sse", "concurrency": c, "body": body,
                       "marker": '"delta":{"content"', "done": "[DONE]"}
                self.add("stream", "-", "upstream (direct)", f"{spacing}ms", c,
                         self.measure({**sse, "url": f"{self.upstream}/chat/completions"}, None))
                self.add("stream", "-", "minimal relay", f"{spacing}ms", c,
                         self.measure({**sse, "url": f"{relay_base}/v1/chat/completions"},
                                      relay.pid))
        self.stop(relay)

    # -- our server over one database
    def server_figures(self, db: str, figures: list[str]) -> None:
        if db == "postgres":
            if not procs.pg_available():
                self.say("postgres: not reachable, skipped")
                self.rows.append({"figure": "all", "db": db, "face": "-", "op": "-",
                                  "concurrency": None, "note": "PostgreSQL not reachable"})
                return
            url = procs.pg_create()
        else:
            url = ""
        data_dir = self.tmp / db
        try:
            env = procs.server_env(data_dir, url, self.upstream, embedded=False)
            server, base = self.start(f"server-{db}", "server:create_app", env, factory=True,
                                      health="/health")
            self.say(f"{db}: server pid {server.pid} at {base}; seeding")
            reader, writer = register(base, f"reader_{db}"), register(base, f"writer_{db}")
            ids = [procs.call("POST", f"{base}/api/conversations", conversation_body(i, 20),
                        token=reader.token)["id"] for i in range(50)]
            ctx = {"base": base, "pid": server.pid, "reader": reader, "writer": writer,
                   "conversation": ids[len(ids) // 2]}
            if "rest" in figures or "graphql" in figures:
                bare_db = url or str(data_dir / "chat.db")
                bare, bare_base = self.start(f"bare-{db}", "bench.bare:app",
                                             {"BARE_DATABASE": bare_db}, health="/none")
                for c in self.plan.concurrency:
                    self.add("crud", db, "bare", "list", c, self.measure(
                        {"kind": "http", "concurrency": c, "url": f"{bare_base}/conversations",
                         "headers": {"X-User-Id": reader.user_id}}, bare.pid))
                if "graphql" in figures:
                    for c in self.plan.concurrency:
                        self.add("crud", db, "bare", "titles", c, self.measure(
                            {"kind": "http", "concurrency": c,
                             "url": f"{bare_base}/titles?first=50",
                             "headers": {"X-User-Id": reader.user_id}}, bare.pid))
                self.stop(bare)
            if "rest" in figures:
                self.crud(db, "REST", ctx)
            if "graphql" in figures:
                self.crud(db, "GraphQL", ctx)
            if "sidebar" in figures:
                self.sidebar(db, ctx)
            if "stream" in figures:
                self.streams(db, ctx)
            if "persist" in figures:
                self.persist(db, ctx)
            # Sockets never touch the database once authenticated: measured once, on the first.
            if "connections" in figures and db == self.args.db[0]:
                self.connections(db, ctx)
            if "fanout" in figures and db == self.args.db[0]:
                self.fanout(db, ctx)
            if "memory" in figures and db == self.args.db[0]:
                self.memory(db, ctx)
            if "search" in figures:
                search_figure.figure(self, db, base, server.pid, url, data_dir)
            self.stop(server)
        finally:
            if url:
                procs.pg_drop(url)

    def crud(self, db: str, face: str, ctx: dict[str, Any]) -> None:
        base, pid = ctx["base"], ctx["pid"]
        reader: Account = ctx["reader"]
        writer: Account = ctx["writer"]
        bearer = {"Authorization": f"Bearer {reader.token}"}
        gql = f"{base}/graphql"

        def graphql(query: str, variables: dict[str, Any] | None = None,
                    token: str | None = reader.token) -> dict[str, Any]:
            spec: dict[str, Any] = {"kind": "http", "method": "POST", "url": gql,
                                    "body": {"query": query, "variables": variables or {}},
                                    "reject": '"errors"'}
            if token:
                spec["headers"] = {"Authorization": f"Bearer {token}"}
            return spec

        new = conversation_body(0, 2)
        if face == "REST":
            ops = {
                "login": {"kind": "http", "method": "POST", "url": f"{base}/api/auth/login",
                          "body": {"username": reader.username, "password": PASSWORD}},
                "list": {"kind": "http", "url": f"{base}/api/conversations", "headers": bearer},
                "get": {"kind": "http", "url": f"{base}/api/conversations/{ctx['conversation']}",
                        "headers": bearer},
                "create": {"kind": "http", "method": "POST", "url": f"{base}/api/conversations",
                           "headers": {"Authorization": f"Bearer {writer.token}"}, "body": new},
            }
        else:
            ops = {
                "login": graphql("mutation($u: String!, $p: String!) { login(input: "
                                 "{username: $u, password: $p}) { accessToken } }",
                                 {"u": reader.username, "p": PASSWORD}, token=None),
                "list": graphql("{ conversations(first: 50) { edges { node { id messages "
                                "{ id } } } } }"),
                "titles": graphql(GRAPHQL_TITLES % 50),
                "get": graphql("query($id: ID!) { conversation(id: $id) { id title model "
                               "messages { id content role timestamp } } }",
                               {"id": ctx["conversation"]}),
                "create": graphql("mutation($input: ConversationInput!) { createConversation("
                                  "input: $input) { id } }", {"input": {
                                      "title": new["title"], "model": new["model"],
                                      "messages": new["messages"]}}, token=writer.token),
            }
        for op, spec in ops.items():
            for c in self.plan.concurrency:
                extra: dict[str, Any] = {"concurrency": c}
                if op == "login":  # slow on purpose (argon2): a fixed number, all measured
                    extra["count"] = max(c, min(self.plan.login_count, 10 * c))
                    extra["timeout"] = 300
                self.add("crud", db, face, op, c, self.measure({**spec, **extra}, pid))
        if face == "REST":
            c = self.plan.concurrency[len(self.plan.concurrency) // 2]
            self.add("crud", db, "REST", "list (gzip)", c, self.measure(
                {**ops["list"], "concurrency": c, "accept_encoding": "gzip"}, pid))

    def streams(self, db: str, ctx: dict[str, Any]) -> None:
        base, pid = ctx["base"], ctx["pid"]
        reader: Account = ctx["reader"]
        ws_base = base.replace("http://", "ws://")
        have_ws = (procs.SERVER_ROOT / "compat_ws.py").exists()
        have_sub = (procs.SERVER_ROOT / "schema" / "subscriptions.py").exists()
        for spacing in (0, 5):
            model = f"bench-{spacing}ms"
            message = {"role": "user", "content": "Say hi"}
            for c in self.plan.concurrency:
                self.add("stream", db, "SSE /api/chat", f"{spacing}ms", c, self.measure(
                    {"kind": "sse", "concurrency": c, "url": f"{base}/api/chat",
                     "headers": {"Authorization": f"Bearer {reader.token}"},
                     "body": {"messages": [message], "model": model, "stream": True,
                              "max_tokens": REPLY_TOKENS},
                     "marker": '"chat_chunk"', "done": '"chat_complete"'}, pid))
                if have_ws:
                    result = self.measure(
                        {"kind": "ws_chat", "concurrency": c,
                         "url": f"{ws_base}/ws/{reader.user_id}?token={reader.token}",
                         "message": {"type": "chat", "content": "Say hi", "model": model,
                                     "max_tokens": REPLY_TOKENS}}, pid)
                else:
                    result = {"note": "not measured (feature not present at this commit)"}
                self.add("stream", db, "WS /ws compat", f"{spacing}ms", c, result)
                if have_sub:
                    result = self.measure(
                        {"kind": "gql_sub", "concurrency": c, "url": f"{ws_base}/graphql",
                         "token": reader.token,
                         "input": {"messages": [message], "model": model,
                                   "maxTokens": REPLY_TOKENS}}, pid)
                else:
                    result = {"note": "not measured (feature not present at this commit)"}
                self.add("stream", db, "GraphQL chatStream", f"{spacing}ms", c, result)
        for row in self.rows:
            if row["figure"] == "stream" and row["db"] == db:
                chunked(row)

    def persist(self, db: str, ctx: dict[str, Any]) -> None:
        """Stored replies: 50 users, each streaming replies into a conversation of their own
        (`conversation_id`), through /ws and SSE. Afterwards the stored replies are counted in
        the database (through the API): every reply a client saw complete must be there."""
        base, pid = ctx["base"], ctx["pid"]
        ws_base = base.replace("http://", "ws://")
        c = PERSIST_CONCURRENCY
        for face in ("WS /ws compat", "SSE /api/chat"):
            user = register(base, f"persist_{db}_{'ws' if face.startswith('WS') else 'sse'}")
            ids = [procs.call("POST", f"{base}/api/conversations", conversation_body(i, 2),
                        token=user.token)["id"] for i in range(c)]
            if face.startswith("WS"):
                spec: dict[str, Any] = {
                    "kind": "ws_chat", "url": f"{ws_base}/ws/{user.user_id}?token={user.token}",
                    "message": {"type": "chat", "content": "Say hi", "model": "bench-0ms",
                                "max_tokens": REPLY_TOKENS}}
            else:
                spec = {"kind": "sse", "url": f"{base}/api/chat",
                        "headers": {"Authorization": f"Bearer {user.token}"},
                        "body": {"messages": [{"role": "user", "content": "Say hi"}],
                                 "model": "bench-0ms", "stream": True,
                                 "max_tokens": REPLY_TOKENS},
                        "marker": '"chat_chunk"', "done": '"chat_complete"'}
            result = self.measure({**spec, "concurrency": c, "conversations": ids}, pid)
            self.settle(pid)  # replies the client gave up on finish (and are stored) first
            stored = 0
            for cid in ids:
                doc = procs.call("GET", f"{base}/api/conversations/{cid}", token=user.token)
                stored += sum(1 for m in doc["messages"] if m["role"] == "assistant"
                              and m.get("status") == "complete")
            result["stored_messages"] = stored
            chunked(result)
            self.add("persist", db, face, "0ms", c, result)

    def sidebar(self, db: str, ctx: dict[str, Any]) -> None:
        """A sidebar's first page: 60 titles of a user's 200 conversations (2 messages each),
        REST summary view and GraphQL titles; Open WebUI's `?page=1` is the same list."""
        base, pid = ctx["base"], ctx["pid"]
        owner = register(base, f"sidebar_{db}")
        for i in range(SIDEBAR_CONVERSATIONS):
            procs.call("POST", f"{base}/api/conversations", conversation_body(i, 2),
                       token=owner.token)
        bearer = {"Authorization": f"Bearer {owner.token}"}
        query = (f"{{ conversations(first: {SIDEBAR_PAGE}) {{ edges {{ node {{ id title "
                 "updatedAt createdAt } } } }")
        faces = {
            "REST summary": {"kind": "http", "headers": bearer,
                             "url": f"{base}/api/conversations?view=summary"
                                    f"&limit={SIDEBAR_PAGE}"},
            "GraphQL titles": {"kind": "http", "method": "POST", "url": f"{base}/graphql",
                               "headers": bearer, "body": {"query": query},
                               "reject": '"errors"'},
        }
        for face, spec in faces.items():
            for c in SIDEBAR_LEVELS:
                self.add("sidebar", db, face, "titles", c,
                         self.measure({**spec, "concurrency": c}, pid))

    def connections(self, db: str, ctx: dict[str, Any]) -> None:
        assert self.load is not None
        reader: Account = ctx["reader"]
        if not (procs.SERVER_ROOT / "compat_ws.py").exists():
            for n in self.plan.ws_levels:
                self.add("connections", db, "WS /ws compat", "idle RSS", n,
                         {"note": "not measured (feature not present at this commit)"})
            return
        url = f"{ctx['base'].replace('http://', 'ws://')}/ws/{reader.user_id}?token={reader.token}"
        time.sleep(1.0)
        before = procs.rss_kib(ctx["pid"])
        held = 0
        for n in self.plan.ws_levels:
            result = self.load.run({"kind": "ws_hold", "url": url, "n": n - held})
            held = int(result.get("held", held))
            time.sleep(1.5)
            rss = procs.rss_kib(ctx["pid"])
            per = (rss - before) / held if held else None
            self.add("connections", db, "WS /ws compat", "idle RSS", n, {
                "held": held, "errors": result.get("errors"),
                "error_samples": result.get("error_samples"), "rss_mib": round(rss / 1024, 1),
                "rss_before_mib": round(before / 1024, 1),
                "kib_per_conn": round(per, 1) if per is not None else None})
        self.load.run({"kind": "ws_release"})
        time.sleep(1.0)

    def fanout(self, db: str, ctx: dict[str, Any]) -> None:
        assert self.load is not None
        reader: Account = ctx["reader"]
        n = self.plan.fanout_subscribers
        if not (procs.SERVER_ROOT / "compat_ws.py").exists():
            self.add("fanout", db, "WS /ws compat", "typing", n,
                     {"note": "not measured (feature not present at this commit)"})
            return
        conv = ctx["conversation"]
        url = (f"{ctx['base'].replace('http://', 'ws://')}/ws/{reader.user_id}"
               f"?token={reader.token}&conversation_id={conv}")
        self.add("fanout", db, "WS /ws compat", "typing", n, self.load.run(
            {"kind": "fanout", "url": url, "n": n, "rounds": self.plan.fanout_rounds,
             "message": {"conversation_id": conv}}))

    def memory(self, db: str, ctx: dict[str, Any]) -> None:
        """RSS idle, after each round of 1,000 streamed replies (SSE `/api/chat`, c=50, the
        0 ms model, no conversation: the reply logs and everything a reply leaves behind),
        and after `memory_idle` seconds without load."""
        reader: Account = ctx["reader"]
        pid = ctx["pid"]
        self.settle(pid)
        time.sleep(1.0)
        idle = procs.rss_kib(pid)
        spec = {"kind": "sse", "concurrency": 50, "count": 1000, "url": f"{ctx['base']}/api/chat",
                "server_pid": pid,
                "headers": {"Authorization": f"Bearer {reader.token}"},
                "body": {"messages": [{"role": "user", "content": "Say hi"}],
                         "model": "bench-0ms", "stream": True, "max_tokens": REPLY_TOKENS},
                "marker": '"chat_chunk"', "done": '"chat_complete"'}
        rounds: list[float] = []
        errors = 0
        samples: list[str] = []
        for _ in range(self.plan.memory_rounds):
            result = self.load.run(spec) if self.load else {}
            errors += int(result.get("errors") or 0)
            samples += (result.get("error_samples") or [])[:3 - len(samples)]
            self.settle(pid)
            rounds.append(round(procs.rss_kib(pid) / 1024, 1))
        time.sleep(self.plan.memory_idle)
        after = round(procs.rss_kib(pid) / 1024, 1)
        self.add("memory", db, "SSE /api/chat", "RSS", 50, {
            "rss_idle_mib": round(idle / 1024, 1), "rss_rounds_mib": rounds,
            "rss_after_idle_mib": after, "idle_wait_s": self.plan.memory_idle,
            "growth": round(rounds[-1] / rounds[0], 2), "back": round(after * 1024 / idle, 2),
            "replies": 1000 * len(rounds), "errors": errors, "error_samples": samples})

    def embedded(self) -> None:
        self.say("embedded model: through the server, then llama-cpp-python directly")
        data_dir = self.tmp / "embedded"
        env = procs.server_env(data_dir, "", self.upstream, embedded=True)
        server, base = self.start("server-embedded", "server:create_app", env, factory=True,
                                  health="/health")
        user = register(base, "embedded_user")
        runs = self.plan.embedded_runs
        spec = {"kind": "sse", "concurrency": 1, "count": runs, "warmup_ops": 1,
                "url": f"{base}/api/chat",
                "headers": {"Authorization": f"Bearer {user.token}"},
                "body": {"messages": [{"role": "user", "content": EMBEDDED_PROMPT}],
                         "model": EMBEDDED_MODEL, "stream": True, "temperature": 0,
                         "max_tokens": EMBEDDED_TOKENS},
                "marker": '"chat_chunk"', "done": '"chat_complete"', "timeout": 300}
        result = self.measure(spec, server.pid)
        self.stop(server)
        self.add("embedded", "sqlite", "server SSE", EMBEDDED_MODEL, 1, result)
        out = subprocess.run(
            procs.pinned([procs.PY, "-m", "bench.embedded", "--runs", str(runs + 1),
                          "--prompt", EMBEDDED_PROMPT, "--max-tokens", str(EMBEDDED_TOKENS)],
                         procs.SERVER_CORE),
            cwd=procs.ROOT, capture_output=True, text=True, timeout=600)
        try:
            direct = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            direct = {"error": out.stderr[-500:]}
        self.add("embedded", "-", "llama-cpp direct", EMBEDDED_MODEL, 1, direct)


    def retrieval(self) -> None:
        """recall@5 on the labelled set and latency at 10,000 chunks (bench/retrieval.py):
        full-text, and vector and hybrid where the database stores vectors (SQLite with
        sqlite-vec; PostgreSQL with pgvector: a pgserver of its own, as the system PostgreSQL
        has no pgvector)."""
        self.say("retrieval: recall@5 on bench/data/retrieval_set.json, latency at 10k chunks")
        runs = [(db, db) for db in self.args.db]
        if "postgres" in self.args.db:
            runs.append(("pgvector", "pgserver"))
        for db, how in runs:
            if db == "postgres" and not procs.pg_available():
                self.rows.append({"figure": "retrieval", "db": db, "face": "-", "op": "-",
                                  "concurrency": None, "note": "PostgreSQL not reachable"})
                continue
            url = procs.pg_create() if db == "postgres" else ""
            extra = ["--pgserver"] if how == "pgserver" else []
            try:
                out = subprocess.run(
                    procs.pinned([procs.PY, "-m", "bench.retrieval", "--url", url, *extra],
                                 procs.SERVER_CORE),
                    cwd=procs.ROOT, capture_output=True, text=True, timeout=900)
            finally:
                if url:
                    procs.pg_drop(url)
            try:
                result = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                result = {"error": out.stderr[-500:]}
            chunks = f"{result.get('chunks', '?')} chunks"
            self.add("retrieval", db, "full-text", chunks, 1, result)
            for mode in ("vector", "hybrid"):
                if f"{mode}_p50_ms" in result:
                    self.add("retrieval", db, mode, chunks, 1, {
                        "p50_ms": result[f"{mode}_p50_ms"], "p99_ms": result[f"{mode}_p99_ms"],
                        "cpu_ms": result.get(f"{mode}_cpu_ms"), "dims": result.get("dims"),
                        "vectors": result.get("vectors")})


def chunked(row: dict[str, Any]) -> None:
    """Our faces send the tokens that arrive together as one chunk: the load counted chunks,
    the replies are REPLY_TOKENS tokens each (the floors' rows count upstream tokens)."""
    if row.get("tokens_per_op") is not None and row.get("rps") is not None \
            and "chunks_per_op" not in row:
        row["chunks_per_op"] = row["tokens_per_op"]
        row["tokens_per_op"] = float(REPLY_TOKENS)
        row["tokens_per_s"] = round(row["rps"] * REPLY_TOKENS, 1)


# ---------------------------------------------------------------- machine and entry point


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=procs.ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--short", "--untracked-files=no"],
                           cwd=procs.ROOT, capture_output=True, text=True).stdout.split("\n")
    with open("/proc/loadavg") as handle:
        loadavg = handle.read().split()[:3]
    return {"nproc": procs.cores(), "cpu": cpu, "memory_gib": round(mem_kib / 1024**2, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "commit": commit, "modified_files": [d[3:] for d in dirty if d.strip()],
            "loadavg_at_start": loadavg,
            "taskset": bool(shutil.which("taskset"))}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure what users feel: REST/GraphQL CRUD, streaming chat, idle "
                    "WebSockets, typing fan-out and the embedded model, each beside its floor. "
                    "Starts real processes (server on CPU 0, load on CPU 1), prints a table and "
                    "writes bench/results/<date>.json and .png.")
    parser.add_argument("figures", nargs="*", metavar="figure",
                        help=f"any of {', '.join(FIGURES)} (default: all), or peers (LiteLLM "
                             "and Open WebUI beside our stream and sidebar rows; install them "
                             "first: `python -m bench.peers install`)")
    parser.add_argument("--quick", action="store_true", help="shorter points (a trial run)")
    parser.add_argument("--db", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres (default: both)")
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench" / "results",
                        help="where the JSON and PNG go")
    parser.add_argument("--name", help="file name stem (default: the date, plus the figures "
                                       "when only some are run)")
    parser.add_argument("--commit", metavar="REV",
                        help="bench the server of this commit (a `git archive` snapshot) "
                             "instead of the work tree as it is")
    parser.add_argument("--tree", type=Path, metavar="DIR",
                        help="bench the server found in this directory (e.g. a patched copy)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument("--idle", default="unknown",
                        help="say whether the machine was otherwise idle (recorded in the JSON)")
    args = parser.parse_args(argv)
    for figure in args.figures:
        if figure not in FIGURES + OPTIONAL:
            parser.error(f"unknown figure {figure!r} (choose from "
                         f"{', '.join(FIGURES + OPTIONAL)})")
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    for d in args.db:
        if d not in DBS:
            parser.error(f"unknown --db {d!r}")
    return args


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every child is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.time()
    run = Run(args)
    meta = machine()
    if args.commit:
        procs.SERVER_ROOT = procs.snapshot(args.commit, run.tmp / "tree")
        meta["commit"] = subprocess.run(["git", "rev-parse", "--short", args.commit],
                                        cwd=procs.ROOT, capture_output=True,
                                        text=True).stdout.strip()
        meta["modified_files"] = []
    elif args.tree:
        procs.SERVER_ROOT = args.tree.resolve()
        meta["commit"] = f"tree {procs.SERVER_ROOT}"
    meta.update(quick=args.quick, dbs=args.db, figures=args.figures or list(FIGURES),
                idle=args.idle, plan=run.plan.__dict__,
                started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    print(f"bench: {meta['nproc']} cores, {meta['cpu']}, {meta['memory_gib']} GiB, "
          f"commit {meta['commit']}, logs in {run.logdir}", flush=True)
    try:
        run.execute()
    finally:
        meta["seconds"] = round(time.time() - started, 1)
        report.evaluate(run.rows)
        stem = args.name or dt.date.today().isoformat() + (
            "-" + "-".join(args.figures) if args.figures else "")
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"meta": meta, "rows": run.rows}
        (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        table = report.markdown(run.rows)
        (args.out / f"{stem}.md").write_text(table + "\n")
        print("\n" + table)
        if not args.no_chart:
            report.chart(run.rows, args.out / f"{stem}.png")
        print(f"\nbench: {meta['seconds']:.0f} s; wrote {args.out / stem}.{{json,md,png}}")
