//! The views the photo reader reads: the photo squashed to a level of its working size, turned
//! back by an angle, offset by half a working pixel, or warped so a lattice found in it becomes
//! the trained tile; and where in the photo each lattice lies.

use tch::Tensor;

use crate::watermarker::sync::Lattice;

/// The side of a squash `level` (a fraction) of the side `whole` a photo is read at.
pub(super) fn level_side(whole: i64, level: f64) -> i64 {
    ((whole as f64) * level).round() as i64
}

/// A photo's luma `(1,1,2S,2S)` squashed further to `(1,1,2 side,2 side)` (antialiased bilinear,
/// as the photo's own squash is).
pub(super) fn at_side(fine: &Tensor, side: i64) -> Tensor {
    if fine.size()[2] == 2 * side {
        return fine.shallow_clone();
    }
    tch::no_grad(|| fine.internal_upsample_bilinear2d_aa([2 * side, 2 * side], false, None, None))
}

/// A lattice found in the photo squashed to `level` of the working size and turned back by
/// `angle` degrees.
#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    pub(super) level: f64,
    pub(super) angle: f64,
    pub(super) lattice: Lattice,
    /// Which of the search's maps it was found in.
    pub(super) map: usize,
}

impl View {
    /// The basis in working pixels of the photo squashed whole (level 1) and not turned: the
    /// turned view shows the photo's lattice turned by `-angle` in photo pixels (`aspect` =
    /// width / height; the squash scales x by `aspect` more than y).
    pub(super) fn in_photo(&self, aspect: f64) -> Lattice {
        let (sin, cos) = self.angle.to_radians().sin_cos();
        let l = self.level;
        // In photo-pixel proportions, turned back and reduced to its shortest basis (a skewed
        // basis of one lattice, as a turned view may show, then compares equal to it).
        let unturn = |(x, y): (f64, f64)| {
            let x = x * aspect;
            ((x * cos - y * sin) / l, (x * sin + y * cos) / l)
        };
        let (a, b) =
            crate::watermarker::sync::reduced(unturn(self.lattice.a), unturn(self.lattice.b));
        Lattice {
            a: (a.0 / aspect, a.1),
            b: (b.0 / aspect, b.1),
            strength: self.lattice.strength,
        }
    }

    /// The basis in working pixels of the photo squashed whole (level 1), as its view shows it.
    pub(super) fn at_full_level(&self) -> ((f64, f64), (f64, f64)) {
        let (a, b, l) = (self.lattice.a, self.lattice.b, self.level);
        ((a.0 / l, a.1 / l), (b.0 / l, b.1 / l))
    }

    /// Whether two views show one lattice of the photo (within 3% and 2 degrees).
    pub(super) fn same_lattice(&self, other: &View) -> bool {
        if (self.angle - other.angle).abs() > 2.0 {
            return false;
        }
        let ((a, b), (c, d)) = (self.at_full_level(), other.at_full_level());
        let near = |u: (f64, f64), v: (f64, f64)| {
            let scale = (u.0 * u.0 + u.1 * u.1).sqrt();
            ((u.0 - v.0).powi(2) + (u.1 - v.1).powi(2)).sqrt() < 0.03 * scale
        };
        near(a, c) && near(b, d)
    }

    /// How far its tile is from the trained size `tile` (log ratio, both axes).
    pub(super) fn misfit(&self, tile: f64) -> f64 {
        let length = |v: (f64, f64)| (v.0 * v.0 + v.1 * v.1).sqrt();
        (length(self.lattice.a) / tile).ln().abs() + (length(self.lattice.b) / tile).ln().abs()
    }
}

/// A squashed photo's luma `(1,1,S,S)` turned by `degrees` about its centre as the photo itself
/// would be (`aspect` = its width / height: a turn of the photo is a sheared turn of the squashed
/// square), bilinear, zeros outside.
pub(super) fn rotate(luma: &Tensor, degrees: f64, aspect: f64) -> Tensor {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let theta = Tensor::from_slice(&[
        cos as f32,
        (-sin / aspect) as f32,
        0.0,
        (sin * aspect) as f32,
        cos as f32,
        0.0,
    ])
    .reshape([1, 2, 3])
    .to_device(luma.device());
    let grid = Tensor::affine_grid_generator(&theta, luma.size(), false);
    luma.grid_sampler(&grid, 0, 0, false)
}

/// Where a reading looks: the crop scale, the mirror image or not, the angle turned back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place {
    pub(super) scale: f64,
    pub(super) mirrored: bool,
    pub(super) angle: f64,
}

/// `fine` (a photo's luma at twice the side read) averaged 2x2 from the half-pixel `offset`.
pub(super) fn half_pixel_offset(fine: &Tensor, (oy, ox): (i64, i64)) -> Tensor {
    let size = fine.size();
    fine.narrow(2, oy, size[2] - oy)
        .narrow(3, ox, size[3] - ox)
        .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
}

/// `fine`, a photo's luma squashed to `2 side x 2 side`, resampled (bilinear, zeros outside) so
/// that `lattice` (found at `side x side`) becomes the trained tile: square, `tile` working pixels
/// a side, axis-aligned. The result is at twice the working scale, like `fine`, and as large as
/// the photo's content then is; None when that is degenerate (a near-singular lattice).
pub(super) fn warp_to_tile(
    fine: &Tensor,
    side: f64,
    lattice: Lattice,
    tile: f64,
) -> Option<Tensor> {
    let m = lattice.matrix(tile);
    let determinant = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if determinant.abs() < 0.05 {
        return None;
    }
    let inverse = [
        [m[1][1] / determinant, -m[0][1] / determinant],
        [-m[1][0] / determinant, m[0][0] / determinant],
    ];
    // The photo's square, centred, in tile-grid pixels: its bounding box sets the output size.
    let half = side / 2.0;
    let (mut half_w, mut half_h) = (0f64, 0f64);
    for (cx, cy) in [(half, half), (half, -half), (-half, half), (-half, -half)] {
        half_w = half_w.max((inverse[0][0] * cx + inverse[0][1] * cy).abs());
        half_h = half_h.max((inverse[1][0] * cx + inverse[1][1] * cy).abs());
    }
    let (w, h) = ((2.0 * half_w).round(), (2.0 * half_h).round());
    if !(8.0..=4.0 * side.max(64.0)).contains(&w) || !(8.0..=4.0 * side.max(64.0)).contains(&h) {
        return None;
    }
    // Normalised coordinates (align_corners false): source = m diag(w, h) / side . output.
    let theta = Tensor::from_slice(&[
        (m[0][0] * w / side) as f32,
        (m[0][1] * h / side) as f32,
        0.0,
        (m[1][0] * w / side) as f32,
        (m[1][1] * h / side) as f32,
        0.0,
    ])
    .reshape([1, 2, 3])
    .to_device(fine.device());
    let grid = Tensor::affine_grid_generator(&theta, [1, 1, 2 * h as i64, 2 * w as i64], false);
    Some(fine.grid_sampler(&grid, 0, 0, false))
}
