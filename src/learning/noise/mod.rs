//! Training-time noise layers (HiDDeN-style): one layer, drawn per batch, attacks the watermarked
//! image between the decoder and the extractor, so the extractor learns to read attacked images
//! and the encoder and decoder learn to write watermarks that survive them.
//!
//! Every layer is differentiable with respect to the watermarked image `(N,C,H,W)` (gradients
//! reach it), runs on the input's device and draws its randomness from libtorch's generator (the
//! one `tch::manual_seed` seeds), so a seeded run stays reproducible. Strengths are drawn per
//! image where that is cheap (noise levels, shares, shifts, crops, angles) and per batch where one
//! value serves the whole batch (the blur's sigma, the JPEG quality). Dropout and cropout take the
//! pixels they do not keep from the ORIGINAL image, as HiDDeN does.
//!
//! JPEG is the real codec (`crate::codec::jpeg::round_trip_tensor`, on the CPU) behind a straight-through
//! estimator: the forward pass is exactly the JPEG round trip, the backward pass the identity. The
//! optional 8-bit rounding (`round_8bit`) is the same trick for what saving a PNG does.
//!
//! The config is the training config's `[noise]` table:
//!
//! ```toml
//! [noise]
//! # Layers drawn per batch, with weights (a layer absent from `layers` is never drawn).
//! layers = ["identity", "gaussian", "dropout", "cropout", "salt_pepper", "blur", "brightness",
//!           "contrast", "shift", "crop_resize", "rotation", "jpeg", "median", "box_blur"]
//! weights = [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]   # optional, same length; default equal
//! gaussian_sigma = [0.0, 0.04]   # standard deviation of added noise, [0, 1] pixel units
//! dropout_keep = [0.6, 1.0]      # share of watermarked pixels kept (the rest: the original's)
//! cropout_keep = [0.5, 1.0]      # share of the area kept as a rectangle (the rest: original)
//! salt_pepper = [0.0, 0.02]      # share of pixels set to 0 or 1 (half each)
//! blur_sigma = [0.3, 1.2]        # Gaussian blur sigma in pixels, one per batch
//! brightness = [-0.06, 0.06]     # added to every pixel
//! contrast = [0.7, 1.3]          # factor around each image's mean
//! shift_max = 2                  # integer shifts in -shift_max..=shift_max px, x and y, zero fill
//! crop_resize = [0.8, 1.0]       # share of each side kept, then resized back (bilinear)
//! rotation_degrees = 5.0         # angle uniform in [-r, r], bilinear, zero fill
//! jpeg_quality = [50, 95]        # JPEG quality, integer, one per batch
//! median_radius = [1, 1]         # median filter over a (2r+1)^2 square, integer, per batch
//! box_radius = [1, 1]            # box blur (square mean) of radius r, integer, per batch
//! round_8bit = false             # round to k/255 after the drawn layer (straight-through)
//! ```
//!
//! Each `[lo, hi]` pair is a uniform range (`lo == hi` gives a fixed strength). Every key is
//! optional; the default is the identity only, without rounding: no noise, and no random numbers
//! consumed, so a config without `[noise]` trains exactly as before.

mod config;
mod layers;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

pub use config::{Layer, NoiseConfig, MAX_BLUR_SIGMA, MAX_FILTER_RADIUS};
pub use layers::*;

/// The noise layers of a config: draws one layer per batch by weight and applies it.
#[derive(Debug, Clone)]
pub struct NoiseLayers {
    config: NoiseConfig,
    /// The drawable layers (positive weight) with their cumulative weights.
    cumulative: Vec<(Layer, f64)>,
}

impl NoiseLayers {
    /// Validates `config` (keys named under `noise.`) and prepares the draw.
    pub fn new(config: &NoiseConfig) -> Result<Self> {
        config.validate("noise")?;
        let mut total = 0.0;
        let cumulative = config
            .drawable()
            .into_iter()
            .map(|(layer, w)| {
                total += w;
                (layer, total)
            })
            .collect();
        Ok(Self {
            config: config.clone(),
            cumulative,
        })
    }

    /// The config the layers were made from.
    pub fn config(&self) -> &NoiseConfig {
        &self.config
    }

    /// Whether [`apply`](Self::apply) always returns its input unchanged (the default config);
    /// it then draws no random numbers either.
    pub fn is_identity(&self) -> bool {
        self.config.is_identity()
    }

    /// Draws one layer by weight from libtorch's CPU generator; with a single drawable layer it
    /// is returned without drawing a random number.
    pub fn draw(&self) -> Layer {
        let (last, total) = *self
            .cumulative
            .last()
            .expect("a validated config has a layer");
        if self.cumulative.len() == 1 {
            return last;
        }
        let u = Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0]) * total;
        self.cumulative
            .iter()
            .find(|(_, c)| u < *c)
            .map_or(last, |(layer, _)| *layer)
    }

    /// Applies `layer` with this config's strengths (whether `layer` is in `layers` or not),
    /// then the 8-bit rounding when `round_8bit` is set.
    pub fn apply_layer(&self, layer: Layer, watermarked: &Tensor, original: &Tensor) -> Tensor {
        let c = &self.config;
        let out = match layer {
            Layer::Identity => identity(watermarked),
            Layer::Gaussian => gaussian(watermarked, c.gaussian_sigma),
            Layer::Dropout => dropout(watermarked, original, c.dropout_keep),
            Layer::Cropout => cropout(watermarked, original, c.cropout_keep),
            Layer::SaltPepper => salt_pepper(watermarked, c.salt_pepper),
            Layer::Blur => blur(watermarked, c.blur_sigma),
            Layer::Brightness => brightness(watermarked, c.brightness),
            Layer::Contrast => contrast(watermarked, c.contrast),
            Layer::Shift => shift(watermarked, c.shift_max),
            Layer::CropResize => crop_resize(watermarked, c.crop_resize),
            Layer::Rotation => rotation(watermarked, c.rotation_degrees),
            Layer::Median => median(watermarked, c.median_radius),
            Layer::BoxBlur => box_blur(watermarked, c.box_radius),
            // The quality range is validated and the codec works in memory: no error can arise.
            Layer::Jpeg => jpeg(watermarked, c.jpeg_quality)
                .unwrap_or_else(|e| panic!("JPEG noise layer: {e:#}")),
        };
        if c.round_8bit {
            round_8bit(&out)
        } else {
            out
        }
    }

    /// Draws one layer and applies it; returns the layer (for logs) with the attacked batch.
    pub fn apply_with_layer(&self, watermarked: &Tensor, original: &Tensor) -> (Layer, Tensor) {
        let layer = self.draw();
        (layer, self.apply_layer(layer, watermarked, original))
    }

    /// Draws one layer and applies it to the batch `(N,C,H,W)`.
    pub fn apply(&self, watermarked: &Tensor, original: &Tensor) -> Tensor {
        self.apply_with_layer(watermarked, original).1
    }
}
