#!/usr/bin/env bash
# Prints the README's CPU table: Arbiter against llama.cpp on the same GGUF files, one row per
# file, from alternating runs (Arbiter, llama.cpp, Arbiter, ...; medians over the pairs).
#
#   scripts/cpu_table.sh FILE.gguf...            # e.g. the outputs of scripts/quantize_gguf.py
#   PAIRS=5 PROMPT=512 NEW=128 scripts/cpu_table.sh FILE.gguf...
#
# Make the files with scripts/quantize_gguf.py (smollm2 and qwen15b). ARBITER names the binary
# (default: target/release/arbiter); threads default to all cores for both engines. A speed
# ratio above 1 means Arbiter is faster (prefill: llama.cpp's time over ours; decode: our
# tokens/s over llama.cpp's).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
arbiter="${ARBITER:-$here/../target/release/arbiter}"
pairs="${PAIRS:-3}"
prompt="${PROMPT:-512}"
new="${NEW:-128}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores;" \
    "prompt $prompt tokens, $new new tokens, $pairs alternating pairs, medians"
echo
echo "| file | prefill Arbiter | prefill llama.cpp | speed ratio | decode Arbiter | decode llama.cpp | speed ratio | peak RSS Arbiter | peak RSS llama.cpp |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for file in "$@"; do
    for i in $(seq "$pairs"); do
        "$arbiter" bench --model "$file" --prompt-tokens "$prompt" --new-tokens "$new" --runs 1 \
            2>/dev/null >"$tmp/arbiter.$i.json"
        python3 "$here/bench_llama_cpp.py" "$file" --prompt-tokens "$prompt" --new-tokens "$new" \
            --runs 1 2>/dev/null >"$tmp/llama.$i.json"
    done
    python3 - "$file" "$tmp" "$pairs" <<'EOF'
import json, os, statistics, sys
file, tmp, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(engine):
    return [json.load(open(os.path.join(tmp, f"{engine}.{i}.json"))) for i in range(1, pairs + 1)]
a, l = load("arbiter"), load("llama")
med = lambda rows, key: statistics.median(r[key] for r in rows)
pa, pl = med(a, "prefill_ms") / 1e3, med(l, "prefill_ms") / 1e3
da, dl = med(a, "decode_tokens_per_s"), med(l, "decode_tokens_per_s")
ra, rl = med(a, "peak_rss_bytes") / 2**20, med(l, "peak_rss_bytes") / 2**20
print(f"| {os.path.basename(file)} | {pa:.2f} s | {pl:.2f} s | {pl / pa:.2f}x | {da:.1f} tok/s "
      f"| {dl:.1f} tok/s | {da / dl:.2f}x | {ra:.0f} MiB | {rl:.0f} MiB |")
EOF
done
