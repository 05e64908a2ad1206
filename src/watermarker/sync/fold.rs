//! A lattice found by the autocorrelation's peaks, refined against the whole map: the tile
//! folded over every copy of it on the candidate basis, the most consistent basis kept.

use tch::Tensor;

use super::{centred_signs, norm, Lattice};

/// `l` refined against the whole map: the basis whose tile, folded over every copy of it in the
/// map, comes out most consistent. The autocorrelation's peaks fix a period to a fraction of a
/// pixel over a few periods; a fold spans all of them, so an error of 1% (a sixth of a working
/// pixel a period, two pixels by the tenth tile, enough to cost a crop its payload) lowers the
/// fold's consistency plainly. The two periods are searched on a grid, then the four basis
/// coordinates one at a time in steps of 0.5% of a period down to 0.06%. The tile's position
/// does not matter: every shift is decoded. A map with no pixels leaves `l` as it is.
pub fn refined(map: &Tensor, l: Lattice, tile: f64) -> Lattice {
    if map.numel() == 0 {
        return l;
    }
    let signs = centred_signs(map);
    let w = signs.size()[3] as usize;
    let Ok(values) = Vec::<f64>::try_from(signs.reshape([-1])) else {
        return l;
    };
    let fold = Fold::new(values, w, tile);
    // First the two periods on a grid 0.5% apart within 3% (hard cells: the grid's steps are
    // coarse enough that their jitter does not matter), then the basis finely (shared cells).
    let scaled = |sa: f64, sb: f64| [l.a.0 * sa, l.a.1 * sa, l.b.0 * sb, l.b.1 * sb];
    let grid: Vec<f64> = (-6..=6).map(|k| 1.0 + 0.005 * f64::from(k)).collect();
    let mut basis = scaled(1.0, 1.0);
    let mut best = fold.consistency(basis, false);
    for &sa in &grid {
        for &sb in &grid {
            let trial = scaled(sa, sb);
            let score = fold.consistency(trial, false);
            if score > best {
                (best, basis) = (score, trial);
            }
        }
    }
    let mut best = fold.consistency(basis, true);
    let period = 0.5 * (norm(l.a) + norm(l.b));
    let mut step = 0.005 * period;
    while step > 0.0006 * period {
        let mut moved = false;
        for i in 0..4 {
            for sign in [-1.0, 1.0] {
                let mut trial = basis;
                trial[i] += sign * step;
                let score = fold.consistency(trial, true);
                if score > best {
                    (best, basis, moved) = (score, trial, true);
                    break;
                }
            }
        }
        if !moved {
            step /= 2.0;
        }
    }
    Lattice {
        a: (basis[0], basis[1]),
        b: (basis[2], basis[3]),
        strength: l.strength,
    }
}

/// A map's centred signs, folded onto a tile in cells of half a tile pixel.
struct Fold {
    values: Vec<f64>,
    w: usize,
    tile: f64,
}

impl Fold {
    /// Half-pixel cells: a fold whose cell edges fall mid-pixel of the true tile still keeps
    /// most of each cell within one tile pixel.
    const CELLS_PER_PIXEL: f64 = 2.0;

    fn new(values: Vec<f64>, w: usize, tile: f64) -> Self {
        Fold { values, w, tile }
    }

    /// How consistently the map repeats on the basis `[ax, ay, bx, by]`: the sum over the fold's
    /// cells of (sum of signs)^2 / count, divided by the cell count, so about 1 where the map
    /// does not repeat on that basis and up to the pixels per cell where it repeats exactly.
    fn consistency(&self, [ax, ay, bx, by]: [f64; 4], shared: bool) -> f64 {
        let det = ax * by - bx * ay;
        if det.abs() < 1e-6 {
            return 0.0;
        }
        let cells = (self.tile * Self::CELLS_PER_PIXEL).round() as usize;
        let scale = self.tile * Self::CELLS_PER_PIXEL / det;
        // Map pixel (x, y) = (u a + v b) / tile in tile pixels (u, v); inverted, in cells.
        let (iu_x, iu_y, iv_x, iv_y) = (by * scale, -bx * scale, -ay * scale, ax * scale);
        // Shared: each pixel is split among the four cells around its position (bilinear), so
        // the consistency changes smoothly with the basis instead of jumping as pixels change
        // cells. Otherwise each pixel falls in one cell (a quarter of the work).
        let mut sums = vec![0f64; cells * cells];
        let mut counts = vec![0f64; cells * cells];
        let wrap = cells as i64;
        for (y, row) in self.values.chunks_exact(self.w).enumerate() {
            let fy = y as f64 + 0.5;
            // Stepped along the row: one addition a pixel instead of two products.
            let (mut u, mut v) = (0.5 * iu_x + iu_y * fy, 0.5 * iv_x + iv_y * fy);
            for &value in row {
                let (fu, fv) = (u.floor(), v.floor());
                let (u0, v0) = (
                    (fu as i64).rem_euclid(wrap) as usize,
                    (fv as i64).rem_euclid(wrap) as usize,
                );
                if shared {
                    let (wu, wv) = (u - fu, v - fv);
                    let (u1, v1) = ((u0 + 1) % cells, (v0 + 1) % cells);
                    for (cell, weight) in [
                        (v0 * cells + u0, (1.0 - wu) * (1.0 - wv)),
                        (v0 * cells + u1, wu * (1.0 - wv)),
                        (v1 * cells + u0, (1.0 - wu) * wv),
                        (v1 * cells + u1, wu * wv),
                    ] {
                        sums[cell] += weight * value;
                        counts[cell] += weight * weight;
                    }
                } else {
                    sums[v0 * cells + u0] += value;
                    counts[v0 * cells + u0] += 1.0;
                }
                u += iu_x;
                v += iv_x;
            }
        }
        let total: f64 = sums
            .iter()
            .zip(&counts)
            .filter(|(_, &c)| c > 0.0)
            .map(|(s, &c)| s * s / c)
            .sum();
        total / (cells * cells) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermarker::sync::tests::{noise_map, tiled_map};
    use tch::{Device, Kind};

    #[test]
    fn refining_brings_a_lattice_off_by_percents_to_the_map_own() {
        // The autocorrelation's estimate of a weak map's lattice was seen 1-3.5% off per axis
        // (a 0.6 crop's 1.683 for 1.667; a screenshot's 1.221 for 1.25), enough that the
        // payload did not decode; the fold over every copy of the tile finds it again.
        let mut noise_state = 3u64;
        for (sx, sy, degrees, ex, ey) in [
            (1.0 / 0.6, 1.0 / 0.6, 0.0, 1.01, 1.0),
            (1.25, 1.25, 0.0, 0.977, 1.0),
            (1.11, 1.67, 0.0, 1.02, 0.985),
            (1.2, 1.2, 7.0, 0.98, 1.02),
        ] {
            let (s, c) = f64::to_radians(degrees).sin_cos();
            let m = [[c * sx, -s * sy], [s * sx, c * sy]];
            let tiled = tiled_map(200, 16, m, 9);
            let map = tiled * 0.3 + noise_map(200, &mut noise_state) * 0.7;
            let off = Lattice {
                a: (16.0 * m[0][0] * ex, 16.0 * m[1][0] * ex),
                b: (16.0 * m[0][1] * ey, 16.0 * m[1][1] * ey),
                strength: 1.0,
            };
            let got = refined(&map, off, 16.0).matrix(16.0);
            for i in 0..2 {
                for j in 0..2 {
                    assert!(
                        (got[i][j] - m[i][j]).abs() < 0.004 * sx.max(sy),
                        "{sx} {sy} {degrees}: refined to {got:?}, made {m:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn refining_against_an_empty_map_keeps_the_lattice() {
        let l = Lattice {
            a: (16.5, 0.2),
            b: (-0.1, 15.8),
            strength: 2.0,
        };
        for shape in [[1, 1, 0, 0], [1, 1, 0, 40], [1, 1, 40, 0]] {
            let got = refined(&Tensor::zeros(shape, (Kind::Float, Device::Cpu)), l, 16.0);
            assert_eq!(
                (got.a, got.b, got.strength),
                (l.a, l.b, l.strength),
                "{shape:?}"
            );
        }
    }
}
