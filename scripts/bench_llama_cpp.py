#!/usr/bin/env python3
"""Time llama.cpp (through llama-cpp-python) on a GGUF file with the same synthetic prompt and
fields as `arbiter bench`, so one command gives both rows:

    python3 scripts/bench_llama_cpp.py MODEL.gguf --prompt-tokens 512 --new-tokens 128

Prefill is timed as one `eval` of the prompt; decode as `eval` of one token at a time after
greedy selection, ignoring end-of-turn tokens (the same work `arbiter bench` does).
"""
import argparse
import json
import os
import resource
import statistics
import time

from bench_prompt import prompt_ids



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-tokens", type=int, default=1500)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(
        model_path=args.model,
        n_ctx=args.prompt_tokens + args.new_tokens + 8,
        n_batch=max(512, args.prompt_tokens),
        n_ubatch=max(512, args.prompt_tokens),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    ids = prompt_ids(lambda t: llm.tokenize(t.encode(), add_bos=False, special=False), args.prompt_tokens)

    import numpy as np

    def last_logits():
        # Without logits_all, llama.cpp keeps only the last position's logits.
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

    def once():
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        prefill = time.perf_counter() - start
        scores = last_logits()
        first = None
        for _ in range(args.new_tokens):
            tok = int(scores.argmax())
            if first is None:
                first = time.perf_counter()
                ttft = first - start
            llm.eval([tok])
            scores = last_logits()
        decode = time.perf_counter() - first
        return prefill * 1000, ttft * 1000, (args.new_tokens - 1) / decode if decode > 0 else 0.0

    once()  # warm-up
    rows = [once() for _ in range(max(1, args.runs))]
    report = {
        "engine": "llama.cpp (llama-cpp-python)",
        "model": os.path.basename(args.model),
        "device": "cpu",
        "threads": args.threads,
        "prompt_tokens": len(ids),
        "new_tokens": args.new_tokens,
        "runs": len(rows),
        "prefill_ms": statistics.median(r[0] for r in rows),
        "time_to_first_token_ms": statistics.median(r[1] for r in rows),
        "decode_tokens_per_s": statistics.median(r[2] for r in rows),
        "load_s": load_s,
        "peak_rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
