"""Prometheus metrics: the metric objects (a leaf module: it imports nothing of ours) and the
`/metrics` rendering.

Several workers: set PROMETHEUS_MULTIPROC_DIR to an empty directory (emptied at every start,
e.g. a tmpfs) before the workers start; each worker writes its samples there and a scrape of
any worker sums them. Without it every worker counts only its own requests, and a scrape
shows whichever worker answered.

Labels stay bounded: routes are templates (`/api/conversations/{conversation_id}`), models
come from the configured registry, and GraphQL operation names are capped (see
`operation_label`).
"""

from __future__ import annotations

import os
import re
import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests by route template, method and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request (for streams: until the stream ends).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GRAPHQL_OPERATIONS = Counter(
    "graphql_operations_total",
    "GraphQL operations by name, type and outcome (ok | error | rejected).",
    ["operation", "type", "outcome"],
)
GRAPHQL_LATENCY = Histogram(
    "graphql_operation_duration_seconds", "Time to execute a GraphQL operation.", ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBSOCKETS_OPEN = Gauge(
    "websocket_connections", "Open WebSocket connections (/ws and GraphQL), all workers.",
    multiprocess_mode="livemostrecent",
)
CHAT_REQUESTS = Counter("chat_requests_total", "Chat replies started, by model.", ["model"])
CHAT_ERRORS = Counter(
    "chat_errors_total", "Chat replies that failed, by model and error code.", ["model", "code"],
)
CHAT_INTERRUPTED = Counter(
    "chat_interrupted_total",
    "Replies closed as interrupted, by model and cause: worker_lost (the generating worker "
    "died; another one closed the reply) or shutdown (still running after the drain period).",
    ["model", "cause"],
)
CHAT_TIME_TO_FIRST_TOKEN = Histogram(
    "chat_time_to_first_token_seconds", "From the start of a reply to its first chunk.",
    ["model"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
CHAT_TOKENS_PER_SECOND = Histogram(
    "chat_tokens_per_second", "Completion tokens per second of generation, per reply.",
    ["model"], buckets=(1, 2, 5, 10, 20, 40, 80, 160, 320),
)
CHAT_TOKENS = Counter(
    "chat_tokens_total", "Tokens used, by model and kind (prompt | completion).",
    ["model", "kind"],
)
RATE_LIMITED = Counter(
    "rate_limited_total", "Requests refused by a rate limit or quota, by scope.", ["scope"],
)
CHAT_COST = Counter(
    "chat_cost_usd_micros_total", "What replies cost, in micro-dollars (USD × 10⁶), by model.",
    ["model"],
)
BUDGET_REFUSALS = Counter(
    "chat_budget_refusals_total",
    "Chat requests refused before generation because a budget could be overspent, by model "
    "and budget (user | key).", ["model", "budget"],
)
BODY_TOO_LARGE = Counter("http_request_body_too_large_total", "Request bodies refused (413).")

# GraphQL operation names are chosen by clients: past this many distinct names, new ones are
# counted as "other" so a client cannot grow the metrics without bound.
MAX_OPERATION_NAMES = 200
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_seen_names: set[str] = set()
_names_lock = threading.Lock()


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    if not _NAME_RE.fullmatch(name):
        return "other"
    with _names_lock:
        if name in _seen_names:
            return name
        if len(_seen_names) >= MAX_OPERATION_NAMES:
            return "other"
        _seen_names.add(name)
        return name


def render(open_websockets: int | None = None) -> tuple[bytes, str]:
    """The exposition text and its content type. `open_websockets` comes from the broker
    (counted across workers) and is read at scrape time."""
    if open_websockets is not None:
        WEBSOCKETS_OPEN.set(open_websockets)
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

# Files and retrieval (issue 16).
FILE_UPLOADS = Counter("file_uploads_total",
                       "File uploads, by outcome (stored | too_large | unsupported).",
                       ["outcome"])
FILE_EXTRACTION_FAILURES = Counter("file_extraction_failures_total",
                                   "Files whose text could not be extracted, by kind.", ["kind"])
IMAGE_FETCHES = Counter("image_fetches_total",
                        "Remote image URLs of chat messages fetched through the outbound guard, "
                        "by outcome (fetched | blocked | unreachable | timeout | too_large | "
                        "not_image | error).", ["outcome"])
RETRIEVAL_LATENCY = Histogram("retrieval_seconds",
                              "Time to retrieve the chunks of a chat request's files, by mode "
                              "(fulltext | vector | hybrid; the question's embedding excluded).",
                              ["mode"],
                              buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                       1.0, 2.5))
EMBEDDING_FAILURES = Counter("embedding_failures_total",
                             "Embeddings that failed, by stage (index: a file's passages, filled "
                             "later; query: a chat question, answered by full-text alone).",
                             ["stage"])
