//! Reading watermarks back: binarize each extracted map, read its bits from the block, and,
//! when the embedded bits are known, score them honestly: bit accuracy beside the score of
//! always answering 0, bit errors, whether the whole watermark is exact, and Dice.

use serde::Serialize;
use tch::Tensor;

use crate::binarize::{self, Method, MIN_SEPARABILITY};
use crate::watermark::{format_bits, Layout};

/// What was read from one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub name: String,
    pub bits: String,
    pub threshold: f64,
    /// Mean distance of the block's map values from the threshold (0.5 means sure answers).
    pub confidence: f64,
    /// Otsu's between-class over total variance of the map.
    pub separability: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_errors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<bool>,
    /// Dice of the binarized map against the true watermark map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dice: Option<f64>,
    /// The binarized map, row-major 0/1 (not printed).
    #[serde(skip)]
    pub binary_map: Vec<u8>,
}

/// Totals over all images.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub images: usize,
    pub bits_per_image: usize,
    /// Images whose Otsu separability is below `MIN_SEPARABILITY`.
    pub low_separability: usize,
    pub mean_confidence: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scored: Option<Scores>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Scores {
    pub bit_accuracy: f64,
    /// The bit accuracy of always answering 0: the share of expected bits that are 0.
    pub all_zeros_accuracy: f64,
    pub bit_errors: usize,
    pub bit_error_rate: f64,
    pub exact_rate: f64,
    pub dice: f64,
}

/// Binarizes each map `(N,1,H,W)` and reads its bits; scores them against `expected` (one bit
/// vector per image) when given.
pub fn read_back(
    maps: &Tensor,
    layout: &Layout,
    method: Method,
    names: &[String],
    expected: Option<&[Vec<f32>]>,
) -> (Vec<ImageResult>, Totals) {
    let binarized = binarize::binarize_maps(maps, method);
    let values = Vec::<f32>::try_from(
        layout
            .block(maps)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )
    .expect("a float tensor converts to Vec<f32>");
    let n_bits = layout.bit_count() as usize;
    let width = layout.width as usize;
    let mut results = Vec::with_capacity(binarized.len());
    let (mut inter, mut pred_ones, mut true_ones) = (0usize, 0usize, 0usize);
    for (i, b) in binarized.into_iter().enumerate() {
        let block_values = &values[i * n_bits..(i + 1) * n_bits];
        let bits: Vec<f32> = (0..n_bits)
            .map(|k| {
                let (r, c) = (
                    layout.top as usize + k / layout.cols as usize,
                    layout.left as usize + k % layout.cols as usize,
                );
                b.pixels[r * width + c] as f32
            })
            .collect();
        let confidence = block_values
            .iter()
            .map(|&v| (v as f64 - b.threshold).abs())
            .sum::<f64>()
            / n_bits as f64;
        let mut result = ImageResult {
            name: names.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
            bits: format_bits(&bits),
            threshold: b.threshold,
            confidence,
            separability: b.separability,
            expected: None,
            bit_errors: None,
            bit_accuracy: None,
            exact: None,
            dice: None,
            binary_map: b.pixels,
        };
        if let Some(want) = expected.and_then(|e| e.get(i)) {
            let errors = bits.iter().zip(want).filter(|(a, b)| a != b).count();
            // Dice of the whole binarized map against the true map (bits in the block, 0 elsewhere).
            let ones_pred = result.binary_map.iter().filter(|&&p| p == 1).count();
            let ones_true = want.iter().filter(|&&w| w == 1.0).count();
            let hits = bits
                .iter()
                .zip(want)
                .filter(|(a, b)| **a == 1.0 && **b == 1.0)
                .count();
            inter += hits;
            pred_ones += ones_pred;
            true_ones += ones_true;
            result.expected = Some(format_bits(want));
            result.bit_errors = Some(errors);
            result.bit_accuracy = Some(1.0 - errors as f64 / n_bits as f64);
            result.exact = Some(errors == 0);
            result.dice = Some(dice(hits, ones_pred, ones_true));
        }
        results.push(result);
    }
    let n = results.len();
    let mut totals = Totals {
        images: n,
        bits_per_image: n_bits,
        low_separability: results
            .iter()
            .filter(|r| r.separability < MIN_SEPARABILITY)
            .count(),
        mean_confidence: results.iter().map(|r| r.confidence).sum::<f64>() / n.max(1) as f64,
        scored: None,
    };
    if let Some(expected) = expected {
        let errors: usize = results.iter().filter_map(|r| r.bit_errors).sum();
        let total_bits = (n * n_bits) as f64;
        let zeros = expected
            .iter()
            .take(n)
            .flatten()
            .filter(|&&b| b == 0.0)
            .count();
        totals.scored = Some(Scores {
            bit_accuracy: 1.0 - errors as f64 / total_bits,
            all_zeros_accuracy: zeros as f64 / total_bits,
            bit_errors: errors,
            bit_error_rate: errors as f64 / total_bits,
            exact_rate: results.iter().filter(|r| r.exact == Some(true)).count() as f64 / n as f64,
            dice: dice(inter, pred_ones, true_ones),
        });
    }
    (results, totals)
}

/// Dice with the seed's smoothing: (2 |A and B| + eps) / (|A| + |B| + eps).
fn dice(intersection: usize, a: usize, b: usize) -> f64 {
    const EPS: f64 = 1e-7;
    (2.0 * intersection as f64 + EPS) / ((a + b) as f64 + EPS)
}

/// One human-readable summary block.
pub fn print_totals(label: &str, t: &Totals) {
    println!(
        "{label}: {} images, {} bits each, mean confidence {:.3}",
        t.images, t.bits_per_image, t.mean_confidence
    );
    if let Some(s) = &t.scored {
        println!(
            "  bit accuracy {:.2}% (always answering 0 would score {:.2}%), bit errors {} (BER {:.4}), \
             exact watermarks {:.2}%, Dice {:.4}",
            100.0 * s.bit_accuracy,
            100.0 * s.all_zeros_accuracy,
            s.bit_errors,
            s.bit_error_rate,
            100.0 * s.exact_rate,
            s.dice
        );
    }
    if t.low_separability > 0 {
        println!(
            "  warning: {} of {} maps have Otsu separability below {MIN_SEPARABILITY}: their split into 0 and 1 \
             is not to be trusted (a map without signal is still split in two)",
            t.low_separability, t.images
        );
    }
}
