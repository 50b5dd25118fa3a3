#!/usr/bin/env python3
"""Where a prefill and a decode step of `arbiter bench` spend GPU time, per kernel, read with
Nsight Compute (one metric, the kernel's duration; the card's clocks left alone):

    python3 scripts/gpu_profile.py --arbiter target/cuda/arbiter --model DIR [--prompt-tokens 1500]
    python3 scripts/gpu_profile.py ... --batch 32 [--step-tokens 8192]   # a batched step

Profiles two runs, one with 1 new token and one with 1 + STEPS, so decode = the difference over
STEPS; each run includes bench's warm-up, so per-prefill figures are halved. With --batch N,
the bench runs N sequences through continuous batching and "one decode step" is one batched
step of N tokens; --step-tokens sets the prompt tokens a step prefills, so a large value keeps
the prefill's launches (each profiled) few. The batch warm-up generates 2 tokens, the same in
both runs, so it cancels in the difference. Prints a table per
phase: kernel, launches, total ms, share. Kernel launch gaps are not in these sums: compare the
sum with the bench's wall time to see them.
"""
import argparse
import collections
import csv
import io
import os
import subprocess
import sys


def profile(args, new_tokens):
    cmd = [
        args.ncu, "--clock-control", "none", "--metrics", "gpu__time_duration.sum", "--csv",
        "--print-units", "base", args.arbiter, "bench", "--model", args.model, "--device", "cuda",
        "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(new_tokens), "--runs", "1",
    ]
    if args.ncu_args:
        cmd[1:1] = args.ncu_args.split()
    if args.batch > 1:
        cmd += ["--batch", str(args.batch), "--step-tokens", str(args.step_tokens)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    start = out.find('"ID"')
    if start < 0:
        sys.exit("ncu printed no kernel table:\n" + out[-2000:])
    per = collections.defaultdict(lambda: [0, 0.0])
    for row in csv.DictReader(io.StringIO(out[start:])):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"].split("(")[0][:70]
        per[name][0] += 1
        per[name][1] += float(row["Metric Value"].replace(",", "")) / 1e6  # ns -> ms
    return per


def table(title, rows, scale):
    total = sum(ms for _, ms in rows.values()) * scale
    print(f"\n{title}: {total:.2f} ms of kernel time")
    print("| kernel | launches | ms | share |\n| --- | --- | --- | --- |")
    for name, (n, ms) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:25]:
        print(f"| `{name}` | {n * scale:g} | {ms * scale:.3f} | {ms / (total / scale) * 100:.1f}% |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arbiter", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--ncu", default="ncu")
    ap.add_argument("--ncu-args", default="", help="extra ncu options, e.g. '--cache-control none'")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--step-tokens", type=int, default=8192)
    args = ap.parse_args()
    one = profile(args, 1)
    more = profile(args, 1 + args.steps)
    # Two prefills per run (warm-up and timed); with --batch, the timed one's is N prompts'.
    if args.batch > 1:
        table(f"warm-up and prefill of {args.batch} x {args.prompt_tokens} tokens", one, 1.0)
    else:
        table(f"prefill of {args.prompt_tokens} tokens", one, 0.5)
    decode = {}
    for name, (n, ms) in more.items():
        n0, ms0 = one.get(name, (0, 0.0))
        if n > n0:
            decode[name] = (n - n0, ms - ms0)
    # The single stream's warm-up decodes as many steps as the timed run; the batch's does not.
    per = 1 / args.steps if args.batch > 1 else 1 / (2 * args.steps)
    table("one decode step" + (f" of {args.batch} sequences" if args.batch > 1 else ""), decode, per)


if __name__ == "__main__":
    main()
