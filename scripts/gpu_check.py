#!/usr/bin/env python3
"""Check that Arbiter's engine computes what transformers computes, on the GPU. Exits non-zero
on disagreement.

    python3 scripts/gpu_check.py tiny --arbiter target/cuda/arbiter
        A small random Qwen2 in f32: greedy tokens identical for 128 steps, and every logit of
        every step within 1e-3 of transformers'.
    python3 scripts/gpu_check.py teacher --arbiter target/cuda/arbiter --model DIR [--text F...]
        A bf16 checkpoint (the random 7B, or a trained model with --text): teacher-forced over
        the last 256 positions of a 4,000-token sequence (random tokens, or the files' text),
        the top token agrees with transformers' on at least 99% of steps.
        Arbiter runs them as decode steps (prefill, then one token at a time on the KV cache);
        transformers as one forward pass over the whole sequence (SDPA). The same agreement of
        transformers' own decode steps with its forward pass is printed beside it, as the
        noise floor of bf16, and all three are scored against the same weights computed in
        f32 (overall, and where the f32 top-2 gap is wider than a threshold).

Needs torch, transformers and tokenizers.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_arbiter(
    arbiter, model_dir, dtype, prompt, steps, force=None, logits_out=None, fused=True, chunk=None,
    graph=True,
):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"prompt": prompt, "steps": steps, "force": force}, f)
        tokens = f.name
    cmd = [arbiter, "logits", "--model", model_dir, "--device", "cuda", "--dtype", dtype]
    cmd += ["--tokens", tokens]
    if logits_out:
        cmd += ["--logits-out", logits_out]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    env = dict(os.environ, ARBITER_CUDA_FUSED="1" if fused else "0",
               ARBITER_CUDA_GRAPH="1" if graph else "0")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    os.unlink(tokens)
    return json.loads(out.strip().splitlines()[-1])


def tiny(args):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    # The reference in true f32: no TF32 in matrix products.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    work = tempfile.mkdtemp(prefix="arbiter-tiny-")
    model_dir = os.path.join(work, "tiny-qwen2")
    subprocess.run(
        [sys.executable, os.path.join(HERE, "make_random_qwen2.py"), model_dir]
        + ["--preset", "tiny", "--dtype", "f32", "--seed", str(args.seed)],
        check=True,
    )
    with open(os.path.join(model_dir, "config.json")) as f:
        saved = json.load(f)
    print("tiny config:", {k: v for k, v in saved.items() if "rope" in k}, file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager", device_map="cuda"
    ).eval()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(3, vocab, (args.prompt,), generator=gen).tolist()
    steps = args.steps
    ref_logits, ref_tokens = [], []
    with torch.inference_mode():
        out = model(torch.tensor([prompt], device="cuda"), use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
        for _ in range(steps):
            ref_logits.append(logits.cpu().numpy())
            nxt = int(logits.argmax())
            ref_tokens.append(nxt)
            out = model(torch.tensor([[nxt]], device="cuda"), past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
    ref_logits = np.stack(ref_logits)
    ok = True
    # Decode steps replayed from a CUDA graph (ARBITER_CUDA_GRAPH=1), launched kernel by kernel
    # (the default), and through candle's own ops.
    for fused, graph in ((True, True), (True, False), (False, False)):
        ok &= compare_tiny(args, model_dir, prompt, steps, vocab, ref_tokens, ref_logits, fused, graph)
    return ok


def compare_tiny(args, model_dir, prompt, steps, vocab, ref_tokens, ref_logits, fused, graph):
    import numpy as np

    raw = os.path.join(os.path.dirname(model_dir), "logits.f32")
    ours = run_arbiter(args.arbiter, model_dir, "f32", prompt, steps, logits_out=raw, fused=fused,
                       graph=graph)
    our_logits = np.fromfile(raw, dtype="<f4").reshape(steps, vocab)
    same = sum(a == b for a, b in zip(ours["top1"], ref_tokens))
    first_diff = next(
        (i for i, (a, b) in enumerate(zip(ours["top1"], ref_tokens)) if a != b), None
    )
    per_step = np.abs(our_logits - ref_logits).max(axis=1)
    max_diff = float(per_step.max())
    scale = float(np.abs(ref_logits).max())
    ok = same == steps and max_diff <= 1e-3
    print(
        json.dumps(
            {
                "check": "tiny-f32-greedy"
                + (" (CUDA graph)" if graph else "" if fused else " (fused kernels off)"),
                "steps": steps,
                "prompt_tokens": len(prompt),
                "identical_tokens": same,
                "first_difference_at": first_diff,
                "max_abs_logit_diff": max_diff,
                "max_abs_logit": scale,
                "max_abs_logit_diff_by_step": [float(per_step[i]) for i in (0, 1, 2, 8, 32, 64, steps - 1) if i < steps],
                "pass": ok,
            }
        ),
        flush=True,
    )
    return ok


def teacher(args):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.bfloat16, attn_implementation="sdpa", device_map="cuda"
    ).eval()
    vocab = model.config.vocab_size
    with open(os.path.join(args.model, "tokenizer.json")) as f:
        tok_vocab = len(json.load(f)["model"]["vocab"])
    gen = torch.Generator().manual_seed(args.seed)
    total, steps = args.positions, args.steps
    if args.text:
        # A trained model on prose: the text's own tokens, repeated if it is short.
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
        ids = []
        for path in args.text:
            with open(path) as f:
                ids += tok.encode(f.read()).ids
        seq = (ids * (total // len(ids) + 1))[:total]
    else:
        seq = torch.randint(3, min(vocab, tok_vocab), (total,), generator=gen).tolist()
    prompt, force = seq[: total - steps + 1], seq[total - steps + 1 :]
    with torch.inference_mode():
        # Logits after the prompt and after each forced token but the last: positions
        # len(prompt)-1 .. total-1.
        ids = torch.tensor([seq], device="cuda")
        full = model(ids, logits_to_keep=steps).logits[0].float()
        ref = full.argmax(-1).tolist()
        top2 = full.topk(2, dim=-1).values
        gaps = (top2[:, 0] - top2[:, 1]).tolist()
        # Transformers' own decode steps against its forward pass: the noise floor.
        out = model(torch.tensor([prompt], device="cuda"), use_cache=True)
        past, own = out.past_key_values, [int(out.logits[0, -1].argmax())]
        for t in force[: steps - 1]:
            out = model(torch.tensor([[t]], device="cuda"), past_key_values=past, use_cache=True)
            past = out.past_key_values
            own.append(int(out.logits[0, -1].argmax()))
    del model
    torch.cuda.empty_cache()
    # The same bf16 weights computed in f32 (exact upcast, no TF32): what bf16 arithmetic
    # approximates. Both engines' bf16 runs are scored against it.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="sdpa", device_map="cuda"
    ).eval()
    with torch.inference_mode():
        exact_logits = model(torch.tensor([seq], device="cuda"), logits_to_keep=steps).logits[0]
        exact = exact_logits.argmax(-1).tolist()
        top2 = exact_logits.topk(2, dim=-1).values
        exact_gaps = (top2[:, 0] - top2[:, 1]).tolist()
    del model, exact_logits
    torch.cuda.empty_cache()
    ours = run_arbiter(args.arbiter, args.model, "bf16", prompt, steps, force=force)
    agree = sum(a == b for a, b in zip(ours["top1"], ref)) / steps

    def vs_exact(tokens):
        """Top-1 agreement with the f32 computation: overall, and where its top-2 gap is
        wider than each threshold (a near-tie is decided by rounding)."""
        res = {"all": sum(a == b for a, b in zip(tokens, exact)) / steps}
        for gap in (0.05, 0.1, 0.2):
            picked = [(a, b) for a, b, g in zip(tokens, exact, exact_gaps) if g > gap]
            res[f"gap>{gap}"] = {
                "positions": len(picked),
                "agreement": sum(a == b for a, b in picked) / max(len(picked), 1),
            }
        return res
    for chunk in args.also_chunk:
        other = run_arbiter(args.arbiter, args.model, "bf16", prompt, steps, force=force, chunk=chunk)
        print(
            json.dumps(
                {
                    "prefill_chunk": chunk,
                    "top1_agreement": sum(a == b for a, b in zip(other["top1"], ref)) / steps,
                    "agreement_with_one_pass": sum(
                        a == b for a, b in zip(other["top1"], ours["top1"])
                    )
                    / steps,
                }
            ),
            flush=True,
        )
    floor = sum(a == b for a, b in zip(own, ref)) / steps
    misses = [
        {"step": i, "position": len(prompt) - 1 + i, "ours": a, "ref": b, "ref_gap": gaps[i]}
        for i, (a, b) in enumerate(zip(ours["top1"], ref))
        if a != b
    ]
    ok = agree >= 0.99
    print(
        json.dumps(
            {
                "check": "bf16-teacher-forced",
                "model": os.path.basename(os.path.normpath(args.model)),
                "tokens": "text" if args.text else "random",
                "steps": steps,
                "positions": f"{len(prompt) - 1}..{total - 1}",
                "top1_agreement": agree,
                "transformers_decode_vs_forward": floor,
                "vs_f32": {
                    "arbiter_bf16_decode": vs_exact(ours["top1"]),
                    "transformers_bf16_forward": vs_exact(ref),
                    "transformers_bf16_decode": vs_exact(own),
                },
                "f32_top2_gap_median": sorted(exact_gaps)[steps // 2],
                "disagreements": misses[:20],
                "pass": ok,
            }
        ),
        flush=True,
    )
    return ok


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tiny")
    t.add_argument("--arbiter", required=True)
    t.add_argument("--steps", type=int, default=128)
    t.add_argument("--prompt", type=int, default=200)
    t.add_argument("--seed", type=int, default=1)
    b = sub.add_parser("teacher")
    b.add_argument("--arbiter", required=True)
    b.add_argument("--model", required=True)
    b.add_argument("--positions", type=int, default=4000)
    b.add_argument("--steps", type=int, default=256)
    b.add_argument("--seed", type=int, default=2)
    b.add_argument(
        "--text", nargs="*", default=[], help="teacher-force these files' tokens instead of random ones"
    )
    b.add_argument(
        "--also-chunk", type=int, nargs="*", default=[], help="also prefill in chunks of these sizes"
    )
    args = ap.parse_args()
    ok = tiny(args) if args.what == "tiny" else teacher(args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
