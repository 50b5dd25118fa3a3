#!/usr/bin/env bash
# One run on a CUDA machine for continuous batching (issue 21): correctness of batched steps
# against each sequence alone and, in bf16, against f32 beside transformers' batched decode,
# Arbiter and transformers at batch 1/8/32 on the random Qwen2.5-7B-shaped bf16 checkpoint,
# an end-to-end `arbiter run` with a local judge at batch 1 and batch 32, and one table with
# the goals. Needs the binary from scripts/build-cuda.sh,
# python3 with torch + transformers + tokenizers, and the CUDA 13 libraries.
#
#   scripts/gpu_batch.sh [OUT_DIR]
#
# Variables: ARBITER (default target/cuda/arbiter), MODEL_DIR (default /tmp/qwen2-7b-random;
# reused if there), PROMPT (1500), NEW (512), BATCHES ("8 32"), ITEMS (items of the end-to-end
# run at batch 32, judged in both orders; 500, so 1,000 judgments), E2E_TOKENS (512),
# E2E_B1_ITEMS (items of the batch-1 run and of transformers' batched run, whose time a
# judgment is scaled to ITEMS x 2: both would take an hour or more for all 1,000; 16),
# CUDA_LIBS, SKIP (words among "check profile transformers arbiter e2e" to leave out; results
# already in OUT_DIR are still tabled), TEACHER_VARIANTS (Arbiter's runs scored beside its plain
# batch in the bf16 teacher check: the same sequences alone, and the precision switches; "" for
# none).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/arbiter-batch}"
mkdir -p "$out"
arbiter="${ARBITER:-target/cuda/arbiter}"
model="${MODEL_DIR:-/tmp/qwen2-7b-random}"
tiny="$out/tiny-f32"
prompt="${PROMPT:-1500}"
new="${NEW:-512}"
batches="${BATCHES:-8 32}"
items="${ITEMS:-500}"
e2e_tokens="${E2E_TOKENS:-512}"
b1_items="${E2E_B1_ITEMS:-16}"
teacher_variants="${TEACHER_VARIANTS-alone ARBITER_CUDA_QKV=f32 ARBITER_CUDA_REDUCTION=f32 ARBITER_ROPE_ANGLES=f32}"
skip="${SKIP:-}"
export LD_LIBRARY_PATH="${CUDA_LIBS:-/usr/local/cuda-13.0/targets/x86_64-linux/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
status=0
# The carried binary is compressed; a stale one from an earlier run must not be used instead.
if [ -f "$arbiter.xz" ]; then xz -dkf "$arbiter.xz" || exit 1; fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
if [ ! -f "$model/config.json" ]; then
    python3 scripts/make_random_qwen2.py "$model" --preset 7b --dtype bf16 >"$out/checkpoint.json" || exit 1
fi
python3 scripts/gpu_bandwidth.py "$model" >"$out/bandwidth.json" || status=1

if [[ " $skip " != *" check "* ]]; then
    [ -f "$tiny/config.json" ] || python3 scripts/make_random_qwen2.py "$tiny" --preset tiny --dtype f32 >/dev/null
    # f32: every sequence's tokens identical to alone, logits within 1e-3, and through the
    # scheduler (steps launched ahead) its greedy tokens alone (exit 1 otherwise); with the
    # fused kernels (paged decode attention) and without (gathered blocks).
    "$arbiter" bench --model "$tiny" --device cuda --dtype f32 --batch 16 --check \
        --prompt-tokens 400 --new-tokens 32 >"$out/check-tiny.json" 2>"$out/check.log" || status=1
    ARBITER_CUDA_GROUPED=0 "$arbiter" bench --model "$tiny" --device cuda --dtype f32 --batch 16 \
        --check --prompt-tokens 400 --new-tokens 32 >"$out/check-tiny-ungrouped.json" 2>>"$out/check.log" || status=1
    # The warp-a-position grouped kernel, the single stream kernel by kernel (no CUDA graph),
    # the scheduler without steps ahead.
    ARBITER_CUDA_GROUPED=1 ARBITER_CUDA_GRAPH=0 ARBITER_STEP_AHEAD=0 "$arbiter" bench --model "$tiny" \
        --device cuda --dtype f32 --batch 16 --check --prompt-tokens 400 --new-tokens 32 \
        >"$out/check-tiny-warp-nograph.json" 2>>"$out/check.log" || status=1
    ARBITER_CUDA_FUSED=0 "$arbiter" bench --model "$tiny" --device cuda --dtype f32 --batch 16 \
        --check --prompt-tokens 400 --new-tokens 32 >"$out/check-tiny-plain.json" 2>>"$out/check.log" || status=1
    # bf16 7B: agreement of batched steps with the single stream, reported.
    "$arbiter" bench --model "$model" --device cuda --dtype bf16 --batch 16 --check \
        --prompt-tokens "$prompt" --new-tokens 16 >"$out/check-7b.json" 2>>"$out/check.log" || status=1
    # bf16 7B against the same weights in f32: 16 sequences (4,000 down to 1,000 positions)
    # teacher-forced over their last 256 as one batch, Arbiter beside transformers' batched
    # decode at the same batch; fails if Arbiter agrees less with f32 beyond the noise.
    # shellcheck disable=SC2086 # the variants are words
    python3 scripts/gpu_check.py teacher --arbiter "$arbiter" --model "$model" --batch 16 \
        ${teacher_variants:+--variants $teacher_variants} \
        >"$out/check-7b-teacher-b16.json" 2>>"$out/check.log" || status=1
fi

if [[ " $skip " != *" profile "* ]]; then
    # Each stage's GPU time in a batch-32 decode step (CUDA events between stages).
    ARBITER_STEP_PROFILE=1 "$arbiter" bench --model "$model" --device cuda --dtype bf16 \
        --prompt-tokens "$prompt" --new-tokens 128 --runs 1 --batch 32 >"$out/profile-b32.json" 2>>"$out/arbiter.log" || status=1
fi

if [[ " $skip " != *" arbiter "* ]]; then
    "$arbiter" bench --model "$model" --device cuda --dtype bf16 --prompt-tokens "$prompt" \
        --new-tokens "$new" --runs 1 >"$out/arbiter-b1.json" 2>"$out/arbiter.log" || status=1
    for b in $batches; do
        "$arbiter" bench --model "$model" --device cuda --dtype bf16 --prompt-tokens "$prompt" \
            --new-tokens "$new" --runs 1 --batch "$b" >"$out/arbiter-b$b.json" 2>>"$out/arbiter.log" ||
            { status=1; tail -5 "$out/arbiter.log"; }
    done
fi
if [[ " $skip " != *" transformers "* ]]; then
    for b in $batches; do
        python3 scripts/bench_transformers.py "$model" --attn sdpa --prompt-tokens "$prompt" \
            --new-tokens "$new" --runs 1 --batch "$b" >"$out/transformers-b$b.json" 2>>"$out/transformers.log" ||
            { status=1; tail -5 "$out/transformers.log"; }
    done
fi

if [[ " $skip " != *" e2e "* ]]; then
    # ITEMS items in both orders through `arbiter run` at batch 32, fixed-length critiques (a
    # random model rarely ends its turn); E2E_B1_ITEMS of them at batch 1, and through
    # transformers' batched generate from the prompts the batch-32 run recorded.
    python3 - "$out/e2e" "$items" <<'EOF'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
words = "The answer explains the algorithm step by step and checks the edge cases. "
with open(os.path.join(d, "items.jsonl"), "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"q{i:04d}", "question": f"Question {i}: " + words * 8,
                            "model_a": "a", "response_a": words * (20 + i % 7),
                            "model_b": "b", "response_b": words * (18 + i % 5)}) + "\n")
EOF
    for b in 32 1; do
        rm -rf "$out/e2e/b$b" && mkdir -p "$out/e2e/b$b"
        if [ "$b" = 1 ]; then
            head -n "$b1_items" "$out/e2e/items.jsonl" >"$out/e2e/b$b/items.jsonl"
        else
            cp "$out/e2e/items.jsonl" "$out/e2e/b$b/"
        fi
        printf '[[judge]]\nname = "local"\nkind = "local"\nmodel = "%s"\ndevice = "cuda"\ndtype = "bf16"\ntemplate = "cj2-quick"\nconstrain = "none"\nmax_tokens = %s\nmax_concurrency = %s\n' \
            "$model" "$e2e_tokens" "$b" >"$out/e2e/b$b/panel.toml"
        start=$(date +%s.%N)
        "$arbiter" run "$out/e2e/b$b/items.jsonl" --panel "$out/e2e/b$b/panel.toml" --swap \
            >"$out/e2e/b$b/run.log" 2>&1 || { status=1; tail -5 "$out/e2e/b$b/run.log"; }
        end=$(date +%s.%N)
        python3 -c "import sys; print('{\"wall_s\": %.2f, \"judgments\": %d}' % (float(sys.argv[2]) - float(sys.argv[1]), 2 * int(sys.argv[3])))" \
            "$start" "$end" "$(wc -l <"$out/e2e/b$b/items.jsonl")" >"$out/e2e/b$b/wall.json"
    done
    python3 scripts/e2e_transformers.py "$out/e2e/b32" "$model" --batch 32 --judgments $((2 * b1_items)) \
        --new-tokens "$e2e_tokens" >"$out/e2e/transformers.json" 2>>"$out/transformers.log" ||
        { status=1; tail -5 "$out/transformers.log"; }
fi

python3 - "$out" "$model" "$prompt" "$new" "$batches" <<'EOF'
import json, os, sys
out, model, prompt, new, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
def read(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
gib = lambda b: f"{b / 2**30:.2f}" if b else "-"
print(f"\nGPU: {open(os.path.join(out, 'gpu.txt')).read().strip()}; prompt {prompt} tokens, {new} new, greedy, EOS ignored")
print("\n| engine | batch | aggregate decode tok/s | per-sequence decode tok/s | first token ms (mean / worst) | peak GPU GiB | KV held / needed |")
print("| --- | --- | --- | --- | --- | --- | --- |")
b1 = read("arbiter-b1.json")
if b1:
    print(f"| Arbiter | 1 | {b1['decode_tokens_per_s']:.1f} | {b1['decode_tokens_per_s']:.1f} | "
          f"{b1['time_to_first_token_ms']:.0f} | {gib(b1.get('peak_gpu_bytes'))} | - |")
for b in batches:
    for name, r in (("Arbiter", read(f"arbiter-b{b}.json")), ("transformers (sdpa)", read(f"transformers-b{b}.json"))):
        if not r:
            continue
        worst = r.get("max_time_to_first_token_ms")
        kv = (f"{r['kv_peak_bytes'] / r['kv_needed_bytes']:.3f}x of {gib(r['kv_needed_bytes'])} GiB"
              if r.get("kv_needed_bytes") else "-")
        print(f"| {name} | {b} | {r['aggregate_decode_tokens_per_s']:.1f} | {r['per_sequence_decode_tokens_per_s']:.1f} | "
              f"{r['time_to_first_token_ms']:.0f}" + (f" / {worst:.0f}" if worst else "") +
              f" | {gib(r.get('peak_gpu_bytes'))} | {kv} |")
cfg = json.load(open(os.path.join(model, "config.json")))
kv_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * (cfg["hidden_size"] // cfg["num_attention_heads"]) * 2
bw = read("bandwidth.json")
print()
if bw:
    for b in batches:
        b = int(b)
        step_bytes = bw["weight_bytes"] + b * kv_token * (prompt + new / 2)
        bound = b * bw["copy_bandwidth_bytes_per_s"] / step_bytes
        ours, theirs = read(f"arbiter-b{b}.json"), read(f"transformers-b{b}.json")
        line = (f"batch {b}: step bound {bound:.0f} tok/s (weights {bw['weight_bytes'] / 1e9:.1f} GB + KV "
                f"{b * kv_token * (prompt + new / 2) / 1e9:.2f} GB a step at {bw['copy_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s)")
        if ours:
            line += f"; Arbiter at {ours['aggregate_decode_tokens_per_s'] / bound:.1%} of it (goal at 32: >= 60%)"
        if ours and theirs:
            line += f", {ours['aggregate_decode_tokens_per_s'] / theirs['aggregate_decode_tokens_per_s']:.2f}x transformers (goal at 32: >= 6x)"
        print(line)
for name in ("check-tiny.json", "check-tiny-ungrouped.json", "check-tiny-warp-nograph.json",
             "check-tiny-plain.json", "check-7b.json"):
    c = read(name)
    if c:
        print(f"{name[:-5]}: {c['identical_sequences']}/{c['sequences']} sequences identical to alone over {c['steps']} steps, "
              f"token agreement {c['token_agreement']:.4f}, max logit diff {c['max_logit_diff']:.2e} ({c['precision']}); "
              f"through the scheduler {c.get('scheduled_identical_sequences')}/{c['sequences']} identical, "
              f"{c.get('scheduled_steps_ahead')} steps launched ahead")
t = read("check-7b-teacher-b16.json")
if t:
    f32 = t["vs_f32"]
    print(f"bf16 teacher-forced at batch {t['batch']} ({t['steps']} steps each), top-1 agreement with f32: Arbiter "
          f"{f32['arbiter_bf16_batched']['all']:.4f}, transformers batched {f32['transformers_bf16_batched']['all']:.4f} "
          f"(alone, one pass: {f32['transformers_bf16_forward']['all']:.4f}); allowance {t['allowance']:.4f}, "
          f"{'pass' if t['pass'] else 'FAIL'}")
    err = t.get("logit_error", {})
    if err:
        theirs = err["transformers_bf16_batched"]
        print("  logit error against f32 (RMS over all logits / over the f32 top-2 margin), as a ratio to "
              f"transformers batched ({theirs['logit_rms']:.5f} / {theirs['margin_rms']:.5f}): Arbiter "
              f"{err['arbiter_bf16_batched']['logit_rms'] / theirs['logit_rms']:.2f}x / "
              f"{err['arbiter_bf16_batched']['margin_rms'] / theirs['margin_rms']:.2f}x")
    for spec, v in t.get("variants", {}).items():
        e = v.get("logit_error")
        ratio = (f", logit error {e['logit_rms'] / theirs['logit_rms']:.2f}x / {e['margin_rms'] / theirs['margin_rms']:.2f}x"
                 if e and err else "")
        print(f"  {spec}: agreement {v['vs_f32']['all']:.4f} (only it right {v['only_this_matches_f32']}, only "
              f"transformers {v['only_transformers_matches_f32']}){ratio}")
walls = {b: read(f"e2e/b{b}/wall.json") for b in (1, 32)}
hf = read("e2e/transformers.json")
if walls[32]:
    w32 = walls[32]
    n = w32["judgments"]
    line = f"end to end, `arbiter run` of {n} judgments: {w32['wall_s']:.1f} s at batch 32 (load included)"
    if walls[1]:
        w1 = walls[1]
        scaled = w1["wall_s"] / w1["judgments"] * n
        line += (f"; batch 1: {w1['wall_s']:.1f} s for {w1['judgments']}, {scaled:.0f} s scaled to {n} "
                 f"({scaled / w32['wall_s']:.2f}x the batch-32 run)")
    if hf:
        scaled = hf["seconds_per_judgment"] * n
        line += (f"; transformers batch {hf['batch']}: {hf['wall_s']:.1f} s for {hf['judgments']}, {scaled:.0f} s "
                 f"scaled to {n} ({scaled / w32['wall_s']:.2f}x the batch-32 run)")
    print(line)
prof = read("profile-b32.json")
if prof and prof.get("step_profile"):
    gpu = [s for s in prof["step_profile"] if not s["stage"].startswith("host:")]
    host = [s for s in prof["step_profile"] if s["stage"].startswith("host:")]
    total = sum(s["ms_per_step"] for s in gpu)
    wall = 1e3 * 32 / prof["aggregate_decode_tokens_per_s"]
    print(f"\nbatch-32 decode step by stage (CUDA events, {total:.2f} ms a step of GPU time; "
          f"{wall:.2f} ms a step of wall time in this profiled run):\n")
    print("| stage | times a step | ms a step | share of GPU time |\n| --- | --- | --- | --- |")
    for st in gpu:
        print(f"| {st['stage']} | {st['per_step']:g} | {st['ms_per_step']:.3f} | {st['ms_per_step'] / total:.1%} |")
    for st in host:
        print(f"| {st['stage']} | {st['per_step']:g} | {st['ms_per_step']:.3f} | (host) |")

EOF
exit $status
