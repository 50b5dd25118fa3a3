#!/usr/bin/env python3
"""Time HF transformers on a safetensors checkpoint with the same synthetic prompt and the same
JSON fields as `arbiter bench`, so one device run gives both rows:

    python3 scripts/bench_transformers.py MODEL_DIR --prompt-tokens 1500 --new-tokens 256 --attn sdpa

- prefill_ms: one forward pass over the prompt (cache on, logits of the last position only),
  from the call to the synchronised result, as `arbiter bench` times its prefill.
- time_to_first_token_ms: that prefill plus the greedy choice of the first token on the host.
- decode_tokens_per_s: `generate(min_new_tokens=N, max_new_tokens=N)`, greedy, end-of-turn
  ignored; tokens after the first over the time from the first to the last (a streamer
  timestamps each token after synchronising).
- peak_gpu_bytes: the device's memory in use (total - free, the CUDA context included), the
  highest of readings every 2 ms over the warm-up and the timed runs: the same reading
  `arbiter bench` takes.
Medians of --runs runs after one warm-up.

With --batch N the prompt is repeated N times (no padding: every row the same length) and
`generate` runs the whole batch, timed as a run of N new tokens less a run of one (the
prefill and first choice): aggregate_decode_tokens_per_s counts every row's tokens,
per_sequence_decode_tokens_per_s one row's, and time_to_first_token_ms is the batched prefill
plus the first choice, the fields `arbiter bench --batch N` prints.
"""
import argparse
import json
import os
import statistics
import threading
import time

from bench_prompt import prompt_ids



def tokens(model_dir, n):
    """The token ids `arbiter bench` feeds, with the checkpoint's tokenizer.json."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    return prompt_ids(lambda t: tok.encode(t, add_special_tokens=False).ids, n)


class MemoryWatch:
    def __init__(self, torch):
        self.torch = torch
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def used(self):
        free, total = self.torch.cuda.mem_get_info()
        return total - free

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.used())
            time.sleep(0.002)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return max(self.peak, self.used())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-tokens", type=int, default=1500)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=dtype, attn_implementation=args.attn, device_map="cuda"
    )
    model.eval()
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    batch = max(args.batch, 1)
    ids = torch.tensor([tokens(args.model, args.prompt_tokens)] * batch, device="cuda")
    n = args.new_tokens

    class Stamps(BaseStreamer):
        def __init__(self):
            self.times = []

        def put(self, value):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter())

        def end(self):
            pass

    def prefill():
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(ids, use_cache=True, logits_to_keep=1)
        torch.cuda.synchronize()
        prefill_ms = (time.perf_counter() - start) * 1000
        out.logits[:, -1].argmax(-1).tolist()
        ttft_ms = (time.perf_counter() - start) * 1000
        del out
        return prefill_ms, ttft_ms

    def timed(k):
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(
            ids,
            max_new_tokens=k,
            min_new_tokens=k,
            do_sample=False,
            pad_token_id=0,
            attention_mask=torch.ones_like(ids),
        )
        torch.cuda.synchronize()
        return time.perf_counter() - start

    def decode():
        if batch > 1:
            # No streamer for a batch (not every version takes one): the decode time is a run
            # of n tokens less a run of one (the prefill and the first choice).
            one, full = timed(1), timed(n)
            return n, (n - 1) / (full - one)
        stamps = Stamps()
        model.generate(
            ids,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            streamer=stamps,
            pad_token_id=0,
            attention_mask=torch.ones_like(ids),
        )
        # The first put is the prompt; then one per generated token.
        generated = stamps.times[1:]
        return len(generated), (len(generated) - 1) / (generated[-1] - generated[0])

    watch = MemoryWatch(torch)
    with torch.inference_mode():
        prefill()
        decode()
        pre, ttft, rate = [], [], []
        generated = 0
        for _ in range(max(args.runs, 1)):
            p, t = prefill()
            pre.append(p)
            ttft.append(t)
            generated, r = decode()
            rate.append(r)
    peak = watch.finish()
    if batch > 1:
        report = {
            "engine": f"transformers {__import__('transformers').__version__} ({args.attn})",
            "model": os.path.basename(os.path.abspath(args.model)),
            "device": torch.cuda.get_device_name(0),
            "precision": args.dtype,
            "torch": torch.__version__,
            "batch": batch,
            "prompt_tokens": ids.shape[1],
            "new_tokens": generated,
            "runs": max(args.runs, 1),
            "prefill_ms": statistics.median(pre),
            "time_to_first_token_ms": statistics.median(ttft),
            "aggregate_decode_tokens_per_s": statistics.median(rate) * batch,
            "per_sequence_decode_tokens_per_s": statistics.median(rate),
            "load_s": load_s,
            "peak_gpu_bytes": peak,
            "max_allocated_bytes": torch.cuda.max_memory_allocated(),
        }
        print(json.dumps(report, indent=2), flush=True)
        return
    report = {
        "engine": f"transformers {__import__('transformers').__version__} ({args.attn})",
        "model": os.path.basename(os.path.abspath(args.model)),
        "device": torch.cuda.get_device_name(0),
        "precision": args.dtype,
        "torch": torch.__version__,
        "prompt_tokens": ids.shape[1],
        "new_tokens": generated,
        "runs": max(args.runs, 1),
        "prefill_ms": statistics.median(pre),
        "time_to_first_token_ms": statistics.median(ttft),
        "decode_tokens_per_s": statistics.median(rate),
        "load_s": load_s,
        "peak_gpu_bytes": peak,
        "max_allocated_bytes": torch.cuda.max_memory_allocated(),
    }
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
