//! How visible a watermark is, judged as image people judge it: SSIMULACRA2 (the `ssimulacra2`
//! crate, Cloudinary's metric: 100 identical, 90 visually lossless, 70 high quality, 50 medium)
//! on 100% windows of the marked photo beside the original, the worst window counting. PSNR
//! over a whole photo averages a faint pattern in a flat sky away; a window at full resolution
//! where the photo is flattest is where a viewer sees it first.

use anyhow::{bail, Result};
use ssimulacra2::{compute_frame_ssimulacra2, ColorPrimaries, Rgb, TransferCharacteristic};

use crate::codec::photo::{Photo, Pixels};

/// Side of the square windows scored (pixels at 100%); a photo smaller than this is scored whole
/// along that side.
pub const WINDOW: u32 = 512;

/// The SSIMULACRA2 scores of a marked photo against its original.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Visibility {
    /// The lower of the two windows' scores: what the report shows.
    pub worst: f64,
    /// The centre window's score.
    pub centre: f64,
    /// The flattest window's score (lowest mean luma gradient), and its top-left corner.
    pub flattest: f64,
    /// The flattest window's top-left corner (x, y) in pixels.
    pub flattest_at: (u32, u32),
    /// The windows' width and height (the photo's own where it is smaller than [`WINDOW`]).
    pub window: (u32, u32),
}

/// Scores `marked` against `original` (same size and colour type) on the centre window and on the
/// flattest window of the original.
pub fn score(original: &Photo, marked: &Photo) -> Result<Visibility> {
    let (w, h) = (original.width(), original.height());
    if (marked.width(), marked.height()) != (w, h)
        || std::mem::discriminant(&original.pixels) != std::mem::discriminant(&marked.pixels)
    {
        bail!(
            "{} and {}: different sizes or colour types",
            original.path.display(),
            marked.path.display()
        );
    }
    let (ww, wh) = (WINDOW.min(w), WINDOW.min(h));
    let centre_at = ((w - ww) / 2, (h - wh) / 2);
    // 16-bit photos are scored as an 8-bit display shows them.
    let (a, b) = (original.pixels.to_eight_bit(), marked.pixels.to_eight_bit());
    let flattest_at = flattest_window(&a, ww, wh);
    let at = |corner| window_score(&a, &b, corner, ww, wh);
    let centre = at(centre_at)?;
    let flattest = if flattest_at == centre_at {
        centre
    } else {
        at(flattest_at)?
    };
    Ok(Visibility {
        worst: centre.min(flattest),
        centre,
        flattest,
        flattest_at,
        window: (ww, wh),
    })
}

/// SSIMULACRA2 of one `ww x wh` window at `(x0, y0)`.
fn window_score(a: &Pixels, b: &Pixels, (x0, y0): (u32, u32), ww: u32, wh: u32) -> Result<f64> {
    let frame = |p: &Pixels| {
        Rgb::new(
            window_rgb(p, x0, y0, ww, wh),
            ww as usize,
            wh as usize,
            TransferCharacteristic::SRGB,
            ColorPrimaries::BT709,
        )
    };
    let (Ok(fa), Ok(fb)) = (frame(a), frame(b)) else {
        bail!("SSIMULACRA2: cannot make a {ww}x{wh} frame");
    };
    compute_frame_ssimulacra2(fa, fb).map_err(|e| anyhow::anyhow!("SSIMULACRA2: {e}"))
}

/// The window's pixels as sRGB in [0, 1] (gray repeated in the three channels; alpha left out:
/// the colours are what carries the mark, and nothing is written under transparent pixels).
fn window_rgb(p: &Pixels, x0: u32, y0: u32, ww: u32, wh: u32) -> Vec<[f32; 3]> {
    let (w, _) = p.dimensions();
    let raw = p.eight_bit_samples();
    let channels = raw.len() / (w as usize * p.dimensions().1 as usize);
    let mut out = Vec::with_capacity((ww * wh) as usize);
    for y in y0..y0 + wh {
        let row =
            &raw[(y as usize * w as usize + x0 as usize) * channels..][..ww as usize * channels];
        for px in row.chunks_exact(channels) {
            let v = |i: usize| f32::from(px[i]) / 255.0;
            out.push(if p.is_gray() {
                [v(0), v(0), v(0)]
            } else {
                [v(0), v(1), v(2)]
            });
        }
    }
    out
}

/// The top-left corner of the `ww x wh` window (on a grid of half-window steps, plus the far
/// edges) whose luma has the lowest mean absolute gradient: where a faint pattern shows first.
fn flattest_window(p: &Pixels, ww: u32, wh: u32) -> (u32, u32) {
    let (w, h) = p.dimensions();
    let raw = p.eight_bit_samples();
    let channels = raw.len() / (w as usize * h as usize);
    let luma = |x: u32, y: u32| -> f32 {
        let px = &raw[(y as usize * w as usize + x as usize) * channels..];
        if p.is_gray() {
            f32::from(px[0])
        } else {
            0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2])
        }
    };
    // Gradient sums on a coarse grid of cells (every `step`-th pixel), then summed per window.
    let step = (ww.min(wh) / 64).max(1);
    let cells_x = w.div_ceil(step);
    let cells_y = h.div_ceil(step);
    let mut cell = vec![0f32; (cells_x * cells_y) as usize];
    for cy in 0..cells_y {
        let y = (cy * step).min(h - 2);
        for cx in 0..cells_x {
            let x = (cx * step).min(w - 2);
            let here = luma(x, y);
            cell[(cy * cells_x + cx) as usize] =
                (luma(x + 1, y) - here).abs() + (luma(x, y + 1) - here).abs();
        }
    }
    let corners = |size: u32, window: u32| -> Vec<u32> {
        let last = size - window;
        let mut c: Vec<u32> = (0..=last).step_by((window / 2).max(1) as usize).collect();
        if c.last() != Some(&last) {
            c.push(last);
        }
        c
    };
    let mut best = ((0, 0), f32::INFINITY);
    for &y0 in &corners(h, wh) {
        for &x0 in &corners(w, ww) {
            let (cx0, cy0) = (x0 / step, y0 / step);
            let (cx1, cy1) = ((x0 + ww) / step, (y0 + wh) / step);
            let mut sum = 0f32;
            for cy in cy0..cy1.min(cells_y) {
                let row = &cell[(cy * cells_x) as usize..][..cells_x as usize];
                sum += row[cx0 as usize..cx1.min(cells_x) as usize]
                    .iter()
                    .sum::<f32>();
            }
            if sum < best.1 {
                best = ((x0, y0), sum);
            }
        }
    }
    best.0
}
