#!/usr/bin/env python3
"""Write a randomly initialised Qwen2 checkpoint that Arbiter and transformers both load:
config.json, safetensors (transformers' `save_pretrained`) and a tokenizer.json.

    python3 scripts/make_random_qwen2.py OUT --preset 7b          # Qwen2.5-7B's shapes, bf16
    python3 scripts/make_random_qwen2.py OUT --preset tiny --dtype f32
    python3 scripts/make_random_qwen2.py OUT --preset small --dtype bf16  # precision on a CPU

Random weights have the real model's compute and memory traffic, so speed measured on them is
the real model's; they say nothing about judging quality. The tokenizer is a byte-level BPE
trained here on this repository's own text (not Qwen's vocabulary): token ids are what both
engines are fed, so the benchmark does not depend on which vocabulary produced them.

Needs torch, transformers and tokenizers (all on the GPU machine).
"""
import argparse
import glob
import json
import os
import time

PRESETS = {
    # Qwen2.5-7B-Instruct (and so CompassJudger-2-7B): the shapes that set the speed.
    "7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    ),
    # The 7B in miniature for precision checks on a CPU: heads of 128 and grouped-query
    # attention 6:1 (the 7B's 7:1 is close), an untied output head, 4 layers.
    "small": dict(
        hidden_size=1536,
        intermediate_size=4096,
        num_hidden_layers=4,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=16384,
        max_position_embeddings=8192,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    ),
    # Small enough for an f32 check of every logit, with grouped-query attention, biases and
    # heads of 64 (the 7B's are 128: the fused kernels have both sizes).
    "tiny": dict(
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=4096,
        max_position_embeddings=8192,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
}

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus(root):
    """Text to train the tokenizer on: the repository's own docs, sources and demo data."""
    paths = []
    for pattern in ("*.md", "docs/**/*.md", "src/**/*.rs", "assets/*.jsonl", "tests/*.py"):
        paths += glob.glob(os.path.join(root, pattern), recursive=True)
    for path in sorted(paths):
        with open(path, encoding="utf-8", errors="replace") as f:
            yield f.read()


def write_tokenizer(out, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tok.train_from_iterator(corpus(root), trainer)
    tok.save(os.path.join(out, "tokenizer.json"))
    return {s: tok.token_to_id(s) for s in SPECIAL}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="7b")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-vocab", type=int, default=4000)
    args = ap.parse_args()

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    special = write_tokenizer(args.out, args.tokenizer_vocab)
    shape = dict(PRESETS[args.preset])
    config = Qwen2Config(
        **shape,
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|im_end|>"],
        hidden_act="silu",
        initializer_range=0.02,
        use_sliding_window=False,
    )
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(config, dtype=dtype)
    # Qwen2 has q/k/v biases; transformers initialises them to zero, which would leave the bias
    # path untested. Give them (and the norms) small random values too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.02)
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="4GB")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": special["<|im_end|>"]}, f)
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps(
            {
                "out": args.out,
                "preset": args.preset,
                "dtype": args.dtype,
                "parameters": params,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
