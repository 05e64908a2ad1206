//! Inference-time attacks on watermarked 8-bit images: the edits a user (or an adversary) may
//! apply to a stored watermarked image before the watermark is read back. There is no model in
//! here, only image transforms.
//!
//! Every attack takes a batch `(N,1,H,W)` of float images in [0,1] holding 8-bit values (k/255,
//! as a PNG stores them), on the CPU or a GPU, and returns the attacked batch, same shape, kind
//! and device, rounded to 8 bits again (as saving it to a file would). Transforms that need the
//! `image`/`imageproc` crates (blur, resizing, rotation) and the random ones run on the CPU and
//! move the result back to the input's device.
//!
//! Randomness is a pure-Rust SplitMix64 stream (`crate::splitmix`), never libtorch's global
//! generator: image `i` of a batch draws from its own stream, derived from the seed, the attack's
//! name and the image's index, so the same seed gives the same result on every machine and
//! device, and a set attacked in batches (see [`apply_from`]) gives the same result as the whole
//! set attacked at once.
//!
//! Choices (see each variant): the blur is `imageproc::filter::gaussian_blur_f32` run on float
//! images (no rounding between its two passes; kernel radius ceil(2 sigma), edges replicated);
//! resizing is `image::imageops::resize` with `FilterType::Triangle` on float images (bilinear
//! for upscaling, an antialiased triangle filter for downscaling, as PIL's BILINEAR resize);
//! rotation is bilinear about the true image centre with black outside the image, written here
//! (see [`Attack::Rotate`]); contrast is PIL's `ImageEnhance.Contrast`; dropout and cropout follow
//! HiDDeN (pixels of the original, unwatermarked image replace watermarked ones).

use std::fmt;

use anyhow::{bail, ensure, Context, Result};
use image::imageops::FilterType;
use image::{ImageBuffer, Luma};
use tch::{Device, Kind, Tensor};

use crate::data::images::quantize_8bit;
use crate::splitmix::splitmix64;

/// One attack and its parameters. Its [`name`](Attack::name) (also its `Display` and its serde
/// form) is what [`parse`] reads back.
#[derive(Debug, Clone, PartialEq)]
pub enum Attack {
    /// `none`: the identity (the output is still rounded to 8 bits).
    None,
    /// `jpeg-Q`: a real baseline JPEG encoding at quality Q (1..=100) and its decoding, through
    /// the `image` crate (`crate::jpeg::round_trip_tensor`).
    Jpeg { quality: u8 },
    /// `noise-S`: additive Gaussian noise of standard deviation S/255 (S in 8-bit levels),
    /// independent per pixel, then clipped to [0,1].
    Noise { sigma: f32 },
    /// `blur-S`: Gaussian blur of standard deviation S pixels: `imageproc`'s
    /// `gaussian_blur_f32` (separable kernel of radius ceil(2S), normalised; the border pixels
    /// are replicated) run on a float image, so nothing is rounded before the final 8 bits.
    Blur { sigma: f32 },
    /// `brightness+D` / `brightness-D`: D/255 added to every pixel (D in 8-bit levels), clipped.
    Brightness { delta: i32 },
    /// `contrast-F`: `mean + F * (x - mean)`, clipped, where `mean` is the image's own mean gray
    /// level rounded to the nearest 8-bit level: what PIL's `ImageEnhance.Contrast(img)
    /// .enhance(F)` does on a grayscale image (it blends the image with a flat image of its
    /// rounded mean). F < 1 lowers the contrast, F > 1 raises it.
    Contrast { factor: f32 },
    /// `salt-pepper-P%`: each pixel independently, with probability P/100, is set to 0 (pepper)
    /// or 1 (salt), half each.
    SaltPepper { percent: f32 },
    /// `dropout-P%` (HiDDeN's dropout): each pixel independently, with probability P/100, is
    /// replaced by the original (unwatermarked) image's pixel. HiDDeN's own parameter is the
    /// share kept (`dropout-30%` here is its keep ratio 0.7).
    Dropout { percent: f32 },
    /// `cropout-P%` (HiDDeN's cropout): a rectangle of about P% of the area, of the image's
    /// aspect ratio (`round(H*sqrt(P/100))` x `round(W*sqrt(P/100))`: 20x20 of 28x28 for 50%),
    /// at a random position, keeps the watermarked pixels; the rest is the original image.
    Cropout { keep_percent: f32 },
    /// `shift-K`: the image moves K pixels right and K down; the uncovered left columns and top
    /// rows are black (0, MNIST's background). Deterministic.
    Shift { pixels: u32 },
    /// `cropB-resize`: B pixels cut from every border (28x28 -> 24x24 for B = 2) and the rest
    /// resized back to the full size with `image::imageops::resize`, `FilterType::Triangle`
    /// (bilinear, pixel centres at half-integers, as torch's `align_corners=False`).
    CropResize { border: u32 },
    /// `rescale-F`: resized to `round(F*H)` x `round(F*W)` and back to H x W, both with
    /// `image::imageops::resize`, `FilterType::Triangle` (when shrinking, the triangle is
    /// stretched by the scale: an antialiased, PIL-like bilinear downscale, not 2x2 sampling).
    Rescale { factor: f32 },
    /// `rotate-D`: rotation by D degrees clockwise as displayed (y down: imageproc's and
    /// Photoshop's sense; PIL's `rotate` turns the other way) about the image's true centre
    /// ((W-1)/2, (H-1)/2) in pixel-centre coordinates, bilinear, black outside the image. This is
    /// `imageproc::geometric_transformations::rotate` with that centre, except at the border:
    /// imageproc blackens every pixel whose four neighbours are not all inside the image (so even
    /// a 0 degree turn would blacken the last row and column, and `rotate_about_center` turns
    /// about (W/2, H/2), half a pixel off), while here a neighbour outside counts as black in the
    /// bilinear blend. Inside the image both agree (tested).
    Rotate { degrees: f32 },
    /// `hflip`: mirrored left to right. Deterministic.
    HFlip,
}

/// The standard suite, in this order: none, jpeg 95/90/75/50, noise 2/5/10, blur 0.5/1.0,
/// brightness +10/-10, contrast 0.8/1.2, salt-pepper 1%, dropout 10%/30%, cropout 50%, shift
/// 1/2, crop2-resize, rescale 0.5, rotate 5, hflip.
pub fn standard_suite() -> Vec<Attack> {
    use Attack::*;
    vec![
        None,
        Jpeg { quality: 95 },
        Jpeg { quality: 90 },
        Jpeg { quality: 75 },
        Jpeg { quality: 50 },
        Noise { sigma: 2.0 },
        Noise { sigma: 5.0 },
        Noise { sigma: 10.0 },
        Blur { sigma: 0.5 },
        Blur { sigma: 1.0 },
        Brightness { delta: 10 },
        Brightness { delta: -10 },
        Contrast { factor: 0.8 },
        Contrast { factor: 1.2 },
        SaltPepper { percent: 1.0 },
        Dropout { percent: 10.0 },
        Dropout { percent: 30.0 },
        Cropout { keep_percent: 50.0 },
        Shift { pixels: 1 },
        Shift { pixels: 2 },
        CropResize { border: 2 },
        Rescale { factor: 0.5 },
        Rotate { degrees: 5.0 },
        HFlip,
    ]
}

/// The name patterns [`parse`] accepts, for error messages and help texts.
pub const NAME_PATTERNS: &str = "none, jpeg-Q (quality 1..=100), noise-S (sigma in 8-bit levels), \
blur-S (sigma in pixels, e.g. blur-0.5), brightness+D / brightness-D (8-bit levels), contrast-F \
(e.g. contrast-0.8), salt-pepper-P%, dropout-P%, cropout-P% (share of the area kept watermarked), \
shift-K (pixels right and down), cropB-resize (B pixels off every border), rescale-F (e.g. \
rescale-0.5), rotate-D (degrees clockwise), hflip";

impl Attack {
    /// The attack's name, e.g. `jpeg-90`, `blur-0.5`, `brightness-10`, `dropout-30%`.
    pub fn name(&self) -> String {
        match self {
            Attack::None => "none".to_string(),
            Attack::Jpeg { quality } => format!("jpeg-{quality}"),
            Attack::Noise { sigma } => format!("noise-{sigma}"),
            // `{:?}` keeps one decimal on whole numbers: blur-1.0, contrast-1.0, rescale-2.0.
            Attack::Blur { sigma } => format!("blur-{sigma:?}"),
            Attack::Brightness { delta } => format!("brightness{delta:+}"),
            Attack::Contrast { factor } => format!("contrast-{factor:?}"),
            Attack::SaltPepper { percent } => format!("salt-pepper-{percent}%"),
            Attack::Dropout { percent } => format!("dropout-{percent}%"),
            Attack::Cropout { keep_percent } => format!("cropout-{keep_percent}%"),
            Attack::Shift { pixels } => format!("shift-{pixels}"),
            Attack::CropResize { border } => format!("crop{border}-resize"),
            Attack::Rescale { factor } => format!("rescale-{factor:?}"),
            Attack::Rotate { degrees } => format!("rotate-{degrees}"),
            Attack::HFlip => "hflip".to_string(),
        }
    }

    /// Whether the attack draws random numbers (its result depends on the seed).
    pub fn is_random(&self) -> bool {
        matches!(
            self,
            Attack::Noise { .. }
                | Attack::SaltPepper { .. }
                | Attack::Dropout { .. }
                | Attack::Cropout { .. }
        )
    }

    /// Whether the attack reads the original (unwatermarked) images; the others ignore them, so
    /// a caller without originals may pass the watermarked batch itself.
    pub fn needs_original(&self) -> bool {
        matches!(self, Attack::Dropout { .. } | Attack::Cropout { .. })
    }

    /// Checks the parameters (the fields are public, so [`apply`] checks them too).
    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        let in_range = |v: f32, lo: f32, hi: f32| v.is_finite() && v >= lo && v <= hi;
        match *self {
            Attack::None | Attack::HFlip | Attack::Shift { .. } | Attack::CropResize { .. } => {}
            Attack::Jpeg { quality } => {
                ensure!(
                    (1..=100).contains(&quality),
                    "{name}: JPEG quality must lie in 1..=100"
                )
            }
            Attack::Noise { sigma } => ensure!(
                in_range(sigma, 0.0, 255.0),
                "{name}: the noise sigma (8-bit levels) must lie in 0..=255"
            ),
            Attack::Blur { sigma } => ensure!(
                sigma > 0.0 && in_range(sigma, 0.0, 10.0),
                "{name}: the blur sigma (pixels) must be above 0 and at most 10"
            ),
            Attack::Brightness { delta } => ensure!(
                (-255..=255).contains(&delta),
                "{name}: the brightness change (8-bit levels) must lie in -255..=255"
            ),
            Attack::Contrast { factor } => ensure!(
                in_range(factor, 0.0, 10.0),
                "{name}: the contrast factor must lie in 0..=10"
            ),
            Attack::SaltPepper { percent } | Attack::Dropout { percent } => ensure!(
                in_range(percent, 0.0, 100.0),
                "{name}: the share must lie in 0%..=100%"
            ),
            Attack::Cropout { keep_percent } => ensure!(
                keep_percent > 0.0 && in_range(keep_percent, 0.0, 100.0),
                "{name}: the kept share must lie in (0%, 100%]"
            ),
            Attack::Rescale { factor } => ensure!(
                factor > 0.0 && in_range(factor, 0.0, 16.0),
                "{name}: the rescale factor must be above 0 and at most 16"
            ),
            Attack::Rotate { degrees } => ensure!(
                in_range(degrees, -360.0, 360.0),
                "{name}: the angle must lie in -360..=360 degrees"
            ),
        }
        Ok(())
    }

    /// A 64-bit key of the attack (its name hashed), mixed into the random streams so that two
    /// attacks with the same seed do not draw the same numbers.
    fn key(&self) -> u64 {
        self.name()
            .bytes()
            .fold(0x6174_7461_636b_u64, |h, b| splitmix64(h ^ b as u64))
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Attack {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Attack> {
        parse(s)
    }
}

impl serde::Serialize for Attack {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Attack {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Attack, D::Error> {
        let name = String::deserialize(deserializer)?;
        parse(&name).map_err(|e| serde::de::Error::custom(format!("{e:#}")))
    }
}

fn unknown(name: &str) -> anyhow::Error {
    let suite: Vec<String> = standard_suite().iter().map(Attack::name).collect();
    anyhow::anyhow!(
        "unknown attack '{name}': known attacks are {NAME_PATTERNS}; the standard suite is {}",
        suite.join(",")
    )
}

/// Reads an attack from its name (what [`Attack::name`] writes; case and surrounding spaces do
/// not matter). An unknown name is refused with the known names listed; a known name with a bad
/// value (`jpeg-101`) with the valid range.
pub fn parse(name: &str) -> Result<Attack> {
    let text = name.trim().to_ascii_lowercase();
    let s = text.as_str();
    fn number<T: std::str::FromStr>(value: &str, whole: &str) -> Result<T> {
        value
            .parse::<T>()
            .ok()
            .with_context(|| format!("attack '{whole}': '{value}' is not a valid number here"))
    }
    let percent = |rest: &str| -> Result<f32> {
        let value = rest
            .strip_suffix('%')
            .with_context(|| format!("attack '{s}': the share needs a % sign, e.g. '{s}%'"))?;
        number(value, s)
    };
    let attack = if s == "none" {
        Attack::None
    } else if s == "hflip" {
        Attack::HFlip
    } else if let Some(v) = s.strip_prefix("jpeg-") {
        let quality: u32 = number(v, s)?;
        ensure!(
            (1..=100).contains(&quality),
            "{s}: JPEG quality must lie in 1..=100"
        );
        Attack::Jpeg {
            quality: quality as u8,
        }
    } else if let Some(v) = s.strip_prefix("noise-") {
        Attack::Noise {
            sigma: number(v, s)?,
        }
    } else if let Some(v) = s.strip_prefix("blur-") {
        Attack::Blur {
            sigma: number(v, s)?,
        }
    } else if let Some(v) = s.strip_prefix("brightness") {
        if !(v.starts_with('+') || v.starts_with('-')) {
            bail!(
                "attack '{s}': write the change with its sign, e.g. brightness+10 or brightness-10"
            );
        }
        Attack::Brightness {
            delta: number(v, s)?,
        }
    } else if let Some(v) = s.strip_prefix("contrast-") {
        Attack::Contrast {
            factor: number(v, s)?,
        }
    } else if let Some(v) = s.strip_prefix("salt-pepper-") {
        Attack::SaltPepper {
            percent: percent(v)?,
        }
    } else if let Some(v) = s.strip_prefix("dropout-") {
        Attack::Dropout {
            percent: percent(v)?,
        }
    } else if let Some(v) = s.strip_prefix("cropout-") {
        Attack::Cropout {
            keep_percent: percent(v)?,
        }
    } else if let Some(v) = s.strip_prefix("shift-") {
        Attack::Shift {
            pixels: number(v, s)?,
        }
    } else if let Some(v) = s
        .strip_prefix("crop")
        .and_then(|v| v.strip_suffix("-resize"))
    {
        Attack::CropResize {
            border: number(v, s)?,
        }
    } else if let Some(v) = s.strip_prefix("rescale-") {
        Attack::Rescale {
            factor: number(v, s)?,
        }
    } else if let Some(v) = s.strip_prefix("rotate-") {
        Attack::Rotate {
            degrees: number(v, s)?,
        }
    } else {
        return Err(unknown(name.trim()));
    };
    attack.validate()?;
    Ok(attack)
}

/// Reads a comma-separated list of attack names (`jpeg-90,shift-1`); `standard` stands for the
/// whole [`standard_suite`]. Empty entries and repeated attacks are refused.
pub fn parse_list(list: &str) -> Result<Vec<Attack>> {
    let mut attacks: Vec<Attack> = Vec::new();
    for entry in list.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            bail!("attack list '{list}': empty entry (names are separated by single commas)");
        }
        let new = if entry.eq_ignore_ascii_case("standard") {
            standard_suite()
        } else {
            vec![parse(entry)?]
        };
        for attack in new {
            if attacks.contains(&attack) {
                bail!("attack list '{list}': {attack} appears twice");
            }
            attacks.push(attack);
        }
    }
    Ok(attacks)
}

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

/// The attacked batch before the final rounding to 8 bits (clipped to [0,1]; for JPEG, already
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
        Attack::Jpeg { quality } => crate::jpeg::round_trip_tensor(&x, quality)?,
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

/// A float grayscale image of the `image` crate (values in [0,1], which is what the crate's
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
/// `crate::splitmix::splitmix64` mixes it).
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
