"""How text is cut into searchable words, the same for what is stored and what is asked.

Latin-script (and most other) text is split into words at anything that is not a letter,
digit or mark. Chinese, Japanese and Korean are written without spaces, so every CJK character
is a word of its own: a phrase of them ("你好") then matches adjacent characters anywhere, which
neither SQLite's default FTS5 tokenizer nor PostgreSQL's parsers do by themselves (they see
"我说你好世界" as one word).

SQLite computes the indexed text with `index_text` (registered on every connection as the SQL
function `chat_search_text`, used by the index triggers); PostgreSQL with an SQL function of
the same name created by the migration, over the same character ranges (`CJK_RANGES`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Han (with extensions and compatibility ideographs), kana, Hangul, CJK punctuation-free blocks.
CJK_RANGES = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002fa1f"  # CJK extensions B-F, compatibility supplement
)
_CJK = re.compile(f"([{CJK_RANGES}])")
SQL_FUNCTION = "chat_search_text"


def is_cjk(char: str) -> bool:
    return _CJK.fullmatch(char) is not None


def index_text(text: str | None) -> str | None:
    """The text as the index sees it: each CJK character set apart by spaces."""
    if text is None:
        return None
    return _CJK.sub(r" \1 ", text)


def is_word_char(char: str) -> bool:
    """Letters and digits make words (FTS5 unicode61's default categories `L* N* Co`, and
    PostgreSQL's `[[:alnum:]]`); everything else separates them."""
    category = unicodedata.category(char)
    return category[0] in "LN" or category == "Co"


def words(text: str) -> list[str]:
    """The words of a piece of text, lower-cased, as both indexes cut them."""
    found: list[str] = []
    current: list[str] = []
    for char in text:
        if is_cjk(char):
            if current:
                found.append("".join(current))
                current = []
            found.append(char)
        elif is_word_char(char):
            current.append(char)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return [word.lower() for word in found]


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Make `chat_search_text(text)` available to SQLite's index triggers on a connection."""
    dbapi_connection.create_function(SQL_FUNCTION, 1, index_text, deterministic=True)
