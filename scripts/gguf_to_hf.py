#!/usr/bin/env python3
"""Convert a GGUF checkpoint to transformers' layout (safetensors, config.json, tokenizer.json)
through transformers' own GGUF reader, which dequantizes the weights and undoes llama.cpp's
q/k row order. Gives the GPU checks a trained model where none can be downloaded:

    python3 scripts/gguf_to_hf.py MODEL.gguf OUT_DIR [--dtype bf16]

Needs torch, transformers and the gguf package.
"""
import argparse
import os

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    args = ap.parse_args()
    folder, name = os.path.split(os.path.abspath(args.gguf))
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(args.out)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    # save_pretrained refuses a model that came through a GGUF quantizer; its weights are plain
    # tensors by now, so write them and the config directly (a tied head once, as the table).
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(args.out)
    print(f"wrote {args.out} ({model.config.model_type}, {model.num_parameters() / 1e6:.0f}M parameters, {args.dtype})")


if __name__ == "__main__":
    main()
