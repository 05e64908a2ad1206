//! The networks: one file per architecture (`seed.rs`, the Keras graph of the seed), the parts
//! every architecture shares (the head, the two outputs, the parameter count) here, and the CPU
//! speed plumbing (kernel layout, packed dropout) in `cpu.rs`.

pub mod cpu;
pub mod jnd;
pub mod precision;
pub mod seed;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub use cpu::{dropout, set_kernel_layout, DropoutMask, KernelLayout, DROPOUT};
pub use seed::{Decoder, Encoder, Extractor, WatermarkAutoencoder};

/// A tensor with its name (a parameter, or an optimizer's state), as checkpoint files hold it.
pub type NamedTensor = (String, Tensor);
/// Tensors by name, as checkpoint files hold them.
pub type NamedTensors = Vec<NamedTensor>;

/// The graph around the seed's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// The Keras graph: the decoder's relu output is the watermarked image, redrawn whole.
    #[default]
    Seed,
    /// The same layers, but the watermarked image is the image plus the decoder's output (no
    /// relu: changes of either sign), clamped to [0, 1]: the model only writes a change, so its
    /// reconstruction error no longer caps the PSNR.
    SeedResidual,
    /// The residual graph with a perceptually shaped change: the decoder's output is bounded to
    /// a pattern in [-1,1] (`tanh`), and each pixel's change is that pattern times a fraction
    /// (`model.jnd_fraction`) of the pixel's just-noticeable difference (`crate::model::jnd`): strong in
    /// texture, faint in flat areas. Photos get the same shaping at full resolution.
    SeedJnd,
    /// The `seed-jnd` graph with a wider, deeper extractor (five 3x3 convolutions of 24
    /// channels, a 11x11 view): the same embedder, so a `seed-jnd` checkpoint's encoder and
    /// decoder start it and write the same pattern, and a reader that separates a faint pattern
    /// from the photo under it better than the seed's three layers of 16, 32 and 8.
    SeedJndWide,
}

impl Architecture {
    /// The name checkpoint metadata records.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Seed => "seed",
            Architecture::SeedResidual => "seed-residual",
            Architecture::SeedJnd => "seed-jnd",
            Architecture::SeedJndWide => "seed-jnd-wide",
        }
    }

    /// Whether the change is a pattern shaped by the image's JND (`seed-jnd` and its variants).
    pub fn is_shaped(self) -> bool {
        matches!(self, Architecture::SeedJnd | Architecture::SeedJndWide)
    }

    /// The architecture of a name [`Architecture::name`] gives; None for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Architecture::Seed,
            Architecture::SeedResidual,
            Architecture::SeedJnd,
            Architecture::SeedJndWide,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// The fraction of the just-noticeable difference a `seed-jnd` model changes a pixel by at full
/// pattern (|pattern| = 1), unless its config says otherwise.
pub const DEFAULT_JND_FRACTION: f64 = 0.25;

/// The decoder output of a `seed-jnd` model is read in units of this much luma (about 2.5
/// levels, a residual model's typical change) before `tanh` bounds it: a `seed-residual`
/// checkpoint then starts a shaped one with its own pattern at nearly full swing.
pub const JND_PATTERN_UNIT: f64 = 0.01;

/// Side of the square grayscale images the seed model takes.
pub const SEED_IMAGE_SIDE: i64 = 28;

/// The activation of the watermark head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// Sigmoid probabilities, as in the seed.
    #[default]
    Sigmoid,
    /// Exact 0/1 in the forward pass (sigmoid > 0.5), the sigmoid's gradient in the backward pass
    /// (straight-through estimator): the binary activation the seed's author asked for.
    Hard,
}

/// The two heads of one forward pass.
pub struct Output {
    /// The watermarked image `(N,1,H,W)` (`decoder_output`).
    pub watermarked: Tensor,
    /// The extracted watermark map `(N,1,H,W)` (`reconstructed_W`).
    pub watermark_map: Tensor,
}

/// Exact 0/1 (`p > 0.5`) forward, identity gradient to `p` backward. `p + (b - p).detach()` is
/// exactly `b` in floating point: for b = 1 and p in (0.5, 1], 1 - p is exact (Sterbenz), and
/// for b = 0, -p + p = 0.
pub fn straight_through_binarize(p: &Tensor) -> Tensor {
    let binary =
        crate::message::binarize::at_threshold(p, crate::message::binarize::DEFAULT_THRESHOLD);
    p + (binary - p).detach()
}

/// Number of parameters of the model, frozen ones included (21,491 for the seed model).
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.variables().values().map(Tensor::numel).sum::<usize>() as i64
}

/// Number of parameters training changes (all but a frozen embedder's).
pub fn trained_parameter_count(vs: &nn::VarStore) -> i64 {
    vs.variables()
        .values()
        .filter(|t| t.requires_grad())
        .map(Tensor::numel)
        .sum::<usize>() as i64
}
