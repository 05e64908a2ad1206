//! Watermark bits: fixed or random bits for training and evaluation, bit strings in and out. Where
//! the bits go in the map is the layout's business (`crate::message::layout`).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

pub use crate::message::layout::Layout;
use crate::runtime::splitmix::splitmix64;

/// How watermarks are drawn during training and evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The seed's protocol: one seeded random block for every training image, another for
    /// validation, another for test. A network can simply memorise it.
    Fixed,
    /// Fresh random bits for every image in every batch: what real watermarking needs.
    #[default]
    Random,
}

/// Which data the fixed watermark of `Mode::Fixed` is drawn for (each gets its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Training batches.
    Train = 1,
    /// Validation passes.
    Validation = 2,
    /// The test split (evaluation).
    Test = 3,
}

/// The fixed bits for `purpose`: a function of the seed alone, the same on every machine.
pub fn fixed_bits(layout: &Layout, seed: u64, purpose: Purpose) -> Vec<f32> {
    let base = splitmix64(seed ^ ((purpose as u64) << 56));
    (0..layout.bit_count() as u64)
        .map(|i| (splitmix64(base.wrapping_add(i)) >> 63) as f32)
        .collect()
}

/// Draws watermark bits for one purpose on one device. The fixed block is made once and lives
/// on the device, so drawing a batch never copies from the host.
pub struct BitSource {
    layout: Layout,
    mode: Mode,
    fixed: Tensor,
}

impl BitSource {
    /// A source of `layout`'s bits in `mode`; the fixed block (drawn from `seed` for `purpose`)
    /// is made at once, on `device`.
    pub fn new(layout: Layout, mode: Mode, seed: u64, purpose: Purpose, device: Device) -> Self {
        let fixed = Tensor::from_slice(&fixed_bits(&layout, seed, purpose))
            .reshape([1, layout.bit_count()])
            .to_device(device);
        Self {
            layout,
            mode,
            fixed,
        }
    }

    /// Bits of `n` images `(n, rows*cols)` as 0./1. floats: the fixed block repeated, or fresh
    /// bits from libtorch's (seeded) generator.
    pub fn draw(&self, n: i64) -> Tensor {
        match self.mode {
            Mode::Fixed => self.fixed.repeat([n, 1]),
            Mode::Random => random_bits(&self.layout, n, self.fixed.device()),
        }
    }
}

/// Fresh random bits `(n, rows*cols)` as 0./1. floats from libtorch's (seeded) generator: the one
/// place wmae draws random watermarks.
pub fn random_bits(layout: &Layout, n: i64, device: Device) -> Tensor {
    Tensor::randint(2, [n, layout.bit_count()], (Kind::Float, device))
}

/// Parses a bit string such as `0110...` of exactly `layout.bit_count()` characters.
pub fn parse_bits(text: &str, layout: &Layout) -> Result<Vec<f32>> {
    let want = layout.bit_count() as usize;
    let bits = text
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            '0' => Ok(0.0),
            '1' => Ok(1.0),
            other => bail!(
                "bits {text:?}: character {} is {other:?}, only 0 and 1 are allowed",
                i + 1
            ),
        })
        .collect::<Result<Vec<f32>>>()?;
    if bits.len() != want {
        bail!(
            "bits {text:?}: {} bits given, the watermark ({}) holds exactly {want}",
            bits.len(),
            layout.describe()
        );
    }
    Ok(bits)
}

/// Formats 0/1 values as a bit string.
pub fn format_bits(bits: &[f32]) -> String {
    bits.iter()
        .map(|&b| if b == 1.0 { '1' } else { '0' })
        .collect()
}
