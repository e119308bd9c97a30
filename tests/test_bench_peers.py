"""`make bench-peers` plumbing that needs no peer installed: the ratios the table prints, the
figure's place outside the default run, and that a peer's whole process group is stopped."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench import cli, peers, report


def _row(figure: str, db: str, face: str, op: str, c: int, rps: float) -> dict[str, object]:
    return {"figure": figure, "db": db, "face": face, "op": op, "concurrency": c, "rps": rps}


def test_sidebar_is_judged_against_open_webui_in_the_same_run() -> None:
    rows = [
        _row("sidebar", "sqlite", "REST summary", "titles", 10, 500.0),
        _row("sidebar", "sqlite", "GraphQL titles", "titles", 10, 300.0),
        _row("sidebar", "-", "Open WebUI", "titles", 10, 200.0),
        _row("sidebar", "sqlite", "REST summary", "titles", 50, 450.0),  # no peer row at 50
    ]
    report.evaluate(rows)
    rest, gql, peer, alone = rows
    assert (rest["ratio"], rest["verdict"]) == (2.5, "PASS")
    assert (gql["ratio"], gql["verdict"]) == (1.5, "MISS")
    assert "Open WebUI" in str(rest["target"])
    assert alone["verdict"] == "—" and alone["ratio"] is None  # nothing to compare with
    assert "verdict" not in peer  # the peer itself has no target


def test_peer_stream_rows_carry_our_ratio_per_face() -> None:
    rows = [
        _row("stream", "-", "minimal relay", "0ms", 50, 1000.0),
        _row("stream", "sqlite", "SSE /api/chat", "0ms", 50, 400.0),
        _row("stream", "sqlite", "WS /ws compat", "0ms", 50, 600.0),
        _row("stream", "-", "LiteLLM proxy", "0ms", 50, 50.0),
        _row("stream", "-", "LiteLLM proxy", "0ms", 200, 40.0),  # we have no row at 200
    ]
    report.evaluate(rows)
    litellm, lonely = rows[3], rows[4]
    assert litellm["vs_ours"] == {"SSE sqlite": 8.0, "WS sqlite": 12.0}
    assert litellm["ratio"] == 8.0
    assert "SSE sqlite 8.0×" in report.markdown(rows)
    assert "vs_ours" not in lonely
    assert rows[1]["verdict"] == "PASS"  # ours still judged against the relay, not the peer


def test_peers_is_optional_and_brings_our_rows_along() -> None:
    assert "peers" not in cli.FIGURES  # `make bench` does not start peers
    assert cli.parse(["peers", "--quick"]).figures == ["peers"]


def test_peer_not_installed_is_a_note_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(peers, "PEERS_DIR", tmp_path / "none")
    run = cli.Run(cli.parse(["peers", "--quick"]))
    peers.figure(run)
    faces = {(r["face"], r["note"]) for r in run.rows}
    assert faces == {("LiteLLM proxy", "not installed"), ("Open WebUI API", "not installed"),
                     ("Open WebUI", "not installed")}


def test_a_peer_is_stopped_with_the_helpers_it_forked(tmp_path: Path) -> None:
    pidfile = tmp_path / "helper.pid"
    proc = peers.PeerProc("fork", ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"],
                          core=0, logdir=tmp_path)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    helper = int(pidfile.read_text())
    proc.stop()
    deadline = time.monotonic() + 10
    while _alive(helper):
        assert time.monotonic() < deadline, "the forked helper outlived its peer"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone for our purpose
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
