//! With the `cuda` feature, compiles the decoder's fused kernels (src/engine/model/cuda/) to
//! PTX with nvcc, as candle-kernels does for candle's own. Without it, does nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/engine/model/cuda/kernels.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var("NVCC")
        .ok()
        .or_else(|| {
            std::env::var("CUDA_HOME")
                .ok()
                .map(|home| format!("{home}/bin/nvcc"))
                .filter(|p| std::path::Path::new(p).exists())
        })
        .unwrap_or_else(|| "nvcc".to_string());
    // PTX for the oldest GPU with bf16 (compute 8.0) unless told otherwise: the driver
    // compiles it for the GPU it runs on.
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".to_string());
    let cap: String = cap.chars().filter(|c| c.is_ascii_digit()).collect();
    let ptx = out.join("arbiter_kernels.ptx");
    let status = std::process::Command::new(&nvcc)
        .args([
            "-ptx",
            "-O3",
            "-std=c++17",
            &format!("-arch=compute_{cap}"),
            "-o",
        ])
        .arg(&ptx)
        .arg("src/engine/model/cuda/kernels.cu")
        .status()
        .unwrap_or_else(|e| panic!("running {nvcc} (set NVCC or CUDA_HOME): {e}"));
    if !status.success() {
        panic!("{nvcc} failed to compile src/engine/model/cuda/kernels.cu");
    }
}
