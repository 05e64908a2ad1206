//! A photo's pixels in the colour type and bit depth they were stored with, and the macros that
//! run one body over their samples whatever the type (8 or 16 bits, 1 to 4 channels).

use std::borrow::Cow;

use image::{
    DynamicImage, ExtendedColorType, GrayAlphaImage, GrayImage, ImageBuffer, Luma, LumaA, Rgb,
    RgbImage, Rgba, RgbaImage,
};

use crate::codec::resample::Sample;

pub(super) type Gray16Image = ImageBuffer<Luma<u16>, Vec<u16>>;
pub(super) type GrayAlpha16Image = ImageBuffer<LumaA<u16>, Vec<u16>>;
pub(super) type Rgb16Image = ImageBuffer<Rgb<u16>, Vec<u16>>;
pub(super) type Rgba16Image = ImageBuffer<Rgba<u16>, Vec<u16>>;

/// A photo's pixels, in the colour type and bit depth it was stored with: 16-bit photos stay
/// 16-bit, so the watermark is their only change.
#[derive(Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit gray.
    Gray(GrayImage),
    /// 8-bit gray with alpha.
    GrayAlpha(GrayAlphaImage),
    /// 8-bit RGB.
    Rgb(RgbImage),
    /// 8-bit RGB with alpha.
    Rgba(RgbaImage),
    /// 16-bit gray.
    Gray16(Gray16Image),
    /// 16-bit gray with alpha.
    GrayAlpha16(GrayAlpha16Image),
    /// 16-bit RGB.
    Rgb16(Rgb16Image),
    /// 16-bit RGB with alpha.
    Rgba16(Rgba16Image),
}

/// `$body` with `$raw` bound to the pixels' interleaved samples, `&[u8]` or `&[u16]`.
macro_rules! with_samples {
    ($pixels:expr, $raw:ident => $body:expr) => {
        match $pixels {
            Pixels::Gray(i) => {
                let $raw: &[u8] = i;
                $body
            }
            Pixels::GrayAlpha(i) => {
                let $raw: &[u8] = i;
                $body
            }
            Pixels::Rgb(i) => {
                let $raw: &[u8] = i;
                $body
            }
            Pixels::Rgba(i) => {
                let $raw: &[u8] = i;
                $body
            }
            Pixels::Gray16(i) => {
                let $raw: &[u16] = i;
                $body
            }
            Pixels::GrayAlpha16(i) => {
                let $raw: &[u16] = i;
                $body
            }
            Pixels::Rgb16(i) => {
                let $raw: &[u16] = i;
                $body
            }
            Pixels::Rgba16(i) => {
                let $raw: &[u16] = i;
                $body
            }
        }
    };
}

/// [`with_samples!`] with `$raw` mutable.
macro_rules! with_samples_mut {
    ($pixels:expr, $raw:ident => $body:expr) => {
        match $pixels {
            Pixels::Gray(i) => {
                let $raw: &mut [u8] = i;
                $body
            }
            Pixels::GrayAlpha(i) => {
                let $raw: &mut [u8] = i;
                $body
            }
            Pixels::Rgb(i) => {
                let $raw: &mut [u8] = i;
                $body
            }
            Pixels::Rgba(i) => {
                let $raw: &mut [u8] = i;
                $body
            }
            Pixels::Gray16(i) => {
                let $raw: &mut [u16] = i;
                $body
            }
            Pixels::GrayAlpha16(i) => {
                let $raw: &mut [u16] = i;
                $body
            }
            Pixels::Rgb16(i) => {
                let $raw: &mut [u16] = i;
                $body
            }
            Pixels::Rgba16(i) => {
                let $raw: &mut [u16] = i;
                $body
            }
        }
    };
}

impl Pixels {
    /// The pixels from a decoded image: 8 and 16 bits a sample are kept as they are.
    pub(super) fn from_image(image: DynamicImage) -> Option<Pixels> {
        Some(match image {
            DynamicImage::ImageLuma8(i) => Pixels::Gray(i),
            DynamicImage::ImageLumaA8(i) => Pixels::GrayAlpha(i),
            DynamicImage::ImageRgb8(i) => Pixels::Rgb(i),
            DynamicImage::ImageRgba8(i) => Pixels::Rgba(i),
            DynamicImage::ImageLuma16(i) => Pixels::Gray16(i),
            DynamicImage::ImageLumaA16(i) => Pixels::GrayAlpha16(i),
            DynamicImage::ImageRgb16(i) => Pixels::Rgb16(i),
            DynamicImage::ImageRgba16(i) => Pixels::Rgba16(i),
            _ => return None,
        })
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Gray(i) => i.dimensions(),
            Pixels::GrayAlpha(i) => i.dimensions(),
            Pixels::Rgb(i) => i.dimensions(),
            Pixels::Rgba(i) => i.dimensions(),
            Pixels::Gray16(i) => i.dimensions(),
            Pixels::GrayAlpha16(i) => i.dimensions(),
            Pixels::Rgb16(i) => i.dimensions(),
            Pixels::Rgba16(i) => i.dimensions(),
        }
    }

    /// Whether the pixels are gray (with or without alpha), at either depth.
    pub fn is_gray(&self) -> bool {
        matches!(
            self,
            Pixels::Gray(_) | Pixels::GrayAlpha(_) | Pixels::Gray16(_) | Pixels::GrayAlpha16(_)
        )
    }

    /// Whether the pixels carry an alpha channel.
    pub fn has_alpha(&self) -> bool {
        matches!(
            self,
            Pixels::GrayAlpha(_) | Pixels::Rgba(_) | Pixels::GrayAlpha16(_) | Pixels::Rgba16(_)
        )
    }

    /// Bits a sample: 8 or 16.
    pub fn bit_depth(&self) -> u8 {
        match self {
            Pixels::Gray(_) | Pixels::GrayAlpha(_) | Pixels::Rgb(_) | Pixels::Rgba(_) => 8,
            _ => 16,
        }
    }

    /// Samples per pixel, alpha included.
    pub(super) fn channels(&self) -> usize {
        let colours = if self.is_gray() { 1 } else { 3 };
        colours + usize::from(self.has_alpha())
    }

    /// The samples at 8 bits (16-bit ones rounded, `(v + 128) / 257`), interleaved as the colour
    /// type has them: what an 8-bit display shows, and what the visibility scores compare.
    pub fn eight_bit_samples(&self) -> Cow<'_, [u8]> {
        match self {
            Pixels::Gray(i) => Cow::Borrowed(i.as_raw()),
            Pixels::GrayAlpha(i) => Cow::Borrowed(i.as_raw()),
            Pixels::Rgb(i) => Cow::Borrowed(i.as_raw()),
            Pixels::Rgba(i) => Cow::Borrowed(i.as_raw()),
            Pixels::Gray16(i) => Cow::Owned(to_eight_bits(i)),
            Pixels::GrayAlpha16(i) => Cow::Owned(to_eight_bits(i)),
            Pixels::Rgb16(i) => Cow::Owned(to_eight_bits(i)),
            Pixels::Rgba16(i) => Cow::Owned(to_eight_bits(i)),
        }
    }

    /// The same pixels at 8 bits a sample ([`Pixels::eight_bit_samples`]), borrowed when they
    /// already are.
    pub fn to_eight_bit(&self) -> Cow<'_, Pixels> {
        let (w, h) = self.dimensions();
        let samples = || self.eight_bit_samples().into_owned();
        let image = match self {
            Pixels::Gray16(_) => ImageBuffer::from_raw(w, h, samples()).map(Pixels::Gray),
            Pixels::GrayAlpha16(_) => ImageBuffer::from_raw(w, h, samples()).map(Pixels::GrayAlpha),
            Pixels::Rgb16(_) => ImageBuffer::from_raw(w, h, samples()).map(Pixels::Rgb),
            Pixels::Rgba16(_) => ImageBuffer::from_raw(w, h, samples()).map(Pixels::Rgba),
            eight => return Cow::Borrowed(eight),
        };
        Cow::Owned(image.expect("as many 8-bit samples as 16-bit ones"))
    }

    /// The samples as bytes, 16-bit ones in native byte order (as the `image` encoders take them).
    pub(super) fn sample_bytes(&self) -> &[u8] {
        with_samples!(self, raw => bytemuck::cast_slice(raw))
    }

    pub(super) fn color_type(&self) -> ExtendedColorType {
        match self {
            Pixels::Gray(_) => ExtendedColorType::L8,
            Pixels::GrayAlpha(_) => ExtendedColorType::La8,
            Pixels::Rgb(_) => ExtendedColorType::Rgb8,
            Pixels::Rgba(_) => ExtendedColorType::Rgba8,
            Pixels::Gray16(_) => ExtendedColorType::L16,
            Pixels::GrayAlpha16(_) => ExtendedColorType::La16,
            Pixels::Rgb16(_) => ExtendedColorType::Rgb16,
            Pixels::Rgba16(_) => ExtendedColorType::Rgba16,
        }
    }

    /// BT.601 luma in [0, 1] of each pixel of row `y`, unrounded; alpha ignored.
    pub(super) fn luma_row(&self, y: usize, out: &mut Vec<f32>) {
        let (w, c, gray) = (
            self.dimensions().0 as usize,
            self.channels(),
            self.is_gray(),
        );
        with_samples!(self, raw => luma_of(&raw[y * w * c..(y + 1) * w * c], c, gray, out))
    }
}

/// 16-bit samples rounded to 8 bits.
fn to_eight_bits(raw: &[u16]) -> Vec<u8> {
    raw.iter()
        .map(|&v| ((u32::from(v) + 128) / 257) as u8)
        .collect()
}

/// BT.601 luma in [0, 1] of each pixel of `raw` (whole pixels of `c` samples), unrounded.
fn luma_of<T: Sample>(raw: &[T], c: usize, gray: bool, out: &mut Vec<f32>) {
    out.clear();
    if gray {
        out.extend(raw.chunks_exact(c).map(|p| p[0].into() / T::MAX));
    } else {
        out.extend(
            raw.chunks_exact(c).map(|p| {
                (0.299 * p[0].into() + 0.587 * p[1].into() + 0.114 * p[2].into()) / T::MAX
            }),
        );
    }
}

/// Debug output names the colour type and size, not millions of bytes.
impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, h) = self.dimensions();
        write!(f, "{:?}({w}x{h})", self.color_type())
    }
}
