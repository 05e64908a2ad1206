//! Turning an extracted watermark map into exact 0/1: a fixed threshold (0.5, the seed's
//! answer) or Otsu's threshold computed per image on its map.
//!
//! Otsu always splits a map in two, even one with no signal, so each split comes with its
//! separability: the between-class variance over the total variance (0: no separation, 1: two
//! perfectly distinct values). A low value means the split is not to be trusted.

use image::GrayImage;
use tch::{Kind, Tensor};

/// The seed's answer: a map value above 0.5 is a 1.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Class means (in map units) closer than this are no split into 0 and 1 at all: an empty map's
/// few 1/255 values on 0 are two classes to Otsu (separability 1), but not a watermark.
pub const MIN_LEVEL_GAP: f64 = 0.5;

/// How a map is binarized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// A fixed threshold in map units: a pixel is 1 when its value is above it.
    Threshold(f64),
    /// Each map's own Otsu threshold, on the map as 8-bit gray.
    Otsu,
}

/// The result for one map.
#[derive(Debug, Clone, PartialEq)]
pub struct Binarized {
    /// 0/1 per pixel, row-major, as many as the map has.
    pub pixels: Vec<u8>,
    /// Threshold in map units: a pixel is 1 when its value is above it.
    pub threshold: f64,
    /// Otsu's between-class over total variance (computed for every method, as a diagnostic).
    pub separability: f64,
    /// Mean map value above Otsu's threshold minus the mean below it (0 with one class).
    pub level_gap: f64,
}

impl Binarized {
    /// Whether the map fails to split into two distinct levels: Otsu's two classes lie too
    /// close together to be 0 and 1 (an empty map; a map near 0.5 everywhere). Separability
    /// alone does not tell: an empty map's few 1/255 values on 0 are perfectly separable, and a
    /// spread layout's map may be noisy (separability below 0.8) while its votes read every bit.
    pub fn is_unseparable(&self) -> bool {
        self.level_gap < MIN_LEVEL_GAP
    }
}

/// A map in [0, 1] as an 8-bit image (value * 255, rounded), the form Otsu's histogram needs.
pub fn map_to_gray(values: &[f32], width: u32, height: u32) -> GrayImage {
    let bytes = values
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    GrayImage::from_raw(width, height, bytes).expect("map size matches its values")
}

/// Otsu's separability of a 256-bin histogram when split into `<= level` and `> level`.
pub fn separability(gray: &GrayImage, level: u8) -> f64 {
    let mut hist = [0f64; 256];
    for p in gray.pixels() {
        hist[p.0[0] as usize] += 1.0;
    }
    let n: f64 = hist.iter().sum();
    let mean: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, c)| i as f64 * c)
        .sum::<f64>()
        / n;
    let total_var: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, c)| c * (i as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    if total_var == 0.0 {
        return 0.0;
    }
    let (mut w0, mut s0) = (0.0, 0.0);
    for (i, c) in hist.iter().enumerate().take(level as usize + 1) {
        w0 += c;
        s0 += i as f64 * c;
    }
    let w1 = n - w0;
    if w0 == 0.0 || w1 == 0.0 {
        return 0.0;
    }
    let (m0, m1) = (s0 / w0, (mean * n - s0) / w1);
    let between = (w0 / n) * (w1 / n) * (m0 - m1).powi(2);
    between / total_var
}

/// Exact 0/1 of a tensor of map values: 1 where a value is above `threshold`, in the tensor's
/// kind and on its device (the training metrics and the hard head binarize this way).
pub fn at_threshold(values: &Tensor, threshold: f64) -> Tensor {
    values.gt(threshold).to_kind(values.kind())
}

/// The gap between the mean values of the two classes Otsu's `level` splits the map into.
fn level_gap(values: &[f32], gray: &GrayImage, level: u8) -> f64 {
    let (mut sums, mut counts) = ([0f64; 2], [0usize; 2]);
    for (v, p) in values.iter().zip(gray.pixels()) {
        let class = usize::from(p.0[0] > level);
        sums[class] += *v as f64;
        counts[class] += 1;
    }
    if counts[0] == 0 || counts[1] == 0 {
        return 0.0;
    }
    sums[1] / counts[1] as f64 - sums[0] / counts[0] as f64
}

/// Binarizes one map of `width x height` values in [0, 1].
pub fn binarize(values: &[f32], width: u32, height: u32, method: Method) -> Binarized {
    let gray = map_to_gray(values, width, height);
    let otsu = imageproc::contrast::otsu_level(&gray);
    let separability = separability(&gray, otsu);
    let level_gap = level_gap(values, &gray, otsu);
    match method {
        Method::Threshold(t) => Binarized {
            pixels: values.iter().map(|&v| u8::from(v as f64 > t)).collect(),
            threshold: t,
            separability,
            level_gap,
        },
        // imageproc's convention: pixels above the level are foreground.
        Method::Otsu => Binarized {
            pixels: gray.pixels().map(|p| u8::from(p.0[0] > otsu)).collect(),
            threshold: (otsu as f64 + 0.5) / 255.0,
            separability,
            level_gap,
        },
    }
}

/// Binarizes each map of a `(N,1,H,W)` tensor.
pub fn binarize_maps(maps: &Tensor, method: Method) -> anyhow::Result<Vec<Binarized>> {
    let size = maps.size();
    let (h, w) = (size[2] as u32, size[3] as u32);
    let flat = Vec::<f32>::try_from(
        maps.to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )?;
    Ok(flat
        .chunks((h * w).max(1) as usize)
        .map(|m| binarize(m, w, h, method))
        .collect())
}
