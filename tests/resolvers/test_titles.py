"""What a model's answer becomes as a title (small local models ramble, quote and label)."""

from __future__ import annotations

import pytest

from resolvers.titles import cleaned, fallback, is_default


@pytest.mark.parametrize(("answer", "title"), [
    ('Title: "Baking bread at home"', "Baking bread at home"),
    ("**Sourdough basics**\n\nHere is why…", "Sourdough basics"),
    ("标题：北京天气。今天晴", "北京天气"),
    ("GPT-3.5 tips for you. More text follows", "GPT-3.5 tips for you"),
    ("The capital of the continent is not a country, but it is an important term in France",
     "The capital of the continent is not a"),
    ("   \n  ", ""),
])
def test_a_models_answer_becomes_a_short_title(answer: str, title: str) -> None:
    assert cleaned(answer) == title


def test_the_fallback_is_the_users_first_words() -> None:
    assert fallback("  How   do I bake sourdough bread at home in a small oven today? ") == \
        "How do I bake sourdough bread at home"


@pytest.mark.parametrize(("title", "default"), [
    ("", True), ("新对话", True), ("New Chat", True), (" new conversation ", True),
    ("My plans", False), ("新对话 about Rome", False)])
def test_default_titles_are_the_clients_placeholders(title: str, default: bool) -> None:
    assert is_default(title) is default
