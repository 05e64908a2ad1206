//! Applying an attack to a batch: the transforms, each image's random stream, and the
//! conversions to and from the `image` crate's float images.

use anyhow::{ensure, Context, Result};
use image::imageops::FilterType;
use image::{GrayImage, ImageBuffer, Luma};
use tch::{Device, Kind, Tensor};

use super::Attack;
use crate::codec::gray::quantize_8bit;
use crate::runtime::splitmix::splitmix64;

/// The attacked batch, rounded to 8 bits (k/255), same shape as `watermarked` `(N,1,H,W)`, as a
/// float tensor on its device. `original` (the unwatermarked images, same shape) is read only by
/// dropout and cropout ([`Attack::needs_original`]). Image `i` of the batch draws from the random
/// stream of (`seed`, attack, `i`).
pub fn apply(
    attack: &Attack,
    watermarked: &Tensor,
    original: &Tensor,
    seed: u64,
) -> Result<Tensor> {
    apply_from(attack, watermarked, original, seed, 0)
}

/// [`apply`] for a batch that starts at image `first_index` of a larger set: image `i` of the
/// batch draws from the stream of image `first_index + i`, so attacking a set batch by batch
/// gives exactly what attacking it whole gives.
pub fn apply_from(
    attack: &Attack,
    watermarked: &Tensor,
    original: &Tensor,
    seed: u64,
    first_index: u64,
) -> Result<Tensor> {
    Ok(quantize_8bit(&apply_float(
        attack,
        watermarked,
        original,
        seed,
        first_index,
    )?))
}

/// The attacked batch before the final rounding to 8 bits (clipped to [0, 1]; for JPEG, already
/// 8-bit): what [`apply_from`] rounds. For tests and analyses of the transforms themselves.
pub fn apply_float(
    attack: &Attack,
    watermarked: &Tensor,
    original: &Tensor,
    seed: u64,
    first_index: u64,
) -> Result<Tensor> {
    attack.validate()?;
    let size = watermarked.size();
    ensure!(
        size.len() == 4 && size[1] == 1,
        "attack {attack}: expected a batch of grayscale images (N,1,H,W), got shape {size:?}"
    );
    if attack.needs_original() {
        ensure!(
            original.size() == size,
            "attack {attack}: the original images have shape {:?}, the watermarked ones {size:?}",
            original.size()
        );
    }
    let (n, h, w) = (size[0], size[2], size[3]);
    let device = watermarked.device();
    let x = watermarked.detach().to_kind(Kind::Float);
    if n == 0 || h == 0 || w == 0 {
        return Ok(x);
    }
    let key = attack.key();
    let stream = |i: usize| Stream::for_image(seed, key, first_index.wrapping_add(i as u64));
    let shape = Shape {
        n: n as usize,
        h: h as usize,
        w: w as usize,
    };
    let out = match *attack {
        Attack::None => x,
        Attack::Jpeg { quality } => crate::codec::jpeg::round_trip_tensor(&x, quality)?,
        Attack::Noise { sigma } => {
            let mut noise = vec![0f32; shape.len()];
            for (i, image) in noise.chunks_mut(shape.per_image()).enumerate() {
                let mut rng = stream(i);
                for v in image.iter_mut() {
                    *v = rng.normal() as f32;
                }
            }
            (x + shape.tensor(&noise, device) * (sigma as f64 / 255.0)).clamp(0.0, 1.0)
        }
        Attack::Blur { sigma } => shape.map_images(&x, |image| {
            let buffer = gray_f32(image, shape.w, shape.h);
            imageproc::filter::gaussian_blur_f32(&buffer, sigma).into_raw()
        })?,
        Attack::Brightness { delta } => (x + delta as f64 / 255.0).clamp(0.0, 1.0),
        Attack::Contrast { factor } => {
            // PIL's ImageEnhance.Contrast: the mean gray level rounded to an 8-bit level as PIL
            // rounds it, int(mean + 0.5) (halves up, where torch's round would go to even).
            let mean =
                (x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float) * 255.0 + 0.5).floor() / 255.0;
            (&mean + (&x - &mean) * factor as f64).clamp(0.0, 1.0)
        }
        Attack::SaltPepper { percent } => {
            let p = percent as f64 / 100.0;
            let mut pixels = shape.cpu_vec(&x)?;
            for (i, image) in pixels.chunks_mut(shape.per_image()).enumerate() {
                let mut rng = stream(i);
                for v in image.iter_mut() {
                    let u = rng.uniform();
                    if u < p {
                        *v = if u < p / 2.0 { 0.0 } else { 1.0 };
                    }
                }
            }
            shape.tensor(&pixels, device)
        }
        Attack::Dropout { percent } => {
            let p = percent as f64 / 100.0;
            let mut mask = vec![0f32; shape.len()];
            for (i, image) in mask.chunks_mut(shape.per_image()).enumerate() {
                let mut rng = stream(i);
                for v in image.iter_mut() {
                    *v = (rng.uniform() < p) as u8 as f32;
                }
            }
            let mask = shape.tensor(&mask, device).gt(0.5);
            original.detach().to_kind(Kind::Float).where_self(&mask, &x)
        }
        Attack::Cropout { keep_percent } => {
            let side = (keep_percent as f64 / 100.0).sqrt();
            let kh = ((shape.h as f64 * side).round() as usize).clamp(1, shape.h);
            let kw = ((shape.w as f64 * side).round() as usize).clamp(1, shape.w);
            let mut mask = vec![0f32; shape.len()];
            for (i, image) in mask.chunks_mut(shape.per_image()).enumerate() {
                let mut rng = stream(i);
                let top = rng.below(shape.h - kh + 1);
                let left = rng.below(shape.w - kw + 1);
                for row in image.chunks_mut(shape.w).skip(top).take(kh) {
                    row[left..left + kw].fill(1.0);
                }
            }
            // mask 1: the watermarked pixel is kept; 0: the original's.
            let keep = shape.tensor(&mask, device).gt(0.5);
            x.where_self(&keep, &original.detach().to_kind(Kind::Float))
        }
        Attack::Shift { pixels } => {
            let k = pixels as i64;
            if k >= h || k >= w {
                x.zeros_like()
            } else {
                // Padding order: last dimension (left, right), then the one before (top, bottom).
                x.narrow(2, 0, h - k)
                    .narrow(3, 0, w - k)
                    .constant_pad_nd([k, 0, k, 0])
            }
        }
        Attack::CropResize { border } => {
            let b = border as usize;
            ensure!(
                2 * b < shape.h && 2 * b < shape.w,
                "attack {attack}: cannot cut {b} pixels from every border of a {w}x{h} image"
            );
            shape.map_images(&x, |image| {
                let (ch, cw) = (shape.h - 2 * b, shape.w - 2 * b);
                let cropped: Vec<f32> = image
                    .chunks(shape.w)
                    .skip(b)
                    .take(ch)
                    .flat_map(|row| row[b..b + cw].iter().copied())
                    .collect();
                let cropped = gray_f32(&cropped, cw, ch);
                image::imageops::resize(
                    &cropped,
                    shape.w as u32,
                    shape.h as u32,
                    FilterType::Triangle,
                )
                .into_raw()
            })?
        }
        Attack::Rescale { factor } => {
            let sh = ((shape.h as f64 * factor as f64).round() as u32).max(1);
            let sw = ((shape.w as f64 * factor as f64).round() as u32).max(1);
            shape.map_images(&x, |image| {
                let buffer = gray_f32(image, shape.w, shape.h);
                let small = image::imageops::resize(&buffer, sw, sh, FilterType::Triangle);
                image::imageops::resize(
                    &small,
                    shape.w as u32,
                    shape.h as u32,
                    FilterType::Triangle,
                )
                .into_raw()
            })?
        }
        Attack::Rotate { degrees } => shape.map_images(&x, |image| {
            rotate_bilinear(image, shape.w, shape.h, degrees as f64)
        })?,
        Attack::HFlip => x.flip([3]),
        Attack::Median { size } => shape.map_gray8(&x, |image| {
            imageproc::filter::median_filter(image, size / 2, size / 2)
        })?,
        // The exact mean, rounded once: imageproc's `box_filter` rounds between its two passes
        // and lands up to 2 levels from the mean (Pillow's BoxBlur stays within 1).
        Attack::BoxBlur { radius } => {
            crate::learning::noise::box_blur_with_radius(&x, radius as i64)
        }
    };
    Ok(out.clamp(0.0, 1.0))
}

/// The batch's sizes, with helpers between tensors and per-image pixel vectors.
#[derive(Clone, Copy)]
struct Shape {
    n: usize,
    h: usize,
    w: usize,
}

impl Shape {
    fn per_image(&self) -> usize {
        self.h * self.w
    }

    fn len(&self) -> usize {
        self.n * self.per_image()
    }

    fn cpu_vec(&self, x: &Tensor) -> Result<Vec<f32>> {
        let v = Vec::<f32>::try_from(x.to_device(Device::Cpu).contiguous().flatten(0, -1))
            .context("the images as floats")?;
        ensure!(v.len() == self.len(), "unexpected number of pixels");
        Ok(v)
    }

    fn tensor(&self, v: &[f32], device: Device) -> Tensor {
        Tensor::from_slice(v)
            .reshape([self.n as i64, 1, self.h as i64, self.w as i64])
            .to_device(device)
    }

    /// Applies `f` to each image's row-major pixels (on the CPU) and stacks the results.
    fn map_images(&self, x: &Tensor, f: impl Fn(&[f32]) -> Vec<f32>) -> Result<Tensor> {
        let pixels = self.cpu_vec(x)?;
        let mut out = Vec::with_capacity(pixels.len());
        for image in pixels.chunks(self.per_image()) {
            let result = f(image);
            ensure!(
                result.len() == self.per_image(),
                "a transform changed the image size"
            );
            out.extend_from_slice(&result);
        }
        Ok(self.tensor(&out, x.device()))
    }
}

impl Shape {
    /// Applies `f` to each image as an 8-bit gray image (the batch holds 8-bit values) and
    /// stacks the results.
    fn map_gray8(&self, x: &Tensor, f: impl Fn(&GrayImage) -> GrayImage) -> Result<Tensor> {
        self.map_images(x, |image| {
            let levels: Vec<u8> = image
                .iter()
                .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect();
            let gray = GrayImage::from_raw(self.w as u32, self.h as u32, levels)
                .expect("pixels match the size");
            f(&gray)
                .into_raw()
                .into_iter()
                .map(|v| f32::from(v) / 255.0)
                .collect()
        })
    }
}

/// A float grayscale image of the `image` crate (values in [0, 1], which is what the crate's
/// resampling clamps f32 pixels to).
fn gray_f32(pixels: &[f32], w: usize, h: usize) -> ImageBuffer<Luma<f32>, Vec<f32>> {
    ImageBuffer::from_raw(w as u32, h as u32, pixels.to_vec()).expect("pixels match the size")
}

/// Rotation by `degrees` clockwise (y down) about ((w-1)/2, (h-1)/2), pixel centres at integer
/// coordinates: each output pixel takes the bilinear blend of the four input pixels around its
/// pre-image, a pixel outside the image counting as black (0).
pub fn rotate_bilinear(image: &[f32], w: usize, h: usize, degrees: f64) -> Vec<f32> {
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let pixel = |x: i64, y: i64| -> f64 {
        if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
            image[y as usize * w + x as usize] as f64
        } else {
            0.0
        }
    };
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            // The inverse rotation: where the output pixel comes from.
            let xs = c * dx + s * dy + cx;
            let ys = -s * dx + c * dy + cy;
            let (x0, y0) = (xs.floor(), ys.floor());
            let (fx, fy) = (xs - x0, ys - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let top = (1.0 - fx) * pixel(x0, y0) + fx * pixel(x0 + 1, y0);
            let bottom = (1.0 - fx) * pixel(x0, y0 + 1) + fx * pixel(x0 + 1, y0 + 1);
            out.push(((1.0 - fy) * top + fy * bottom) as f32);
        }
    }
    out
}

/// A SplitMix64 stream (the standard generator: the state advances by the golden gamma and
/// `crate::runtime::splitmix::splitmix64` mixes it).
struct Stream {
    state: u64,
}

impl Stream {
    fn for_image(seed: u64, attack_key: u64, index: u64) -> Stream {
        Stream {
            state: splitmix64(splitmix64(seed ^ attack_key).wrapping_add(splitmix64(index))),
        }
    }

    fn next_u64(&mut self) -> u64 {
        // splitmix64(x) mixes x + gamma, so this yields mix(state + gamma), mix(state + 2 gamma)...
        let r = splitmix64(self.state);
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        r
    }

    /// Uniform in [0, 1), 53 bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n >= 1; the modulo bias is below 2^-50 for image sizes).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box-Muller, one value per pair of uniforms).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: the logarithm stays finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
