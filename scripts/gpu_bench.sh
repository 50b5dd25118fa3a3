#!/usr/bin/env bash
# One run on a CUDA machine: build the random Qwen2.5-7B-shaped checkpoint, benchmark Arbiter and
# transformers on it, run the correctness checks, and print the table. Needs the binary from
# scripts/build-cuda.sh, python3 with torch + transformers + tokenizers, and the CUDA 13 libraries.
#
#   scripts/gpu_bench.sh [OUT_DIR]
#
# Variables: ARBITER (the binary, default target/cuda/arbiter), MODEL_DIR (where the checkpoint
# goes, default /tmp/qwen2-7b-random; reused if it is there), PROMPT (1500), NEW (256), RUNS (3),
# CUDA_LIBS (default /usr/local/cuda-13.0/targets/x86_64-linux/lib), SKIP (words among
# "bandwidth plain gemv graph transformers check teacher" to leave out), TRAINED_GGUF (a trained model's
# GGUF file: converted to bf16 safetensors and teacher-forced on this repo's docs as well; needs
# the gguf Python package).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/arbiter-gpu}"
mkdir -p "$out"
arbiter="${ARBITER:-target/cuda/arbiter}"
model="${MODEL_DIR:-/tmp/qwen2-7b-random}"
prompt="${PROMPT:-1500}"
new="${NEW:-256}"
runs="${RUNS:-3}"
skip="${SKIP:-}"
export LD_LIBRARY_PATH="${CUDA_LIBS:-/usr/local/cuda-13.0/targets/x86_64-linux/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$out/gpu.txt"
if [ ! -f "$model/config.json" ]; then
    python3 scripts/make_random_qwen2.py "$model" --preset 7b --dtype bf16 | tee "$out/checkpoint.json" || exit 1
fi

if [[ " $skip " != *" bandwidth "* ]]; then
    # The copy bandwidth, and the batch-1 decode bound it gives this checkpoint.
    python3 scripts/gpu_bandwidth.py "$model" | tee "$out/bandwidth.json" || status=1
fi

bench_arbiter() {
    "$arbiter" bench --model "$model" --device cuda --dtype bf16 --prompt-tokens "$prompt" \
        --new-tokens "$new" --runs "$runs" "$@"
}
# The engine's default prefill (chunks of 512 tokens, as the app runs it), then one pass.
bench_arbiter >"$out/arbiter.json" 2>"$out/arbiter.log" || { status=1; cat "$out/arbiter.log"; }
cat "$out/arbiter.json"
bench_arbiter --chunk "$prompt" >"$out/arbiter-onepass.json" 2>>"$out/arbiter.log" || status=1
cat "$out/arbiter-onepass.json"
if [[ " $skip " != *" plain "* ]]; then
    # The same engine with the fused kernels off (candle's own ops): what they buy.
    ARBITER_CUDA_FUSED=0 bench_arbiter >"$out/arbiter-plain.json" 2>"$out/arbiter-plain.log" ||
        { status=1; cat "$out/arbiter-plain.log"; }
    cat "$out/arbiter-plain.json"
fi
if [[ " $skip " != *" gemv "* ]]; then
    # The fused kernels with cuBLAS for the one-row products: what the GEMV kernel buys.
    ARBITER_CUDA_GEMV=0 bench_arbiter >"$out/arbiter-cublas-gemv.json" 2>"$out/arbiter-cublas-gemv.log" ||
        { status=1; cat "$out/arbiter-cublas-gemv.log"; }
    cat "$out/arbiter-cublas-gemv.json"
fi
if [[ " $skip " != *" graph "* ]]; then
    # Decode steps replayed from a CUDA graph (opt-in until checked on a GPU): what it buys.
    ARBITER_CUDA_GRAPH=1 bench_arbiter >"$out/arbiter-graph.json" 2>"$out/arbiter-graph.log" ||
        { status=1; cat "$out/arbiter-graph.log"; }
    cat "$out/arbiter-graph.json"
fi
if [[ " $skip " != *" transformers "* ]]; then
    for attn in sdpa eager; do
        python3 scripts/bench_transformers.py "$model" --attn "$attn" --prompt-tokens "$prompt" \
            --new-tokens "$new" --runs "$runs" >"$out/transformers-$attn.json" 2>"$out/transformers-$attn.log" ||
            { status=1; tail -20 "$out/transformers-$attn.log"; }
        cat "$out/transformers-$attn.json"
    done
fi
if [[ " $skip " != *" check "* ]]; then
    python3 scripts/gpu_check.py tiny --arbiter "$arbiter" | tee "$out/check-tiny.json" || status=1
    if [[ " $skip " != *" teacher "* ]]; then
        python3 scripts/gpu_check.py teacher --arbiter "$arbiter" --model "$model" | tee "$out/check-7b.json" || status=1
        if [ -n "${TRAINED_GGUF:-}" ]; then
            trained="$out/trained-hf"
            python3 scripts/gguf_to_hf.py "$TRAINED_GGUF" "$trained" >"$out/trained.log" 2>&1 || { status=1; tail -5 "$out/trained.log"; }
            python3 scripts/gpu_check.py teacher --arbiter "$arbiter" --model "$trained" --text README.md docs/gpu.md |
                tee "$out/check-trained.json" || status=1
        fi
    fi
fi

python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def read(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
ours = read("arbiter.json")
rows = [("Arbiter (prefill in chunks of 512)", ours), ("Arbiter (prefill in one pass)", read("arbiter-onepass.json")),
        ("Arbiter, decode steps from a CUDA graph", read("arbiter-graph.json")),
        ("Arbiter, cuBLAS for one-row products", read("arbiter-cublas-gemv.json")),
        ("Arbiter, fused kernels off", read("arbiter-plain.json"))]
rows += [(f"transformers ({a})", read(f"transformers-{a}.json")) for a in ("sdpa", "eager")]
print("\n| engine | prefill ms | first token ms | decode tok/s | peak GPU GiB |")
print("| --- | --- | --- | --- | --- |")
for name, r in rows:
    if r:
        print(f"| {name} | {r['prefill_ms']:.1f} | {r['time_to_first_token_ms']:.1f} | "
              f"{r['decode_tokens_per_s']:.1f} | {r['peak_gpu_bytes'] / 2**30:.2f} |")
bw = read("bandwidth.json")
if bw:
    print(f"\ncopy bandwidth {bw['copy_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s (read + written), "
          f"weights {bw['weight_bytes'] / 1e9:.2f} GB: decode bound {bw['decode_bound_tokens_per_s']:.0f} tok/s")
    if ours:
        print(f"Arbiter decode at {ours['decode_tokens_per_s'] / bw['decode_bound_tokens_per_s']:.1%} of the bound")
for name, r in rows[1:]:
    if ours and r:
        print(f"Arbiter vs {name}: decode {ours['decode_tokens_per_s'] / r['decode_tokens_per_s']:.2f}x, "
              f"prefill {r['prefill_ms'] / ours['prefill_ms']:.2f}x faster")
EOF
exit $status
