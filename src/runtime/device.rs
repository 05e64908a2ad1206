//! Device choice (cpu, cuda, auto), thread count and seeding.
//!
//! libtorch's CUDA backend lives in libtorch_cuda.so, which registers itself with libtorch when it
//! is loaded. The binary does not link it (see build.rs): it is loaded here, from the folder of
//! the libtorch the binary was built against, the first time a CUDA device is asked for.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The libtorch library folder found at build time (see build.rs).
pub const LIBTORCH_LIB: &str = env!("WMAE_LIBTORCH_LIB");

/// Where to run: `auto` takes the first CUDA device when one is usable, the CPU otherwise.
// The variants have no doc comments on purpose: clap would print them as `--device` help for
// every subcommand, switching each `--help` to its long layout to repeat what the option's own
// help already says of cpu, cuda and auto.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    #[default]
    Auto,
}

/// Loads libtorch_cuda.so once; the result (or why it failed) is kept for later calls.
fn load_cuda_backend() -> &'static std::result::Result<(), String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let path = PathBuf::from(LIBTORCH_LIB).join("libtorch_cuda.so");
        if !path.is_file() {
            return Err(format!("{} does not exist", path.display()));
        }
        // RTLD_GLOBAL so that the CUDA kernels' symbols are visible to libtorch, RTLD_NOW so a
        // missing CUDA library is reported here rather than at the first kernel launch.
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
        // SAFETY: loading libtorch_cuda runs its static initialisers, which only register the
        // CUDA backend with the libtorch this process already uses (same folder, same version).
        match unsafe { libloading::os::unix::Library::open(Some(&path), flags) } {
            Ok(lib) => {
                // Kept loaded for the life of the process: libtorch holds pointers into it.
                std::mem::forget(lib);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

/// Registers libtorch's CUDA backend before anything asks libtorch about GPUs, when `choice` may
/// use one. libtorch looks its CUDA hooks up once and keeps the answer: a query made before
/// libtorch_cuda.so is loaded (`at::manual_seed` counts the GPUs, for one) would leave the GPU
/// invisible for the rest of the process. A failure is kept and reported by [`DeviceChoice::resolve`].
pub fn prepare_backend(choice: DeviceChoice) {
    if choice != DeviceChoice::Cpu {
        let _ = load_cuda_backend();
    }
}

/// Whether a CUDA device can be used (loads the CUDA backend on first call).
pub fn cuda_usable() -> bool {
    load_cuda_backend().is_ok() && tch::Cuda::is_available()
}

impl DeviceChoice {
    /// The tch device for this choice; `cuda` fails with the fix when no GPU can be used.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Auto => Ok(if cuda_usable() {
                tch::Device::Cuda(0)
            } else {
                tch::Device::Cpu
            }),
            DeviceChoice::Cuda => {
                if let Err(why) = load_cuda_backend() {
                    bail!(
                        "--device cuda: the CUDA backend of libtorch cannot be loaded ({why}). \
                         This is the CPU-only libtorch set-up; install the CUDA one with \
                         `scripts/setup-libtorch cuda` (on a machine with an NVIDIA GPU), \
                         or use --device cpu"
                    );
                }
                if !tch::Cuda::is_available() {
                    bail!(
                        "--device cuda: libtorch's CUDA backend is installed but sees no GPU \
                         (is there an NVIDIA GPU and driver? `nvidia-smi` should list it); \
                         use --device cpu"
                    );
                }
                Ok(tch::Device::Cuda(0))
            }
        }
    }
}

/// Number of CPU threads libtorch uses: `requested`, or all cores.
pub fn set_threads(requested: Option<usize>) -> Result<usize> {
    let n = match requested {
        Some(0) => bail!("--threads 0: the thread count must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    tch::set_num_threads(n as i32);
    Ok(n)
}

/// Seeds libtorch's generators (CPU and CUDA) for reproducible runs; call [`prepare_backend`] first.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// A one-line description of the device, for logs.
pub fn describe(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}
