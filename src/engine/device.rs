//! Where a model runs: `cpu`, `cuda[:N]` or `metal[:N]`, as this build allows, the dtype each
//! device computes in, and how much memory it has free.

use candle_core::{DType, Device};
use std::fmt;
use std::str::FromStr;

/// The device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda(usize),
    Metal(usize),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeviceError {
    #[error("`{0}` is not a device: use cpu, cuda, cuda:N, metal or metal:N")]
    Unknown(String),
    #[error("this build of Arbiter has no {0} support: rebuild with `cargo build --release --features {0}`, or use --device cpu")]
    NotBuilt(&'static str),
    #[error("cannot open {device}: {why}")]
    Open { device: String, why: String },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (kind, index) = match lower.split_once(':') {
            Some((k, i)) => (
                k,
                i.parse::<usize>()
                    .map_err(|_| DeviceError::Unknown(s.to_string()))?,
            ),
            None => (lower.as_str(), 0),
        };
        match kind {
            "cpu" if !lower.contains(':') => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(index)),
            "metal" | "mps" => Ok(DeviceChoice::Metal(index)),
            _ => Err(DeviceError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceChoice::Metal(i) => write!(f, "metal:{i}"),
        }
    }
}

impl DeviceChoice {
    /// The devices this build can use, for help texts and the GUI's menu.
    pub fn built() -> Vec<&'static str> {
        let mut v = vec!["cpu"];
        if cfg!(feature = "cuda") {
            v.push("cuda");
        }
        if cfg!(feature = "metal") {
            v.push("metal");
        }
        v
    }

    /// The best device this build has: the first GPU when built with one, else the CPU.
    pub fn best_available() -> DeviceChoice {
        if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
            DeviceChoice::Cuda(0)
        } else if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
            DeviceChoice::Metal(0)
        } else {
            DeviceChoice::Cpu
        }
    }

    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(i) => {
                if !cfg!(feature = "cuda") {
                    return Err(DeviceError::NotBuilt("cuda"));
                }
                let device = Device::new_cuda(i).map_err(|e| DeviceError::Open {
                    device: self.to_string(),
                    why: e.to_string(),
                })?;
                #[cfg(feature = "cuda")]
                if let Device::Cuda(cuda) = &device {
                    // Every buffer would otherwise carry two CUDA events, created and destroyed
                    // with it (four driver calls an allocation, a few hundred a decode step),
                    // that only synchronise several streams: the engine runs on one.
                    // SAFETY: nothing here creates a second stream, so no buffer is shared
                    // between streams that the events would have ordered.
                    unsafe { cuda.disable_event_tracking() };
                }
                Ok(device)
            }
            DeviceChoice::Metal(i) => {
                if !cfg!(feature = "metal") {
                    return Err(DeviceError::NotBuilt("metal"));
                }
                Device::new_metal(i).map_err(|e| DeviceError::Open {
                    device: self.to_string(),
                    why: e.to_string(),
                })
            }
        }
    }

    /// The dtype safetensors weights load in unless the user picks one: bf16 on GPUs (what
    /// the judges were trained in), f32 on the CPU, where candle's bf16 matmul is slow.
    pub fn default_dtype(self) -> DType {
        match self {
            DeviceChoice::Cpu => DType::F32,
            DeviceChoice::Cuda(_) | DeviceChoice::Metal(_) => DType::BF16,
        }
    }
}

/// Parses `f32`, `f16` or `bf16`.
pub fn parse_dtype(s: &str) -> Result<DType, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" | "half" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(format!("`{other}` is not a dtype: use f32, f16 or bf16")),
    }
}

/// Memory free for a model on `device`, in bytes, when it can be known.
pub fn available_memory(device: &Device) -> Option<u64> {
    if device.is_cpu() {
        return cpu_available_memory();
    }
    gpu_available_memory(device)
}

fn cpu_available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
}

fn gpu_available_memory(device: &Device) -> Option<u64> {
    gpu_memory(device).map(|(free, _)| free)
}

/// Free and total memory of a CUDA device, in bytes; `None` elsewhere or if it cannot be read.
#[cfg(feature = "cuda")]
fn gpu_memory(device: &Device) -> Option<(u64, u64)> {
    use candle_core::cuda_backend::cudarc::driver::result;
    let Device::Cuda(cuda) = device else {
        return None;
    };
    // The device's context must be current for the query.
    cuda.cuda_stream().context().bind_to_thread().ok()?;
    result::mem_get_info()
        .ok()
        .map(|(free, total)| (free as u64, total as u64))
}

#[cfg(not(feature = "cuda"))]
fn gpu_memory(_device: &Device) -> Option<(u64, u64)> {
    None
}

/// GPU memory in use on `device` (total minus free, the CUDA context included).
fn gpu_used_memory(device: &Device) -> Option<u64> {
    gpu_memory(device).map(|(free, total)| total - free)
}

/// Samples a GPU's memory in use every 2 ms on its own thread, for a benchmark's peak: the
/// allocator hands freed memory back to the driver, so a reading after the work would miss it.
pub struct GpuMemoryWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<u64>>>,
}

impl GpuMemoryWatch {
    /// Starts watching `device`; on the CPU the watch reports nothing.
    pub fn start(device: &Device) -> GpuMemoryWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = (!device.is_cpu()).then(|| {
            let (device, stop) = (device.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut peak = gpu_used_memory(&device);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(gpu_used_memory(&device));
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                peak.max(gpu_used_memory(&device))
            })
        });
        GpuMemoryWatch { stop, thread }
    }

    /// Stops watching; the highest reading, `None` on the CPU or where it cannot be read.
    pub fn finish(mut self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(DeviceChoice::Cuda(1)));
        assert_eq!("metal".parse(), Ok(DeviceChoice::Metal(0)));
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("cpu:1".parse::<DeviceChoice>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_device_not_built_says_how_to_get_it() {
        let e = DeviceChoice::Cuda(0).open().unwrap_err();
        assert!(e.to_string().contains("--features cuda"), "{e}");
    }

    #[test]
    fn cpu_memory_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(available_memory(&Device::Cpu).unwrap_or(0) > 0);
        }
    }
}
