"""A reply cut short before the provider reported usage is billed an estimate of its completion
tokens. Since tokens that arrive together leave as one chunk, counting chunks would undercount
(one chunk of a 50-token burst is not one token)."""

from __future__ import annotations

from resolvers.chat import completion_tokens_estimate


def test_a_coalesced_burst_is_not_billed_as_one_token() -> None:
    burst = ["word " * 50]  # 50 tokens that arrived together: one part
    assert completion_tokens_estimate(burst) >= 50


def test_one_token_per_chunk_at_least() -> None:
    assert completion_tokens_estimate(["a"] * 30) == 30
    assert completion_tokens_estimate([]) == 0
