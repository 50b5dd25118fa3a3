#!/usr/bin/env python3
"""Measure the GPU's device-to-device copy bandwidth and the batch-1 decode bound it gives a
checkpoint: every weight is read once per generated token, so tokens/s <= bandwidth / weight bytes.

    python3 scripts/gpu_bandwidth.py [MODEL_DIR] [--gib 4] [--runs 20]

Bandwidth counts the bytes read plus the bytes written (a copy of N bytes moves 2N), as the
device-to-device figures quoted for these GPUs do. Prints one JSON object. Needs torch.
"""
import argparse
import glob
import json
import os

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", help="checkpoint folder (its *.safetensors are the weights)")
    ap.add_argument("--gib", type=float, default=4.0, help="size of the copied buffer")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    n = int(args.gib * 2**30) // 4
    src = torch.empty(n, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(args.runs):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    best, median = times[0], times[len(times) // 2]
    moved = 2 * n * 4
    out = {
        "device": torch.cuda.get_device_name(),
        "copy_bytes": n * 4,
        "copy_bandwidth_bytes_per_s": moved / median,
        "copy_bandwidth_best_bytes_per_s": moved / best,
    }
    if args.model:
        weights = sum(os.path.getsize(f) for f in glob.glob(os.path.join(args.model, "*.safetensors")))
        out["weight_bytes"] = weights
        out["decode_bound_tokens_per_s"] = out["copy_bandwidth_bytes_per_s"] / weights
    print(json.dumps(out))


if __name__ == "__main__":
    main()
