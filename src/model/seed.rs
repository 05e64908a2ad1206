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
//! How the CPU runs it faster (kernel layout, dropout masks) lives in `cpu.rs`.

use tch::nn;
use tch::Tensor;

use super::cpu::{self, dropout, DropoutMask};
use super::{straight_through_binarize, Architecture, Head, Output};

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
    cpu::place_kernel(&conv, vs.device());
    conv
}

/// A block's output in fp32 (a no-op unless the weights are bf16).
fn to_f32(xs: Tensor) -> Tensor {
    if xs.kind() == tch::Kind::Float {
        xs
    } else {
        xs.to_kind(tch::Kind::Float)
    }
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
        // The input in the weights' type: a no-op in fp32, the cast into bf16 inference
        // (`crate::model::precision`); each block's output is cast back to fp32 (`to_f32`).
        let xs = xs.to_kind(self.c1.ws.kind());
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
    /// Creates the encoder's variables under `vs`, with the Keras layer names.
    pub fn new(vs: &nn::Path) -> Self {
        Self {
            body: ConvStack::new(vs, ["convl1e", "convl2e", "convl3e"]),
            out: conv(vs, "reconstructed_I", 8, 1, 3),
        }
    }

    /// The encoded image `(N,1,H,W)`, fp32, from an image batch; `train` turns dropout on.
    pub fn forward_t(&self, image: &Tensor, train: bool) -> Tensor {
        to_f32(self.body.forward_t(image, train).apply(&self.out)).relu()
    }
}

/// The decoder: encoded + watermark map -> the watermarked image (`decoder_output`).
#[derive(Debug)]
pub struct Decoder {
    body: ConvStack,
    out: nn::Conv2D,
}

impl Decoder {
    /// Creates the decoder's variables under `vs`, with the Keras layer names.
    pub fn new(vs: &nn::Path) -> Self {
        Self {
            body: ConvStack::new(vs, ["convl1d", "convl2d", "convl3d"]),
            out: conv(vs, "decoder_output", 8, 1, 3),
        }
    }

    /// The watermarked image (`decoder_output`, after its relu) from the encoded image plus the
    /// watermark map; `train` turns dropout on.
    pub fn forward_t(&self, merged: &Tensor, train: bool) -> Tensor {
        self.change_t(merged, train).relu()
    }

    /// `decoder_output` before its relu: the residual architecture's change to the image.
    pub fn change_t(&self, merged: &Tensor, train: bool) -> Tensor {
        to_f32(self.body.forward_t(merged, train).apply(&self.out))
    }
}

/// Channels of the wide extractor's hidden layers (`seed-jnd-wide`).
const WIDE_CHANNELS: i64 = 24;
/// Its 3x3 convolutions before the 1x1 head.
const WIDE_LAYERS: usize = 5;

/// The layers between the watermarked image and the extractor's 1x1 head.
#[derive(Debug)]
enum ExtractorBody {
    /// The seed's `conl1w`, `convl2w`, `conl3w` (16, 32, 8 channels).
    Seed(Box<ConvStack>),
    /// `wide_w1` .. `wide_w5`, [`WIDE_CHANNELS`] each, relu, then dropout.
    Wide {
        convs: Vec<nn::Conv2D>,
        mask: DropoutMask,
    },
}

/// The extractor: watermarked image -> watermark map (`reconstructed_W`, 1x1).
#[derive(Debug)]
pub struct Extractor {
    body: ExtractorBody,
    out: nn::Conv2D,
    head: Head,
}

impl Extractor {
    /// Creates the seed extractor's variables under `vs`, with the Keras layer names, ending in
    /// `head`.
    pub fn new(vs: &nn::Path, head: Head) -> Self {
        Self {
            body: ExtractorBody::Seed(Box::new(ConvStack::new(
                vs,
                ["conl1w", "convl2w", "conl3w"],
            ))),
            out: conv(vs, "reconstructed_W", 8, 1, 1),
            head,
        }
    }

    /// The `seed-jnd-wide` extractor; its head is `wide_out` (1x1), so no variable shares a name
    /// and a shape with the seed extractor's.
    pub fn wide(vs: &nn::Path, head: Head) -> Self {
        let convs = (0..WIDE_LAYERS)
            .map(|i| {
                let c_in = if i == 0 { 1 } else { WIDE_CHANNELS };
                conv(vs, &format!("wide_w{}", i + 1), c_in, WIDE_CHANNELS, 3)
            })
            .collect();
        Self {
            body: ExtractorBody::Wide {
                convs,
                mask: DropoutMask::for_device(vs.device()),
            },
            out: conv(vs, "wide_out", WIDE_CHANNELS, 1, 1),
            head,
        }
    }

    fn set_dropout_mask(&mut self, mask: DropoutMask) {
        match &mut self.body {
            ExtractorBody::Seed(body) => body.mask = mask,
            ExtractorBody::Wide { mask: m, .. } => *m = mask,
        }
    }

    /// The watermark map `(N,1,H,W)` in [0, 1] (exact 0/1 with the hard head) from a watermarked
    /// image batch; `train` turns dropout on.
    pub fn forward_t(&self, watermarked: &Tensor, train: bool) -> Tensor {
        let features = match &self.body {
            ExtractorBody::Seed(body) => body.forward_t(watermarked, train),
            ExtractorBody::Wide { convs, mask } => {
                let mut h = watermarked.to_kind(convs[0].ws.kind());
                for c in convs {
                    h = h.apply(c);
                    let _ = h.relu_();
                }
                dropout(&h, *mask, train)
            }
        };
        let probability = to_f32(features.apply(&self.out)).sigmoid();
        match self.head {
            Head::Sigmoid => probability,
            Head::Hard => straight_through_binarize(&probability),
        }
    }
}

/// The whole watermark autoencoder: both heads from the image and the watermark map.
#[derive(Debug)]
pub struct WatermarkAutoencoder {
    /// Image -> encoded image.
    pub encoder: Encoder,
    /// Encoded image plus watermark map -> watermarked image (or the change to the image).
    pub decoder: Decoder,
    /// Watermarked image -> watermark map.
    pub extractor: Extractor,
    /// The graph around the layers.
    pub architecture: Architecture,
    /// `seed-jnd` only: the fraction of each pixel's JND the change reaches at full pattern.
    pub jnd_fraction: f64,
    /// `seed-jnd` only: the weight of flat areas against texture in the JND
    /// (`crate::model::jnd`).
    pub jnd_flat_weight: f64,
    /// Training only the extractor (`train.freeze_embedder`): the embedder then runs as at
    /// inference (no dropout), so the extractor learns the very pattern photos will carry.
    pub frozen_embedder: bool,
}

impl WatermarkAutoencoder {
    /// Builds the model's variables under `vs` (names at the root, as in Keras).
    pub fn new(vs: &nn::Path, head: Head) -> Self {
        Self::build(vs, Architecture::Seed, head)
    }

    /// The seed graph, or its residual variant (same layers and variables).
    pub fn build(vs: &nn::Path, architecture: Architecture, head: Head) -> Self {
        Self {
            encoder: Encoder::new(vs),
            decoder: Decoder::new(vs),
            extractor: match architecture {
                Architecture::SeedJndWide => Extractor::wide(vs, head),
                _ => Extractor::new(vs, head),
            },
            architecture,
            jnd_fraction: super::DEFAULT_JND_FRACTION,
            jnd_flat_weight: super::jnd::DEFAULT_FLAT_WEIGHT,
            frozen_embedder: false,
        }
    }

    /// Stops the encoder and decoder from training (and from dropping out): only the extractor
    /// learns.
    pub fn freeze_embedder(&mut self) {
        for c in [
            &self.encoder.body.c1,
            &self.encoder.body.c2,
            &self.encoder.body.c3,
            &self.encoder.out,
            &self.decoder.body.c1,
            &self.decoder.body.c2,
            &self.decoder.body.c3,
            &self.decoder.out,
        ] {
            let _ = c.ws.shallow_clone().set_requires_grad(false);
            if let Some(bs) = &c.bs {
                let _ = bs.shallow_clone().set_requires_grad(false);
            }
        }
        self.frozen_embedder = true;
    }

    /// Chooses how dropout draws its mask (the default suits the device; benchmarks compare).
    pub fn set_dropout_mask(&mut self, mask: DropoutMask) {
        self.encoder.body.mask = mask;
        self.decoder.body.mask = mask;
        self.extractor.set_dropout_mask(mask);
    }

    /// The watermarked image: decoder(encoder(image) + watermark map).
    pub fn embed_t(&self, image: &Tensor, watermark_map: &Tensor, train: bool) -> Tensor {
        let train = train && !self.frozen_embedder;
        if self.architecture.is_shaped() {
            let change = self.pattern_t(image, watermark_map, train)
                * crate::model::jnd::jnd_map(image, self.jnd_flat_weight)
                * self.jnd_fraction;
            return (image + change).clamp(0.0, 1.0);
        }
        let merged = self.encoder.forward_t(image, train) + watermark_map;
        match self.architecture {
            Architecture::Seed => self.decoder.forward_t(&merged, train),
            // The decoder's output is a change to the image, of either sign; the clamp keeps the
            // result an image (and passes the gradient wherever it is inside [0,1]).
            Architecture::SeedResidual => {
                (image + self.decoder.change_t(&merged, train)).clamp(0.0, 1.0)
            }
            Architecture::SeedJnd | Architecture::SeedJndWide => unreachable!("handled above"),
        }
    }

    /// A `seed-jnd` model's pattern in [-1,1] for an image and a watermark map: what the JND of
    /// the image scales into the change (on photos, at full resolution).
    pub fn pattern_t(&self, image: &Tensor, watermark_map: &Tensor, train: bool) -> Tensor {
        let merged = self.encoder.forward_t(image, train) + watermark_map;
        (self.decoder.change_t(&merged, train) / super::JND_PATTERN_UNIT).tanh()
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
