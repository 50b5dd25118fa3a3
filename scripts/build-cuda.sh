#!/usr/bin/env bash
# Build Arbiter with CUDA on a machine that has no CUDA toolkit and no GPU.
#
# nvcc and the CUDA libraries come from NVIDIA's PyPI packages (release 13.0). The driver library
# (libcuda.so) is not on PyPI: the link needs only its symbol names, so a stub exporting the
# driver functions cudarc declares is compiled here; at run time the real driver's libcuda.so.1
# is loaded instead. The binary is written to target/cuda/arbiter (stripped, no GUI unless
# ARBITER_CUDA_FEATURES says otherwise), built in target/cuda-build (the first build compiles
# candle's CUDA kernels: about 25 minutes on 2 cores).
#
# Run it where you want the binary to run from:
#   scripts/build-cuda.sh                      # builds target/cuda/arbiter for compute capability 9.0
#   CUDA_COMPUTE_CAP=89 scripts/build-cuda.sh  # another GPU generation
#   scripts/build-cuda.sh clippy               # lint the CUDA build instead
# On the GPU machine, point the loader at that machine's CUDA 13 libraries (cuBLAS, cuRAND, NVRTC,
# the runtime), e.g. LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib.
#
# Variables: ARBITER_CUDA_HOME (where the toolkit is unpacked, default ~/.cache/arbiter/cuda-13.0),
# CUDA_COMPUTE_CAP (default 90), ARBITER_CUDA_FEATURES (default "cuda"; "cuda gui" for the app).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
home="${ARBITER_CUDA_HOME:-$HOME/.cache/arbiter/cuda-13.0}"
cap="${CUDA_COMPUTE_CAP:-90}"
features="${ARBITER_CUDA_FEATURES:-cuda}"
site="$home/site"
tk="$site/nvidia/cu13"

if [ ! -x "$tk/bin/nvcc" ]; then
    echo "installing nvcc and the CUDA 13.0 libraries from PyPI into $site"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$site" \
        "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" \
        "nvidia-cuda-cccl==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-nvrtc==13.0.*" \
        "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*"
fi

# The linker looks for the unversioned names; the wheels ship only the versioned ones.
mkdir -p "$home/lib64"
for lib in "$tk"/lib/lib*.so.*; do
    base="$(basename "$lib")"
    ln -sf "$lib" "$home/lib64/${base%%.so.*}.so"
done

# Stub driver library: every cu* function cudarc's bindings declare, with the real soname.
cudarc_sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -1 || true)"
if [ -z "$cudarc_sys" ]; then
    (cd "$root" && cargo fetch --quiet)
    cudarc_sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)"
fi
if [ ! -f "$home/lib64/libcuda.so" ] || [ "$cudarc_sys" -nt "$home/lib64/libcuda.so" ]; then
    grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc_sys" | sed 's/pub unsafe fn //' | sort -u |
        sed 's/.*/int &(void) { return 999; }/' >"$home/libcuda_stub.c"
    cc -shared -fPIC -o "$home/lib64/libcuda.so" -Wl,-soname,libcuda.so.1 "$home/libcuda_stub.c"
fi

export CUDA_HOME="$tk"
export CUDA_PATH="$home"
export PATH="$tk/bin:$PATH"
export LIBRARY_PATH="$home/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="$cap"
export CUDARC_CUDA_VERSION=13000

cd "$root"
# A target folder of its own: the CPU build's target/release/arbiter (which the tests run) is
# never replaced by this one.
export CARGO_TARGET_DIR="${ARBITER_CUDA_TARGET:-$root/target/cuda-build}"
if [ "${1:-}" = "clippy" ]; then
    # Lint the CUDA-only code with the same toolchain setup.
    exec cargo clippy --release --no-default-features --features "$features" --lib --bins
fi
cargo build --release --no-default-features --features "$features" --bin arbiter
mkdir -p target/cuda
strip -o target/cuda/arbiter "$CARGO_TARGET_DIR/release/arbiter"
# Compressed for copying to a GPU machine (the PTX inside compresses about 7:1).
xz -T0 -6 -f -k target/cuda/arbiter
ls -l target/cuda/arbiter target/cuda/arbiter.xz
echo "built target/cuda/arbiter (CUDA 13.0, compute capability $cap, features: $features)"
