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
    python3 scripts/gpu_check.py teacher --batch N --arbiter target/cuda/arbiter --model DIR
        N sequences at once (4,000 positions, then 200 fewer for each next one, --stagger),
        each teacher-forced over its last 256 positions: Arbiter runs them as one batch
        (`arbiter logits` with an array: batched steps on the paged cache), transformers as
        one left-padded batch of the same N (prefill, then decode steps on its KV cache, SDPA).
        Both are scored against each sequence computed alone in f32; passes when Arbiter's
        top-1 agreement with f32 is no worse than transformers' batched one, within the noise
        of the positions where exactly one of the two is right (two standard deviations).
        Arbiter prefills in pieces of 512 tokens a sequence, as the engine does (--chunk).
        --variants VAR=VALUE[,VAR=VALUE] ... runs Arbiter's batch again under each environment
        (e.g. ARBITER_CUDA_PROMPT=f32) and scores each beside the plain run, against the same
        transformers and f32 results; an entry `alone` runs the sequences one at a time through
        the single stream instead (whether a difference is the batch's or the whole bf16 path's).
        Beside top-1 agreement, every engine's logit error against f32 is reported: the root
        mean square over all logits, and over the f32 top-2 margin (the error that decides a
        near-tie), far less noisy than agreement.
    Add --device cpu to run either teacher mode on the CPU (with a CPU build of arbiter).

Needs torch, transformers and tokenizers.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_arbiter(
    arbiter, model_dir, dtype, prompt, steps, force=None, logits_out=None, fused=True, chunk=None,
    graph=True, device="cuda", sequences=None, env=None, flags=(),
):
    """`arbiter logits` on one sequence, or on `sequences` (a list of {"prompt", "steps",
    "force"}) run as one batch; its JSON report."""
    body = sequences
    if body is None:
        body = {"prompt": prompt, "steps": steps, "force": force}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
        tokens = f.name
    cmd = [arbiter, "logits", "--model", model_dir, "--device", device, "--dtype", dtype]
    cmd += ["--tokens", tokens]
    if logits_out:
        cmd += ["--logits-out", logits_out]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    cmd += list(flags)
    extra = env or {}
    env = dict(os.environ, ARBITER_CUDA_FUSED="1" if fused else "0",
               ARBITER_CUDA_GRAPH="1" if graph else "0")
    env.update(extra)
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


def free_memory(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def vs_exact(tokens, exact, exact_gaps):
    """Top-1 agreement with the f32 computation: overall, and where its top-2 gap is wider than
    each threshold (a near-tie is decided by rounding)."""
    res = {"all": sum(a == b for a, b in zip(tokens, exact)) / len(exact)}
    for gap in (0.05, 0.1, 0.2):
        picked = [(a, b) for a, b, g in zip(tokens, exact, exact_gaps) if g > gap]
        res[f"gap>{gap}"] = {
            "positions": len(picked),
            "agreement": sum(a == b for a, b in picked) / max(len(picked), 1),
        }
    return res


def only_one_matches(a_picks, b_picks, exact):
    """Positions where `a_picks` matches the f32 top token and `b_picks` does not, and the
    reverse: the discordant pairs of McNemar's test."""
    only_a = sum(a == e != b for a, b, e in zip(a_picks, b_picks, exact))
    only_b = sum(b == e != a for a, b, e in zip(a_picks, b_picks, exact))
    return only_a, only_b


def text_ids(args):
    """The token ids of the --text files, in order."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    ids = []
    for path in args.text:
        with open(path) as f:
            ids += tok.encode(f.read()).ids
    return ids


def top_two(logits):
    """Each row's top token and the gap between its two largest logits."""
    top2 = logits.float().topk(2, dim=-1).values
    return logits.argmax(-1).tolist(), (top2[:, 0] - top2[:, 1]).tolist()


def top_two_ids(logits):
    """Each row's two largest logits' ids, (rows, 2), the first the argmax as `top_two` has it."""
    import torch

    first = logits.argmax(-1, keepdim=True)
    masked = logits.float().scatter(1, first, float("-inf"))
    return torch.cat([first, masked.argmax(-1, keepdim=True)], dim=1)


def padded_decode(model, prompts, forces, steps, device):
    """transformers' batched decode of several sequences at once: the prompts left-padded into
    one prefill (attention_mask hides the padding, position_ids count each sequence's own
    positions), then `steps - 1` decode steps on the KV cache, each feeding every sequence its
    next forced token. Each sequence's top token at every step."""
    import torch

    n, width = len(prompts), max(len(p) for p in prompts)
    # Token 0 in the padding: any id does, attention never reads it.
    ids = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    picks = [[] for _ in prompts]
    rows = [[] for _ in prompts]
    out = model(ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    past, last = out.past_key_values, positions[:, -1:]
    for step in range(steps):
        logits = out.logits[:, -1]
        for i, t in enumerate(logits.argmax(-1).tolist()):
            picks[i].append(t)
        for i, row in enumerate(logits.to("cpu")):
            rows[i].append(row)
        if step + 1 == steps:
            break
        fed = torch.tensor([[f[step]] for f in forces], device=device)
        mask = torch.cat([mask, mask.new_ones((n, 1))], dim=1)
        last = last + 1
        out = model(
            fed, attention_mask=mask, position_ids=last, past_key_values=past, use_cache=True
        )
        past = out.past_key_values
    return picks, [torch.stack(r) for r in rows]


class LogitError:
    """How far an engine's logits are from the f32 computation's, summed over positions: the
    root mean square over every logit, and over the f32 top-2 margin (the gap between the
    f32 top two tokens, as the engine sees it, less the f32 gap: the error that decides a
    near-tie). Far less noisy than top-1 agreement, which counts only the flips."""

    def __init__(self):
        self.sq, self.values, self.margin_sq, self.margin_sum, self.positions = 0.0, 0, 0.0, 0.0, 0

    def add(self, logits, exact, top2):
        """`logits` and `exact` (steps, vocab); `top2` (steps, 2): the f32 top two ids."""
        import torch

        logits, exact = logits.float(), exact.float()
        diff = logits - exact
        self.sq += float((diff.double() ** 2).sum())
        self.values += diff.numel()
        a, b = top2[:, 0:1], top2[:, 1:2]
        err = (logits.gather(1, a) - logits.gather(1, b)) - (exact.gather(1, a) - exact.gather(1, b))
        self.margin_sq += float((err.double() ** 2).sum())
        self.margin_sum += float(err.double().sum())
        self.positions += err.numel()
        return self

    def report(self):
        import math

        n = max(self.positions, 1)
        return {
            "logit_rms": math.sqrt(self.sq / max(self.values, 1)),
            "margin_rms": math.sqrt(self.margin_sq / n),
            "margin_mean": self.margin_sum / n,
            "positions": self.positions,
        }

    def merged(self, other):
        out = LogitError()
        for k in vars(out):
            setattr(out, k, getattr(self, k) + getattr(other, k))
        return out


def arbiter_logits(path, steps_each, vocab):
    """The rows `arbiter logits --logits-out` wrote for a batch: one (steps, vocab) f32 tensor a
    sequence."""
    import numpy as np
    import torch

    flat = np.fromfile(path, dtype="<f4")
    if flat.size != sum(steps_each) * vocab:
        sys.exit(f"{path}: {flat.size} logits, expected {sum(steps_each)} steps x {vocab}")
    out, at = [], 0
    for n in steps_each:
        out.append(torch.from_numpy(flat[at * vocab : (at + n) * vocab].reshape(n, vocab)))
        at += n
    return out


def bf16_model(args):
    """The checkpoint in bf16 with SDPA on `args.device`, its vocabulary size and the
    tokenizer's (random tokens are drawn below both)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.bfloat16, attn_implementation="sdpa", device_map=args.device
    ).eval()
    with open(os.path.join(args.model, "tokenizer.json")) as f:
        tok_vocab = len(json.load(f)["model"]["vocab"])
    return model, model.config.vocab_size, tok_vocab


def f32_model(args):
    """The same checkpoint's bf16 weights computed in f32 (exact upcast, no TF32): what bf16
    arithmetic approximates, the reference both engines' bf16 runs are scored against."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="sdpa", device_map=args.device
    ).eval()


def teacher_batch(args):
    """`teacher --batch N`: Arbiter's batched bf16 decode and transformers' batched bf16
    decode of the same N sequences, each scored against that sequence computed alone in f32."""
    import math

    import torch

    dev, n, steps = args.device, args.batch, args.steps
    totals = [args.positions - i * args.stagger for i in range(n)]
    if totals[-1] <= steps:
        sys.exit(
            f"sequence {n - 1} would have {totals[-1]} positions, not more than --steps {steps}: "
            "raise --positions or lower --stagger"
        )
    model, vocab, tok_vocab = bf16_model(args)
    # The single mode's seed scheme: sequence 0 is the sequence `teacher` without --batch uses.
    gen = torch.Generator().manual_seed(args.seed)
    if args.text:
        ids = text_ids(args)
        ids = ids * (max(totals) // len(ids) + 2)
        # Each sequence from its own place in the text.
        seqs = [ids[i * 997 : i * 997 + t] for i, t in enumerate(totals)]
    else:
        seqs = [
            torch.randint(3, min(vocab, tok_vocab), (t,), generator=gen).tolist() for t in totals
        ]
    prompts = [s[: t - steps + 1] for s, t in zip(seqs, totals)]
    forces = [s[t - steps + 1 :] for s, t in zip(seqs, totals)]
    with torch.inference_mode():
        theirs, their_rows = padded_decode(model, prompts, forces, steps, dev)
        # Each sequence alone in one forward pass: what the single mode compares against.
        forward_rows = [
            model(torch.tensor([s], device=dev), logits_to_keep=steps).logits[0].to("cpu")
            for s in seqs
        ]
    forward = [r.argmax(-1).tolist() for r in forward_rows]
    del model
    free_memory(dev)
    # The same bf16 weights computed in f32 (exact upcast, no TF32), one sequence at a time;
    # its logits kept (on the host) to measure every engine's error against.
    model = f32_model(args)
    exact, gaps, exact_rows = [], [], []
    with torch.inference_mode():
        for s in seqs:
            logits = model(torch.tensor([s], device=dev), logits_to_keep=steps).logits[0]
            top, gap = top_two(logits)
            exact.append(top)
            gaps.append(gap)
            exact_rows.append(logits.to("cpu"))
    del model
    free_memory(dev)
    exact_top2 = [top_two_ids(r) for r in exact_rows]

    def errors(rows):
        """Each sequence's logit error against f32."""
        return [LogitError().add(r, e, t) for r, e, t in zip(rows, exact_rows, exact_top2)]

    def total(errs):
        out = LogitError()
        for e in errs:
            out = out.merged(e)
        return out.report()

    their_err, forward_err = errors(their_rows), errors(forward_rows)
    del their_rows, forward_rows
    sequences = [{"prompt": p, "steps": steps, "force": f} for p, f in zip(prompts, forces)]
    scratch = tempfile.mkdtemp()

    def run_batch(spec=""):
        """Arbiter's batch under `spec` (comma separated VAR=VALUE environment entries, and
        names of `arbiter logits` flags such as `alone`): its report, seconds, and each
        sequence's logit error."""
        items = [i for i in spec.split(",") if i]
        env = dict(i.split("=", 1) for i in items if "=" in i)
        flags = ["--" + i for i in items if "=" not in i]
        path = os.path.join(scratch, "logits.f32")
        began = time.monotonic()
        report = run_arbiter(
            args.arbiter, args.model, "bf16", None, None, chunk=args.chunk, device=dev,
            sequences=sequences, env=env, flags=flags, logits_out=path,
        )
        took = time.monotonic() - began
        errs = errors(arbiter_logits(path, [steps] * n, report["vocab"]))
        os.unlink(path)
        return report, took, errs

    report, arbiter_s, our_err = run_batch()
    ours = [s["top1"] for s in report["sequences"]]
    flat = lambda rows: [t for row in rows for t in row]
    exact_all, gaps_all = flat(exact), flat(gaps)
    ours_all, theirs_all = flat(ours), flat(theirs)
    # The same batch again under each --variants environment, scored the same way.
    variants = {}
    for spec in args.variants:
        other, took, errs = run_batch(spec)
        picks = flat([s["top1"] for s in other["sequences"]])
        only_this, only_transformers = only_one_matches(picks, theirs_all, exact_all)
        variants[spec] = {
            "vs_f32": vs_exact(picks, exact_all, gaps_all),
            "logit_error": total(errs),
            "only_this_matches_f32": only_this,
            "only_transformers_matches_f32": only_transformers,
            "arbiter_s": round(took, 2),
        }
    os.rmdir(scratch)
    per_sequence = [
        {
            "positions": f"{len(prompts[i]) - 1}..{totals[i] - 1}",
            "arbiter_bf16_batched": vs_exact(ours[i], exact[i], gaps[i]),
            "transformers_bf16_batched": vs_exact(theirs[i], exact[i], gaps[i]),
            "arbiter_vs_transformers_batched": sum(a == b for a, b in zip(ours[i], theirs[i]))
            / steps,
            "margin_rms": {
                "arbiter_bf16_batched": our_err[i].report()["margin_rms"],
                "transformers_bf16_batched": their_err[i].report()["margin_rms"],
            },
        }
        for i in range(n)
    ]
    scored = {
        "arbiter_bf16_batched": vs_exact(ours_all, exact_all, gaps_all),
        "transformers_bf16_batched": vs_exact(theirs_all, exact_all, gaps_all),
        "transformers_bf16_forward": vs_exact(flat(forward), exact_all, gaps_all),
    }
    logit_error = {
        "arbiter_bf16_batched": total(our_err),
        "transformers_bf16_batched": total(their_err),
        "transformers_bf16_forward": total(forward_err),
    }
    # Two bf16 computations that are equally good still pick differently on near-ties. Where
    # exactly one of them matches f32, which one does is close to a coin toss; with b and c
    # such positions for each, b - c has a standard deviation of about sqrt(b + c) when they
    # are equally good (McNemar's test). Arbiter passes unless it is behind by more than two
    # of those.
    only_ours, only_theirs = only_one_matches(ours_all, theirs_all, exact_all)
    allowance = 2 * math.sqrt(only_ours + only_theirs) / len(exact_all)
    ours_rate = scored["arbiter_bf16_batched"]["all"]
    theirs_rate = scored["transformers_bf16_batched"]["all"]
    ok = ours_rate >= theirs_rate - allowance
    print(
        json.dumps(
            {
                "check": "bf16-teacher-forced-batch",
                "model": os.path.basename(os.path.normpath(args.model)),
                "tokens": "text" if args.text else "random",
                "batch": n,
                "steps": steps,
                "arbiter_prefill_chunk": args.chunk,
                "arbiter_s": round(arbiter_s, 2),
                "variants": variants,
                "vs_f32": scored,
                "logit_error": logit_error,
                "arbiter_vs_transformers_batched": sum(a == b for a, b in zip(ours_all, theirs_all))
                / len(ours_all),
                "only_arbiter_matches_f32": only_ours,
                "only_transformers_matches_f32": only_theirs,
                "allowance": allowance,
                "arbiter_at_least_transformers": ours_rate >= theirs_rate,
                "f32_top2_gap_median": sorted(gaps_all)[len(gaps_all) // 2],
                "per_sequence": per_sequence,
                "pass": ok,
            }
        ),
        flush=True,
    )
    return ok


def teacher(args):
    import torch

    if args.batch > 1:
        return teacher_batch(args)
    dev = args.device
    model, vocab, tok_vocab = bf16_model(args)
    gen = torch.Generator().manual_seed(args.seed)
    total, steps = args.positions, args.steps
    if args.text:
        # A trained model on prose: the text's own tokens, repeated if it is short.
        ids = text_ids(args)
        seq = (ids * (total // len(ids) + 1))[:total]
    else:
        seq = torch.randint(3, min(vocab, tok_vocab), (total,), generator=gen).tolist()
    prompt, force = seq[: total - steps + 1], seq[total - steps + 1 :]
    with torch.inference_mode():
        # Logits after the prompt and after each forced token but the last: positions
        # len(prompt)-1 .. total-1.
        ids = torch.tensor([seq], device=dev)
        full = model(ids, logits_to_keep=steps).logits[0].float()
        ref = full.argmax(-1).tolist()
        top2 = full.topk(2, dim=-1).values
        gaps = (top2[:, 0] - top2[:, 1]).tolist()
        # Transformers' own decode steps against its forward pass: the noise floor.
        out = model(torch.tensor([prompt], device=dev), use_cache=True)
        past, own = out.past_key_values, [int(out.logits[0, -1].argmax())]
        for t in force[: steps - 1]:
            out = model(torch.tensor([[t]], device=dev), past_key_values=past, use_cache=True)
            past = out.past_key_values
            own.append(int(out.logits[0, -1].argmax()))
    del model
    free_memory(dev)
    # The same bf16 weights computed in f32 (exact upcast, no TF32): what bf16 arithmetic
    # approximates. Both engines' bf16 runs are scored against it.
    model = f32_model(args)
    with torch.inference_mode():
        exact_logits = model(torch.tensor([seq], device=dev), logits_to_keep=steps).logits[0]
        exact = exact_logits.argmax(-1).tolist()
        top2 = exact_logits.topk(2, dim=-1).values
        exact_gaps = (top2[:, 0] - top2[:, 1]).tolist()
    del model, exact_logits
    free_memory(dev)
    ours = run_arbiter(args.arbiter, args.model, "bf16", prompt, steps, force=force, device=dev)
    agree = sum(a == b for a, b in zip(ours["top1"], ref)) / steps
    for chunk in args.also_chunk:
        other = run_arbiter(
            args.arbiter, args.model, "bf16", prompt, steps, force=force, chunk=chunk, device=dev
        )
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
                    "arbiter_bf16_decode": vs_exact(ours["top1"], exact, exact_gaps),
                    "transformers_bf16_forward": vs_exact(ref, exact, exact_gaps),
                    "transformers_bf16_decode": vs_exact(own, exact, exact_gaps),
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
    b.add_argument(
        "--device", default="cuda", help="where both engines run (cpu: with a CPU build of arbiter)"
    )
    b.add_argument(
        "--batch", type=int, default=1,
        help="this many sequences at once, in both engines (1: one sequence, as before)",
    )
    b.add_argument(
        "--stagger", type=int, default=200,
        help="with --batch: each sequence this many positions shorter than the one before",
    )
    b.add_argument(
        "--variants", nargs="*", default=[],
        help="with --batch: also run Arbiter's batch under each of these environments "
        "(VAR=VALUE[,VAR=VALUE...]; an entry `alone` runs the sequences one at a time) and "
        "score each beside the plain run",
    )
    b.add_argument(
        "--chunk", type=int, default=512,
        help="with --batch: the most prompt tokens Arbiter feeds a sequence in one step "
        "(512, the engine's prefill piece)",
    )
    args = ap.parse_args()
    ok = tiny(args) if args.what == "tiny" else teacher(args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
