"""The vectors the fake OpenAI server's `POST /v1/embeddings` answers: deterministic and
meaningful enough to test retrieval with.

A text's vector is a hashed bag of its concepts: each word (lower case, function words
dropped, cut to its first six letters so "recalled" and "recall" agree) is first mapped
through a small table of synonyms onto one concept ("automobile", "car" and "vehicle" are one;
"repaired", "fixed" and "mended" are one), then hashed into one of `dims` signed buckets. Texts
sharing concepts point the same way; texts sharing none are nearly orthogonal. So a question
in other words than a document ("When was the car fixed?" against "The automobile was
repaired in June") is near it by vector while full-text finds nothing.
"""

from __future__ import annotations

import hashlib
import math
import re

DIMENSIONS = 256
WORD = re.compile(r"\w+")
FUNCTION_WORDS = frozenset(
    "a an and are as at be by did do does for from has have how in is it its of on or that "
    "the their there this to was were what when where which who why will with".split())
SYNONYMS = {
    **dict.fromkeys(["automobile", "car", "vehicle", "sedan"], "car"),
    **dict.fromkeys(["repaired", "fixed", "mended", "repair", "fix", "serviced"], "fix"),
    **dict.fromkeys(["physician", "doctor", "medic"], "doctor"),
    **dict.fromkeys(["feline", "cat", "kitten"], "cat"),
    **dict.fromkeys(["purchase", "buy", "bought", "acquired"], "buy"),
}


def concepts(text: str) -> list[str]:
    out = []
    for word in WORD.findall(text.lower()):
        if word in FUNCTION_WORDS:
            continue
        out.append(SYNONYMS.get(word, word[:6]))
    return out


def vector(text: str, dims: int = DIMENSIONS) -> list[float]:
    values = [0.0] * dims
    for concept in concepts(text):
        digest = hashlib.blake2b(concept.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dims
        values[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in values))
    if not norm:  # no concept at all: a fixed direction, not a zero vector
        values[0], norm = 1.0, 1.0
    return [round(x / norm, 6) for x in values]
