#!/usr/bin/env bash
# Runs the quantized matmul's unit tests (src/engine/model/quant.rs) as an aarch64 binary under
# qemu-user, so the NEON kernels are checked bit for bit against the portable tier on an x86
# machine: once on qemu's default CPU (dotprod: both NEON variants run) and once as a Cortex-A53
# (no dotprod: the plain NEON kernels only, and run-time detection must not pick `sdot`).
#
#   scripts/test_quant_aarch64.sh
#
# Needs the Rust aarch64-unknown-linux-gnu target, an aarch64 linker and qemu-user (Debian:
# `rustup target add aarch64-unknown-linux-gnu`, `apt-get install gcc-aarch64-linux-gnu
# qemu-user`). Only candle-core, half and thiserror are built for aarch64: quant.rs uses nothing
# else, so a small crate includes it by #[path] (as benches/quant.rs does) instead of
# cross-building the whole application. CARGO_TARGET_DIR defaults to target/quant-aarch64.
#
# The Cortex-A53 run skips `dequantized_reference_agrees`: it also runs candle's own QMatMul,
# whose aarch64 kernels execute `sdot` without checking for dotprod.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
crate="$(mktemp -d)"
trap 'rm -rf "$crate"' EXIT
mkdir -p "$crate/src"
cat > "$crate/Cargo.toml" <<TOML
[package]
name = "quant-aarch64"
version = "0.1.0"
edition = "2021"

[dependencies]
candle-core = "0.11"
half = "2"
thiserror = "2"
TOML
cat > "$crate/src/lib.rs" <<RS
#[allow(dead_code)]
#[path = "$root/src/engine/model/quant.rs"]
mod quant;
RS
# The application's lock file: the same candle as the application's own build.
cp "$root/Cargo.lock" "$crate/"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/quant-aarch64}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"
bin="$(cd "$crate" && cargo test --release --no-run --target aarch64-unknown-linux-gnu \
    --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
if [ -z "$bin" ]; then
    echo "the aarch64 test build failed; rerun without --message-format to see why" >&2
    exit 1
fi
sysroot="${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}"
echo "== qemu default CPU (dotprod)"
qemu-aarch64 -L "$sysroot" "$bin" --test-threads 2
echo "== Cortex-A53 (no dotprod)"
qemu-aarch64 -cpu cortex-a53 -L "$sysroot" "$bin" --test-threads 2 --skip dequantized_reference
