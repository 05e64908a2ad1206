//! The noise layers themselves, one function each, and the random draws they share (all from
//! libtorch's generator).

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::codec::gray::quantize_8bit;

/// One uniform draw in [lo, hi] on the CPU (libtorch's CPU generator): a per-batch strength.
fn uniform_scalar([lo, hi]: [f64; 2]) -> f64 {
    let u = Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0]);
    lo + (hi - lo) * u
}

/// One uniform integer in lo..=hi on the CPU.
fn uniform_int(lo: i64, hi: i64) -> i64 {
    let u = Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0]);
    (lo + (u * (hi - lo + 1) as f64).floor() as i64).min(hi)
}

/// Per-image uniform draws in [lo, hi], shape `(N,1,1,1)`, of `x`'s kind on `x`'s device
/// (exactly `lo` when `lo == hi`).
fn uniform_per_image(x: &Tensor, [lo, hi]: [f64; 2]) -> Tensor {
    let n = x.size()[0];
    Tensor::rand([n, 1, 1, 1], (x.kind(), x.device())) * (hi - lo) + lo
}

/// Per-image uniform integers in lo..=hi, shape `(N,)`, int64 on `x`'s device.
fn int_per_image(x: &Tensor, lo: i64, hi: i64) -> Tensor {
    Tensor::randint_low(lo, hi + 1, [x.size()[0]], (Kind::Int64, x.device()))
}

fn dims4(x: &Tensor) -> (i64, i64, i64, i64) {
    match x.size()[..] {
        [n, c, h, w] => (n, c, h, w),
        ref s => panic!("noise layers take (N,C,H,W) images, got shape {s:?}"),
    }
}

fn same_shape(watermarked: &Tensor, original: &Tensor) {
    assert_eq!(
        watermarked.size(),
        original.size(),
        "the watermarked and original images must have the same shape"
    );
}

// ---------------------------------------------------------------------------------------------
// The layers. Each takes the watermarked image `(N,C,H,W)` (and the original where it needs it)
// and returns the attacked image of the same shape, differentiable in the watermarked image.

/// The watermarked image unchanged (a shallow copy: same storage, same graph).
pub fn identity(watermarked: &Tensor) -> Tensor {
    watermarked.shallow_clone()
}

/// Adds Gaussian noise of per-image standard deviation uniform in `sigma`. Gradient: 1.
pub fn gaussian(watermarked: &Tensor, sigma: [f64; 2]) -> Tensor {
    let s = uniform_per_image(watermarked, sigma);
    watermarked + watermarked.randn_like() * s
}

/// Keeps each watermarked pixel with per-image probability uniform in `keep`, the original's
/// pixel elsewhere. Gradient: 1 on kept pixels, 0 on the others.
pub fn dropout(watermarked: &Tensor, original: &Tensor, keep: [f64; 2]) -> Tensor {
    same_shape(watermarked, original);
    let p = uniform_per_image(watermarked, keep);
    let kept = watermarked.rand_like().lt_tensor(&p);
    watermarked.where_self(&kept, original)
}

/// The mask `(N,1,H,W)` (bool) of one rectangle per image: rows `top..top+height`, columns
/// `left..left+width` (each `(N,)` int64, on the device of the result).
pub fn rectangle_mask(
    size: (i64, i64),
    top: &Tensor,
    left: &Tensor,
    height: &Tensor,
    width: &Tensor,
) -> Tensor {
    let (h, w) = size;
    let device = top.device();
    let n = top.size()[0];
    let rows = Tensor::arange(h, (Kind::Int64, device)).view([1, 1, h, 1]);
    let cols = Tensor::arange(w, (Kind::Int64, device)).view([1, 1, 1, w]);
    let v = |t: &Tensor| t.view([n, 1, 1, 1]);
    let in_rows = rows
        .ge_tensor(&v(top))
        .logical_and(&rows.lt_tensor(&v(&(top + height))));
    let in_cols = cols
        .ge_tensor(&v(left))
        .logical_and(&cols.lt_tensor(&v(&(left + width))));
    in_rows.logical_and(&in_cols)
}

/// Per-image windows whose sides are `share` (`(N,)`, of the image's kind) of the image's
/// sides, rounded, at least 1 pixel (0 when `allow_empty`), at uniform integer positions:
/// `(top, left, height, width)`, each `(N,)` int64.
fn random_windows(x: &Tensor, share: &Tensor, allow_empty: bool) -> [Tensor; 4] {
    let (_, _, h, w) = dims4(x);
    let min = if allow_empty { 0 } else { 1 };
    let side = |len: i64| {
        (share.to_kind(Kind::Double) * len as f64)
            .round()
            .clamp(min, len)
            .to_kind(Kind::Int64)
    };
    let (kh, kw) = (side(h), side(w));
    let place = |len: i64, k: &Tensor| {
        let room = (-k + (len + 1)).to_kind(Kind::Double);
        (Tensor::rand_like(&room) * room)
            .floor()
            .to_kind(Kind::Int64)
            .minimum(&(-k + len))
    };
    let top = place(h, &kh);
    let left = place(w, &kw);
    [top, left, kh, kw]
}

/// Keeps one random rectangle of the watermarked image, of per-image area share uniform in
/// `keep` (sides `sqrt(share)` of the image's, rounded), the original elsewhere. Gradient: 1
/// inside the rectangle, 0 outside.
pub fn cropout(watermarked: &Tensor, original: &Tensor, keep: [f64; 2]) -> Tensor {
    same_shape(watermarked, original);
    let (n, _, h, w) = dims4(watermarked);
    let area = uniform_per_image(watermarked, keep).view([n]);
    let [top, left, kh, kw] = random_windows(watermarked, &area.sqrt(), true);
    let inside = rectangle_mask((h, w), &top, &left, &kh, &kw);
    watermarked.where_self(&inside, original)
}

/// Sets a per-image share uniform in `amount` of the pixels to 0 or 1 (half each). Gradient: 1
/// on untouched pixels, 0 on replaced ones.
pub fn salt_pepper(watermarked: &Tensor, amount: [f64; 2]) -> Tensor {
    let p = uniform_per_image(watermarked, amount);
    let r = watermarked.rand_like();
    let untouched = r.ge_tensor(&p);
    // Below p/2: pepper (0); in [p/2, p): salt (1).
    let fill = r.ge_tensor(&(&p * 0.5)).to_kind(watermarked.kind());
    watermarked.where_self(&untouched, &fill)
}

/// The normalised 1-D Gaussian kernel of `sigma` (pixels), radius `ceil(3 sigma)` capped at
/// `max_radius`, as f64 taps summing to 1; `[1.0]` for sigma <= 0 or radius 0.
pub fn gaussian_kernel(sigma: f64, max_radius: i64) -> Vec<f64> {
    let radius = if sigma > 0.0 {
        ((3.0 * sigma).ceil() as i64).clamp(0, max_radius.max(0))
    } else {
        0
    };
    if radius == 0 {
        return vec![1.0];
    }
    let taps: Vec<f64> = (-radius..=radius)
        .map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / sum).collect()
}

/// Gaussian blur of `sigma` pixels: two 1-D convolutions with the normalised kernel, reflection
/// padding (a constant image stays constant, borders included). The radius is `ceil(3 sigma)`,
/// capped below the image's smaller side; sigma 0 is the identity.
pub fn blur_with_sigma(watermarked: &Tensor, sigma: f64) -> Tensor {
    let (_, c, h, w) = dims4(watermarked);
    let taps = gaussian_kernel(sigma, h.min(w) - 1);
    if taps.len() == 1 {
        return watermarked.shallow_clone();
    }
    let k = taps.len() as i64;
    let r = k / 2;
    let kernel = Tensor::from_slice(&taps)
        .to_kind(watermarked.kind())
        .to_device(watermarked.device());
    let horizontal = kernel.view([1, 1, 1, k]).repeat([c, 1, 1, 1]);
    let vertical = kernel.view([1, 1, k, 1]).repeat([c, 1, 1, 1]);
    watermarked
        .reflection_pad2d([r, r, r, r])
        .conv2d(&horizontal, None::<Tensor>, [1, 1], [0, 0], [1, 1], c)
        .conv2d(&vertical, None::<Tensor>, [1, 1], [0, 0], [1, 1], c)
}

/// Gaussian blur with sigma uniform in `sigma`, one per batch (see [`blur_with_sigma`]).
pub fn blur(watermarked: &Tensor, sigma: [f64; 2]) -> Tensor {
    blur_with_sigma(watermarked, uniform_scalar(sigma))
}

/// The `(2r+1)^2` neighbourhood of every pixel, edges replicated: `(N,C,H,W,(2r+1)^2)`.
fn neighbourhoods(x: &Tensor, radius: i64) -> Tensor {
    let (n, c, h, w) = dims4(x);
    let k = 2 * radius + 1;
    x.replication_pad2d([radius, radius, radius, radius])
        .unfold(2, k, 1)
        .unfold(3, k, 1)
        .reshape([n, c, h, w, k * k])
}

/// Median filter over the `(2r+1)x(2r+1)` square around each pixel, edges replicated (a
/// removal attack: it wipes out isolated pixel changes while keeping edges). Radius 0 is the
/// identity. Gradient: 1 to the pixel that is the median, 0 to the others.
pub fn median_with_radius(watermarked: &Tensor, radius: i64) -> Tensor {
    if radius <= 0 {
        return watermarked.shallow_clone();
    }
    neighbourhoods(watermarked, radius).median_dim(-1, false).0
}

/// Median filter with a radius drawn uniformly in `radius` (integers), one per batch.
pub fn median(watermarked: &Tensor, [lo, hi]: [i64; 2]) -> Tensor {
    median_with_radius(watermarked, uniform_int(lo, hi))
}

/// Box blur: the mean of the `(2r+1)x(2r+1)` square around each pixel, edges replicated.
/// Radius 0 is the identity.
pub fn box_blur_with_radius(watermarked: &Tensor, radius: i64) -> Tensor {
    if radius <= 0 {
        return watermarked.shallow_clone();
    }
    neighbourhoods(watermarked, radius).mean_dim(-1, false, watermarked.kind())
}

/// Box blur with a radius drawn uniformly in `radius` (integers), one per batch.
pub fn box_blur(watermarked: &Tensor, [lo, hi]: [i64; 2]) -> Tensor {
    box_blur_with_radius(watermarked, uniform_int(lo, hi))
}

/// Adds a per-image offset uniform in `delta`. Gradient: 1.
pub fn brightness(watermarked: &Tensor, delta: [f64; 2]) -> Tensor {
    watermarked + uniform_per_image(watermarked, delta)
}

/// Scales each image's deviation from its own mean by a per-image factor uniform in `factor`:
/// `c x + (1 - c) mean(x)` (exactly `x` for c = 1; the mean is kept). The gradient of the
/// output's sum is 1 for every pixel.
pub fn contrast(watermarked: &Tensor, factor: [f64; 2]) -> Tensor {
    let c = uniform_per_image(watermarked, factor);
    let mean = watermarked.mean_dim(&[1i64, 2, 3][..], true, watermarked.kind());
    watermarked * &c + mean * (-&c + 1.0)
}

/// Shifts image i by `dy[i]` rows down and `dx[i]` columns right (`(N,)` int64, any sign), zero
/// fill: output pixel (y, x) is input pixel (y - dy, x - dx). Gradient: 1 for pixels that land
/// inside the image, 0 for those shifted out.
pub fn shift_by(watermarked: &Tensor, dy: &Tensor, dx: &Tensor) -> Tensor {
    let (n, c, h, w) = dims4(watermarked);
    let device = watermarked.device();
    let source = |len: i64, d: &Tensor| {
        Tensor::arange(len, (Kind::Int64, device)).view([1, len])
            - d.to_device(device).to_kind(Kind::Int64).view([n, 1])
    };
    let (ys, xs) = (source(h, dy), source(w, dx));
    let valid = |s: &Tensor, len: i64| s.ge(0).logical_and(&s.lt(len));
    let rows = watermarked.gather(
        2,
        &ys.clamp(0, h - 1)
            .view([n, 1, h, 1])
            .expand([n, c, h, w], false),
        false,
    );
    let moved = rows.gather(
        3,
        &xs.clamp(0, w - 1)
            .view([n, 1, 1, w])
            .expand([n, c, h, w], false),
        false,
    );
    let inside = valid(&ys, h)
        .view([n, 1, h, 1])
        .logical_and(&valid(&xs, w).view([n, 1, 1, w]));
    moved * inside.to_kind(watermarked.kind())
}

/// Shifts each image by integers drawn uniformly in `-max..=max`, x and y independently.
pub fn shift(watermarked: &Tensor, max: i64) -> Tensor {
    if max == 0 {
        return watermarked.shallow_clone();
    }
    let dy = int_per_image(watermarked, -max, max);
    let dx = int_per_image(watermarked, -max, max);
    shift_by(watermarked, &dy, &dx)
}

/// Resamples every image through its own affine map `theta` `(N,2,3)` (output to input, in
/// normalised coordinates, align_corners = false), bilinear; `border`: edge padding, else zeros.
fn resample(x: &Tensor, theta: &Tensor, border: bool) -> Tensor {
    let grid = Tensor::affine_grid_generator(&theta.to_kind(x.kind()), x.size(), false);
    x.grid_sampler(&grid, 0, if border { 1 } else { 0 }, false)
}

/// Crops image i to rows `top..top+height`, columns `left..left+width` (`(N,)` int64) and
/// resizes the window back to the full size, bilinearly (the sampling positions of
/// `upsample_bilinear2d` with align_corners = false, edge padding at the image's borders): one
/// `grid_sampler` call, so each image has its own window.
pub fn crop_resize_window(
    watermarked: &Tensor,
    top: &Tensor,
    left: &Tensor,
    height: &Tensor,
    width: &Tensor,
) -> Tensor {
    let (n, _, h, w) = dims4(watermarked);
    let device = watermarked.device();
    let f = |t: &Tensor| t.to_device(device).to_kind(Kind::Double).view([n]);
    let (top, left, kh, kw) = (f(top), f(left), f(height), f(width));
    let zero = Tensor::zeros([n], (Kind::Double, device));
    let sx = &kw / w as f64;
    let sy = &kh / h as f64;
    let tx = (left * 2.0 + &kw) / w as f64 - 1.0;
    let ty = (top * 2.0 + &kh) / h as f64 - 1.0;
    let theta = Tensor::stack(&[sx, zero.shallow_clone(), tx, zero, sy, ty], 1).view([n, 2, 3]);
    resample(watermarked, &theta, true)
}

/// Crops a random window of per-image side share uniform in `keep` (sides rounded to whole
/// pixels) at a random position and resizes it back (see [`crop_resize_window`]).
pub fn crop_resize(watermarked: &Tensor, keep: [f64; 2]) -> Tensor {
    let n = watermarked.size()[0];
    let share = uniform_per_image(watermarked, keep).view([n]);
    let [top, left, kh, kw] = random_windows(watermarked, &share, false);
    crop_resize_window(watermarked, &top, &left, &kh, &kw)
}

/// Rotates image i by `radians[i]` (`(N,)`) around its centre, bilinear, zero fill (rigid on
/// non-square images too).
pub fn rotate_by(watermarked: &Tensor, radians: &Tensor) -> Tensor {
    let (n, _, h, w) = dims4(watermarked);
    let a = radians
        .to_device(watermarked.device())
        .to_kind(Kind::Double)
        .view([n]);
    let (cos, sin) = (a.cos(), a.sin());
    let zero = cos.zeros_like();
    let aspect = h as f64 / w as f64;
    let theta = Tensor::stack(
        &[
            cos.shallow_clone(),
            -&sin * aspect,
            zero.shallow_clone(),
            &sin / aspect,
            cos,
            zero,
        ],
        1,
    )
    .view([n, 2, 3]);
    resample(watermarked, &theta, false)
}

/// Rotates each image by an angle uniform in `[-degrees, degrees]`.
pub fn rotation(watermarked: &Tensor, degrees: f64) -> Tensor {
    let n = watermarked.size()[0];
    let radians = (Tensor::rand([n], (Kind::Double, watermarked.device())) * 2.0 - 1.0)
        * degrees.to_radians();
    rotate_by(watermarked, &radians)
}

/// `attacked` in the forward pass, the identity to `x` in the backward pass. Written as
/// `attacked + (x - x.detach())` rather than `x + (attacked - x).detach()`: `x - x` is exactly
/// 0, so the forward pass is exactly `attacked` (the other form can differ by an ulp).
pub fn straight_through(x: &Tensor, attacked: &Tensor) -> Tensor {
    attacked.detach() + (x - x.detach())
}

/// Real JPEG of each image at `quality` (1..=100; rounded to 8 bits first, on the CPU, see
/// [`crate::codec::jpeg::round_trip_tensor`]), straight-through: the forward pass is exactly the JPEG
/// round trip, the gradient the upstream gradient.
pub fn jpeg_with_quality(watermarked: &Tensor, quality: u8) -> Result<Tensor> {
    let decoded = crate::codec::jpeg::round_trip_tensor(watermarked, quality)?
        .to_kind(watermarked.kind())
        .to_device(watermarked.device());
    Ok(straight_through(watermarked, &decoded))
}

/// Real JPEG at a quality drawn uniformly in `quality` (integers), one per batch.
pub fn jpeg(watermarked: &Tensor, quality: [i64; 2]) -> Result<Tensor> {
    let [lo, hi] = quality;
    if !(1 <= lo && lo <= hi && hi <= 100) {
        bail!("JPEG quality range [{lo}, {hi}]: must lie in 1..=100");
    }
    jpeg_with_quality(watermarked, uniform_int(lo, hi) as u8)
}

/// Clips to [0, 1] and rounds to k/255, as an 8-bit PNG stores an image, straight-through (the
/// gradient is the upstream gradient, also where the clip bites).
pub fn round_8bit(watermarked: &Tensor) -> Tensor {
    straight_through(watermarked, &quantize_8bit(&watermarked.detach()))
}
