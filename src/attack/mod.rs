//! Inference-time attacks on watermarked 8-bit images: the edits a user (or an adversary) may
//! apply to a stored watermarked image before the watermark is read back. There is no model in
//! here, only image transforms.
//!
//! Every attack takes a batch `(N,1,H,W)` of float images in [0, 1] holding 8-bit values (k/255,
//! as a PNG stores them), on the CPU or a GPU, and returns the attacked batch, same shape, kind
//! and device, rounded to 8 bits again (as saving it to a file would). Transforms that need the
//! `image`/`imageproc` crates (blur, resizing, rotation) and the random ones run on the CPU and
//! move the result back to the input's device.
//!
//! Randomness is a pure-Rust SplitMix64 stream (`crate::runtime::splitmix`), never libtorch's global
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

mod apply;

use std::fmt;

use anyhow::{bail, ensure, Context, Result};

use crate::runtime::splitmix::splitmix64;

/// One attack and its parameters. Its [`name`](Attack::name) (also its `Display` and its serde
/// form) is what [`parse`] reads back.
#[derive(Debug, Clone, PartialEq)]
pub enum Attack {
    /// `none`: the identity (the output is still rounded to 8 bits).
    None,
    /// `jpeg-Q`: a real baseline JPEG encoding at quality Q (1..=100) and its decoding, through
    /// the `image` crate (`crate::codec::jpeg::round_trip_tensor`).
    Jpeg {
        /// JPEG quality, 1..=100.
        quality: u8,
    },
    /// `noise-S`: additive Gaussian noise of standard deviation S/255 (S in 8-bit levels),
    /// independent per pixel, then clipped to [0, 1].
    Noise {
        /// Standard deviation in 8-bit levels, 0..=255.
        sigma: f32,
    },
    /// `blur-S`: Gaussian blur of standard deviation S pixels: `imageproc`'s
    /// `gaussian_blur_f32` (separable kernel of radius ceil(2S), normalised; the border pixels
    /// are replicated) run on a float image, so nothing is rounded before the final 8 bits.
    Blur {
        /// Standard deviation in pixels, above 0 and at most 10.
        sigma: f32,
    },
    /// `brightness+D` / `brightness-D`: D/255 added to every pixel (D in 8-bit levels), clipped.
    Brightness {
        /// Change in 8-bit levels, -255..=255 (negative darkens).
        delta: i32,
    },
    /// `contrast-F`: `mean + F * (x - mean)`, clipped, where `mean` is the image's own mean gray
    /// level rounded to the nearest 8-bit level: what PIL's `ImageEnhance.Contrast(img)
    /// .enhance(F)` does on a grayscale image (it blends the image with a flat image of its
    /// rounded mean). F < 1 lowers the contrast, F > 1 raises it.
    Contrast {
        /// Contrast factor, 0..=10 (1 leaves the image as it is).
        factor: f32,
    },
    /// `salt-pepper-P%`: each pixel independently, with probability P/100, is set to 0 (pepper)
    /// or 1 (salt), half each.
    SaltPepper {
        /// Chance in percent (0..=100) that a pixel is set to 0 or 1.
        percent: f32,
    },
    /// `dropout-P%` (HiDDeN's dropout): each pixel independently, with probability P/100, is
    /// replaced by the original (unwatermarked) image's pixel. HiDDeN's own parameter is the
    /// share kept (`dropout-30%` here is its keep ratio 0.7).
    Dropout {
        /// Chance in percent (0..=100) that a pixel reverts to the original.
        percent: f32,
    },
    /// `cropout-P%` (HiDDeN's cropout): a rectangle of about P% of the area, of the image's
    /// aspect ratio (`round(H*sqrt(P/100))` x `round(W*sqrt(P/100))`: 20x20 of 28x28 for 50%),
    /// at a random position, keeps the watermarked pixels; the rest is the original image.
    Cropout {
        /// Share of the area kept watermarked, in percent, above 0 and at most 100.
        keep_percent: f32,
    },
    /// `shift-K`: the image moves K pixels right and K down; the uncovered left columns and top
    /// rows are black (0, MNIST's background). Deterministic.
    Shift {
        /// Pixels moved right and down.
        pixels: u32,
    },
    /// `cropB-resize`: B pixels cut from every border (28x28 -> 24x24 for B = 2) and the rest
    /// resized back to the full size with `image::imageops::resize`, `FilterType::Triangle`
    /// (bilinear, pixel centres at half-integers, as torch's `align_corners=False`).
    CropResize {
        /// Pixels cut from every border before resizing back.
        border: u32,
    },
    /// `rescale-F`: resized to `round(F*H)` x `round(F*W)` and back to H x W, both with
    /// `image::imageops::resize`, `FilterType::Triangle` (when shrinking, the triangle is
    /// stretched by the scale: an antialiased, PIL-like bilinear downscale, not 2x2 sampling).
    Rescale {
        /// Scale of the intermediate size, above 0 and at most 16.
        factor: f32,
    },
    /// `rotate-D`: rotation by D degrees clockwise as displayed (y down: imageproc's and
    /// Photoshop's sense; PIL's `rotate` turns the other way) about the image's true centre
    /// ((W-1)/2, (H-1)/2) in pixel-centre coordinates, bilinear, black outside the image. This is
    /// `imageproc::geometric_transformations::rotate` with that centre, except at the border:
    /// imageproc blackens every pixel whose four neighbours are not all inside the image (so even
    /// a 0 degree turn would blacken the last row and column, and `rotate_about_center` turns
    /// about (W/2, H/2), half a pixel off), while here a neighbour outside counts as black in the
    /// bilinear blend. Inside the image both agree (tested).
    Rotate {
        /// Angle in degrees clockwise as displayed, -360..=360.
        degrees: f32,
    },
    /// `hflip`: mirrored left to right. Deterministic.
    HFlip,
    /// `median-K`: median filter over the K x K square around each pixel (K odd, 3..=15; PIL's
    /// `ImageFilter.MedianFilter(K)`), `imageproc::filter::median_filter` on the 8-bit image,
    /// border pixels repeated. A removal attack: it erases isolated pixel changes, keeps edges.
    Median {
        /// Side of the square in pixels, odd, 3..=15.
        size: u32,
    },
    /// `box-R`: box blur, the mean of the (2R+1) x (2R+1) square around each pixel (R in 1..=7;
    /// PIL's `ImageFilter.BoxBlur(R)`, which it matches within one level), border pixels
    /// repeated, computed exactly (`crate::learning::noise::box_blur_with_radius`) and rounded once.
    BoxBlur {
        /// Radius in pixels, 1..=7 (the square's side is 2R+1).
        radius: u32,
    },
}

/// The standard suite, in this order: none, jpeg 95/90/75/61/50, noise 2/5/10, blur 0.5/1.0,
/// box 1, median 3, brightness +10/-10, contrast 0.8/1.2, salt-pepper 1%, dropout 10%/30%,
/// cropout 50%, shift 1/2/3, crop2/crop3-resize, rescale 0.5, rotate 3/5, hflip.
pub fn standard_suite() -> Vec<Attack> {
    use Attack::*;
    vec![
        None,
        Jpeg { quality: 95 },
        Jpeg { quality: 90 },
        Jpeg { quality: 75 },
        Jpeg { quality: 61 },
        Jpeg { quality: 50 },
        Noise { sigma: 2.0 },
        Noise { sigma: 5.0 },
        Noise { sigma: 10.0 },
        Blur { sigma: 0.5 },
        Blur { sigma: 1.0 },
        BoxBlur { radius: 1 },
        Median { size: 3 },
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
        Shift { pixels: 3 },
        CropResize { border: 2 },
        CropResize { border: 3 },
        Rescale { factor: 0.5 },
        Rotate { degrees: 3.0 },
        Rotate { degrees: 5.0 },
        HFlip,
    ]
}

/// The name patterns [`parse`] accepts, for error messages and help texts.
pub const NAME_PATTERNS: &str = "none, jpeg-Q (quality 1..=100), noise-S (sigma in 8-bit levels), \
blur-S (sigma in pixels, e.g. blur-0.5), brightness+D / brightness-D (8-bit levels), contrast-F \
(e.g. contrast-0.8), salt-pepper-P%, dropout-P%, cropout-P% (share of the area kept watermarked), \
shift-K (pixels right and down), cropB-resize (B pixels off every border), rescale-F (e.g. \
rescale-0.5), rotate-D (degrees clockwise), hflip, median-K (K x K median, K odd), box-R (box \
blur of radius R)";

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
            Attack::Median { size } => format!("median-{size}"),
            Attack::BoxBlur { radius } => format!("box-{radius}"),
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
            Attack::Median { size } => ensure!(
                (3..=15).contains(&size) && size % 2 == 1,
                "{name}: the median's square side must be odd and lie in 3..=15 pixels"
            ),
            Attack::BoxBlur { radius } => ensure!(
                (1..=7).contains(&radius),
                "{name}: the box blur's radius must lie in 1..=7 pixels"
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
    } else if let Some(v) = s.strip_prefix("median-") {
        Attack::Median {
            size: number(v, s)?,
        }
    } else if let Some(v) = s.strip_prefix("box-") {
        Attack::BoxBlur {
            radius: number(v, s)?,
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

pub use apply::{apply, apply_float, apply_from, rotate_bilinear};
