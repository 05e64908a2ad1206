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
//! JPEG is the real codec (`crate::jpeg::round_trip_tensor`, on the CPU) behind a straight-through
//! estimator: the forward pass is exactly the JPEG round trip, the backward pass the identity. The
//! optional 8-bit rounding (`round_8bit`) is the same trick for what saving a PNG does.
//!
//! The config is the training config's `[noise]` table:
//!
//! ```toml
//! [noise]
//! # Layers drawn per batch, with weights (a layer absent from `layers` is never drawn).
//! layers = ["identity", "gaussian", "dropout", "cropout", "salt_pepper", "blur", "brightness",
//!           "contrast", "shift", "crop_resize", "rotation", "jpeg"]
//! weights = [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]   # optional, same length; default all equal
//! gaussian_sigma = [0.0, 0.04]   # standard deviation of added noise, [0,1] pixel units
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
//! round_8bit = false             # round to k/255 after the drawn layer (straight-through)
//! ```
//!
//! Each `[lo, hi]` pair is a uniform range (`lo == hi` gives a fixed strength). Every key is
//! optional; the default is the identity only, without rounding: no noise, and no random numbers
//! consumed, so a config without `[noise]` trains exactly as before.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::images::quantize_8bit;

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
}

impl Layer {
    /// Every layer, in the order of the config's documentation.
    pub const ALL: [Layer; 12] = [
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
    /// Standard deviation of the added Gaussian noise, per image, in [0,1] pixel units.
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
    /// Round to k/255 (clipped to [0,1]) after the drawn layer, as saving a PNG does, with an
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
            round_8bit: false,
        }
    }
}

/// Largest blur sigma accepted: its kernel (radius 3 sigma) stays within a 28-pixel image.
pub const MAX_BLUR_SIGMA: f64 = 8.0;

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
    fn drawable(&self) -> Vec<(Layer, f64)> {
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
        if self.shift_max < 0 {
            bail!(
                "{key}.shift_max = {}: must be an integer >= 0 (pixels)",
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
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Random draws, all from libtorch's generator.

/// One uniform draw in [lo, hi] on the CPU (libtorch's CPU generator): a per-batch strength.
fn uniform_scalar([lo, hi]: [f64; 2]) -> f64 {
    let u = Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0]);
    lo + (hi - lo) * u
}

/// One uniform integer in lo..=hi on the CPU.
fn uniform_int(lo: i64, hi: i64) -> i64 {
    let u = Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0]);
    (lo + (u * (hi - lo + 1) as f64).floor() as i64).min(hi)
}

/// Per-image uniform draws in [lo, hi], shape `(N,1,1,1)`, of `x`'s kind on `x`'s device
/// (exactly `lo` when `lo == hi`).
fn uniform_per_image(x: &Tensor, [lo, hi]: [f64; 2]) -> Tensor {
    let n = x.size()[0];
    Tensor::rand([n, 1, 1, 1], (x.kind(), x.device())) * (hi - lo) + lo
}

/// Per-image uniform integers in lo..=hi, shape `(N,)`, int64 on `x`'s device.
fn int_per_image(x: &Tensor, lo: i64, hi: i64) -> Tensor {
    Tensor::randint_low(lo, hi + 1, [x.size()[0]], (Kind::Int64, x.device()))
}

fn dims4(x: &Tensor) -> (i64, i64, i64, i64) {
    match x.size()[..] {
        [n, c, h, w] => (n, c, h, w),
        ref s => panic!("noise layers take (N,C,H,W) images, got shape {s:?}"),
    }
}

fn same_shape(watermarked: &Tensor, original: &Tensor) {
    assert_eq!(
        watermarked.size(),
        original.size(),
        "the watermarked and original images must have the same shape"
    );
}

// ---------------------------------------------------------------------------------------------
// The layers. Each takes the watermarked image `(N,C,H,W)` (and the original where it needs it)
// and returns the attacked image of the same shape, differentiable in the watermarked image.

/// The watermarked image unchanged (a shallow copy: same storage, same graph).
pub fn identity(watermarked: &Tensor) -> Tensor {
    watermarked.shallow_clone()
}

/// Adds Gaussian noise of per-image standard deviation uniform in `sigma`. Gradient: 1.
pub fn gaussian(watermarked: &Tensor, sigma: [f64; 2]) -> Tensor {
    let s = uniform_per_image(watermarked, sigma);
    watermarked + watermarked.randn_like() * s
}

/// Keeps each watermarked pixel with per-image probability uniform in `keep`, the original's
/// pixel elsewhere. Gradient: 1 on kept pixels, 0 on the others.
pub fn dropout(watermarked: &Tensor, original: &Tensor, keep: [f64; 2]) -> Tensor {
    same_shape(watermarked, original);
    let p = uniform_per_image(watermarked, keep);
    let kept = watermarked.rand_like().lt_tensor(&p);
    watermarked.where_self(&kept, original)
}

/// The mask `(N,1,H,W)` (bool) of one rectangle per image: rows `top..top+height`, columns
/// `left..left+width` (each `(N,)` int64, on the device of the result).
pub fn rectangle_mask(
    size: (i64, i64),
    top: &Tensor,
    left: &Tensor,
    height: &Tensor,
    width: &Tensor,
) -> Tensor {
    let (h, w) = size;
    let device = top.device();
    let n = top.size()[0];
    let rows = Tensor::arange(h, (Kind::Int64, device)).view([1, 1, h, 1]);
    let cols = Tensor::arange(w, (Kind::Int64, device)).view([1, 1, 1, w]);
    let v = |t: &Tensor| t.view([n, 1, 1, 1]);
    let in_rows = rows
        .ge_tensor(&v(top))
        .logical_and(&rows.lt_tensor(&v(&(top + height))));
    let in_cols = cols
        .ge_tensor(&v(left))
        .logical_and(&cols.lt_tensor(&v(&(left + width))));
    in_rows.logical_and(&in_cols)
}

/// Per-image windows whose sides are `share` (`(N,)`, of the image's kind) of the image's
/// sides, rounded, at least 1 pixel (0 when `allow_empty`), at uniform integer positions:
/// `(top, left, height, width)`, each `(N,)` int64.
fn random_windows(x: &Tensor, share: &Tensor, allow_empty: bool) -> [Tensor; 4] {
    let (_, _, h, w) = dims4(x);
    let min = if allow_empty { 0 } else { 1 };
    let side = |len: i64| {
        (share.to_kind(Kind::Double) * len as f64)
            .round()
            .clamp(min, len)
            .to_kind(Kind::Int64)
    };
    let (kh, kw) = (side(h), side(w));
    let place = |len: i64, k: &Tensor| {
        let room = (-k + (len + 1)).to_kind(Kind::Double);
        (Tensor::rand_like(&room) * room)
            .floor()
            .to_kind(Kind::Int64)
            .minimum(&(-k + len))
    };
    let top = place(h, &kh);
    let left = place(w, &kw);
    [top, left, kh, kw]
}

/// Keeps one random rectangle of the watermarked image, of per-image area share uniform in
/// `keep` (sides `sqrt(share)` of the image's, rounded), the original elsewhere. Gradient: 1
/// inside the rectangle, 0 outside.
pub fn cropout(watermarked: &Tensor, original: &Tensor, keep: [f64; 2]) -> Tensor {
    same_shape(watermarked, original);
    let (n, _, h, w) = dims4(watermarked);
    let area = uniform_per_image(watermarked, keep).view([n]);
    let [top, left, kh, kw] = random_windows(watermarked, &area.sqrt(), true);
    let inside = rectangle_mask((h, w), &top, &left, &kh, &kw);
    watermarked.where_self(&inside, original)
}

/// Sets a per-image share uniform in `amount` of the pixels to 0 or 1 (half each). Gradient: 1
/// on untouched pixels, 0 on replaced ones.
pub fn salt_pepper(watermarked: &Tensor, amount: [f64; 2]) -> Tensor {
    let p = uniform_per_image(watermarked, amount);
    let r = watermarked.rand_like();
    let untouched = r.ge_tensor(&p);
    // Below p/2: pepper (0); in [p/2, p): salt (1).
    let fill = r.ge_tensor(&(&p * 0.5)).to_kind(watermarked.kind());
    watermarked.where_self(&untouched, &fill)
}

/// The normalised 1-D Gaussian kernel of `sigma` (pixels), radius `ceil(3 sigma)` capped at
/// `max_radius`, as f64 taps summing to 1; `[1.0]` for sigma <= 0 or radius 0.
pub fn gaussian_kernel(sigma: f64, max_radius: i64) -> Vec<f64> {
    let radius = if sigma > 0.0 {
        ((3.0 * sigma).ceil() as i64).clamp(0, max_radius.max(0))
    } else {
        0
    };
    if radius == 0 {
        return vec![1.0];
    }
    let taps: Vec<f64> = (-radius..=radius)
        .map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / sum).collect()
}

/// Gaussian blur of `sigma` pixels: two 1-D convolutions with the normalised kernel, reflection
/// padding (a constant image stays constant, borders included). The radius is `ceil(3 sigma)`,
/// capped below the image's smaller side; sigma 0 is the identity.
pub fn blur_with_sigma(watermarked: &Tensor, sigma: f64) -> Tensor {
    let (_, c, h, w) = dims4(watermarked);
    let taps = gaussian_kernel(sigma, h.min(w) - 1);
    if taps.len() == 1 {
        return watermarked.shallow_clone();
    }
    let k = taps.len() as i64;
    let r = k / 2;
    let kernel = Tensor::from_slice(&taps)
        .to_kind(watermarked.kind())
        .to_device(watermarked.device());
    let horizontal = kernel.view([1, 1, 1, k]).repeat([c, 1, 1, 1]);
    let vertical = kernel.view([1, 1, k, 1]).repeat([c, 1, 1, 1]);
    watermarked
        .reflection_pad2d([r, r, r, r])
        .conv2d(&horizontal, None::<Tensor>, [1, 1], [0, 0], [1, 1], c)
        .conv2d(&vertical, None::<Tensor>, [1, 1], [0, 0], [1, 1], c)
}

/// Gaussian blur with sigma uniform in `sigma`, one per batch (see [`blur_with_sigma`]).
pub fn blur(watermarked: &Tensor, sigma: [f64; 2]) -> Tensor {
    blur_with_sigma(watermarked, uniform_scalar(sigma))
}

/// Adds a per-image offset uniform in `delta`. Gradient: 1.
pub fn brightness(watermarked: &Tensor, delta: [f64; 2]) -> Tensor {
    watermarked + uniform_per_image(watermarked, delta)
}

/// Scales each image's deviation from its own mean by a per-image factor uniform in `factor`:
/// `c x + (1 - c) mean(x)` (exactly `x` for c = 1; the mean is kept). The gradient of the
/// output's sum is 1 for every pixel.
pub fn contrast(watermarked: &Tensor, factor: [f64; 2]) -> Tensor {
    let c = uniform_per_image(watermarked, factor);
    let mean = watermarked.mean_dim(&[1i64, 2, 3][..], true, watermarked.kind());
    watermarked * &c + mean * (-&c + 1.0)
}

/// Shifts image i by `dy[i]` rows down and `dx[i]` columns right (`(N,)` int64, any sign), zero
/// fill: output pixel (y, x) is input pixel (y - dy, x - dx). Gradient: 1 for pixels that land
/// inside the image, 0 for those shifted out.
pub fn shift_by(watermarked: &Tensor, dy: &Tensor, dx: &Tensor) -> Tensor {
    let (n, c, h, w) = dims4(watermarked);
    let device = watermarked.device();
    let source = |len: i64, d: &Tensor| {
        Tensor::arange(len, (Kind::Int64, device)).view([1, len])
            - d.to_device(device).to_kind(Kind::Int64).view([n, 1])
    };
    let (ys, xs) = (source(h, dy), source(w, dx));
    let valid = |s: &Tensor, len: i64| s.ge(0).logical_and(&s.lt(len));
    let rows = watermarked.gather(
        2,
        &ys.clamp(0, h - 1)
            .view([n, 1, h, 1])
            .expand([n, c, h, w], false),
        false,
    );
    let moved = rows.gather(
        3,
        &xs.clamp(0, w - 1)
            .view([n, 1, 1, w])
            .expand([n, c, h, w], false),
        false,
    );
    let inside = valid(&ys, h)
        .view([n, 1, h, 1])
        .logical_and(&valid(&xs, w).view([n, 1, 1, w]));
    moved * inside.to_kind(watermarked.kind())
}

/// Shifts each image by integers drawn uniformly in `-max..=max`, x and y independently.
pub fn shift(watermarked: &Tensor, max: i64) -> Tensor {
    if max == 0 {
        return watermarked.shallow_clone();
    }
    let dy = int_per_image(watermarked, -max, max);
    let dx = int_per_image(watermarked, -max, max);
    shift_by(watermarked, &dy, &dx)
}

/// Resamples every image through its own affine map `theta` `(N,2,3)` (output to input, in
/// normalised coordinates, align_corners = false), bilinear; `border`: edge padding, else zeros.
fn resample(x: &Tensor, theta: &Tensor, border: bool) -> Tensor {
    let grid = Tensor::affine_grid_generator(&theta.to_kind(x.kind()), x.size(), false);
    x.grid_sampler(&grid, 0, if border { 1 } else { 0 }, false)
}

/// Crops image i to rows `top..top+height`, columns `left..left+width` (`(N,)` int64) and
/// resizes the window back to the full size, bilinearly (the sampling positions of
/// `upsample_bilinear2d` with align_corners = false, edge padding at the image's borders): one
/// `grid_sampler` call, so each image has its own window.
pub fn crop_resize_window(
    watermarked: &Tensor,
    top: &Tensor,
    left: &Tensor,
    height: &Tensor,
    width: &Tensor,
) -> Tensor {
    let (n, _, h, w) = dims4(watermarked);
    let device = watermarked.device();
    let f = |t: &Tensor| t.to_device(device).to_kind(Kind::Double).view([n]);
    let (top, left, kh, kw) = (f(top), f(left), f(height), f(width));
    let zero = Tensor::zeros([n], (Kind::Double, device));
    let sx = &kw / w as f64;
    let sy = &kh / h as f64;
    let tx = (left * 2.0 + &kw) / w as f64 - 1.0;
    let ty = (top * 2.0 + &kh) / h as f64 - 1.0;
    let theta = Tensor::stack(&[sx, zero.shallow_clone(), tx, zero, sy, ty], 1).view([n, 2, 3]);
    resample(watermarked, &theta, true)
}

/// Crops a random window of per-image side share uniform in `keep` (sides rounded to whole
/// pixels) at a random position and resizes it back (see [`crop_resize_window`]).
pub fn crop_resize(watermarked: &Tensor, keep: [f64; 2]) -> Tensor {
    let n = watermarked.size()[0];
    let share = uniform_per_image(watermarked, keep).view([n]);
    let [top, left, kh, kw] = random_windows(watermarked, &share, false);
    crop_resize_window(watermarked, &top, &left, &kh, &kw)
}

/// Rotates image i by `radians[i]` (`(N,)`) around its centre, bilinear, zero fill (rigid on
/// non-square images too).
pub fn rotate_by(watermarked: &Tensor, radians: &Tensor) -> Tensor {
    let (n, _, h, w) = dims4(watermarked);
    let a = radians
        .to_device(watermarked.device())
        .to_kind(Kind::Double)
        .view([n]);
    let (cos, sin) = (a.cos(), a.sin());
    let zero = cos.zeros_like();
    let aspect = h as f64 / w as f64;
    let theta = Tensor::stack(
        &[
            cos.shallow_clone(),
            -&sin * aspect,
            zero.shallow_clone(),
            &sin / aspect,
            cos,
            zero,
        ],
        1,
    )
    .view([n, 2, 3]);
    resample(watermarked, &theta, false)
}

/// Rotates each image by an angle uniform in `[-degrees, degrees]`.
pub fn rotation(watermarked: &Tensor, degrees: f64) -> Tensor {
    let n = watermarked.size()[0];
    let radians = (Tensor::rand([n], (Kind::Double, watermarked.device())) * 2.0 - 1.0)
        * degrees.to_radians();
    rotate_by(watermarked, &radians)
}

/// `attacked` in the forward pass, the identity to `x` in the backward pass. Written as
/// `attacked + (x - x.detach())` rather than `x + (attacked - x).detach()`: `x - x` is exactly
/// 0, so the forward pass is exactly `attacked` (the other form can differ by an ulp).
pub fn straight_through(x: &Tensor, attacked: &Tensor) -> Tensor {
    attacked.detach() + (x - x.detach())
}

/// Real JPEG of each image at `quality` (1..=100; rounded to 8 bits first, on the CPU, see
/// [`crate::jpeg::round_trip_tensor`]), straight-through: the forward pass is exactly the JPEG
/// round trip, the gradient the upstream gradient.
pub fn jpeg_with_quality(watermarked: &Tensor, quality: u8) -> Result<Tensor> {
    let decoded = crate::jpeg::round_trip_tensor(watermarked, quality)?
        .to_kind(watermarked.kind())
        .to_device(watermarked.device());
    Ok(straight_through(watermarked, &decoded))
}

/// Real JPEG at a quality drawn uniformly in `quality` (integers), one per batch.
pub fn jpeg(watermarked: &Tensor, quality: [i64; 2]) -> Result<Tensor> {
    let [lo, hi] = quality;
    if !(1 <= lo && lo <= hi && hi <= 100) {
        bail!("JPEG quality range [{lo}, {hi}]: must lie in 1..=100");
    }
    jpeg_with_quality(watermarked, uniform_int(lo, hi) as u8)
}

/// Clips to [0,1] and rounds to k/255, as an 8-bit PNG stores an image, straight-through (the
/// gradient is the upstream gradient, also where the clip bites).
pub fn round_8bit(watermarked: &Tensor) -> Tensor {
    straight_through(watermarked, &quantize_8bit(&watermarked.detach()))
}

// ---------------------------------------------------------------------------------------------

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
