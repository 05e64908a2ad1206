//! "Is there a watermark?" The evidence is the agreement of a read-back map with the word read
//! from it (`Layout::read`): the share of bit-carrying pixels whose binarized value matches their
//! bit (inverted ones inverted). A watermarked image's map agrees almost everywhere; on a map
//! without a watermark, half of every spread bit's cells are inverted, so no word fits it much
//! better than chance.
//!
//! Two references say what an agreement means:
//! - the null model: pixels (or, in layouts of larger cells, whole cells) independent fair
//!   coins. The tail P(agreement >= a) is computed exactly
//!   (each bit's majority count is max(X, n - X) with X binomial, and the bits add up), then
//!   multiplied by the number of shifts the reader tried (Bonferroni). Real maps are smoother
//!   than coins, so this p-value is optimistic;
//! - the calibration: the agreement of the model's maps on clean training images, measured when
//!   a model is trained and kept in its checkpoint. The decision threshold is the larger of the
//!   null model's threshold for `NULL_FPR` and the calibration's mean plus `CALIBRATION_SIGMAS`
//!   standard deviations, and the rate a user is told is the measured one.

use serde::{Deserialize, Serialize};

use crate::message::layout::Layout;

/// False-positive rate of the null model the threshold must at least meet.
pub const NULL_FPR: f64 = 1e-6;

/// How far above the clean images' mean agreement (in their standard deviations) the threshold
/// lies: a normal tail beyond 5 sigma is 3e-7.
pub const CALIBRATION_SIGMAS: f64 = 5.0;

/// Agreement on clean (unwatermarked) images, measured once per model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Clean images measured.
    pub images: usize,
    /// Their mean agreement.
    pub mean: f64,
    /// The standard deviation of their agreement (population, not sample).
    pub std: f64,
    /// Their highest agreement.
    pub max: f64,
}

impl Calibration {
    /// The calibration of these clean images' agreements.
    pub fn from_agreements(agreements: &[f64]) -> Self {
        let n = agreements.len().max(1) as f64;
        let mean = agreements.iter().sum::<f64>() / n;
        let var = agreements.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
        Self {
            images: agreements.len(),
            mean,
            std: var.sqrt(),
            max: agreements.iter().copied().fold(0.0, f64::max),
        }
    }
}

/// The detection rule of one model and layout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detector {
    /// Agreement at or above which an image is called watermarked.
    pub threshold: f64,
    /// The null model's p-value at the threshold (all shifts counted).
    pub null_fpr_at_threshold: f64,
    /// The clean-image calibration that may have raised the threshold, if the model has one.
    pub calibration: Option<Calibration>,
}

/// The null distribution of the summed majority counts of bits with `counts[k]` pixels each:
/// `tail[a]` = P(sum >= a) for independent fair pixels.
fn null_tail(counts: &[usize]) -> Vec<f64> {
    let mut dist = vec![1.0f64];
    for &n in counts {
        // Distribution of max(X, n - X), X ~ Binomial(n, 1/2).
        // C(n, x) / 2^n, built up in logs to stay finite for large n.
        let mut pmf = vec![0.0f64; n + 1];
        let log_half_n = -(n as f64) * std::f64::consts::LN_2;
        let mut log_c = 0.0f64;
        for x in 0..=n {
            if x > 0 {
                log_c += ((n - x + 1) as f64).ln() - (x as f64).ln();
            }
            pmf[x.max(n - x)] += (log_c + log_half_n).exp();
        }
        let mut next = vec![0.0f64; dist.len() + n];
        for (a, &p) in dist.iter().enumerate() {
            if p == 0.0 {
                continue;
            }
            for (m, &q) in pmf.iter().enumerate() {
                if q > 0.0 {
                    next[a + m] += p * q;
                }
            }
        }
        dist = next;
    }
    let mut tail = vec![0.0f64; dist.len() + 1];
    for a in (0..dist.len()).rev() {
        tail[a] = tail[a + 1] + dist[a];
    }
    tail
}

/// P(agreement count >= `a`) under the null model, for bits of `counts[k]` pixels, one shift.
pub fn null_tail_at(counts: &[usize], a: usize) -> f64 {
    let tail = null_tail(counts);
    tail[a.min(tail.len() - 1)]
}

/// The null model of one layout: how likely a map that carries no watermark reads a word at
/// least this well at its best alignment.
#[derive(Debug, Clone)]
pub struct NullModel {
    tail: Vec<f64>,
    total: usize,
    shifts: usize,
}

impl NullModel {
    /// The null model of `layout`'s cells, read at its number of alignments.
    pub fn for_layout(layout: &Layout) -> Self {
        let counts = layout.carrier_units();
        Self {
            total: counts.iter().sum(),
            tail: null_tail(&counts),
            shifts: layout.shift_count(),
        }
    }

    /// The chance that an image without a watermark reaches `agreement` at one of the
    /// alignments the reader tries (union bound over them; the agreement's count rounded down,
    /// so never an understatement).
    pub fn false_positive_rate(&self, agreement: f64) -> f64 {
        let a = (agreement.clamp(0.0, 1.0) * self.total as f64 + 1e-9).floor() as usize;
        (self.tail[a.min(self.tail.len() - 1)] * self.shifts as f64).min(1.0)
    }
}

impl Detector {
    /// The rule for bits carried by `counts[k]` pixels each, read at `shifts` shifts, with the
    /// model's calibration when it has one.
    pub fn new(counts: &[usize], shifts: usize, calibration: Option<Calibration>) -> Self {
        let total: usize = counts.iter().sum();
        let tail = null_tail(counts);
        let p_at = |agree: usize| (tail[agree.min(tail.len() - 1)] * shifts as f64).min(1.0);
        // The smallest agreement whose null p-value is below NULL_FPR (total + 1: never).
        let null_count = (0..=total + 1)
            .find(|&a| a > total || p_at(a) <= NULL_FPR)
            .unwrap_or(total + 1);
        let null_threshold = null_count as f64 / total.max(1) as f64;
        let threshold = match calibration {
            Some(c) => null_threshold.max(c.mean + CALIBRATION_SIGMAS * c.std),
            None => null_threshold,
        };
        let at = ((threshold * total as f64).ceil() as usize).min(total + 1);
        Self {
            threshold,
            null_fpr_at_threshold: if at > total { 0.0 } else { p_at(at) },
            calibration,
        }
    }

    /// The rule for `layout`, with the model's calibration when it has one.
    pub fn for_layout(layout: &Layout, calibration: Option<Calibration>) -> Self {
        Self::new(&layout.carrier_units(), layout.shift_count(), calibration)
    }

    /// Whether an image whose map agrees this much with its word is called watermarked.
    pub fn is_watermarked(&self, agreement: f64) -> bool {
        agreement >= self.threshold
    }
}

#[cfg(test)]
mod null_model_tests {
    use super::*;

    /// Per reading, the null model gives the rate the detector quotes at its threshold, falls
    /// as the agreement rises, and is 1 for a map that agrees no better than chance.
    #[test]
    fn the_reading_rate_matches_the_detector_at_its_threshold() {
        for layout in [
            Layout::Spread {
                bits: 16,
                cell: 1,
                key: 24301,
                search: 2,
                height: 28,
                width: 28,
            },
            Layout::Spread {
                bits: 16,
                cell: 2,
                key: 7,
                search: 2,
                height: 28,
                width: 28,
            },
        ] {
            let null = NullModel::for_layout(&layout);
            let detector = Detector::for_layout(&layout, None);
            let at = null.false_positive_rate(detector.threshold);
            assert!(
                (at - detector.null_fpr_at_threshold).abs() <= 1e-12 * at.max(1e-300),
                "{at} against {}",
                detector.null_fpr_at_threshold
            );
            assert_eq!(null.false_positive_rate(0.5), 1.0);
            let rates: Vec<f64> = (50..=100)
                .map(|p| null.false_positive_rate(p as f64 / 100.0))
                .collect();
            assert!(rates.windows(2).all(|w| w[1] <= w[0]), "{rates:?}");
            assert!(rates[50] < 1e-30);
        }
    }
}
