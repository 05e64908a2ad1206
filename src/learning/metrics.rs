//! Metrics of one pass over a data set: losses and MAE per head, PSNR of the watermarked image,
//! and the binarized watermark figures the seed's answers asked for (threshold 0.5): bit
//! accuracy over the block, pixel accuracy over the whole map, Dice of the binarized map.
//!
//! Sums are accumulated per batch on the device as tensors and read back once per pass, so the
//! training loop never waits on a host copy per batch.

use tch::{Kind, Tensor};

use crate::learning::loss::Losses;
use crate::message::binarize::{at_threshold, DEFAULT_THRESHOLD};
use crate::message::watermark::Layout;
use crate::model::Output;

/// Dice smoothing term, as in the seed's answer.
const DICE_EPS: f64 = 1e-7;
/// PSNR of an image identical to its original is infinite; cap it for averaging.
pub const PSNR_CAP_DB: f64 = 100.0;

/// Figures of one pass (train or validation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Mean total loss (the weighted sum that is trained) over the pass.
    pub loss: f64,
    /// Mean loss of the image head.
    pub image_loss: f64,
    /// Mean loss of the watermark head.
    pub watermark_loss: f64,
    /// Mean absolute error of the watermarked image against the original, pixel range 1.
    pub image_mae: f64,
    /// Mean absolute error of the extracted map against the true map.
    pub watermark_mae: f64,
    /// Mean over images of 10*log10(1/MSE), pixel range 1.
    pub psnr: f64,
    /// Share of bits read right from the binarized maps (threshold 0.5).
    pub bit_accuracy: f64,
    /// Share of map pixels equal to the true map once binarized.
    pub pixel_accuracy: f64,
    /// Dice of the binarized maps against the true maps, over the whole pass.
    pub dice: f64,
    /// Share of images whose every bit is right.
    pub exact_rate: f64,
    /// Images in the pass.
    pub images: i64,
}

impl Summary {
    /// Names and values in CSV column order.
    pub fn fields(&self) -> [(&'static str, f64); 10] {
        [
            ("loss", self.loss),
            ("image_loss", self.image_loss),
            ("watermark_loss", self.watermark_loss),
            ("image_mae", self.image_mae),
            ("watermark_mae", self.watermark_mae),
            ("psnr", self.psnr),
            ("bit_accuracy", self.bit_accuracy),
            ("pixel_accuracy", self.pixel_accuracy),
            ("dice", self.dice),
            ("exact_rate", self.exact_rate),
        ]
    }
}

/// Dice with the seed's smoothing: (2 |A and B| + eps) / (|A| + |B| + eps), from the count of
/// pixels that are 1 in both maps and the counts of 1s in each.
pub fn dice(intersection: f64, predicted_ones: f64, true_ones: f64) -> f64 {
    (2.0 * intersection + DICE_EPS) / (predicted_ones + true_ones + DICE_EPS)
}

/// Per-image counts `(N,)` (float) that every binarized-watermark score is made of.
pub struct MapCounts {
    /// Bits of the block that differ from the true bits.
    pub bit_errors: Tensor,
    /// Pixels of the whole map equal to the true map.
    pub pixels_right: Tensor,
    /// Pixels that are 1 in both the binary and the true map.
    pub intersection: Tensor,
    /// Pixels that are 1 in the binary map.
    pub predicted_ones: Tensor,
    /// Pixels that are 1 in the true map.
    pub true_ones: Tensor,
}

impl MapCounts {
    /// Counts of binary maps `(N,1,H,W)` (exact 0/1) against the true bits `(N, bits)`; the bits
    /// are read as the layout reads them (a vote over each bit's pixels), with the shift search
    /// when `search` (reading files) or without (training, where nothing shifts the map).
    pub fn of(binary: &Tensor, true_bits: &Tensor, layout: &Layout, search: bool) -> Self {
        let true_map = &layout.map_from_bits(true_bits);
        let per_image = |t: Tensor| {
            t.to_kind(Kind::Float)
                .flatten(1, -1)
                .sum_dim_intlist(1, false, Kind::Float)
        };
        Self {
            bit_errors: per_image(layout.read(binary, search).bits.ne_tensor(true_bits)),
            pixels_right: per_image(binary.eq_tensor(true_map)),
            intersection: per_image(binary * true_map),
            predicted_ones: per_image(binary.shallow_clone()),
            true_ones: per_image(true_map.shallow_clone()),
        }
    }
}

/// Per-image PSNR in dB `(N,)` of `image` against `original`, range 1, capped at PSNR_CAP_DB.
pub fn psnr_per_image(image: &Tensor, original: &Tensor) -> Tensor {
    let mse = (image - original)
        .square()
        .flatten(1, -1)
        .mean_dim(1, false, Kind::Float);
    (mse.clamp_min(1e-30).log10() * -10.0).clamp_max(PSNR_CAP_DB)
}

/// Running sums over the batches of one pass, kept as device tensors.
pub struct Accumulator {
    layout: Layout,
    sums: Option<Tensor>,
    images: i64,
    pixels_per_image: i64,
}

/// Index of each running sum in the accumulator tensor.
const LOSS: usize = 0;
const IMAGE_LOSS: usize = 1;
const WATERMARK_LOSS: usize = 2;
const IMAGE_ABS: usize = 3;
const WATERMARK_ABS: usize = 4;
const PSNR: usize = 5;
const BITS_RIGHT: usize = 6;
const PIXELS_RIGHT: usize = 7;
const INTERSECTION: usize = 8;
const PRED_ONES: usize = 9;
const TRUE_ONES: usize = 10;
const EXACT: usize = 11;

impl Accumulator {
    /// An empty accumulator for maps of `layout`.
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            sums: None,
            images: 0,
            pixels_per_image: layout.height() * layout.width(),
        }
    }

    /// Adds one batch: the originals, the true watermark maps, both heads' outputs and the
    /// batch-mean losses (weighted here by the batch size).
    pub fn add(&mut self, original: &Tensor, bits: &Tensor, out: &Output, losses: &Losses) {
        let true_map = &self.layout.map_from_bits(bits);
        let (watermarked, predicted_map) = (&out.watermarked, &out.watermark_map);
        let (loss, image_loss, watermark_loss) = (&losses.total, &losses.image, &losses.watermark);
        let n = original.size()[0];
        let binary = at_threshold(predicted_map, DEFAULT_THRESHOLD);
        let counts = MapCounts::of(&binary, bits, &self.layout, false);
        let bits = self.layout.bit_count() as f64;
        let f = |t: Tensor| t.to_kind(Kind::Float).reshape([1]);
        let total = |t: &Tensor| f(t.sum(Kind::Float));
        let batch = Tensor::cat(
            &[
                f(loss.detach() * n as f64),
                f(image_loss.detach() * n as f64),
                f(watermark_loss.detach() * n as f64),
                f((watermarked - original).abs().sum(Kind::Float) / self.pixels_per_image as f64),
                f(
                    (predicted_map - true_map).abs().sum(Kind::Float)
                        / self.pixels_per_image as f64,
                ),
                f(psnr_per_image(watermarked, original).sum(Kind::Float)),
                f((-&counts.bit_errors + bits).sum(Kind::Float) / bits),
                total(&counts.pixels_right) / self.pixels_per_image as f64,
                total(&counts.intersection),
                total(&counts.predicted_ones),
                total(&counts.true_ones),
                total(&counts.bit_errors.eq(0.0)),
            ],
            0,
        )
        .detach()
        .to_kind(Kind::Double);
        self.sums = Some(match self.sums.take() {
            Some(s) => s + batch,
            None => batch,
        });
        self.images += n;
    }

    /// The pass's figures (one host copy).
    pub fn summary(&self) -> Summary {
        let Some(sums) = &self.sums else {
            return Summary::default();
        };
        let s = Vec::<f64>::try_from(sums.to_device(tch::Device::Cpu)).unwrap_or_default();
        let n = self.images as f64;
        Summary {
            loss: s[LOSS] / n,
            image_loss: s[IMAGE_LOSS] / n,
            watermark_loss: s[WATERMARK_LOSS] / n,
            image_mae: s[IMAGE_ABS] / n,
            watermark_mae: s[WATERMARK_ABS] / n,
            psnr: s[PSNR] / n,
            bit_accuracy: s[BITS_RIGHT] / n,
            pixel_accuracy: s[PIXELS_RIGHT] / n,
            dice: dice(s[INTERSECTION], s[PRED_ONES], s[TRUE_ONES]),
            exact_rate: s[EXACT] / n,
            images: self.images,
        }
    }
}

/// Mean SSIM (Wang et al. 2004) per image `(N,)` of `image` against `original` (range 1):
/// 11x11 Gaussian window with sigma 1.5, K1 0.01, K2 0.03, over the valid window positions.
pub fn ssim_per_image(image: &Tensor, original: &Tensor) -> Tensor {
    const SIZE: i64 = 11;
    const SIGMA: f64 = 1.5;
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let opts = (Kind::Float, image.device());
    let coords = Tensor::arange(SIZE, opts) - (SIZE / 2) as f64;
    let g = (coords.square() / (-2.0 * SIGMA * SIGMA)).exp();
    let g = &g / g.sum(Kind::Float);
    let window = g
        .unsqueeze(1)
        .matmul(&g.unsqueeze(0))
        .reshape([1, 1, SIZE, SIZE]);
    let blur = |t: &Tensor| t.conv2d(&window, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
    let (x, y) = (image.to_kind(Kind::Float), original.to_kind(Kind::Float));
    let (mx, my) = (blur(&x), blur(&y));
    let sxx = blur(&(&x * &x)) - &mx * &mx;
    let syy = blur(&(&y * &y)) - &my * &my;
    let sxy = blur(&(&x * &y)) - &mx * &my;
    let num = (&mx * &my * 2.0 + c1) * (sxy * 2.0 + c2);
    let den = (mx.square() + my.square() + c1) * (sxx + syy + c2);
    (num / den).flatten(1, -1).mean_dim(1, false, Kind::Float)
}

/// Area under the ROC curve of `scores` for the binary `labels` (the probability that a random
/// 1 scores above a random 0, ties counting half): the Mann-Whitney U statistic over n1 * n0.
/// None when one class is absent.
pub fn roc_auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over runs of equal scores.
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    let n1 = labels.iter().filter(|&&l| l == 1.0).count() as f64;
    let n0 = labels.len() as f64 - n1;
    if n1 == 0.0 || n0 == 0.0 {
        return None;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l == 1.0)
        .map(|(r, _)| r)
        .sum();
    Some((rank_sum - n1 * (n1 + 1.0) / 2.0) / (n1 * n0))
}
