//! Watermarks: a block of `rows x cols` bits placed at (`top`, `left`) of a zero map the size of
//! the image (the seed: 4x4 bits in the top-left corner of a 28x28 map), and the bits read back.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::splitmix::splitmix64;

/// Where the bits sit in the watermark map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub rows: i64,
    pub cols: i64,
    pub top: i64,
    pub left: i64,
    /// Size of the map, the image size.
    pub height: i64,
    pub width: i64,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            rows: 4,
            cols: 4,
            top: 0,
            left: 0,
            height: 28,
            width: 28,
        }
    }
}

impl Layout {
    /// Checks that the block is non-empty and lies inside the map; `key` names the config key.
    pub fn validate(&self, key: &str) -> Result<()> {
        if self.rows < 1 || self.cols < 1 {
            bail!(
                "{key}: rows and cols must be at least 1 (got {}x{})",
                self.rows,
                self.cols
            );
        }
        // Checked sums: a top or left near i64::MAX must not wrap around into "fits".
        let fits = |start: i64, len: i64, size: i64| {
            start >= 0 && start.checked_add(len).is_some_and(|end| end <= size)
        };
        if !fits(self.top, self.rows, self.height) || !fits(self.left, self.cols, self.width) {
            bail!(
                "{key}: a {}x{} block at top {}, left {} does not fit in a {}x{} image",
                self.rows,
                self.cols,
                self.top,
                self.left,
                self.height,
                self.width
            );
        }
        Ok(())
    }

    /// Bits the block holds.
    pub fn bit_count(&self) -> i64 {
        self.rows * self.cols
    }

    /// The watermark map `(N,1,H,W)`: zeros with `bits` `(N, rows*cols)` in the block.
    pub fn map_from_bits(&self, bits: &Tensor) -> Tensor {
        let n = bits.size()[0];
        let bottom = self.height - self.top - self.rows;
        let right = self.width - self.left - self.cols;
        bits.reshape([n, 1, self.rows, self.cols])
            .constant_pad_nd([self.left, right, self.top, bottom])
    }

    /// The block of a map `(N,1,H,W)`, flattened to `(N, rows*cols)` in row-major bit order.
    pub fn block(&self, map: &Tensor) -> Tensor {
        let n = map.size()[0];
        map.narrow(2, self.top, self.rows)
            .narrow(3, self.left, self.cols)
            .reshape([n, self.bit_count()])
    }

    /// A mask `(1,1,H,W)` that is 1 on the block and 0 elsewhere.
    pub fn block_mask(&self, kind: Kind, device: Device) -> Tensor {
        self.map_from_bits(&Tensor::ones([1, self.bit_count()], (kind, device)))
    }
}

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
    Train = 1,
    Validation = 2,
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
            "bits {text:?}: {} bits given, the {}x{} watermark block holds exactly {want}",
            bits.len(),
            layout.rows,
            layout.cols
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
