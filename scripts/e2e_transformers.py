#!/usr/bin/env python3
"""The transformers side of the end-to-end comparison in scripts/gpu_batch.sh: the prompts an
`arbiter run` sent (each judgment's `run.messages` in the dataset's journal), rendered with
Qwen2's ChatML turns, generated with `generate` in batches (left-padded, greedy, exactly
--new-tokens each, end-of-turn ignored: the fixed-length critiques of Arbiter's run):

    python3 scripts/e2e_transformers.py RUN_DIR MODEL_DIR --batch 32 --judgments 64

Prints JSON: judgments run, wall seconds (model load excluded, tokenization and padding
included), seconds a judgment, and that rate scaled to every judgment the journal holds (the
batches are independent, so the wall time grows with their number).
"""
import argparse
import json
import os
import time


def journal_messages(run_dir):
    """Every judgment's messages, in the order the journals hold them."""
    found = []
    for root, _, files in os.walk(run_dir):
        for name in sorted(files):
            if not name.endswith(".jsonl") or name == "items.jsonl":
                continue
            with open(os.path.join(root, name)) as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    stack = [record]
                    while stack:
                        node = stack.pop()
                        if isinstance(node, dict):
                            run = node.get("run")
                            if isinstance(run, dict) and isinstance(run.get("messages"), list):
                                found.append(run["messages"])
                                break
                            stack.extend(node.values())
                        elif isinstance(node, list):
                            stack.extend(node)
    return found


def chatml(messages):
    """Qwen2's chat format (the turns Arbiter's own renderer writes for this family)."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + "<|im_start|>assistant\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--judgments", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=512)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    args = ap.parse_args()

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    prompts = journal_messages(args.run_dir)
    if not prompts:
        raise SystemExit(f"no judgment with run.messages under {args.run_dir}")
    total = len(prompts)
    prompts = prompts[: args.judgments]
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.bfloat16, attn_implementation=args.attn
    ).to("cuda").eval()
    torch.cuda.synchronize()
    start = time.perf_counter()
    prompt_tokens = 0
    for i in range(0, len(prompts), args.batch):
        ids = [tok.encode(chatml(m), add_special_tokens=False).ids for m in prompts[i : i + args.batch]]
        width = max(len(x) for x in ids)
        prompt_tokens += sum(len(x) for x in ids)
        # Left padding, so every row's next token follows its own prompt.
        pad = [[0] * (width - len(x)) + x for x in ids]
        mask = [[0] * (width - len(x)) + [1] * len(x) for x in ids]
        with torch.inference_mode():
            model.generate(
                input_ids=torch.tensor(pad, device="cuda"),
                attention_mask=torch.tensor(mask, device="cuda"),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    per = wall / len(prompts)
    print(json.dumps({
        "engine": "transformers",
        "attn": args.attn,
        "batch": args.batch,
        "judgments": len(prompts),
        "journal_judgments": total,
        "mean_prompt_tokens": prompt_tokens / len(prompts),
        "new_tokens": args.new_tokens,
        "wall_s": wall,
        "seconds_per_judgment": per,
        "scaled_wall_s": per * total,
    }, indent=2))


if __name__ == "__main__":
    main()
