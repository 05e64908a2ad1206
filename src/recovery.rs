//! Reading watermarks back: binarize each extracted map, read its bits from the block, and,
//! when the embedded bits are known, score them honestly: bit accuracy beside the score of
//! always answering 0, bit errors, whether the whole watermark is exact, and Dice.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::Tensor;

use crate::binarize::{self, Method, MIN_SEPARABILITY};
use crate::metrics::{dice, MapCounts};
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
    /// Share of the whole map's pixels (block and background) that match the true map.
    pub pixel_accuracy: f64,
}

/// Binarizes each map `(N,1,H,W)` and reads its bits; scores them against `expected` (one bit
/// vector per image) when given.
pub fn read_back(
    maps: &Tensor,
    layout: &Layout,
    method: Method,
    names: &[String],
    expected: Option<&[Vec<f32>]>,
) -> Result<(Vec<ImageResult>, Totals)> {
    let binarized = binarize::binarize_maps(maps, method)?;
    let block_values = host_rows(&layout.block(maps))?;
    let n = binarized.len();
    let binary_maps = Tensor::from_slice(
        &binarized
            .iter()
            .flat_map(|b| b.pixels.iter().map(|&p| p as f32))
            .collect::<Vec<f32>>(),
    )
    .reshape([n as i64, 1, layout.height, layout.width]);
    let bits = host_rows(&layout.block(&binary_maps))?;
    let mut results: Vec<ImageResult> = binarized
        .into_iter()
        .zip(bits.iter().zip(&block_values))
        .enumerate()
        .map(|(i, (b, (bits, values)))| ImageResult {
            name: names.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
            bits: format_bits(bits),
            threshold: b.threshold,
            // Mean distance of the block's map values from the threshold.
            confidence: values
                .iter()
                .map(|&v| (v as f64 - b.threshold).abs())
                .sum::<f64>()
                / values.len().max(1) as f64,
            separability: b.separability,
            expected: None,
            bit_errors: None,
            bit_accuracy: None,
            exact: None,
            dice: None,
            binary_map: b.pixels,
        })
        .collect();
    let mut totals = Totals {
        images: n,
        bits_per_image: layout.bit_count() as usize,
        low_separability: results
            .iter()
            .filter(|r| r.separability < MIN_SEPARABILITY)
            .count(),
        mean_confidence: results.iter().map(|r| r.confidence).sum::<f64>() / n.max(1) as f64,
        scored: None,
    };
    if let Some(expected) = expected {
        totals.scored = Some(score(&mut results, &binary_maps, layout, expected)?);
    }
    Ok((results, totals))
}

/// Fills each result's scores against its expected bits and returns the totals.
fn score(
    results: &mut [ImageResult],
    binary_maps: &Tensor,
    layout: &Layout,
    expected: &[Vec<f32>],
) -> Result<Scores> {
    let n = results.len();
    if expected.len() != n
        || expected
            .iter()
            .any(|e| e.len() as i64 != layout.bit_count())
    {
        bail!(
            "{} expected bit vectors for {n} images of {} bits",
            expected.len(),
            layout.bit_count()
        );
    }
    let flat: Vec<f32> = expected.iter().flatten().copied().collect();
    let true_maps =
        layout.map_from_bits(&Tensor::from_slice(&flat).reshape([n as i64, layout.bit_count()]));
    let counts = MapCounts::of(binary_maps, &true_maps, layout);
    let column = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(tch::Kind::Double));
    let errors = column(&counts.bit_errors)?;
    let pixels_right = column(&counts.pixels_right)?;
    let inter = column(&counts.intersection)?;
    let predicted = column(&counts.predicted_ones)?;
    let truth = column(&counts.true_ones)?;
    let bits = layout.bit_count() as f64;
    for (i, r) in results.iter_mut().enumerate() {
        r.expected = Some(format_bits(&expected[i]));
        r.bit_errors = Some(errors[i] as usize);
        r.bit_accuracy = Some(1.0 - errors[i] / bits);
        r.exact = Some(errors[i] == 0.0);
        r.dice = Some(dice(inter[i], predicted[i], truth[i]));
    }
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let total_bits = n as f64 * bits;
    let zeros = flat.iter().filter(|&&b| b == 0.0).count() as f64;
    Ok(Scores {
        bit_accuracy: 1.0 - sum(&errors) / total_bits,
        all_zeros_accuracy: zeros / total_bits,
        bit_errors: sum(&errors) as usize,
        bit_error_rate: sum(&errors) / total_bits,
        exact_rate: results.iter().filter(|r| r.exact == Some(true)).count() as f64 / n as f64,
        dice: dice(sum(&inter), sum(&predicted), sum(&truth)),
        pixel_accuracy: sum(&pixels_right) / (n as f64 * (layout.height * layout.width) as f64),
    })
}

/// The rows of a `(N, K)` tensor on the host.
fn host_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Vec::<Vec<f32>>::try_from(t.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float))
        .context("map values to the host")
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
