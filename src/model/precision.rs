//! Inference in bfloat16 where the hardware computes it natively: CPUs with AVX512-BF16 or AMX
//! (oneDNN runs libtorch's bf16 convolutions on those units) and CUDA GPUs. Elsewhere bf16 is
//! emulated and slower than fp32, so it is refused with a message rather than run.
//!
//! Only the convolutions run in bf16: each network's input is cast to the weights' type and its
//! output back to fp32, so the image arithmetic around them (adding the change, clamping, the
//! sigmoid's threshold) stays fp32 (`crate::model::seed`).

use anyhow::{bail, Result};
use tch::{Device, Kind};

/// The number format of the model's weights and convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats (what the models were trained in).
    #[default]
    Fp32,
    /// bfloat16: 8 exponent bits like fp32, 8 significand bits.
    Bf16,
}

impl Precision {
    /// The tensor kind of this format (`Float` or `BFloat16`).
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// Refuses bf16 on a device without native bf16 arithmetic, naming what is missing.
    pub fn check(self, device: Device) -> Result<()> {
        if self == Precision::Fp32 || device.is_cuda() {
            return Ok(());
        }
        let flags = cpu_flags();
        if !has_bf16_units(&flags) {
            bail!(
                "--precision bf16: this CPU has neither AVX512-BF16 nor AMX-BF16 (no avx512_bf16 \
                 or amx_bf16 in /proc/cpuinfo), so libtorch would emulate bf16 and run slower \
                 than fp32; use --precision fp32 here"
            );
        }
        Ok(())
    }
}

/// The flags line of the first CPU in /proc/cpuinfo (empty where there is none).
pub fn cpu_flags() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("flags"))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Whether a /proc/cpuinfo flags line names a bf16 unit.
pub fn has_bf16_units(flags: &str) -> bool {
    flags
        .split_whitespace()
        .any(|f| f == "avx512_bf16" || f == "amx_bf16")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_units_are_read_from_the_flags() {
        assert!(has_bf16_units("flags : fpu avx2 avx512f avx512_bf16 vaes"));
        assert!(has_bf16_units("flags : fpu amx_bf16 amx_tile"));
        assert!(!has_bf16_units("flags : fpu avx2 avx512f avx512_vnni"));
        assert!(!has_bf16_units(""));
        assert!(Precision::Fp32.check(Device::Cpu).is_ok());
    }
}
