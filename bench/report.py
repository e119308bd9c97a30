"""Targets (PASS/MISS beside each figure), the table, the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (figure, face, op or None) -> (the floor's face, the ratio needed)
RATIO_TARGETS: dict[tuple[str, str, str | None], tuple[str, float]] = {
    ("crud", "REST", "list"): ("bare", 0.6),
    ("crud", "GraphQL", "list"): ("bare", 0.45),
    ("crud", "GraphQL", "titles"): ("bare", 0.7),
}
# Other servers measured in the same run (bench/peers.py): their rows carry db "-" and our
# ratio to them; no target of theirs.
PEER_FACES = {"stream": ("LiteLLM proxy", "Open WebUI API"), "sidebar": ("Open WebUI",)}
# Issue 11: every face of ours in the sidebar figure (the first 60 titles of 200) at ≥ 2× Open
# WebUI's `GET /api/v1/chats/?page=1` at the same concurrency (`make bench-peers`).
SIDEBAR_VS_OPENWEBUI = 2.0
OUR_STREAM_FACES = {"SSE /api/chat": "SSE", "WS /ws compat": "WS", "GraphQL chatStream": "GQL"}
# Streamed replies (issue 11), to the minimal relay at the same spacing and concurrency:
# (face, spacing, concurrency) -> (ratio needed, server CPU ms per reply at most, or None).
# c=1 has no target.
STREAM_FLOOR = "minimal relay"
STREAM_TARGETS: dict[tuple[str, str, int], tuple[float, float | None]] = {
    **{(face, "0ms", c): (0.5, 2.5) for face in ("SSE /api/chat", "WS /ws compat")
       for c in (50, 200)},
    **{("GraphQL chatStream", "0ms", c): (0.35, None) for c in (50, 200)},
    **{(face, "5ms", c): (need, None)
       for face in ("SSE /api/chat", "WS /ws compat", "GraphQL chatStream")
       for c, need in ((50, 0.9), (200, 0.6))},
}
# Stored replies (`conversation_id`) with their real-time push, c=50, SQLite: replies/s, no
# errors, and every reply a client saw complete found in the database afterwards.
PERSIST_RPS = 150.0
FANOUT_P99_MS = 50.0
SEARCH_P99_MS = 50.0
WS_KIB_PER_CONN = 25.0
# RSS after the last round ≤ this × after the first; after the idle wait ≤ this × idle.
MEMORY_GROWTH = 1.3
EMBEDDED_RATIO = 0.9


def _find(rows: list[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in want.items()):
            return row
    return None


def _verdict(row: dict[str, Any], target: str, ok: bool | None, ratio: float | None) -> None:
    row["target"] = target
    row["ratio"] = None if ratio is None else round(ratio, 2)
    row["verdict"] = "—" if ok is None else ("PASS" if ok else "MISS")


def evaluate(rows: list[dict[str, Any]]) -> None:
    """Mark each row that has a target with `target`, `ratio` and PASS/MISS."""
    for row in rows:
        if row.get("note") or row.get("error"):
            continue
        figure, face, op = row["figure"], row["face"], row["op"]
        key = (figure, face, op) if (figure, face, op) in RATIO_TARGETS else (figure, face, None)
        if key in RATIO_TARGETS:
            floor_face, need = RATIO_TARGETS[key]
            floor_db = "-" if figure == "stream" else row["db"]
            floor = _find(rows, figure=figure, face=floor_face, op=op, db=floor_db,
                          concurrency=row["concurrency"])
            # Nothing completed (rps 0) against a working floor is a ratio of 0: a MISS.
            ratio = (row["rps"] / floor["rps"]) if floor and floor.get("rps") and row.get(
                "rps") is not None else None
            _verdict(row, f"≥{need}× {floor_face}", None if ratio is None else ratio >= need,
                     ratio)
        elif figure == "sidebar" and face not in PEER_FACES["sidebar"]:
            peer = _find(rows, figure="sidebar", face=PEER_FACES["sidebar"][0],
                         concurrency=row["concurrency"])
            ratio = (row["rps"] / peer["rps"]) if peer and peer.get("rps") and row.get(
                "rps") is not None else None
            _verdict(row, f"≥{SIDEBAR_VS_OPENWEBUI:g}× Open WebUI ?page=1",
                     None if ratio is None else ratio >= SIDEBAR_VS_OPENWEBUI, ratio)
        elif figure == "stream" and (face, op, row["concurrency"]) in STREAM_TARGETS:
            need, cpu_max = STREAM_TARGETS[(face, op, row["concurrency"])]
            floor = _find(rows, figure=figure, face=STREAM_FLOOR, op=op, db="-",
                          concurrency=row["concurrency"])
            ratio = (row["rps"] / floor["rps"]) if floor and floor.get("rps") and row.get(
                "rps") is not None else None
            ok = None if ratio is None else ratio >= need
            target = f"≥{need}× {STREAM_FLOOR}"
            if cpu_max is not None:
                target += f", ≤{cpu_max} ms CPU"
                cpu = row.get("cpu_ms_per_op")
                if ok is not None:
                    ok = ok and cpu is not None and cpu <= cpu_max
            _verdict(row, target, ok, ratio)
        elif figure == "persist" and row.get("rps") is not None:
            # Stored ≥ completed: a reply a client gave up on is still stored (it survives
            # the client), so the database may hold more than the clients saw end.
            ok = (row["rps"] >= PERSIST_RPS and not row.get("errors")
                  and (row.get("stored_messages") or 0) >= (row.get("completed_replies") or 0))
            _verdict(row, f"≥{PERSIST_RPS:.0f}/s, 0 errors, all stored",
                     ok if row["db"] == "sqlite" else None, None)
            if row["db"] != "sqlite":
                row["target"] = ""
        elif figure == "fanout" and row.get("p99_ms") is not None:
            _verdict(row, f"p99 ≤ {FANOUT_P99_MS:.0f} ms",
                     row["p99_ms"] <= FANOUT_P99_MS and not row.get("missed"), None)
        elif figure == "search" and row.get("p99_ms") is not None:
            _verdict(row, f"p99 ≤ {SEARCH_P99_MS:.0f} ms", row["p99_ms"] <= SEARCH_P99_MS, None)
        elif figure == "connections" and row.get("kib_per_conn") is not None:
            _verdict(row, f"≤ {WS_KIB_PER_CONN:.0f} KiB/conn",
                     row["kib_per_conn"] <= WS_KIB_PER_CONN, None)
        elif figure == "memory" and row.get("rss_rounds_mib"):
            rounds = row["rss_rounds_mib"]
            growth = rounds[-1] / rounds[0]
            back = row["rss_after_idle_mib"] / row["rss_idle_mib"]
            row["growth"], row["back"] = round(growth, 2), round(back, 2)
            _verdict(row, f"last/first round ≤ {MEMORY_GROWTH}×, after idle ≤ {MEMORY_GROWTH}× "
                     "idle", growth <= MEMORY_GROWTH and back <= MEMORY_GROWTH
                     and not row.get("errors"), None)
        elif figure == "embedded" and face == "server SSE":
            direct = _find(rows, figure="embedded", face="llama-cpp direct")
            ratio = (row["tokens_per_s"] / direct["tokens_per_s"]) if direct and direct.get(
                "tokens_per_s") and row.get("tokens_per_s") else None
            _verdict(row, f"≥{EMBEDDED_RATIO}× direct tok/s",
                     None if ratio is None else ratio >= EMBEDDED_RATIO, ratio)
    _versus_peers(rows)


def _versus_peers(rows: list[dict[str, Any]]) -> None:
    """On each peer's streaming row: our replies/s over its, per face and database
    (`vs_ours`, shown in the notes); the ratio column holds our SSE /api/chat on the first
    database measured."""
    for row in rows:
        if row["figure"] != "stream" or row["face"] not in PEER_FACES["stream"] \
                or not row.get("rps"):
            continue
        ours = {}
        for mine in rows:
            if (mine["figure"], mine["op"], mine.get("concurrency")) == (
                    "stream", row["op"], row["concurrency"]) and mine["face"] in \
                    OUR_STREAM_FACES and mine.get("rps") is not None:
                ours[f"{OUR_STREAM_FACES[mine['face']]} {mine['db']}"] = round(
                    mine["rps"] / row["rps"], 2)
        if ours:
            row["vs_ours"] = ours
            sse = next((v for k, v in ours.items() if k.startswith("SSE ")), None)
            _verdict(row, "our SSE ÷ this", None, sse)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _other(row: dict[str, Any]) -> str:
    bits = []
    if row.get("kib_per_conn") is not None:
        bits.append(f"{row['kib_per_conn']} KiB/conn, RSS {row['rss_before_mib']}→"
                    f"{row['rss_mib']} MiB, held {row['held']}")
    if row.get("rss_rounds_mib"):
        rounds = row["rss_rounds_mib"]
        bits.append(f"RSS idle {row['rss_idle_mib']} MiB, after round 1 {rounds[0]}, round "
                    f"{len(rounds)} {rounds[-1]} ({row.get('growth', '?')}×), after "
                    f"{row['idle_wait_s']:.0f} s idle {row['rss_after_idle_mib']} "
                    f"({row.get('back', '?')}× idle)")
    if row.get("subscribers"):
        bits.append(f"{row['n']} receipts, missed {row.get('missed', 0)}, "
                    f"max {row.get('max_ms')} ms")
    if row.get("index_mib") is not None:
        bits.append(f"index {row['index_mib']} MiB (messages {row['messages_mib']} MiB), "
                    f"{row.get('results')} results")
    if row.get("chunks_per_op"):
        bits.append(f"{row['chunks_per_op']} chunks/reply")
    elif row.get("tokens_per_op"):
        bits.append(f"{row['tokens_per_op']} tok/reply")
    if row.get("stored_messages") is not None:
        bits.append(f"stored {row['stored_messages']} of {row.get('completed_replies')} "
                    "completed replies")
    if row.get("recall_at_5") is not None:
        bits.append(f"recall@5 {row['recall_at_5']} ({row['questions']} questions)")
    if row.get("server_core_pct") is not None and row.get("rps") is not None:
        bits.append(f"CPU0 {row['server_core_pct']:.0f}% CPU1 {row['load_core_pct']:.0f}%")
    if row.get("late") and (not row.get("n") or row["late_max_ms"] > 2 * (row.get("p99_ms") or 0)):
        bits.append(f"{row['late']} ops ended after the window (max {row['late_max_ms']} ms)")
    if row.get("vs_ours"):
        bits.append("ours ÷ this: " + ", ".join(f"{k} {v}×" for k, v in row["vs_ours"].items()))
    if row.get("errors"):
        sample = (row.get("error_samples") or [""])[0]
        bits.append(f"**{row['errors']} errors** ({sample[:80]})")
    if row.get("error"):
        bits.append(f"error: {row['error'][:120]}")
    if row.get("note"):
        bits.append(row["note"])
    return "; ".join(bits)


HEADER = ("| figure | db | face | op | c | req/s | p50 ms | p99 ms | TTFT p50/p99 ms | tok/s "
          "| server CPU ms/op | notes | target | ratio | verdict |")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [HEADER, "|" + "---|" * 15]
    for row in rows:
        ttft = (f"{_fmt(row.get('ttft_p50_ms'))} / {_fmt(row.get('ttft_p99_ms'))}"
                if row.get("ttft_p50_ms") is not None else "")
        lines.append("| " + " | ".join([
            row["figure"], row["db"], row["face"], row["op"], _fmt(row.get("concurrency")),
            _fmt(row.get("rps")), _fmt(row.get("p50_ms")), _fmt(row.get("p99_ms")), ttft,
            _fmt(row.get("tokens_per_s"), 0), _fmt(row.get("cpu_ms_per_op"), 2), _other(row),
            row.get("target", ""), _fmt(row.get("ratio"), 2), row.get("verdict", ""),
        ]) + " |")
    return "\n".join(lines)


def line(row: dict[str, Any]) -> str:
    """One row as a progress line while the run goes."""
    text = f"{row['figure']:<11} {row['db']:<8} {row['face']:<20} {row['op']:<12} " \
           f"c={_fmt(row.get('concurrency')):<5}"
    if row.get("rps") is not None:
        text += (f" {row['rps']:>9,.1f}/s p50 {_fmt(row.get('p50_ms'))}"
                 f" p99 {_fmt(row.get('p99_ms'))}")
    if row.get("ttft_p50_ms") is not None:
        text += f" ttft {row['ttft_p50_ms']}"
    if row.get("cpu_ms_per_op") is not None:
        text += f" cpu {row['cpu_ms_per_op']} ms/op"
    other = _other(row)
    return text + (f"  [{other}]" if other else "")


def rerender(path: Path) -> None:
    """Re-evaluate a results JSON and rewrite its .md and .png (after changing a target)."""
    import json

    doc = json.loads(path.read_text())
    for row in doc["rows"]:
        for key in ("target", "ratio", "verdict"):
            row.pop(key, None)
    evaluate(doc["rows"])
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    path.with_suffix(".md").write_text(markdown(doc["rows"]) + "\n")
    chart(doc["rows"], path.with_suffix(".png"))


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    crud = [r for r in rows if r["figure"] == "crud" and r.get("p99_ms") is not None
            and r["op"] != "list (gzip)"]
    dbs = sorted({r["db"] for r in crud})

    ax = axes[0][0]
    for db in dbs:
        for face in ("REST", "GraphQL", "bare"):
            for op in ("list", "get", "create"):
                pts = sorted((r["concurrency"], r["p99_ms"]) for r in crud
                             if r["db"] == db and r["face"] == face and r["op"] == op)
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o",
                            linestyle="-" if db == "sqlite" else "--",
                            label=f"{face} {op} ({db})")
    ax.set(title="CRUD p99 latency vs concurrency", xlabel="concurrency", ylabel="p99 ms",
           xscale="log", yscale="log")
    ax.legend(fontsize=6, ncol=2)

    ax = axes[0][1]
    top = max((r["concurrency"] for r in crud), default=0)
    labels, values = [], []
    for db in dbs:
        for face in ("bare", "REST", "GraphQL"):
            for op in ("list", "get", "create", "login"):
                r = _find(crud, db=db, face=face, op=op, concurrency=top)
                if r and r.get("rps"):
                    labels.append(f"{face} {op}\n{db}")
                    values.append(r["rps"])
    ax.barh(range(len(values)), values)
    ax.set_yticks(range(len(values)), labels, fontsize=6)
    ax.set(title=f"CRUD throughput per face at c={top}", xlabel="requests/s", xscale="log")

    stream = [r for r in rows if r["figure"] == "stream" and r.get("rps") is not None]
    for ax, spacing, key, title in (
        (axes[1][0], "0ms", "rps", "50-token replies/s vs concurrency (0 ms spacing)"),
        (axes[1][1], "5ms", "ttft_p99_ms", "time to first token p99 (5 ms spacing)"),
    ):
        for face in ("upstream (direct)", "minimal relay", "SSE /api/chat", "WS /ws compat",
                     "GraphQL chatStream", *PEER_FACES["stream"]):
            for db in sorted({r["db"] for r in stream}):
                pts = sorted((r["concurrency"], r[key]) for r in stream
                             if r["face"] == face and r["op"] == spacing and r["db"] == db
                             and r.get(key) is not None)
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o",
                            label=face if db == "-" else f"{face} ({db})")
        ax.set(title=title, xlabel="concurrency", xscale="log", yscale="log",
               ylabel="replies/s" if key == "rps" else "ms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    rerender(Path(sys.argv[1]))
