//! The seed's Keras graph, layer for layer, with the Keras layer names as variable names
//! (`convl1e.weight`, `convl1e.bias`, ...), Glorot-uniform kernels and zero biases as Keras
//! initialises them.
//!
//! ```text
//! image -> convl1e 16 -> convl2e 32 -> convl3e 8 -> dropout -> reconstructed_I 1   (encoder)
//!       -> + watermark map (the model's second input)
//!       -> convl1d 16 -> convl2d 32 -> convl3d 8 -> dropout -> decoder_output 1    (decoder)
//!       =  watermarked image
//!       -> conl1w 16 -> convl2w 32 -> conl3w 8 -> dropout -> reconstructed_W 1x1  (extractor)
//!       =  watermark map (sigmoid, or exact 0/1 with the `hard` head)
//! ```
//! All kernels are 3x3 with `same` padding and relu, but reconstructed_W (1x1, sigmoid).
//!
//! CPU speed (see `wmae bench`): on the CPU the kernels are stored channels-last, so libtorch's
//! oneDNN convolutions run in NHWC without reordering every activation, and dropout draws its
//! keep-mask from packed random bits instead of one generator call per element.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Keras `Dropout(0.25)` after the third convolution of each block.
pub const DROPOUT: f64 = 0.25;

/// DROPOUT in quarters: the packed mask decides each element from 2 random bits.
const DROPOUT_QUARTERS: i64 = 1;
const _: () = assert!(DROPOUT == DROPOUT_QUARTERS as f64 / 4.0);

/// How dropout draws its keep-mask: the same Bernoulli(1 - DROPOUT) per element either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DropoutMask {
    /// libtorch's dropout: one `bernoulli_` draw per element (about 10 ns each on the CPU,
    /// where the generator is serial).
    Bernoulli,
    /// 2 bits per element cut from 31-bit integer draws: 15 elements per generator call.
    PackedBits,
}

impl DropoutMask {
    /// Packed bits on the CPU; libtorch's own on CUDA, whose generator is parallel.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => DropoutMask::PackedBits,
            _ => DropoutMask::Bernoulli,
        }
    }
}

/// Inverted dropout of `DROPOUT` (scaled by 1 / (1 - DROPOUT) in training, identity otherwise).
pub fn dropout(xs: &Tensor, mask: DropoutMask, train: bool) -> Tensor {
    if !train {
        return xs.shallow_clone();
    }
    match mask {
        DropoutMask::Bernoulli => xs.dropout(DROPOUT, true),
        DropoutMask::PackedBits => {
            const PER_DRAW: i64 = 15;
            let n = xs.numel() as i64;
            // `random_` on int32 is uniform on [0, 2^31): its low 30 bits are 15 fair 2-bit fields.
            let mut draws =
                Tensor::empty([(n + PER_DRAW - 1) / PER_DRAW, 1], (Kind::Int, xs.device()));
            let _ = draws.random_();
            let shifts = Tensor::arange_start_step(0, 2 * PER_DRAW, 2, (Kind::Int, xs.device()));
            let keep = draws
                .bitwise_right_shift(&shifts)
                .bitwise_and(3)
                .ge(DROPOUT_QUARTERS)
                .view([-1])
                .narrow(0, 0, n)
                .view_as(xs)
                .to_kind(xs.kind())
                * (1.0 / (1.0 - DROPOUT));
            // One multiplication forward and one backward, by a mask that needs no gradient.
            xs * keep
        }
    }
}

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

/// A Keras Conv2D: Glorot-uniform kernel, zero bias, `same` padding.
fn conv(vs: &nn::Path, name: &str, c_in: i64, c_out: i64, k: i64) -> nn::Conv2D {
    let fan_in = (c_in * k * k) as f64;
    let fan_out = (c_out * k * k) as f64;
    let limit = (6.0 / (fan_in + fan_out)).sqrt();
    let config = nn::ConvConfig {
        padding: k / 2,
        ws_init: nn::Init::Uniform {
            lo: -limit,
            up: limit,
        },
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    let conv = nn::conv2d(vs / name, c_in, c_out, k, config);
    if KernelLayout::for_device(vs.device()) == KernelLayout::Nhwc {
        to_channels_last(&conv.ws);
    }
    conv
}

/// Gives a kernel NHWC strides (same NCHW shape and values) in place, so every handle to the
/// variable, the VarStore's included, sees the new layout.
fn to_channels_last(kernel: &Tensor) {
    tch::no_grad(|| {
        let nhwc = kernel
            .permute([0, 2, 3, 1])
            .contiguous()
            .permute([0, 3, 1, 2]);
        kernel.shallow_clone().set_data(&nhwc);
    });
}

/// Three 3x3 relu convolutions 1 -> 16 -> 32 -> 8, then dropout: the body every block shares.
#[derive(Debug)]
struct ConvStack {
    c1: nn::Conv2D,
    c2: nn::Conv2D,
    c3: nn::Conv2D,
    mask: DropoutMask,
}

impl ConvStack {
    fn new(vs: &nn::Path, names: [&str; 3]) -> Self {
        Self {
            c1: conv(vs, names[0], 1, 16, 3),
            c2: conv(vs, names[1], 16, 32, 3),
            c3: conv(vs, names[2], 32, 8, 3),
            mask: DropoutMask::for_device(vs.device()),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // In-place relu: a convolution's backward does not need its output, so no copy is kept.
        let mut h = xs.apply(&self.c1);
        let _ = h.relu_();
        let mut h = h.apply(&self.c2);
        let _ = h.relu_();
        let mut h = h.apply(&self.c3);
        let _ = h.relu_();
        dropout(&h, self.mask, train)
    }
}

/// The encoder: image -> `reconstructed_I` (before the watermark is added).
#[derive(Debug)]
pub struct Encoder {
    body: ConvStack,
    out: nn::Conv2D,
}

impl Encoder {
    pub fn new(vs: &nn::Path) -> Self {
        Self {
            body: ConvStack::new(vs, ["convl1e", "convl2e", "convl3e"]),
            out: conv(vs, "reconstructed_I", 8, 1, 3),
        }
    }

    pub fn forward_t(&self, image: &Tensor, train: bool) -> Tensor {
        self.body.forward_t(image, train).apply(&self.out).relu()
    }
}

/// The decoder: encoded + watermark map -> the watermarked image (`decoder_output`).
#[derive(Debug)]
pub struct Decoder {
    body: ConvStack,
    out: nn::Conv2D,
}

impl Decoder {
    pub fn new(vs: &nn::Path) -> Self {
        Self {
            body: ConvStack::new(vs, ["convl1d", "convl2d", "convl3d"]),
            out: conv(vs, "decoder_output", 8, 1, 3),
        }
    }

    pub fn forward_t(&self, merged: &Tensor, train: bool) -> Tensor {
        self.body.forward_t(merged, train).apply(&self.out).relu()
    }
}

/// The extractor: watermarked image -> watermark map (`reconstructed_W`, 1x1).
#[derive(Debug)]
pub struct Extractor {
    body: ConvStack,
    out: nn::Conv2D,
    head: Head,
}

impl Extractor {
    pub fn new(vs: &nn::Path, head: Head) -> Self {
        Self {
            body: ConvStack::new(vs, ["conl1w", "convl2w", "conl3w"]),
            out: conv(vs, "reconstructed_W", 8, 1, 1),
            head,
        }
    }

    pub fn forward_t(&self, watermarked: &Tensor, train: bool) -> Tensor {
        let probability = self
            .body
            .forward_t(watermarked, train)
            .apply(&self.out)
            .sigmoid();
        match self.head {
            Head::Sigmoid => probability,
            Head::Hard => straight_through_binarize(&probability),
        }
    }
}

/// Exact 0/1 (`p > 0.5`) forward, identity gradient to `p` backward. `p + (b - p).detach()` is
/// exactly `b` in floating point: for b = 1 and p in (0.5, 1], 1 - p is exact (Sterbenz), and
/// for b = 0, -p + p = 0.
pub fn straight_through_binarize(p: &Tensor) -> Tensor {
    let binary = p.gt(0.5).to_kind(p.kind());
    p + (binary - p).detach()
}

/// The whole watermark autoencoder: both heads from the image and the watermark map.
#[derive(Debug)]
pub struct WatermarkAutoencoder {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub extractor: Extractor,
}

/// The two heads of one forward pass.
pub struct Output {
    /// The watermarked image `(N,1,H,W)` (`decoder_output`).
    pub watermarked: Tensor,
    /// The extracted watermark map `(N,1,H,W)` (`reconstructed_W`).
    pub watermark_map: Tensor,
}

impl WatermarkAutoencoder {
    /// Builds the model's variables under `vs` (names at the root, as in Keras).
    pub fn new(vs: &nn::Path, head: Head) -> Self {
        Self {
            encoder: Encoder::new(vs),
            decoder: Decoder::new(vs),
            extractor: Extractor::new(vs, head),
        }
    }

    /// Chooses how dropout draws its mask (the default suits the device; benchmarks compare).
    pub fn set_dropout_mask(&mut self, mask: DropoutMask) {
        self.encoder.body.mask = mask;
        self.decoder.body.mask = mask;
        self.extractor.body.mask = mask;
    }

    /// The watermarked image: decoder(encoder(image) + watermark map).
    pub fn embed_t(&self, image: &Tensor, watermark_map: &Tensor, train: bool) -> Tensor {
        let merged = self.encoder.forward_t(image, train) + watermark_map;
        self.decoder.forward_t(&merged, train)
    }

    /// Both heads; dropout only when `train`.
    pub fn forward_t(&self, image: &Tensor, watermark_map: &Tensor, train: bool) -> Output {
        let watermarked = self.embed_t(image, watermark_map, train);
        let watermark_map = self.extractor.forward_t(&watermarked, train);
        Output {
            watermarked,
            watermark_map,
        }
    }
}

/// Number of trainable parameters (21,491 for the seed model).
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(Tensor::numel)
        .sum::<usize>() as i64
}

/// Memory layout of the convolution kernels; the activations follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KernelLayout {
    /// libtorch's default (contiguous NCHW): what the model uses on CUDA.
    Nchw,
    /// Channels-last strides: what the model uses on the CPU.
    Nhwc,
}

impl KernelLayout {
    /// What the model uses on `device`: channels-last on the CPU, libtorch's default elsewhere.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => KernelLayout::Nhwc,
            _ => KernelLayout::Nchw,
        }
    }
}

/// Re-lays every convolution kernel of `vs` out in `layout`; the values, names and shapes of the
/// variables do not change, and neither do the outputs beyond float rounding.
pub fn set_kernel_layout(vs: &nn::VarStore, layout: KernelLayout) {
    for (_, var) in vs.variables() {
        if var.dim() == 4 {
            match layout {
                KernelLayout::Nhwc => to_channels_last(&var),
                KernelLayout::Nchw => {
                    tch::no_grad(|| var.shallow_clone().set_data(&var.contiguous()))
                }
            }
        }
    }
}
