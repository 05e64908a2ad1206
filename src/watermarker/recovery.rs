//! Reading watermarks back: binarize each extracted map, read its bits as the layout says (a vote
//! over each bit's pixels, re-synchronised over small shifts for spread layouts), decide whether
//! a watermark is there at all (`crate::message::detect`), and, when the embedded bits are known, score
//! them honestly: bit accuracy beside the score of always answering 0, bit errors, whether the
//! whole watermark is exact, and Dice.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::learning::metrics::{dice, MapCounts};
use crate::message::binarize::{self, Method};
use crate::message::detect::Detector;
use crate::message::watermark::{format_bits, Layout};

/// What was read from one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    /// The image's name (its file, or `#i` for the i-th image).
    pub name: String,
    /// The bits read, as a string of `0` and `1`.
    pub bits: String,
    /// Whether the image carries a watermark, by the detector's rule.
    pub watermarked: bool,
    /// Share of the bit-carrying pixels that agree with the bits read (the detector's evidence).
    pub agreement: f64,
    /// The shift (rows, columns) at which the bits were read.
    pub shift: [i64; 2],
    /// The threshold the map was binarized at, in map units.
    pub threshold: f64,
    /// Otsu's between-class over total variance of the map.
    pub separability: f64,
    /// Whether the map's split into 0 and 1 is not to be trusted (see `binarize`).
    pub unseparable: bool,
    /// The bits the image should carry, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Bits read wrong, when the expected bits are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_errors: Option<usize>,
    /// Share of bits read right, when the expected bits are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_accuracy: Option<f64>,
    /// Whether every bit was read right, when the expected bits are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<bool>,
    /// Dice of the binarized map against the true watermark map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dice: Option<f64>,
    /// The binarized map, row-major 0/1 (not printed).
    #[serde(skip)]
    pub binary_map: Vec<u8>,
    /// The pixel counts behind the scores, which totals over many images add up (not printed).
    #[serde(skip)]
    pub counts: Option<PixelCounts>,
}

/// One scored map's pixel counts against its true map.
#[derive(Debug, Clone, Copy, Default)]
pub struct PixelCounts {
    /// Pixels 1 in both maps.
    pub intersection: f64,
    /// Pixels 1 in the binarized map.
    pub predicted_ones: f64,
    /// Pixels 1 in the true map.
    pub true_ones: f64,
    /// Pixels equal in both maps.
    pub pixels_right: f64,
    /// Expected bits that are 0.
    pub zero_bits: f64,
}

/// Totals built up one image at a time, so a run of any length needs no list of its results.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    images: usize,
    watermarked: usize,
    agreement: f64,
    unseparable: usize,
    scored: usize,
    exact: usize,
    bit_errors: usize,
    counts: PixelCounts,
}

impl Tally {
    /// Adds one image's result.
    pub fn add(&mut self, r: &ImageResult) {
        self.images += 1;
        self.watermarked += usize::from(r.watermarked);
        self.agreement += r.agreement;
        self.unseparable += usize::from(r.unseparable);
        if let (Some(c), Some(errors)) = (r.counts, r.bit_errors) {
            self.scored += 1;
            self.exact += usize::from(errors == 0);
            self.bit_errors += errors;
            self.counts.intersection += c.intersection;
            self.counts.predicted_ones += c.predicted_ones;
            self.counts.true_ones += c.true_ones;
            self.counts.pixels_right += c.pixels_right;
            self.counts.zero_bits += c.zero_bits;
        }
    }

    /// The totals of the images added, read with `layout` and decided by `detector`; scores
    /// when every image was scored.
    pub fn totals(&self, layout: &Layout, detector: &Detector) -> Totals {
        let n = self.images;
        let bits = layout.bit_count() as f64;
        let scored = (n > 0 && self.scored == n).then(|| {
            let total_bits = n as f64 * bits;
            let c = &self.counts;
            Scores {
                bit_accuracy: 1.0 - self.bit_errors as f64 / total_bits,
                all_zeros_accuracy: c.zero_bits / total_bits,
                bit_errors: self.bit_errors,
                bit_error_rate: self.bit_errors as f64 / total_bits,
                exact_rate: self.exact as f64 / n as f64,
                dice: dice(c.intersection, c.predicted_ones, c.true_ones),
                pixel_accuracy: c.pixels_right
                    / (n as f64 * (layout.height() * layout.width()) as f64),
            }
        });
        Totals {
            images: n,
            bits_per_image: layout.bit_count() as usize,
            watermarked: self.watermarked,
            detection_threshold: detector.threshold,
            null_false_positive_rate: detector.null_fpr_at_threshold,
            calibration_images: detector.calibration.map(|c| c.images),
            mean_agreement: self.agreement / n.max(1) as f64,
            unseparable: self.unseparable,
            scored,
        }
    }
}

/// Totals over all images.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Images read.
    pub images: usize,
    /// Bits the layout carries in each image.
    pub bits_per_image: usize,
    /// Images the detector calls watermarked.
    pub watermarked: usize,
    /// The agreement at or above which an image is called watermarked, and the false-positive
    /// rate of that threshold under the null model (independent cells, see `detect`).
    pub detection_threshold: f64,
    /// The null model's false-positive rate at `detection_threshold`.
    pub null_false_positive_rate: f64,
    /// The clean-image false-positive rate measured on the model's calibration images, when the
    /// checkpoint carries a calibration (images, and how many of them passed the threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_images: Option<usize>,
    /// Mean agreement over the images.
    pub mean_agreement: f64,
    /// Maps whose split into 0 and 1 is not to be trusted.
    pub unseparable: usize,
    /// The scores against the expected bits, when they are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scored: Option<Scores>,
}

/// Scores of the bits read against the expected ones, over all images.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scores {
    /// Share of all bits read right.
    pub bit_accuracy: f64,
    /// The bit accuracy of always answering 0: the share of expected bits that are 0.
    pub all_zeros_accuracy: f64,
    /// Bits read wrong, all images together.
    pub bit_errors: usize,
    /// Share of all bits read wrong.
    pub bit_error_rate: f64,
    /// Share of images whose every bit is right.
    pub exact_rate: f64,
    /// Dice of the binarized maps against the true maps, over all pixels together.
    pub dice: f64,
    /// Share of the whole map's pixels that match the true map.
    pub pixel_accuracy: f64,
}

/// Binarizes each map `(N,1,H,W)`, reads its bits and decides whether it carries a watermark;
/// scores the bits against `expected` (one bit vector per image) when given.
pub fn read_back(
    maps: &Tensor,
    layout: &Layout,
    method: Method,
    detector: &Detector,
    names: &[String],
    expected: Option<&[Vec<f32>]>,
) -> Result<(Vec<ImageResult>, Totals)> {
    let binarized = binarize::binarize_maps(maps, method)?;
    let n = binarized.len();
    let binary_maps = Tensor::from_slice(
        &binarized
            .iter()
            .flat_map(|b| b.pixels.iter().map(|&p| p as f32))
            .collect::<Vec<f32>>(),
    )
    .reshape([n as i64, 1, layout.height(), layout.width()]);
    let reading = layout.read(&binary_maps, true);
    let bits = host_rows(&reading.bits)?;
    let agreement = Vec::<f64>::try_from(reading.agreement.to_kind(Kind::Double))?;
    let shifts = Vec::<Vec<i64>>::try_from(reading.shift.to_kind(Kind::Int64))?;
    let mut results: Vec<ImageResult> = binarized
        .into_iter()
        .enumerate()
        .map(|(i, b)| ImageResult {
            name: names.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
            bits: format_bits(&bits[i]),
            watermarked: detector.is_watermarked(agreement[i]),
            agreement: agreement[i],
            shift: [shifts[i][0], shifts[i][1]],
            threshold: b.threshold,
            separability: b.separability,
            unseparable: b.is_unseparable(),
            expected: None,
            bit_errors: None,
            bit_accuracy: None,
            exact: None,
            dice: None,
            binary_map: b.pixels,
            counts: None,
        })
        .collect();
    if let Some(expected) = expected {
        score(&mut results, &binary_maps, layout, expected)?;
    }
    let mut tally = Tally::default();
    results.iter().for_each(|r| tally.add(r));
    Ok((results, tally.totals(layout, detector)))
}

/// Fills each result's scores against its expected bits.
fn score(
    results: &mut [ImageResult],
    binary_maps: &Tensor,
    layout: &Layout,
    expected: &[Vec<f32>],
) -> Result<()> {
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
    let true_bits = Tensor::from_slice(&flat).reshape([n as i64, layout.bit_count()]);
    let counts = MapCounts::of(binary_maps, &true_bits, layout, true);
    let column = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double));
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
        r.counts = Some(PixelCounts {
            intersection: inter[i],
            predicted_ones: predicted[i],
            true_ones: truth[i],
            pixels_right: pixels_right[i],
            zero_bits: expected[i].iter().filter(|&&b| b == 0.0).count() as f64,
        });
    }
    Ok(())
}

/// The rows of a `(N, K)` tensor on the host.
fn host_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Vec::<Vec<f32>>::try_from(t.to_device(tch::Device::Cpu).to_kind(Kind::Float))
        .context("map values to the host")
}

/// One human-readable summary block.
pub fn print_totals(label: &str, t: &Totals) {
    println!(
        "{label}: {} images, {} bits each; watermark found in {} ({:.2}%): agreement >= {:.3} \
         (false-positive rate {:.1e} for independent cells{}), mean agreement {:.3}",
        t.images,
        t.bits_per_image,
        t.watermarked,
        100.0 * t.watermarked as f64 / t.images.max(1) as f64,
        t.detection_threshold,
        t.null_false_positive_rate,
        match t.calibration_images {
            Some(n) => format!("; threshold set from {n} clean training images"),
            None => String::new(),
        },
        t.mean_agreement
    );
    if t.detection_threshold > 1.0 {
        println!(
            "  note: this layout carries no evidence of a watermark (each bit has one pixel, so any \
             map reads as some word); every image is answered \"no watermark\""
        );
    }
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
    if t.unseparable > 0 {
        println!(
            "  warning: {} of {} maps do not split into two distinct levels (Otsu's class means \
             closer than {}): their bits are not to be trusted",
            t.unseparable,
            t.images,
            binarize::MIN_LEVEL_GAP
        );
    }
}
