"""The price table: USD per million input / output tokens, per model id.

Built-in defaults (prices.json, dated) for well-known OpenAI, Anthropic and Gemini models;
MODEL_PRICES names a JSON file `{"<model id>": {"input": x, "output": y}, ...}` whose entries
replace or add to them. The embedded model and models nobody priced cost 0.

Money is integer micro-dollars (USD × 10⁶). A price "per million tokens" in USD is exactly
micro-dollars per token, so a reply costs ⌈prompt × input + completion × output⌉ µ$ — rounded
up once per reply, never down, so many small replies cannot add up to free use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULTS_FILE = Path(__file__).with_name("prices.json")
FREE_PROVIDERS = frozenset({"embedded"})
MICROS = 1_000_000
# Worst-case prompt size: a token is at least one byte of UTF-8 text for every tokenizer
# we serve, plus what chat templates add around each message.
TOKENS_PER_MESSAGE_OVERHEAD = 8


class PricesError(ValueError):
    """MODEL_PRICES is not a valid price file (refused at start)."""


@dataclass(frozen=True, slots=True)
class Price:
    input: Decimal  # USD per million prompt tokens == micro-dollars per token
    output: Decimal

    @property
    def free(self) -> bool:
        return not self.input and not self.output

    def cost_micros(self, prompt_tokens: int, completion_tokens: int) -> int:
        return math.ceil(self.input * max(prompt_tokens, 0)
                         + self.output * max(completion_tokens, 0))


FREE = Price(Decimal(0), Decimal(0))


def _parse(models: Any, source: str) -> dict[str, Price]:
    if not isinstance(models, Mapping):
        raise PricesError(f"{source}: expected an object of model id → {{input, output}}")
    table: dict[str, Price] = {}
    for model, entry in models.items():
        if not isinstance(entry, Mapping):
            raise PricesError(f"{source}: {model!r} needs {{\"input\": …, \"output\": …}}")
        try:
            price = Price(Decimal(str(entry["input"])), Decimal(str(entry["output"])))
        except (KeyError, ArithmeticError, ValueError) as exc:
            raise PricesError(f"{source}: {model!r} needs numeric input and output") from exc
        if price.input < 0 or price.output < 0 or not price.input.is_finite() \
                or not price.output.is_finite():
            raise PricesError(f"{source}: {model!r} has a negative or infinite price")
        table[str(model)] = price
    return table


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: Mapping[str, Price]
    taken: str  # when the built-in defaults were read off the vendors' pages

    @classmethod
    def load(cls, override_path: str | None = None) -> PriceTable:
        builtin = json.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))
        prices = _parse(builtin["models"], str(DEFAULTS_FILE))
        if override_path:
            path = Path(override_path)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PricesError(f"MODEL_PRICES {path}: {exc}") from exc
            prices.update(_parse(data, f"MODEL_PRICES {path}"))
        return cls(prices=prices, taken=str(builtin.get("taken", "")))

    def price(self, provider: str, model: str) -> Price:
        """The price of `model` served by `provider`: exact id, then `provider/model`, then
        the longest priced id the model's id starts with (dated snapshots); else free."""
        if provider in FREE_PROVIDERS:
            return FREE
        for candidate in (model, f"{provider}/{model}", model.removeprefix("models/")):
            if candidate in self.prices:
                return self.prices[candidate]
        best = ""
        for known in self.prices:
            if model.startswith(known + "-") and len(known) > len(best):
                best = known
        return self.prices[best] if best else FREE


def prompt_tokens_upper_bound(contents: Iterable[str]) -> int:
    """At most this many prompt tokens, whatever the tokenizer: one per UTF-8 byte, plus
    each message's template overhead."""
    return sum(len(text.encode("utf-8")) + TOKENS_PER_MESSAGE_OVERHEAD for text in contents)


def prompt_tokens_estimate(contents: Iterable[str]) -> int:
    """A typical count (about 4 bytes a token): what a failed reply is billed for its
    prompt when the provider never reported usage."""
    return math.ceil(sum(len(text.encode("utf-8")) for text in contents) / 4)


def usd(micros: int) -> float:
    return micros / MICROS


def to_micros(dollars: float) -> int:
    return round(Decimal(str(dollars)) * MICROS)
