//! Perceptual shaping: how much a photo can be changed at each pixel before the change shows,
//! its just-noticeable difference (JND), so the watermark is written strongly in texture and
//! hardly at all in a flat sky, bokeh or studio background, where the eye sees a faint
//! low-frequency pattern best.
//!
//! The model is the classic pixel-domain one (Chou and Li 1995, as refined by Wu et al. 2017 and
//! used by VideoSeal), in 8-bit levels of BT.601 luma:
//! - luminance adaptation: the eye tolerates a little more change in dark and in bright
//!   surroundings; `LA(B) = 5 (1 - sqrt(B / 127)) + 3` for a background luminance `B <= 127`,
//!   `3 (B - 127) / 128 + 3` above, where `B` is the 5x5 mean around the pixel. Chou and Li's
//!   dark branch rises to 20 levels at black (17 where this has 5): right for a single pixel,
//!   but a faint pattern many pixels wide shows in a dark flat sky well below that (measured
//!   here: a dark blue sky marked at Chou and Li's 7.6 levels scored SSIMULACRA2 45-75);
//! - contrast (texture) masking: change hides in busy surroundings; `CM(T) = 16 T^2.4 / (T^2 +
//!   26^2)`, where `T` is the 5x5 mean of the Sobel gradient magnitude (divided by 4, so a step
//!   of `h` levels reads `h`): the mean makes the pixels beside an edge masked too;
//! - the two combined as `LA + CM - 0.3 min(LA, CM)` (they overlap) and capped at
//!   [`MAX_JND_LEVELS`];
//! - `LA` weighted by a flat weight (`model.jnd_flat_weight`, `embed --flat-weight`; 1 by
//!   default): the share of the change that flat areas get against textured ones. Texture
//!   masking is measured on 5x5 pixels, but the pattern it hides is many pixels wide. With the
//!   strength chosen per photo by its score (`embed --visibility`), a weight of 2 scored better
//!   by SSIMULACRA2 and butteraugli and read more after attacks than 1 (docs/photos.md, stop 24).
//!
//! Borders repeat their outermost pixel (replicate padding). The same map is computed two ways:
//! [`jnd_map`] on tensors, for training patches at the working size, and [`JndRows`] on the host,
//! a band of rows at a time, for full-resolution photos (no full-size float image); a test holds
//! them equal.

use tch::{Kind, Tensor};

/// Largest JND, in 8-bit levels: masking saturates, and a change much larger than this next to
/// a strong edge shows as a halo whatever the model says.
pub const MAX_JND_LEVELS: f32 = 30.0;

/// How far the luminance adaptation rises above 3 levels at black.
const DARK_RISE: f32 = 5.0;

/// Luminance adaptation (levels) for a background luminance `b` in levels.
pub fn luminance_adaptation(b: f32) -> f32 {
    if b <= 127.0 {
        DARK_RISE * (1.0 - (b.max(0.0) / 127.0).sqrt()) + 3.0
    } else {
        3.0 * (b - 127.0) / 128.0 + 3.0
    }
}

/// Contrast masking (levels) for a mean gradient magnitude `t` in levels per pixel.
pub fn contrast_masking(t: f32) -> f32 {
    16.0 * t.powf(2.4) / (t * t + 26.0 * 26.0)
}

/// The flat weight a model uses unless its config says otherwise: the classic model's.
pub const DEFAULT_FLAT_WEIGHT: f64 = 1.0;

/// The JND (levels) of a pixel from its background luminance and texture, its luminance
/// adaptation weighted by `flat_weight`.
pub fn jnd_levels(background: f32, texture: f32, flat_weight: f32) -> f32 {
    let la = flat_weight * luminance_adaptation(background);
    let cm = contrast_masking(texture);
    (la + cm - 0.3 * la.min(cm)).min(MAX_JND_LEVELS)
}

/// The JND map of luma images `(N,1,H,W)` in [0, 1], in the same units ([0, 1] is 255 levels), on
/// the images' device, the luminance adaptation weighted by `flat_weight`. No gradient flows
/// through it: it describes the cover image, not the mark.
pub fn jnd_map(luma: &Tensor, flat_weight: f64) -> Tensor {
    tch::no_grad(|| {
        let levels = luma.to_kind(Kind::Float) * 255.0;
        let background = box5(&levels);
        let padded = levels.replication_pad2d([1, 1, 1, 1]);
        let (smooth, derivative) = ([1f32, 2.0, 1.0], [-1f32, 0.0, 1.0]);
        // One Sobel component: `rows` down the kernel times `columns` across it, divided by 4.
        let sobel = |rows: [f32; 3], columns: [f32; 3]| {
            let k: Vec<f32> = rows
                .iter()
                .flat_map(|r| columns.iter().map(move |c| r * c / 4.0))
                .collect();
            let kernel = Tensor::from_slice(&k)
                .reshape([1, 1, 3, 3])
                .to_device(luma.device());
            padded.conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
        };
        let (gx, gy) = (sobel(smooth, derivative), sobel(derivative, smooth));
        let texture = box5(&(gx.square() + gy.square()).sqrt());
        let dark: Tensor =
            (1.0 - (background.clamp_min(0.0) / 127.0).sqrt()) * f64::from(DARK_RISE) + 3.0;
        let bright = (&background - 127.0) * (3.0 / 128.0) + 3.0;
        let la = dark.where_self(&background.le(127.0), &bright) * flat_weight;
        let t2 = texture.square();
        let cm = texture.pow_tensor_scalar(2.4) * 16.0 / (t2 + 26.0 * 26.0);
        let jnd = &la + &cm - la.minimum(&cm) * 0.3;
        jnd.clamp_max(f64::from(MAX_JND_LEVELS)) / 255.0
    })
}

/// The 5x5 mean with replicated borders, `(N,1,H,W)` in and out.
fn box5(x: &Tensor) -> Tensor {
    x.replication_pad2d([2, 2, 2, 2])
        .avg_pool2d([5, 5], [1, 1], [0, 0], false, true, None::<i64>)
}

/// Rows of a photo's JND map (levels), computed in order a band at a time from a source of luma
/// rows (levels), with replicated borders: what [`jnd_map`] gives on the whole photo, without a
/// full-size float image.
pub struct JndRows<F: FnMut(usize, &mut Vec<f32>)> {
    luma_row: F,
    width: usize,
    height: usize,
    flat_weight: f32,
    /// First row of `band`, and the band's JND rows.
    band_start: usize,
    band: Vec<f32>,
}

/// Rows computed together: the band's borders cost 4 gradient and 6 luma rows more.
const BAND_ROWS: usize = 64;

/// Most floats a band's three buffers (luma, gradient, JND rows) may hold together (64 MB): a
/// photo 1.5 million pixels wide and 64 tall would otherwise hold 1.2 GB. Fewer rows a band only
/// costs more border rows; every row is computed the same way.
const BAND_FLOATS: usize = 16 << 20;

impl<F: FnMut(usize, &mut Vec<f32>)> JndRows<F> {
    /// `luma_row(y, out)` fills `out` with row `y`'s `width` luma values in levels; the luminance
    /// adaptation is weighted by `flat_weight`.
    pub fn new(width: usize, height: usize, flat_weight: f64, luma_row: F) -> Self {
        Self {
            luma_row,
            width,
            height,
            flat_weight: flat_weight as f32,
            band_start: 0,
            band: Vec::new(),
        }
    }

    /// Row `y`'s JND in levels (`width` values). Rows are meant to be asked for in order; any
    /// other order recomputes bands.
    pub fn row(&mut self, y: usize) -> &[f32] {
        let w = self.width;
        let rows_held = self.band.len() / w.max(1);
        if !(self.band_start..self.band_start + rows_held).contains(&y) {
            self.compute_band(y);
        }
        let i = y - self.band_start;
        &self.band[i * w..(i + 1) * w]
    }

    fn compute_band(&mut self, y0: usize) {
        let (w, h, flat_weight) = (self.width, self.height, self.flat_weight);
        // The band's rows plus its 10 border rows of luma and gradient, within BAND_FLOATS.
        let rows = (BAND_FLOATS / w.max(1)).saturating_sub(10) / 3;
        let y1 = (y0 + rows.clamp(1, BAND_ROWS)).min(h);
        let clamp = |y: isize| y.clamp(0, h as isize - 1) as usize;
        // Luma rows y0-3 ..= y1+2 (clamped), horizontally 5-box-summed for the background.
        let first = y0 as isize - 3;
        let count = (y1 - y0) + 6;
        let mut luma = vec![0f32; count * w];
        let mut row = Vec::with_capacity(w);
        for (k, out) in luma.chunks_exact_mut(w).enumerate() {
            (self.luma_row)(clamp(first + k as isize), &mut row);
            out.copy_from_slice(&row[..w]);
        }
        let luma_at = |y: isize| -> &[f32] {
            let k = (clamp(y) as isize - first) as usize;
            &luma[k * w..(k + 1) * w]
        };
        // Gradient rows y0-2 ..= y1+1: each from the clamped luma rows above and below it.
        let g_first = y0 as isize - 2;
        let g_count = (y1 - y0) + 4;
        let mut gradient = vec![0f32; g_count * w];
        for (k, out) in gradient.chunks_exact_mut(w).enumerate() {
            let y = clamp(g_first + k as isize) as isize;
            sobel_row(luma_at(y - 1), luma_at(y), luma_at(y + 1), out);
        }
        let gradient_at = |y: isize| -> &[f32] {
            let k = (clamp(y) as isize - g_first) as usize;
            &gradient[k * w..(k + 1) * w]
        };
        self.band.clear();
        self.band.resize((y1 - y0) * w, 0.0);
        let (mut b, mut t) = (vec![0f32; w], vec![0f32; w]);
        let mut hsum = vec![0f32; w];
        for (i, out) in self.band.chunks_exact_mut(w).enumerate() {
            let y = (y0 + i) as isize;
            b.iter_mut().for_each(|v| *v = 0.0);
            t.iter_mut().for_each(|v| *v = 0.0);
            for dy in -2..=2 {
                box5_row(luma_at(y + dy), &mut hsum);
                b.iter_mut().zip(&hsum).for_each(|(a, s)| *a += s);
                box5_row(gradient_at(y + dy), &mut hsum);
                t.iter_mut().zip(&hsum).for_each(|(a, s)| *a += s);
            }
            for ((o, &b), &t) in out.iter_mut().zip(&b).zip(&t) {
                *o = jnd_levels(b / 25.0, t / 25.0, flat_weight);
            }
        }
        self.band_start = y0;
    }
}

/// The 5-wide sums of `row` with replicated ends.
fn box5_row(row: &[f32], out: &mut [f32]) {
    let n = row.len();
    let at = |x: isize| row[x.clamp(0, n as isize - 1) as usize];
    for (x, o) in out.iter_mut().enumerate() {
        let x = x as isize;
        *o = at(x - 2) + at(x - 1) + at(x) + at(x + 1) + at(x + 2);
    }
}

/// Sobel gradient magnitude (divided by 4) of the middle row, with replicated ends.
fn sobel_row(above: &[f32], middle: &[f32], below: &[f32], out: &mut [f32]) {
    let n = middle.len();
    let c = |x: isize| x.clamp(0, n as isize - 1) as usize;
    for (x, o) in out.iter_mut().enumerate() {
        let (l, r) = (c(x as isize - 1), c(x as isize + 1));
        let gx = (above[r] - above[l]) + 2.0 * (middle[r] - middle[l]) + (below[r] - below[l]);
        let gy = (below[l] + 2.0 * below[x] + below[r]) - (above[l] + 2.0 * above[x] + above[r]);
        *o = (gx * gx + gy * gy).sqrt() / 4.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luminance_adaptation_by_hand() {
        assert_eq!(luminance_adaptation(0.0), 8.0);
        assert_eq!(luminance_adaptation(127.0), 3.0);
        assert!((luminance_adaptation(255.0) - 6.0).abs() < 1e-6);
        // sqrt(1/4) = 0.5: 5 * 0.5 + 3.
        assert!((luminance_adaptation(127.0 / 4.0) - 5.5).abs() < 1e-5);
    }

    #[test]
    fn contrast_masking_by_hand() {
        assert_eq!(contrast_masking(0.0), 0.0);
        // 16 * 26^2.4 / (2 * 26^2) = 8 * 26^0.4.
        assert!((contrast_masking(26.0) - 8.0 * 26f32.powf(0.4)).abs() < 1e-3);
        assert_eq!(jnd_levels(127.0, 1000.0, 1.0), MAX_JND_LEVELS);
    }

    /// The host rows equal the tensor map on an image with flat areas, edges and noise, at a
    /// size that is not a whole number of bands.
    #[test]
    fn host_rows_match_the_tensor_map() {
        let (h, w) = (150usize, 37usize);
        let mut luma = vec![0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                let noise = ((y * 7919 + x * 104729) % 97) as f32 / 97.0;
                luma[y * w + x] = if x < 12 {
                    0.8
                } else if y < 60 {
                    0.1 + 0.05 * noise
                } else {
                    noise
                };
            }
        }
        let tensor = Tensor::from_slice(&luma).view([1, 1, h as i64, w as i64]);
        let mut flat_at = Vec::new();
        for flat_weight in [1.0, 2.0] {
            let expected =
                Vec::<f32>::try_from(jnd_map(&tensor, flat_weight).reshape([-1]) * 255.0).unwrap();
            let mut rows = JndRows::new(w, h, flat_weight, |y, out: &mut Vec<f32>| {
                out.clear();
                out.extend(luma[y * w..(y + 1) * w].iter().map(|v| v * 255.0));
            });
            for y in 0..h {
                let row = rows.row(y).to_vec();
                for x in 0..w {
                    let (a, b) = (row[x], expected[y * w + x]);
                    assert!((a - b).abs() < 1e-3, "({y},{x}): host {a}, tensor {b}");
                }
            }
            // Noise masks more than the flat area beside it.
            assert!(expected[100 * w + 25] > expected[100 * w + 3]);
            flat_at.push(expected[5 * w + 3]);
        }
        // Flat bright area: luminance adaptation only, 3 (0.8*255 - 127)/128 + 3, times the
        // flat weight.
        let la = 3.0 * (0.8 * 255.0 - 127.0) / 128.0 + 3.0;
        assert!((flat_at[0] - la).abs() < 1e-3, "{flat_at:?}");
        assert!((flat_at[1] - 2.0 * la).abs() < 1e-3, "{flat_at:?}");
    }
}
