//! Synchronisation: where the repeated tile of a photo watermark lies after the photo was
//! cropped, resized or turned, found from the photo itself rather than from a list of guesses.
//!
//! The extractor's map of a watermarked photo repeats the tile; a crop keeping a fraction `f` of
//! a side stretches that period by `1/f` once the photo is squashed to the working size, a turn
//! rotates it, and an uneven crop stretches the two axes differently. The autocorrelation of the
//! map has a peak at every vector of that lattice, whatever the tile holds. The two shortest
//! independent peaks give the lattice's basis, and with it the affine map that brings the tile
//! back to its trained size and orientation; the tile's shift is then found by decoding every
//! cyclic shift, as for an uncropped photo.

use tch::{Device, Kind, Tensor};

mod fold;
pub use fold::refined;

/// A lattice basis, in pixels of the map it was found in: `a` is the tile's first axis (mostly
/// along x, pointing right), `b` its second (mostly along y, pointing down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lattice {
    /// The first basis vector (x, y): one tile period along the tile's first axis.
    pub a: (f64, f64),
    /// The second basis vector (x, y): one tile period along the tile's second axis.
    pub b: (f64, f64),
    /// How clearly the lattice shows: the mean normalised autocorrelation at its points (1 for
    /// a perfectly periodic map, about 0 for noise) times the square root of the map's pixel
    /// count, so that lattices found in maps of different sizes compare by how far each stands
    /// above its own noise (which falls as one over that root).
    pub strength: f64,
}

impl Lattice {
    /// The affine matrix (x, y rows) taking tile pixels (a tile of side `tile`) to map pixels.
    pub fn matrix(&self, tile: f64) -> [[f64; 2]; 2] {
        [
            [self.a.0 / tile, self.b.0 / tile],
            [self.a.1 / tile, self.b.1 / tile],
        ]
    }
}

/// The lattices a map `(1,1,H,W)` repeats on with a period between `min_period` and
/// `max_period` pixels along each basis vector, best first (at most `count`). Empty when the map
/// shows no repetition.
pub fn lattices(map: &Tensor, min_period: f64, max_period: f64, count: usize) -> Vec<Lattice> {
    let correlation = normalised_autocorrelation(map, min_period);
    let (h, w) = (correlation.len(), correlation[0].len());
    let at = |dy: i64, dx: i64| -> f64 {
        correlation[dy.rem_euclid(h as i64) as usize][dx.rem_euclid(w as i64) as usize]
    };
    // Local maxima in the half plane (dx > 0, or dx = 0 and dy > 0) within the period range.
    let reach = max_period.ceil() as i64;
    // Lags up to half the map rest on at least a quarter of its pixel pairs.
    let max_lag = (h.min(w) / 4) as f64;
    let mut peaks: Vec<((i64, i64), f64)> = Vec::new();
    for dy in -reach..=reach {
        for dx in 0..=reach {
            if dx == 0 && dy <= 0 {
                continue;
            }
            let length = ((dx * dx + dy * dy) as f64).sqrt();
            if length < min_period || length > max_period {
                continue;
            }
            let v = at(dy, dx);
            let is_peak = (-1..=1)
                .flat_map(|y| (-1..=1).map(move |x| (y, x)))
                .filter(|&o| o != (0, 0))
                .all(|(oy, ox)| at(dy + oy, dx + ox) < v);
            if is_peak && v > 0.0 {
                peaks.push(((dx, dy), v));
            }
        }
    }
    peaks.sort_by(|p, q| q.1.total_cmp(&p.1));
    peaks.truncate(24);
    // Bases: pairs of strong peaks at 50-130 degrees from each other, refined over the whole
    // lattice they span and scored by how strongly every point of it repeats the map (a pair of
    // peaks that the photo's own texture made rarely has its sums and multiples peak too).
    let mut bases: Vec<Lattice> = Vec::new();
    for (i, &(p, _)) in peaks.iter().enumerate() {
        for &(q, _) in &peaks[i + 1..] {
            let (p, q) = (refine(&at, p), refine(&at, q));
            let cos = (p.0 * q.0 + p.1 * q.1) / (norm(p) * norm(q));
            if cos.abs() > 0.64 {
                continue;
            }
            let (a, b) = orient(p, q);
            let (a, b) = fit(&at, a, b, max_lag);
            if let Some(strength) = support(&at, a, b, max_lag) {
                bases.push(finest(&at, Lattice { a, b, strength }, min_period, max_lag));
            }
        }
    }
    // The best supported; among as well supported ones (within 5%), the smallest cell and then
    // the shortest basis (a skewed basis of the true lattice repeats as well). The period range
    // is narrower than a factor 2, so the true lattice's doubled vectors are not in it.
    let best = bases.iter().map(|l| l.strength).fold(0.0, f64::max);
    bases.retain(|l| l.strength >= 0.95 * best);
    let area = |l: &Lattice| (l.a.0 * l.b.1 - l.a.1 * l.b.0).abs();
    bases.sort_by(|l, m| {
        (area(l).round(), norm(l.a) + norm(l.b))
            .partial_cmp(&(area(m).round(), norm(m.a) + norm(m.b)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let significance = ((h * w) as f64 / 4.0).sqrt();
    for l in &mut bases {
        l.strength *= significance;
    }
    let mut chosen: Vec<Lattice> = Vec::new();
    for l in bases {
        let same = chosen.iter().any(|c| close(c.a, l.a) && close(c.b, l.b));
        if !same {
            chosen.push(l);
        }
        if chosen.len() == count {
            break;
        }
    }
    chosen
}

/// The basis refined by least squares over every lattice point `n a + m b` (|n|, |m| <= 4)
/// within `max_lag` whose autocorrelation peaks near where the estimate puts it: a peak's
/// position is known to a fraction of a pixel, and a point k cells out divides that error by k,
/// which the tile's position across a whole map needs (a 1% error in the period moves the
/// eighth tile by more than a pixel).
fn fit(
    at: &impl Fn(i64, i64) -> f64,
    a: (f64, f64),
    b: (f64, f64),
    max_lag: f64,
) -> ((f64, f64), (f64, f64)) {
    // Normal equations of  [n m] [ax bx; ay by]^T = p  for x and y alike.
    let (mut snn, mut snm, mut smm) = (0f64, 0f64, 0f64);
    let (mut snx, mut smx, mut sny, mut smy) = (0f64, 0f64, 0f64, 0f64);
    for n in -4i64..=4 {
        for m in -4i64..=4 {
            if (n, m) == (0, 0) {
                continue;
            }
            let (px, py) = (
                n as f64 * a.0 + m as f64 * b.0,
                n as f64 * a.1 + m as f64 * b.1,
            );
            if (px * px + py * py).sqrt() > max_lag {
                continue;
            }
            // The strongest pixel within one of the prediction, if it is a peak.
            let (cx, cy) = (px.round() as i64, py.round() as i64);
            let mut top = (cx, cy);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    if at(cy + dy, cx + dx) > at(top.1, top.0) {
                        top = (cx + dx, cy + dy);
                    }
                }
            }
            let is_peak = (-1..=1)
                .flat_map(|y| (-1..=1).map(move |x| (y, x)))
                .filter(|&o| o != (0, 0))
                .all(|(oy, ox)| at(top.1 + oy, top.0 + ox) < at(top.1, top.0));
            if !is_peak || at(top.1, top.0) <= 0.0 {
                continue;
            }
            let (qx, qy) = refine(at, top);
            let (n, m) = (n as f64, m as f64);
            snn += n * n;
            snm += n * m;
            smm += m * m;
            snx += n * qx;
            smx += m * qx;
            sny += n * qy;
            smy += m * qy;
        }
    }
    let det = snn * smm - snm * snm;
    if det.abs() < 1e-9 {
        return (a, b);
    }
    let solve = |sn: f64, sm: f64| ((smm * sn - snm * sm) / det, (snn * sm - snm * sn) / det);
    let (ax, bx) = solve(snx, smx);
    let (ay, by) = solve(sny, smy);
    ((ax, ay), (bx, by))
}

/// The finest lattice within the period range that repeats as well as `l`: two peaks of a
/// lattice may span a coarser one (every other point, or the diagonals), all of whose points
/// peak too. A basis vector halved (or the diagonals' half sum and difference) whose new points,
/// those not on `l`, peak at least half as strongly as `l`'s own belongs to the true lattice
/// (where the photo does not repeat, the new points sit at about 0).
fn finest(at: &impl Fn(i64, i64) -> f64, mut l: Lattice, min_period: f64, max_lag: f64) -> Lattice {
    'finer: loop {
        let (a, b) = (l.a, l.b);
        let half = |v: (f64, f64)| (v.0 / 2.0, v.1 / 2.0);
        // Each finer basis, and which of its points (n, m) are new (not on `l`).
        let candidates: [Finer; 3] = [
            (half(a), b, |n, _| n % 2 != 0),
            (a, half(b), |_, m| m % 2 != 0),
            (
                half((a.0 - b.0, a.1 - b.1)),
                half((a.0 + b.0, a.1 + b.1)),
                |n, m| (n + m) % 2 != 0,
            ),
        ];
        for (a2, b2, new) in candidates {
            if norm(a2) < min_period || norm(b2) < min_period {
                continue;
            }
            // The new points against the old ones in the same range of lags.
            let old = support_where(at, a2, b2, max_lag, |n, m| !new(n, m));
            if let (Some(s2), Some(s1)) = (support_where(at, a2, b2, max_lag, new), old) {
                if s2 >= 0.5 * s1 {
                    let (a2, b2) = orient(a2, b2);
                    let (a2, b2) = fit(at, a2, b2, max_lag);
                    if let Some(strength) = support(at, a2, b2, max_lag) {
                        l = Lattice {
                            a: a2,
                            b: b2,
                            strength,
                        };
                        continue 'finer;
                    }
                }
            }
        }
        return l;
    }
}

/// A finer basis `(a, b)` and which of its points `(n, m)` are new.
type Finer = ((f64, f64), (f64, f64), fn(i64, i64) -> bool);

/// The shortest basis of the lattice `(a, b)` spans (Lagrange-Gauss reduction), ordered and
/// signed as [`Lattice`] has it: the lattice is the same, and its tile is then read unsheared.
pub fn reduced(a: (f64, f64), b: (f64, f64)) -> ((f64, f64), (f64, f64)) {
    let dot = |u: (f64, f64), v: (f64, f64)| u.0 * v.0 + u.1 * v.1;
    let (mut a, mut b) = (a, b);
    for _ in 0..32 {
        if dot(b, b) < dot(a, a) {
            std::mem::swap(&mut a, &mut b);
        }
        let k = (dot(a, b) / dot(a, a)).round();
        if k == 0.0 {
            break;
        }
        b = (b.0 - k * a.0, b.1 - k * a.1);
    }
    orient(a, b)
}

/// A basis ordered and signed as [`Lattice`] has it: `a` the vector nearer the x axis, pointing
/// right; `b` pointing down.
fn orient(p: (f64, f64), q: (f64, f64)) -> ((f64, f64), (f64, f64)) {
    let (mut a, mut b) = if p.0.abs() >= q.0.abs() {
        (p, q)
    } else {
        (q, p)
    };
    if a.0 < 0.0 {
        a = (-a.0, -a.1);
    }
    if b.1 < 0.0 {
        b = (-b.0, -b.1);
    }
    (a, b)
}

/// The mean autocorrelation at the points `n a + m b` (|n|, |m| <= 3, not both 0) within
/// `max_lag`, each the largest value within a pixel of it; None for fewer than 6 points.
fn support(
    at: &impl Fn(i64, i64) -> f64,
    a: (f64, f64),
    b: (f64, f64),
    max_lag: f64,
) -> Option<f64> {
    support_where(at, a, b, max_lag, |_, _| true)
}

/// [`support`] over the points `(n, m)` that `keep` keeps; None for fewer than 4 of them.
fn support_where(
    at: &impl Fn(i64, i64) -> f64,
    a: (f64, f64),
    b: (f64, f64),
    max_lag: f64,
    keep: impl Fn(i64, i64) -> bool,
) -> Option<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for n in -3i64..=3 {
        for m in -3i64..=3 {
            let (px, py) = (
                n as f64 * a.0 + m as f64 * b.0,
                n as f64 * a.1 + m as f64 * b.1,
            );
            if (n, m) == (0, 0) || !keep(n, m) || (px * px + py * py).sqrt() > max_lag {
                continue;
            }
            let (cx, cy) = (px.round() as i64, py.round() as i64);
            let top = (-1..=1)
                .flat_map(|dy| (-1..=1).map(move |dx| (dy, dx)))
                .map(|(dy, dx)| at(cy + dy, cx + dx))
                .fold(f64::NEG_INFINITY, f64::max);
            sum += top;
            count += 1;
        }
    }
    (count >= 4).then(|| sum / count as f64)
}

fn norm(v: (f64, f64)) -> f64 {
    (v.0 * v.0 + v.1 * v.1).sqrt()
}

fn close(u: (f64, f64), v: (f64, f64)) -> bool {
    (u.0 - v.0).abs() < 1.0 && (u.1 - v.1).abs() < 1.0
}

/// A peak's position to a fraction of a pixel: a parabola through it and its neighbours, along
/// each axis.
fn refine(at: &impl Fn(i64, i64) -> f64, (dx, dy): (i64, i64)) -> (f64, f64) {
    let vertex = |minus: f64, centre: f64, plus: f64| {
        let curvature = minus - 2.0 * centre + plus;
        if curvature < 0.0 {
            (0.5 * (minus - plus) / curvature).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    };
    let c = at(dy, dx);
    (
        dx as f64 + vertex(at(dy, dx - 1), c, at(dy, dx + 1)),
        dy as f64 + vertex(at(dy - 1, dx), c, at(dy + 1, dx)),
    )
}

/// The map's autocorrelation at every lag (rows dy, columns dx, negative lags wrapped), each
/// divided by the number of pixel pairs it sums and by the variance: 1 at lag 0, about 1 at the
/// lags of a perfect repetition, about 0 where the map does not repeat. Computed by FFT on the
/// map padded to twice its size, so the lags do not wrap around the map.
fn normalised_autocorrelation(map: &Tensor, min_period: f64) -> Vec<Vec<f64>> {
    tch::no_grad(|| {
        let m = map.to_device(Device::Cpu).to_kind(Kind::Double);
        let size = m.size();
        let (h, w) = (size[2], size[3]);
        let centred = centred_signs(&m);
        let ones = Tensor::ones_like(&m);
        let correlate = |x: &Tensor| {
            let f = x.fft_rfft2(Some([2 * h, 2 * w].as_slice()), [-2, -1], "backward");
            (&f * f.conj()).fft_irfft2(Some([2 * h, 2 * w].as_slice()), [-2, -1], "backward")
        };
        let pairs = correlate(&ones).clamp_min(1.0);
        // Spectral whitening: each frequency's power divided by the mean power around it, so
        // the lines of a repetition stand out and the smooth spectrum of the photo's texture
        // (which correlates the map over short lags in every direction) flattens. The window
        // spans two line spacings of the shortest period sought (lines lie 2N/period bins apart
        // in the padded spectrum): a window nearer one line's width is filled by that line's own
        // spread, divides it away, and a strongly tiled map then showed no lattice at all.
        let spectrum = centred.fft_rfft2(Some([2 * h, 2 * w].as_slice()), [-2, -1], "backward");
        let power = spectrum.abs().square();
        let window = ((4.0 * h.max(w) as f64 / min_period) as i64) | 1;
        let around = box_mean(&power, window);
        let whitened = (&power / (around + 1e-12)).sqrt();
        let c = whitened.to_kind(Kind::ComplexDouble).fft_irfft2(
            Some([2 * h, 2 * w].as_slice()),
            [-2, -1],
            "backward",
        );
        let c = (&c / c.max().clamp_min(1e-12) / pairs * (h * w) as f64).squeeze();
        Vec::<Vec<f64>>::try_from(c).expect("a 2-D double tensor")
    })
}

/// The signs of a map `(1,1,H,W)` less its local mean (as doubles). High-passed: the photo's own
/// shading and large shapes leave the extractor's map slowly varying, and would otherwise
/// dominate every lag. Only the sign counts: every region of the photo then weighs alike,
/// however strongly its content drives the extractor.
fn centred_signs(map: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let m = map.to_device(Device::Cpu).to_kind(Kind::Double);
        let local = m.avg_pool2d([7, 7], [1, 1], [3, 3], false, false, None::<i64>);
        (&m - local).sign()
    })
}

/// The mean of `x` `(1,1,H,W)` over a `window x window` box around each element (the part of
/// the box inside `x`), by cumulative sums: the cost does not grow with the window.
fn box_mean(x: &Tensor, window: i64) -> Tensor {
    let r = window / 2;
    let sums = |t: &Tensor| {
        let mut t = t.shallow_clone();
        for dim in [2usize, 3] {
            let n = t.size()[dim];
            // A leading zero and r more on each side: sum over [i - r, i + r] = c[i + window] - c[i].
            let pad = if dim == 3 {
                [r + 1, r, 0, 0]
            } else {
                [0, 0, r + 1, r]
            };
            let c = t.constant_pad_nd(pad).cumsum(dim as i64, Kind::Double);
            t = c.narrow(dim as i64, window, n) - c.narrow(dim as i64, 0, n);
        }
        t
    };
    sums(x) / sums(&Tensor::ones_like(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `side x side` map of uniform noise in [0, 1), drawn from `state` (splitmix64), which it
    /// advances: a map's part that is the photo's own response, not the tile.
    pub(super) fn noise_map(side: i64, state: &mut u64) -> Tensor {
        let noise: Vec<f32> = (0..side * side)
            .map(|_| {
                *state = crate::runtime::splitmix::splitmix64(*state);
                (*state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        Tensor::from_slice(&noise).view([1, 1, side, side])
    }

    /// A `side x side` map of a random `tile x tile` pattern of 0/1 seen through an affine map
    /// (tile pixels to map pixels), bilinear.
    pub(super) fn tiled_map(side: i64, tile: i64, m: [[f64; 2]; 2], seed: u64) -> Tensor {
        let mut state = seed;
        let bits: Vec<f64> = (0..tile * tile)
            .map(|_| {
                state = crate::runtime::splitmix::splitmix64(state);
                (state >> 63) as f64
            })
            .collect();
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let inv = [
            [m[1][1] / det, -m[0][1] / det],
            [-m[1][0] / det, m[0][0] / det],
        ];
        let bit =
            |tx: i64, ty: i64| bits[(ty.rem_euclid(tile) * tile + tx.rem_euclid(tile)) as usize];
        let mut v = vec![0f32; (side * side) as usize];
        for y in 0..side {
            for x in 0..side {
                // Bilinear between tile cells, as a resampled map is.
                let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
                let tx = inv[0][0] * fx + inv[0][1] * fy - 0.5;
                let ty = inv[1][0] * fx + inv[1][1] * fy - 0.5;
                let (x0, y0) = (tx.floor(), ty.floor());
                let (wx, wy) = (tx - x0, ty - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                let top = bit(x0, y0) * (1.0 - wx) + bit(x0 + 1, y0) * wx;
                let bottom = bit(x0, y0 + 1) * (1.0 - wx) + bit(x0 + 1, y0 + 1) * wx;
                v[(y * side + x) as usize] = (top * (1.0 - wy) + bottom * wy) as f32;
            }
        }
        Tensor::from_slice(&v).view([1, 1, side, side])
    }

    /// The best lattice found in `map` (periods 12 to 21.6) is the 16-px tile seen through `m`.
    fn assert_finds(map: &Tensor, m: [[f64; 2]; 2], case: &str) {
        let (lo, hi) = crate::message::search::SYNC_PERIODS;
        let found = lattices(map, lo * 16.0, hi * 16.0, 2);
        assert!(!found.is_empty(), "{case}: no lattice");
        let got = found[0].matrix(16.0);
        for i in 0..2 {
            for j in 0..2 {
                assert!(
                    (got[i][j] - m[i][j]).abs() < 0.005,
                    "{case}: found {got:?}, made {m:?}"
                );
            }
        }
    }

    #[test]
    fn finds_a_stretched_and_turned_lattice() {
        // Periods within the reader's window (0.85 to 1.65 tiles, narrower than a factor 2, so
        // that a lattice's doubled vectors never compete with its own). 0.9 x 1.5: a crop
        // keeping 90% of the width and 60% of the height, squashed square.
        for (sx, sy, degrees) in [
            (1.0, 1.0, 0.0),
            (1.25, 1.25, 0.0),
            (0.9, 1.3, 0.0),
            (0.9, 1.5, 0.0),
            (1.6, 1.6, 0.0),
            (1.2, 1.2, 7.0),
            (0.9, 0.9, -12.0),
        ] {
            let (s, c) = f64::to_radians(degrees).sin_cos();
            // Scale, then turn.
            let m = [[c * sx, -s * sy], [s * sx, c * sy]];
            let map = tiled_map(128, 16, m, 7);
            assert_finds(&map, m, &format!("{sx} {sy} {degrees}"));
        }
    }

    #[test]
    fn finds_the_lattice_of_a_large_map_mixed_with_noise() {
        // A 256-px map holds 16 tiles a side (the 256-px shaped photo model's), and a real map
        // is part tile, part the photo's own response. Such a map's spectrum is mostly the
        // tile's lines; a whitening window near one line's width divided them away (no lattice
        // was found in a map that decoded without an error).
        let mut noise_state = 11u64;
        for (sx, degrees) in [(1.0, 0.0), (1.0 / 0.95, 0.0), (1.0 / 0.8, 3.0)] {
            let (s, c) = f64::to_radians(degrees).sin_cos();
            let m = [[c * sx, -s * sx], [s * sx, c * sx]];
            let tiled = tiled_map(256, 16, m, 5);
            let map = tiled * 0.5 + noise_map(256, &mut noise_state) * 0.5;
            assert_finds(&map, m, &format!("{sx} {degrees}"));
        }
    }

    #[test]
    fn a_skewed_basis_reduces_to_the_lattice_shortest() {
        // The diagonal and one side of a 16 x 20 lattice span it, skewed; reduced, they are its
        // two sides again, the first along x pointing right and the second pointing down.
        let (a, b) = reduced((16.0, 20.0), (0.0, -20.0));
        assert_eq!((a, b), ((16.0, 0.0), (0.0, 20.0)));
        let (a, b) = reduced((48.0, 20.0), (16.0, 0.0));
        assert_eq!((a, b), ((16.0, 0.0), (0.0, 20.0)));
    }

    #[test]
    fn box_mean_is_the_mean_over_the_box_inside_the_map() {
        let x = Tensor::rand([1, 1, 9, 12], (Kind::Double, Device::Cpu));
        let pooled = x.avg_pool2d([5, 5], [1, 1], [2, 2], false, false, None::<i64>);
        let difference = (box_mean(&x, 5) - pooled).abs().max().double_value(&[]);
        assert!(difference < 1e-12, "{difference}");
    }

    #[test]
    fn noise_has_no_strong_lattice() {
        let noise = Tensor::rand([1, 1, 128, 128], (Kind::Float, Device::Cpu));
        let tiled = tiled_map(128, 16, [[1.0, 0.0], [0.0, 1.0]], 3);
        let best = |map: &Tensor| {
            lattices(map, 12.0, 21.6, 2)
                .iter()
                .map(|l| l.strength)
                .fold(0.0, f64::max)
        };
        let (noise, tiled) = (best(&noise), best(&tiled));
        eprintln!("strength: noise {noise:.2}, tiled {tiled:.2}");
        // In units of the map's own noise: noise stays within a few, a tiled map stands far out.
        assert!(
            noise < 4.0 && tiled > 5.0 * noise,
            "noise {noise}, tiled {tiled}"
        );
    }
}
