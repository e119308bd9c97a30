"""The load generator: its own process (pinned to its own core), driven line by line.

    taskset -c 1 python -m bench.load      # reads one JSON spec per line, answers one JSON line

Kinds of spec (all carry `concurrency`, and `duration`/`warmup` seconds or `count`):
  http     one request per op; `method`, `url`, `headers`, `body`, `expect` (status),
           `reject` (bytes that must not be in the answer, e.g. GraphQL's "errors")
  sse      a streamed reply per op; `marker` (bytes counted as tokens), `done` (bytes that
           must arrive before the end); time to first token = first marker
  ws_chat  the /ws compat: one socket per worker, `chat` messages one after another
  sse and ws_chat take `conversations` (ids): worker i then sends `conversation_id`
           conversations[i] (the reply is stored), and the result counts every reply that
           ended with a stored `message_id` (`stored_replies`, warm-up and late ones too)
  gql_sub  GraphQL `chatStream` over graphql-transport-ws, one socket per worker
  ws_hold  open `n` authenticated idle /ws sockets and keep them (`ws_release` closes them)
  fanout   `n` sockets in one conversation; another socket types `rounds` times; the time
           from each send to each receipt of `user_typing`
Server CPU is read from /proc/<server_pid>/stat at the edges of the measured window, so
`cpu_ms_per_op` is what the server spent per completed operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def core_busy(core: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU core, from /proc/stat."""
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith(f"cpu{core} "):
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + values[4]
                return sum(values) - idle, sum(values)
    return 0, 1


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Outcome:
    ok: bool
    ttft: float | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    completed: int = 0  # every op that succeeded, warm-up and late ones included

    def add(self, latency: float, outcome: Outcome) -> None:
        if not outcome.ok:
            self.errors += 1
            if len(self.samples) < 3 and outcome.error:
                self.samples.append(outcome.error[:300])
            return
        self.latencies.append(latency)
        self.tokens += outcome.tokens
        if outcome.ttft is not None:
            self.ttfts.append(outcome.ttft)


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


class Marker:
    """Counts a byte marker in a stream that arrives in arbitrary pieces."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.tail = b""
        self.count = 0

    def feed(self, data: bytes) -> int:
        joined = self.tail + data
        found = joined.count(self.marker)
        self.count += found
        self.tail = joined[-(len(self.marker) - 1):] if len(self.marker) > 1 else b""
        return found


# ---------------------------------------------------------------- operations


Op = Callable[[], Awaitable[Outcome]]


def http_op(session: aiohttp.ClientSession, spec: dict[str, Any]) -> Op:
    method, url = spec.get("method", "GET"), spec["url"]
    headers = spec.get("headers") or {}
    data = json.dumps(spec["body"]).encode() if "body" in spec else None
    if data is not None:
        headers = {**headers, "Content-Type": "application/json"}
    expect = spec.get("expect", 200)
    reject = spec["reject"].encode() if spec.get("reject") else None

    async def op() -> Outcome:
        async with session.request(method, url, headers=headers, data=data) as resp:
            body = await resp.read()
            if resp.status != expect:
                return Outcome(False, error=f"HTTP {resp.status}: {body[:200]!r}")
            if reject is not None and reject in body:
                return Outcome(False, error=body[:300].decode("utf-8", "replace"))
            return Outcome(True)

    return op


def sse_op(session: aiohttp.ClientSession, spec: dict[str, Any],
           conversation_id: str | None = None) -> Op:
    url, headers = spec["url"], {**(spec.get("headers") or {}),
                                 "Content-Type": "application/json"}
    body = spec["body"] if conversation_id is None else {
        **spec["body"], "conversation_id": conversation_id}
    data = json.dumps(body).encode()
    marker, done = spec["marker"].encode(), spec["done"].encode()
    stored = Marker(b'"message_id"')

    async def op() -> Outcome:
        started = time.perf_counter()
        ttft = None
        tokens = Marker(marker)
        ending = Marker(done)
        async with session.post(url, headers=headers, data=data) as resp:
            if resp.status != 200:
                return Outcome(False, error=f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
            async for piece in resp.content.iter_any():
                if tokens.feed(piece) and ttft is None:
                    ttft = time.perf_counter() - started
                ending.feed(piece)
                stored.feed(piece)
        if not ending.count:
            return Outcome(False, error="stream ended without its end marker")
        return Outcome(True, ttft, tokens.count)

    op.stored = lambda: stored.count  # type: ignore[attr-defined]
    return op


async def ws_chat_worker(session: aiohttp.ClientSession, spec: dict[str, Any],
                         conversation_id: str | None = None
                         ) -> Callable[[], Awaitable[Outcome]]:
    ws = await session.ws_connect(spec["url"], heartbeat=None, max_msg_size=0)
    base = spec["message"] if conversation_id is None else {
        **spec["message"], "conversation_id": conversation_id}
    stored = [0]

    async def op() -> Outcome:
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        await ws.send_str(json.dumps({**base, "request_id": request_id}))
        ttft, tokens = None, 0
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return Outcome(False, error=f"socket {msg.type.name}: {msg.data!r}")
            event = json.loads(msg.data)
            kind = event.get("type")
            if event.get("request_id") not in (None, request_id):
                continue
            if kind == "chat_chunk":
                tokens += 1
                if ttft is None:
                    ttft = time.perf_counter() - started
            elif kind == "chat_complete":
                if event.get("message_id"):
                    stored[0] += 1
                return Outcome(True, ttft, tokens)
            elif kind == "error":
                return Outcome(False, error=msg.data[:300])

    op.close = ws.close  # type: ignore[attr-defined]
    op.stored = lambda: stored[0]  # type: ignore[attr-defined]
    return op


GQL_CHAT = """subscription Chat($input: ChatInput!) {
  chatStream(input: $input) {
    __typename
    ... on ChatChunk { content }
    ... on ChatComplete { tokens model }
    ... on ChatError { code message }
  }
}"""


async def gql_sub_worker(session: aiohttp.ClientSession,
                         spec: dict[str, Any]) -> Callable[[], Awaitable[Outcome]]:
    ws = await session.ws_connect(spec["url"], protocols=("graphql-transport-ws",),
                                  heartbeat=None, max_msg_size=0)
    await ws.send_str(json.dumps({"type": "connection_init",
                                  "payload": {"Authorization": f"Bearer {spec['token']}"}}))
    ack = json.loads((await ws.receive()).data)
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"no connection_ack: {ack}")
    variables = {"input": spec["input"]}

    async def op() -> Outcome:
        sub_id = uuid.uuid4().hex
        started = time.perf_counter()
        await ws.send_str(json.dumps({"id": sub_id, "type": "subscribe", "payload": {
            "query": GQL_CHAT, "variables": variables}}))
        ttft, tokens, complete = None, 0, False
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return Outcome(False, error=f"socket {msg.type.name}: {msg.data!r}")
            message = json.loads(msg.data)
            kind = message.get("type")
            if kind == "ping":
                await ws.send_str('{"type":"pong"}')
                continue
            if message.get("id") != sub_id:
                continue
            if kind == "next":
                payload = message.get("payload") or {}
                if payload.get("errors"):
                    return Outcome(False, error=json.dumps(payload["errors"])[:300])
                event = (payload.get("data") or {}).get("chatStream") or {}
                typename = event.get("__typename")
                if typename == "ChatChunk":
                    tokens += 1
                    if ttft is None:
                        ttft = time.perf_counter() - started
                elif typename == "ChatComplete":
                    complete = True
                elif typename == "ChatError":
                    return Outcome(False, error=json.dumps(event)[:300])
            elif kind == "complete":
                return Outcome(complete, ttft, tokens,
                               None if complete else "completed without ChatComplete")
            elif kind == "error":
                return Outcome(False, error=json.dumps(message)[:300])

    op.close = ws.close  # type: ignore[attr-defined]
    return op


# ---------------------------------------------------------------- closed-loop runs


def new_session(spec: dict[str, Any]) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=spec.get("timeout", 120)),
        # Identity: our numbers compare servers, not gzip levels (a spec may ask for gzip).
        headers={"Accept-Encoding": spec.get("accept_encoding", "identity")},
    )


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["kind"]
    concurrency = int(spec["concurrency"])
    server_pid = spec.get("server_pid")
    server_core = spec.get("server_core", 0)
    async with new_session(spec) as session:
        makers: list[Callable[[], Awaitable[Outcome]]] = []
        # Stored replies: worker i writes into conversations[i] (its own, like a user).
        conversations = spec.get("conversations") or []
        own = [conversations[i % len(conversations)] if conversations else None
               for i in range(concurrency)]
        if kind == "http":
            makers = [http_op(session, spec)] * concurrency
        elif kind == "sse":
            makers = ([sse_op(session, spec, cid) for cid in own] if conversations
                      else [sse_op(session, spec)] * concurrency)
        else:
            if kind == "ws_chat":
                opening = [ws_chat_worker(session, spec, cid) for cid in own]
            else:
                opening = [gql_sub_worker(session, spec) for _ in range(concurrency)]
            opened = await asyncio.gather(*opening, return_exceptions=True)
            failed = [o for o in opened if isinstance(o, BaseException)]
            if failed:
                for o in opened:
                    if not isinstance(o, BaseException):
                        await o.close()  # type: ignore[attr-defined]
                return {"error": f"{len(failed)} sockets failed to open: {failed[0]!r}"}
            makers = list(opened)  # type: ignore[arg-type]
        stats = Stats()
        count = spec.get("count")
        late = []
        edges: dict[str, Any] = {}

        def mark(name: str) -> None:
            edges[name] = (time.perf_counter(),
                           cpu_seconds(server_pid) if server_pid else 0.0,
                           core_busy(server_core), core_busy(int(spec.get("load_core", 1))))

        deadline = [float("inf")]

        async def safe(op: Callable[[], Awaitable[Outcome]]) -> Outcome:
            try:
                return await asyncio.wait_for(op(), deadline[0] - time.perf_counter())
            except TimeoutError:
                return Outcome(False, error="unfinished 10 s after the window ended")
            except Exception as exc:  # a failed op is counted, the run goes on
                return Outcome(False, error=f"{type(exc).__name__}: {exc}")

        if count:  # fixed number of ops per worker, all measured (slow ops such as login)
            per_worker = max(1, int(count) // concurrency)

            async def counted(op: Callable[[], Awaitable[Outcome]]) -> None:
                for _ in range(per_worker):
                    t0 = time.perf_counter()
                    outcome = await safe(op)
                    stats.completed += outcome.ok
                    stats.add(time.perf_counter() - t0, outcome)

            # Unrecorded first ops (e.g. the embedded model's cold first reply).
            for _ in range(int(spec.get("warmup_ops", 0))):
                for outcome in await asyncio.gather(*(safe(op) for op in makers)):
                    stats.completed += outcome.ok
            mark("start")
            await asyncio.gather(*(counted(op) for op in makers))
            mark("end")
        else:
            warmup, duration = float(spec.get("warmup", 1.0)), float(spec["duration"])
            begin = time.perf_counter()
            late: list[tuple[float, bool, str | None]] = []
            window = (begin + warmup, begin + warmup + duration)
            deadline[0] = window[1] + 10.0  # stuck ops are given up (and counted) after this

            async def looped(op: Callable[[], Awaitable[Outcome]]) -> None:
                while time.perf_counter() < window[1]:
                    t0 = time.perf_counter()
                    outcome = await safe(op)
                    stats.completed += outcome.ok
                    t1 = time.perf_counter()
                    if window[0] <= t1 <= window[1]:
                        stats.add(t1 - t0, outcome)
                    elif t1 > window[1]:  # still running at the end: slow, or stuck
                        late.append((t1 - t0, outcome.ok, outcome.error))

            async def edges_at() -> None:
                await asyncio.sleep(warmup)
                mark("start")
                await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
                mark("end")

            await asyncio.gather(edges_at(), *(looped(op) for op in makers))
        stored_replies = sum(op.stored() for op in makers  # type: ignore[attr-defined]
                             ) if conversations else None
        completed = stats.completed
        for op in makers:
            close = getattr(op, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
    (t0, cpu0, srv0, ld0), (t1, cpu1, srv1, ld1) = edges["start"], edges["end"]
    elapsed = t1 - t0
    done = len(stats.latencies)
    late_failed = [e for _s, ok, e in late if not ok]
    return {
        "n": done, "errors": stats.errors + len(late_failed),
        "error_samples": stats.samples + [e[:300] for e in late_failed[:3] if e],
        "late": len(late), "late_max_ms": ms(max((s for s, _o, _e in late), default=None)),
        "seconds": round(elapsed, 3),
        "rps": round(done / elapsed, 2) if elapsed > 0 else None,
        "p50_ms": ms(percentile(stats.latencies, 50)),
        "p99_ms": ms(percentile(stats.latencies, 99)),
        "ttft_p50_ms": ms(percentile(stats.ttfts, 50)),
        "ttft_p99_ms": ms(percentile(stats.ttfts, 99)),
        "tokens_per_s": round(stats.tokens / elapsed, 1) if stats.tokens else None,
        "tokens_per_op": round(stats.tokens / done, 1) if done and stats.tokens else None,
        "cpu_ms_per_op": round((cpu1 - cpu0) * 1000 / done, 3) if done and server_pid else None,
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1) if server_pid else None,
        "server_core_pct": round(100 * (srv1[0] - srv0[0]) / max(1, srv1[1] - srv0[1]), 1),
        "load_core_pct": round(100 * (ld1[0] - ld0[0]) / max(1, ld1[1] - ld0[1]), 1),
        **({"stored_replies": stored_replies, "completed_replies": completed}
           if stored_replies is not None else {}),
    }


# ---------------------------------------------------------------- sockets


class Held:
    """Idle sockets kept open between two specs (ws_hold ... ws_release)."""

    session: ClassVar[aiohttp.ClientSession | None] = None
    sockets: ClassVar[list[aiohttp.ClientWebSocketResponse]] = []
    readers: ClassVar[list[asyncio.Task[None]]] = []


async def _drain(ws: aiohttp.ClientWebSocketResponse,
                 on_text: Callable[[str], None] | None = None) -> None:
    # Reading keeps control frames (server pings) answered; an idle socket must stay alive.
    with contextlib.suppress(Exception):
        async for msg in ws:
            if on_text is not None and msg.type == aiohttp.WSMsgType.TEXT:
                on_text(msg.data)


async def open_ws(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """Connect and wait for a pong, so the socket is accepted and authenticated."""
    ws = await session.ws_connect(url, heartbeat=None, autoping=True)
    await ws.send_str('{"type":"ping"}')
    while True:
        msg = await asyncio.wait_for(ws.receive(), 30)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket {msg.type.name} before pong: {msg.data!r}")
        if json.loads(msg.data).get("type") == "pong":
            return ws


async def open_many(session: aiohttp.ClientSession, urls: list[str],
                    parallel: int = 100) -> tuple[list[aiohttp.ClientWebSocketResponse],
                                                  list[str]]:
    gate = asyncio.Semaphore(parallel)
    errors: list[str] = []

    async def one(url: str) -> aiohttp.ClientWebSocketResponse | None:
        async with gate:
            try:
                return await open_ws(session, url)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return None

    opened = await asyncio.gather(*(one(u) for u in urls))
    return [ws for ws in opened if ws is not None], errors


async def ws_hold(spec: dict[str, Any]) -> dict[str, Any]:
    if Held.session is None:
        Held.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                    timeout=aiohttp.ClientTimeout(total=None))
    started = time.perf_counter()
    urls = [spec["url"]] * int(spec["n"])
    sockets, errors = await open_many(Held.session, urls)
    Held.sockets += sockets
    Held.readers += [asyncio.create_task(_drain(ws)) for ws in sockets]
    return {"opened": len(sockets), "held": len(Held.sockets), "errors": len(errors),
            "error_samples": errors[:3], "seconds": round(time.perf_counter() - started, 2)}


async def ws_release(_spec: dict[str, Any]) -> dict[str, Any]:
    closed = len(Held.sockets)
    await asyncio.gather(*(ws.close() for ws in Held.sockets), return_exceptions=True)
    for task in Held.readers:
        task.cancel()
    Held.sockets, Held.readers = [], []
    if Held.session is not None:
        await Held.session.close()
        Held.session = None
    return {"closed": closed}


async def fanout(spec: dict[str, Any]) -> dict[str, Any]:
    n, rounds = int(spec["n"]), int(spec.get("rounds", 10))
    latencies: list[float] = []
    state = {"sent": 0.0, "got": 0}
    round_done = asyncio.Event()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                    timeout=aiohttp.ClientTimeout(total=None))
    try:
        receivers, errors = await open_many(session, [spec["url"]] * n)
        sender, _ = await open_many(session, [spec["url"]])
        if len(receivers) < n or not sender:
            return {"error": f"opened {len(receivers)}/{n} sockets", "error_samples": errors[:3]}

        def on_text(data: str) -> None:
            if '"user_typing"' in data:
                latencies.append(time.perf_counter() - state["sent"])
                state["got"] += 1
                if state["got"] >= n:
                    round_done.set()

        readers = [asyncio.create_task(_drain(ws, on_text)) for ws in receivers]
        sender_reader = asyncio.create_task(_drain(sender[0]))
        missed = 0
        await asyncio.sleep(0.5)
        message = json.dumps({"type": "typing", **spec.get("message", {})})
        for _ in range(rounds):
            state["got"] = 0
            round_done.clear()
            state["sent"] = time.perf_counter()
            await sender[0].send_str(message)
            try:
                await asyncio.wait_for(round_done.wait(), spec.get("round_timeout", 3.0))
            except TimeoutError:
                missed += n - int(state["got"])
            await asyncio.sleep(spec.get("gap", 0.3))
        for task in [*readers, sender_reader]:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in [*receivers, *sender]),
                             return_exceptions=True)
    finally:
        await session.close()
    return {"n": len(latencies), "subscribers": n, "rounds": rounds, "missed": missed,
            "p50_ms": ms(percentile(latencies, 50)), "p99_ms": ms(percentile(latencies, 99)),
            "max_ms": ms(max(latencies) if latencies else None)}


HANDLERS: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "http": run_load, "sse": run_load, "ws_chat": run_load, "gql_sub": run_load,
    "ws_hold": ws_hold, "ws_release": ws_release, "fanout": fanout,
}


async def serve() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        spec = json.loads(line)
        try:
            result = await HANDLERS[spec["kind"]](spec)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main() -> None:
    import uvloop

    uvloop.run(serve())


if __name__ == "__main__":
    main()
