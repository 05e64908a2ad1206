//! The resampling behind photos of any size, on the host and a row at a time, with the taps
//! PyTorch's CPU kernels use: the antialiased squash of a photo's luma to the working size
//! (`AaTaps`, `dot`) and the bilinear stretch of the model's change back to the photo, fused
//! with its addition to the pixels (`Taps`, `add_resized`). tests/photo.rs checks both against
//! libtorch.

/// A sample type of photos: 8 or 16 bits, unsigned, full scale at [`Sample::MAX`].
pub(crate) trait Sample: Copy + Into<f32> {
    const MAX: f32;
    /// `v`, already clamped to [0, MAX], rounded half up (`v + 0.5` truncated).
    fn round_from(v: f32) -> Self;
    fn distance(self, other: Self) -> u64;
}

impl Sample for u8 {
    const MAX: f32 = 255.0;
    fn round_from(v: f32) -> u8 {
        (v + 0.5) as u8
    }
    fn distance(self, other: u8) -> u64 {
        u64::from(self.abs_diff(other))
    }
}

impl Sample for u16 {
    const MAX: f32 = 65535.0;
    fn round_from(v: f32) -> u16 {
        (v + 0.5) as u16
    }
    fn distance(self, other: u16) -> u64 {
        u64::from(self.abs_diff(other))
    }
}

/// Adds the `s x s` change `values` (in 8-bit levels), resized to the photo's `w` columns and
/// `raw.len() / (w C)` rows through the taps, to the first `K` of each pixel's `C` channels (the
/// colours, not alpha); returns the summed squared change in the samples' own units. A 16-bit
/// photo gets the same change as an 8-bit one, 257 of its steps a level, rounded to its own
/// finer steps. Rounding is `(x + 0.5)` truncated after clamping to [0, MAX], which is
/// round-half-up: the same as `round` but on exact halves of negative numbers, which the clamp
/// has removed, and without a libm call per channel.
///
/// `gain` scales the change pixel by pixel (perceptual shaping: `crate::model::jnd::JndRows`), or not
/// (`NoGain`). With an alpha channel (`C > K`), each pixel's change is also scaled by its opacity:
/// nothing is written under fully transparent pixels, where no viewer sees it and a flattening
/// onto any background removes it.
pub(crate) fn add_resized<T: Sample, const C: usize, const K: usize>(
    raw: &mut [T],
    values: &[f32],
    s: usize,
    w: usize,
    rows: &Taps,
    columns: &Taps,
    gain: &mut (impl RowGain + ?Sized),
) -> u64 {
    let mut mixed = vec![0f32; s];
    let mut change = vec![0f32; w];
    let mut squared_error = 0u64;
    let steps_per_level = T::MAX / 255.0;
    for (y, row) in raw.chunks_exact_mut(w * C).enumerate() {
        let (r0, r1, wy) = rows.at(y);
        let (a, b) = (&values[r0 * s..(r0 + 1) * s], &values[r1 * s..(r1 + 1) * s]);
        for ((m, &a), &b) in mixed.iter_mut().zip(a).zip(b) {
            *m = a + wy * (b - a);
        }
        for (d, &(c0, c1, wx)) in change.iter_mut().zip(&columns.0) {
            *d = mixed[c0] + wx * (mixed[c1] - mixed[c0]);
        }
        if let Some(g) = gain.row(y) {
            change.iter_mut().zip(g).for_each(|(d, g)| *d *= g);
        }
        if C > K {
            for (pixel, d) in row.chunks_exact(C).zip(change.iter_mut()) {
                *d *= pixel[C - 1].into() / T::MAX;
            }
        }
        if T::MAX != 255.0 {
            change.iter_mut().for_each(|d| *d *= steps_per_level);
        }
        for (pixel, &d) in row.chunks_exact_mut(C).zip(&change) {
            for v in &mut pixel[..K] {
                let new = T::round_from(((*v).into() + d).clamp(0.0, T::MAX));
                let diff = new.distance(*v);
                squared_error += diff * diff;
                *v = new;
            }
        }
    }
    squared_error
}

/// A per-pixel factor on the change added by [`add_resized`], a row at a time in order.
pub(crate) trait RowGain {
    /// Row `y`'s factors (one per pixel), or None for 1 everywhere.
    fn row(&mut self, y: usize) -> Option<&[f32]>;
}

/// No shaping: every pixel gets the resized change as it is.
pub(crate) struct NoGain;

impl RowGain for NoGain {
    fn row(&mut self, _y: usize) -> Option<&[f32]> {
        None
    }
}

impl<F: FnMut(usize, &mut Vec<f32>)> RowGain for crate::model::jnd::JndRows<F> {
    fn row(&mut self, y: usize) -> Option<&[f32]> {
        Some(crate::model::jnd::JndRows::row(self, y))
    }
}

/// Antialiased linear resize taps from `input` samples to `output`, as PyTorch's CPU kernel
/// computes them (align_corners false): output i is centred at scale (i + 0.5) in the input
/// (scale = input / output), and takes the inputs within max(scale, 1) of it, weighted by a
/// triangle of that half-width and normalised to sum to 1.
pub(crate) struct AaTaps {
    starts: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

impl AaTaps {
    pub(crate) fn new(input: usize, output: usize) -> AaTaps {
        let scale = input as f32 / output as f32;
        let (support, inverse) = if scale >= 1.0 {
            (scale, 1.0 / scale)
        } else {
            (1.0, 1.0)
        };
        let (mut starts, mut weights) = (Vec::with_capacity(output), Vec::with_capacity(output));
        for i in 0..output {
            let center = scale * (i as f32 + 0.5);
            // Truncation, as the kernel's integer casts do (both values are >= -0.5 + 0.5).
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let mut w: Vec<f32> = (first..end)
                .map(|j| {
                    let x = ((j as f32 - center + 0.5) * inverse).abs();
                    if x < 1.0 {
                        1.0 - x
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f32 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            starts.push(first);
            weights.push(w);
        }
        AaTaps { starts, weights }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &[f32])> {
        self.starts
            .iter()
            .copied()
            .zip(self.weights.iter().map(Vec::as_slice))
    }
}

/// Σ weights[k] values[k], summed in order.
pub(crate) fn dot(weights: &[f32], values: &[f32]) -> f32 {
    weights
        .iter()
        .zip(values)
        .fold(0.0, |acc, (w, v)| acc + w * v)
}

/// Bilinear resize taps from `input` samples to `output`, as PyTorch computes them with
/// align_corners false: for each output index, the two input indices and the second's weight.
pub(crate) struct Taps(Vec<(usize, usize, f32)>);

impl Taps {
    pub(crate) fn new(input: usize, output: usize) -> Taps {
        let scale = input as f32 / output as f32;
        Taps(
            (0..output)
                .map(|i| {
                    let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
                    let i0 = (src as usize).min(input - 1);
                    let i1 = (i0 + 1).min(input - 1);
                    (i0, i1, src - i0 as f32)
                })
                .collect(),
        )
    }

    pub(crate) fn at(&self, i: usize) -> (usize, usize, f32) {
        self.0[i]
    }
}
