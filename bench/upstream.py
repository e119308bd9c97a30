"""A fake OpenAI-compatible upstream, so chat figures measure our server and not a model.

    python -m bench.upstream --port 9000 [--tokens 50]

`POST /v1/chat/completions` with `stream: true` answers `text/event-stream` in the real
`chat.completion.chunk` format: a role chunk, one chunk per token, a finish chunk, the usage
chunk (`stream_options.include_usage`) and `data: [DONE]`. The spacing between tokens comes from
the model name: `bench-0ms` writes every frame at once (each its own write), `bench-5ms`
sleeps 5 ms between tokens. The reply is `min(max_tokens, --tokens)` tokens long.
`GET /v1/models` lists the models. Every frame is prebuilt: the fake costs almost nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from functools import lru_cache

from aiohttp import web

MODELS = ("bench-0ms", "bench-5ms")
_SPACING = re.compile(r"bench-(\d+)ms$")


def _frame(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@lru_cache(maxsize=64)
def frames(model: str, tokens: int) -> tuple[bytes, tuple[bytes, ...], bytes]:
    """(opening frame, one frame per token, closing frames) for a reply of `tokens` tokens."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model, "system_fingerprint": "fp_bench"}

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        return _frame({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}]})

    opening = chunk({"role": "assistant", "content": ""}, None)
    body = tuple(chunk({"content": f" w{i}"}, None) for i in range(tokens))
    usage = _frame({**base, "choices": [], "usage": {
        "prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": 9 + tokens}})
    closing = chunk({}, "stop") + usage + b"data: [DONE]\n\n"
    return opening, body, closing


def spacing_of(model: str) -> float:
    match = _SPACING.match(model)
    return int(match.group(1)) / 1000 if match else 0.0


def make_app(max_tokens: int) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model") or MODELS[0])
        wanted = body.get("max_tokens") or body.get("max_completion_tokens") or max_tokens
        opening, tokens, closing = frames(model, max(1, min(int(wanted), max_tokens)))
        spacing = spacing_of(model)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(opening)
        for frame in tokens:
            if spacing:
                await asyncio.sleep(spacing)
            await resp.write(frame)
        await resp.write(closing)
        await resp.write_eof()
        return resp

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "bench"} for m in MODELS]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", lambda _r: _ok())
    return app


async def _ok() -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args()
    run(make_app(args.tokens), args.host, args.port)


def run(app: web.Application, host: str, port: int) -> None:
    """Serve an aiohttp app on uvloop until killed (no access log: it would cost CPU)."""
    import uvloop

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, backlog=4096).start()
        await asyncio.Event().wait()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
