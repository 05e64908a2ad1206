//! The `[noise]` table of a training config: which layers are drawn, with which weights and
//! strength ranges, and its validation.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// One noise layer, as `layers` names it in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The watermarked image unchanged.
    Identity,
    /// Additive Gaussian noise, per-image sigma from `gaussian_sigma`.
    Gaussian,
    /// Each pixel kept with per-image probability from `dropout_keep`, else the original's.
    Dropout,
    /// A random rectangle of per-image area share from `cropout_keep` kept, the rest the original.
    Cropout,
    /// A per-image share from `salt_pepper` of pixels set to 0 or 1 (half each).
    SaltPepper,
    /// Gaussian blur, sigma from `blur_sigma` per batch, reflection padding.
    Blur,
    /// A per-image offset from `brightness` added.
    Brightness,
    /// Per-image contrast factor from `contrast` around each image's mean.
    Contrast,
    /// Per-image integer shifts in x and y within `shift_max`, zero fill.
    Shift,
    /// A random window of per-image side share from `crop_resize`, resized back (bilinear).
    CropResize,
    /// Rotation by a per-image angle within `rotation_degrees` around the centre, zero fill.
    Rotation,
    /// Real JPEG at a per-batch quality from `jpeg_quality`, straight-through gradient.
    Jpeg,
    /// Median filter over a square of per-batch radius from `median_radius` (a removal attack).
    Median,
    /// Box blur (square mean) of per-batch radius from `box_radius`.
    BoxBlur,
}

impl Layer {
    /// Every layer, in the order of the config's documentation.
    pub const ALL: [Layer; 14] = [
        Layer::Identity,
        Layer::Gaussian,
        Layer::Dropout,
        Layer::Cropout,
        Layer::SaltPepper,
        Layer::Blur,
        Layer::Brightness,
        Layer::Contrast,
        Layer::Shift,
        Layer::CropResize,
        Layer::Rotation,
        Layer::Jpeg,
        Layer::Median,
        Layer::BoxBlur,
    ];

    /// The layer's name in the config (and for logs).
    pub fn name(self) -> &'static str {
        match self {
            Layer::Identity => "identity",
            Layer::Gaussian => "gaussian",
            Layer::Dropout => "dropout",
            Layer::Cropout => "cropout",
            Layer::SaltPepper => "salt_pepper",
            Layer::Blur => "blur",
            Layer::Brightness => "brightness",
            Layer::Contrast => "contrast",
            Layer::Shift => "shift",
            Layer::CropResize => "crop_resize",
            Layer::Rotation => "rotation",
            Layer::Jpeg => "jpeg",
            Layer::Median => "median",
            Layer::BoxBlur => "box_blur",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The training config's `[noise]` table (see the module documentation for its TOML). Missing
/// keys take their defaults; the default as a whole is the identity only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseConfig {
    /// The layers one of which is drawn per batch.
    pub layers: Vec<Layer>,
    /// Relative weights of `layers` (same length, >= 0, not all 0); `None`: all equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Standard deviation of the added Gaussian noise, per image, in [0, 1] pixel units.
    pub gaussian_sigma: [f64; 2],
    /// Share of the watermarked pixels dropout keeps, per image (the rest from the original).
    pub dropout_keep: [f64; 2],
    /// Share of the area cropout keeps as one rectangle, per image (the rest from the original).
    pub cropout_keep: [f64; 2],
    /// Share of pixels set to 0 (pepper) or 1 (salt), half each, per image.
    pub salt_pepper: [f64; 2],
    /// Sigma of the Gaussian blur in pixels, one per batch (0: no blur).
    pub blur_sigma: [f64; 2],
    /// Offset added to every pixel, per image.
    pub brightness: [f64; 2],
    /// Contrast factor around the image's mean, per image (1: unchanged).
    pub contrast: [f64; 2],
    /// Largest integer shift in pixels; x and y shifts are drawn in `-shift_max..=shift_max`.
    pub shift_max: i64,
    /// Share of each side kept by the crop before it is resized back, per image.
    pub crop_resize: [f64; 2],
    /// Largest rotation angle in degrees; angles are drawn in `[-r, r]`, per image.
    pub rotation_degrees: f64,
    /// JPEG quality (1..=100), integer, one per batch.
    pub jpeg_quality: [i64; 2],
    /// Radius of the median filter's square (1: 3x3), integer, one per batch.
    pub median_radius: [i64; 2],
    /// Radius of the box blur's square (1: 3x3), integer, one per batch.
    pub box_radius: [i64; 2],
    /// Round to k/255 (clipped to [0, 1]) after the drawn layer, as saving a PNG does, with an
    /// identity gradient (straight-through).
    pub round_8bit: bool,
}

impl Default for NoiseConfig {
    /// The identity only, no rounding (no noise); the strength ranges hold useful defaults for a
    /// config that only names its `layers`.
    fn default() -> Self {
        Self {
            layers: vec![Layer::Identity],
            weights: None,
            gaussian_sigma: [0.0, 0.04],
            dropout_keep: [0.6, 1.0],
            cropout_keep: [0.5, 1.0],
            salt_pepper: [0.0, 0.02],
            blur_sigma: [0.3, 1.2],
            brightness: [-0.06, 0.06],
            contrast: [0.7, 1.3],
            shift_max: 2,
            crop_resize: [0.8, 1.0],
            rotation_degrees: 5.0,
            jpeg_quality: [50, 95],
            median_radius: [1, 1],
            box_radius: [1, 1],
            round_8bit: false,
        }
    }
}

/// Largest blur sigma accepted: its kernel (radius 3 sigma) stays within a 28-pixel image.
pub const MAX_BLUR_SIGMA: f64 = 8.0;

/// The largest median and box-blur radius (a 17x17 square).
pub const MAX_FILTER_RADIUS: i64 = 8;

/// The largest training shift: the side of the largest map.
const MAX_SHIFT: i64 = 4096;

fn check_range(key: &str, name: &str, [lo, hi]: [f64; 2], min: f64, max: f64) -> Result<()> {
    if !(lo.is_finite() && hi.is_finite() && min <= lo && lo <= hi && hi <= max) {
        bail!(
            "{key}.{name} = [{lo}, {hi}]: must be a range [lo, hi] with {min} <= lo <= hi <= {max}"
        );
    }
    Ok(())
}

impl NoiseConfig {
    /// Whether this is the default (identity only, no rounding); a caller may leave such a
    /// table out of a written config.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether applying this config changes nothing: identity is the only layer that can be
    /// drawn and no rounding follows.
    pub fn is_identity(&self) -> bool {
        !self.round_8bit
            && self
                .drawable()
                .iter()
                .all(|(layer, _)| *layer == Layer::Identity)
    }

    /// The layers with a positive weight, with their weights.
    pub(super) fn drawable(&self) -> Vec<(Layer, f64)> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| (*l, self.weights.as_ref().map_or(1.0, |w| w[i])))
            .filter(|(_, w)| *w > 0.0)
            .collect()
    }

    /// Refuses bad values, naming the key (`key` is the table's name, e.g. `noise`).
    pub fn validate(&self, key: &str) -> Result<()> {
        let names = || {
            let n: Vec<&str> = self.layers.iter().map(|l| l.name()).collect();
            format!("{n:?}")
        };
        if self.layers.is_empty() {
            bail!(
                "{key}.layers = []: name at least one layer (\"identity\" for no noise); \
                 one of {:?}",
                Layer::ALL.map(Layer::name)
            );
        }
        for (i, layer) in self.layers.iter().enumerate() {
            if self.layers[..i].contains(layer) {
                bail!(
                    "{key}.layers = {}: \"{layer}\" is named twice; use weights to draw a layer more often",
                    names()
                );
            }
        }
        if let Some(weights) = &self.weights {
            if weights.len() != self.layers.len() {
                bail!(
                    "{key}.weights = {weights:?}: {} weights for {} layers {}; give one weight per layer",
                    weights.len(),
                    self.layers.len(),
                    names()
                );
            }
            if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
                bail!("{key}.weights = {weights:?}: every weight must be a number >= 0");
            }
            if !weights.iter().any(|w| *w > 0.0) {
                bail!("{key}.weights = {weights:?}: at least one weight must be above 0");
            }
        }
        check_range(key, "gaussian_sigma", self.gaussian_sigma, 0.0, 1.0)?;
        check_range(key, "dropout_keep", self.dropout_keep, 0.0, 1.0)?;
        check_range(key, "cropout_keep", self.cropout_keep, 0.0, 1.0)?;
        check_range(key, "salt_pepper", self.salt_pepper, 0.0, 1.0)?;
        check_range(key, "blur_sigma", self.blur_sigma, 0.0, MAX_BLUR_SIGMA)?;
        check_range(key, "brightness", self.brightness, -1.0, 1.0)?;
        check_range(key, "contrast", self.contrast, 0.0, 10.0)?;
        // Bounded above too: the shift is drawn below shift_max + 1, which must not wrap.
        if !(0..=MAX_SHIFT).contains(&self.shift_max) {
            bail!(
                "{key}.shift_max = {}: must be an integer in 0..={MAX_SHIFT} (pixels)",
                self.shift_max
            );
        }
        let [lo, hi] = self.crop_resize;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            bail!(
                "{key}.crop_resize = [{lo}, {hi}]: must be a range [lo, hi] with 0 < lo <= hi <= 1 \
                 (share of each side kept)"
            );
        }
        let r = self.rotation_degrees;
        if !(r.is_finite() && (0.0..=180.0).contains(&r)) {
            bail!("{key}.rotation_degrees = {r}: must lie in [0, 180] (degrees)");
        }
        let [lo, hi] = self.jpeg_quality;
        if !(1 <= lo && lo <= hi && hi <= 100) {
            bail!(
                "{key}.jpeg_quality = [{lo}, {hi}]: must be a range [lo, hi] of integers with \
                 1 <= lo <= hi <= 100"
            );
        }
        for (name, [lo, hi]) in [
            ("median_radius", self.median_radius),
            ("box_radius", self.box_radius),
        ] {
            if !(0 <= lo && lo <= hi && hi <= MAX_FILTER_RADIUS) {
                bail!(
                    "{key}.{name} = [{lo}, {hi}]: must be a range [lo, hi] of integers with \
                     0 <= lo <= hi <= {MAX_FILTER_RADIUS} (pixels; 1 is a 3x3 square)"
                );
            }
        }
        Ok(())
    }
}
