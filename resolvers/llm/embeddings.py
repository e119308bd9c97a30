"""Embeddings from an OpenAI-compatible server: `POST {base}/embeddings` (OpenAI, Ollama,
vLLM, llama.cpp's server, LM Studio, OpenRouter …).

Wire format: `{"model", "input": [text, …], "encoding_format": "float"}` (plus `dimensions`
when configured) answers `{"data": [{"embedding": [float, …], "index": i}, …], "usage": …}`;
`data` may come in any order, `index` says which input each vector belongs to.

Every failure — HTTP status, timeout, refused connection, a body of another shape — is a
ProviderError; callers decide what an outage means (resolvers/files/vectors.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._http import HTTPProvider


class Embeddings(HTTPProvider):
    name = "embeddings"
    label = "The embeddings service"
    default_base_url = "https://api.openai.com/v1"

    def __init__(self, *, model: str, dimensions: int = 0, timeout: float = 15.0,
                 **kwargs: Any) -> None:
        super().__init__(connect_timeout=timeout, stall_timeout=timeout, **kwargs)
        self.model = model
        self.dimensions = dimensions

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order, each scaled to length 1 (cosine distance is then
        what both stores rank by)."""
        if not texts:
            return []
        body: dict[str, Any] = {"model": self.model, "input": list(texts),
                                "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        answer = await self.request_json("POST", f"{self.base_url}/embeddings",
                                         headers=self._headers(), body=body)
        with self.unexpected_shape():
            rows = sorted(answer["data"], key=lambda row: int(row["index"]))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        if len(vectors) != len(texts) or any(len(v) != len(vectors[0]) or not v
                                             for v in vectors):
            raise self.error(f"{self.label} answered {len(vectors)} vectors of unequal or no "
                             f"size for {len(texts)} texts")
        return [_unit(v) for v in vectors]


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector

