#!/usr/bin/env python3
"""Make the GGUF files the CPU kernels are tested and timed on, the way users' files are made:
llama.cpp's own quantizer (`llama_model_quantize` from llama-cpp-python) requantizing a model to
each type people download.

    python3 scripts/quantize_gguf.py smollm2 SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR
    python3 scripts/quantize_gguf.py qwen15b SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR --types q4_k_m
    python3 scripts/quantize_gguf.py smollm2 SRC OUT_DIR --types q4_k q6_k   # a subset

`smollm2` requantizes the given GGUF (CI's SmolLM2-135M, Q4_1) to every type below. `qwen15b`
first writes a randomly initialised model with Qwen2.5-1.5B's shapes (hidden 1536, 28 layers,
intermediate 8960, 12 heads / 2 KV heads, tied embeddings) as F16 with the `gguf` package,
borrowing the given file's tokenizer (its vocabulary, 49152 tokens, stands in for Qwen's: the
speed depends on the shapes, not on which tokens they are), then quantizes that. At width 1536
every K-quant applies to every matrix; at SmolLM2's 576 (not a multiple of 256) llama.cpp falls
back to Q5_0 / Q5_1 / Q8_0 for the matrices whose rows are 576 wide.

Files are written as OUT_DIR/<stem>.<TYPE>.gguf and kept: an existing file is not made again.
Each output path is printed, one per line.
"""
import argparse
import ctypes
import os
import sys

# Type name -> (llama.cpp file type, pure). "Pure" asks the quantizer for the one type on every
# matrix instead of its mix (Q4_K_M: Q6_K for some matrices, Q4_K elsewhere).
TYPES = {
    "q4_0": ("LLAMA_FTYPE_MOSTLY_Q4_0", False),
    "q4_1": ("LLAMA_FTYPE_MOSTLY_Q4_1", False),
    "q5_0": ("LLAMA_FTYPE_MOSTLY_Q5_0", False),
    "q5_1": ("LLAMA_FTYPE_MOSTLY_Q5_1", False),
    "q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", False),
    "q4_k": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", True),
    "q5_k": ("LLAMA_FTYPE_MOSTLY_Q5_K_M", True),
    "q6_k": ("LLAMA_FTYPE_MOSTLY_Q6_K", False),
    "q4_k_m": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", False),
    "q5_k_m": ("LLAMA_FTYPE_MOSTLY_Q5_K_M", False),
}

QWEN15B = dict(hidden=1536, layers=28, intermediate=8960, heads=12, kv_heads=2)


def quantize(src, dst, type_name, threads):
    import llama_cpp

    ftype, pure = TYPES[type_name]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.allow_requantize = True
    params.pure = pure
    params.nthread = threads
    tmp = dst + ".part"
    rc = llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize {src} -> {dst} ({type_name}) failed with {rc}")
    os.replace(tmp, dst)


def write_random_qwen2(tokenizer_src, dst, seed=0):
    """A Qwen2 GGUF with Qwen2.5-1.5B's shapes, F16 matrices (F32 norms and biases), random
    values of the scale trained weights have, and `tokenizer_src`'s tokenizer metadata."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(tokenizer_src)
    tok_fields = {k: f for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    vocab = len(tok_fields["tokenizer.ggml.tokens"].data)

    c = QWEN15B
    head_dim = c["hidden"] // c["heads"]
    w = gguf.GGUFWriter(dst + ".part", "qwen2")
    w.add_name("random-qwen2.5-1.5b-shape")
    w.add_context_length(32768)
    w.add_embedding_length(c["hidden"])
    w.add_block_count(c["layers"])
    w.add_feed_forward_length(c["intermediate"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, field in tok_fields.items():
        value = field.contents()
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(key, value)
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_string(key, value)
        elif vtype == gguf.GGUFValueType.BOOL:
            w.add_bool(key, value)
        else:
            w.add_uint32(key, int(value))

    rng = np.random.default_rng(seed)

    def matrix(rows, cols):
        # Scale as a trained layer's (about 1 / sqrt(cols)), so activations stay finite.
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float16)

    def vector(n, value=None):
        if value is not None:
            return np.full(n, value, dtype=np.float32)
        return (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float32)

    hid, kv = c["hidden"], c["kv_heads"] * head_dim
    w.add_tensor("token_embd.weight", matrix(vocab, hid))
    w.add_tensor("output_norm.weight", vector(hid, 1.0))
    for i in range(c["layers"]):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", vector(hid, 1.0))
        w.add_tensor(f"{p}.attn_q.weight", matrix(hid, hid))
        w.add_tensor(f"{p}.attn_q.bias", vector(hid))
        w.add_tensor(f"{p}.attn_k.weight", matrix(kv, hid))
        w.add_tensor(f"{p}.attn_k.bias", vector(kv))
        w.add_tensor(f"{p}.attn_v.weight", matrix(kv, hid))
        w.add_tensor(f"{p}.attn_v.bias", vector(kv))
        w.add_tensor(f"{p}.attn_output.weight", matrix(hid, hid))
        w.add_tensor(f"{p}.ffn_norm.weight", vector(hid, 1.0))
        w.add_tensor(f"{p}.ffn_gate.weight", matrix(c["intermediate"], hid))
        w.add_tensor(f"{p}.ffn_up.weight", matrix(c["intermediate"], hid))
        w.add_tensor(f"{p}.ffn_down.weight", matrix(hid, c["intermediate"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".part", dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=["smollm2", "qwen15b"])
    ap.add_argument("source", help="the SmolLM2 GGUF (requantized, or for qwen15b its tokenizer)")
    ap.add_argument("out_dir")
    ap.add_argument("--types", nargs="+", default=list(TYPES), choices=list(TYPES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        sys.exit(f"llama_cpp is not importable ({e}): pip install llama-cpp-python==0.3.36")

    os.makedirs(args.out_dir, exist_ok=True)
    if args.model == "smollm2":
        src = args.source
        stem = "SmolLM2-135M-Instruct"
    else:
        stem = "random-qwen2.5-1.5b"
        src = os.path.join(args.out_dir, f"{stem}.F16.gguf")
        if not os.path.exists(src):
            write_random_qwen2(args.source, src)
    for t in args.types:
        dst = os.path.join(args.out_dir, f"{stem}.{t.upper()}.gguf")
        if not os.path.exists(dst):
            quantize(src, dst, t, args.threads)
        print(dst, flush=True)


if __name__ == "__main__":
    main()
