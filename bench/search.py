"""The `search` figure: GET /api/search latency for a user with 100,000 messages, beside the
size of the search index, on each database.

Seeds the searcher (100 conversations × 1,000 messages of English-like and Chinese text) and a
neighbour with 20,000 messages of the same kind (the index holds both; results must not), then
measures one query kind after another at concurrency 1: a common word, a short prefix, a rare
word, a Chinese phrase, two words, a quoted phrase, and a word nobody wrote. Target: p99 ≤ 50 ms.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.cli import Account, Run

CONVERSATIONS = 100
PER_CONVERSATION = 1_000
NEIGHBOUR_CONVERSATIONS = 20
OPS = 300
P99_TARGET_MS = 50.0

COMMON = ("the and to of a in is you that it for on with as this be are at we can have not "
          "your but what all will do if so about one my more time how some like just when "
          "out up make know them then see now want get way could first new because good "
          "project meeting hello quick brown fox report travel budget model python data").split()
HANZI = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之"
         "过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如"
         "前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明")
QUERIES = {
    "common word": "the",
    "short prefix": "pro",
    "rare word": "zephyrine",
    "chinese phrase": "你好",
    "two words": "quick report",
    "quoted phrase": '"brown fox"',
    "no hit": "qqqxzzv",
}


def _syllable_words(rng: random.Random, count: int) -> list[str]:
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(consonants) + rng.choice(vowels)
                          for _ in range(rng.randint(1, 4))))
    return sorted(words)


def message_text(rng: random.Random, vocabulary: list[str], weights: list[float]) -> str:
    words = rng.choices(vocabulary, weights=weights, k=rng.randint(8, 60))
    if rng.random() < 0.01:
        words.insert(rng.randrange(len(words) + 1), "zephyrine")
    text = " ".join(words).capitalize() + "."
    if rng.random() < 0.2:
        hanzi = "".join(rng.choice(HANZI) for _ in range(rng.randint(8, 30)))
        if rng.random() < 0.25:
            cut = rng.randrange(len(hanzi))
            hanzi = hanzi[:cut] + "你好" + hanzi[cut:]
        text += " " + hanzi + "。"
    return text


def conversations(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    vocabulary = COMMON + _syllable_words(rng, 5_000)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]  # Zipf-like
    return [{"title": f"Conversation {i}: " + " ".join(rng.choices(vocabulary[:300], k=4)),
             "model": "bench-0ms",
             "messages": [{"role": "user" if j % 2 == 0 else "assistant",
                           "content": message_text(rng, vocabulary, weights)}
                          for j in range(PER_CONVERSATION)]}
            for i in range(count)]


def index_size(db: str, url: str, data_dir: Path) -> dict[str, float]:
    """MiB of the search index, and of the messages table for scale."""
    if db == "sqlite":
        with sqlite3.connect(data_dir / "chat.db") as conn:
            def mib(pattern: str) -> float:
                size = conn.execute("SELECT coalesce(sum(pgsize), 0) FROM dbstat "
                                    "WHERE name LIKE ?", (pattern,)).fetchone()[0]
                return round(size / 2**20, 1)
            index = mib("message_search%") + mib("title_search%")
            return {"index_mib": round(index, 1), "messages_mib": mib("messages")}
    import asyncpg  # the bench's PostgreSQL figures already need it

    async def sizes() -> dict[str, float]:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ANALYZE")
            index = await conn.fetchval(
                "SELECT pg_relation_size('ix_messages_search') "
                "+ pg_relation_size('ix_conversations_search')")
            table = await conn.fetchval("SELECT pg_total_relation_size('messages') "
                                        "- pg_relation_size('ix_messages_search')")
            return {"index_mib": round(index / 2**20, 1), "messages_mib": round(table / 2**20, 1)}
        finally:
            await conn.close()

    return asyncio.run(sizes())


def figure(run: Run, db: str, base: str, pid: int, url: str, data_dir: Path) -> None:
    from bench.cli import register
    from bench.procs import call

    searcher: Account = register(base, f"searcher_{db}")
    neighbour: Account = register(base, f"neighbour_{db}")
    run.say(f"  search: seeding {CONVERSATIONS * PER_CONVERSATION:,} messages (+ "
            f"{NEIGHBOUR_CONVERSATIONS * PER_CONVERSATION:,} of a neighbour)")
    for body in conversations(13, CONVERSATIONS):
        call("POST", f"{base}/api/conversations", body, token=searcher.token)
    for body in conversations(31, NEIGHBOUR_CONVERSATIONS):
        call("POST", f"{base}/api/conversations", body, token=neighbour.token)
    sizes = index_size(db, url, data_dir)
    headers = {"Authorization": f"Bearer {searcher.token}"}
    for op, query in QUERIES.items():
        target = f"{base}/api/search?{urllib.parse.urlencode({'q': query, 'limit': 20})}"
        found = call("GET", target, token=searcher.token)
        spec = {"kind": "http", "concurrency": 1, "count": OPS, "warmup_ops": 10,
                "url": target, "headers": headers}
        run.add("search", db, "REST /api/search", op, 1, run.measure(spec, pid),
                results=len(found["results"]), **sizes)
