//! Photographs of any size in and out of wmae: the network works on a fixed square of `S x S`
//! luma values, so a photo is squashed to `S x S` (aspect ratio not kept, as TrustMark and
//! VideoSeal do) to read or compute the watermark, and the `S x S` residual the network makes is
//! resized back to the photo's full size and added there. Only the residual is ever resized: the
//! photo's own pixels are changed by the residual and nothing else, whatever their size.
//!
//! The watermark lives in luma only. Adding the same change `d` to R, G and B changes BT.601
//! luma by exactly `d` (0.299 + 0.587 + 0.114 = 1) and leaves Cb and Cr unchanged (their weights
//! each sum to 0), so no colour conversion is needed on the way in or out; clipping to [0, 255]
//! and rounding to 8 bits are the only departures from this.
//!
//! Pixels are kept on the grid they are stored on: a JPEG's EXIF orientation is not applied.
//! The EXIF block (orientation included) and the ICC profile are copied into the output, so a
//! viewer shows the watermarked photo exactly as it showed the original, and extraction reads the
//! same pixel grid the watermark was written on.

use std::borrow::Cow;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::codecs::png::PngEncoder;
use image::codecs::tiff::TiffEncoder;
use image::codecs::webp::WebPEncoder;
use image::{
    DynamicImage, ExtendedColorType, GrayAlphaImage, GrayImage, ImageBuffer, ImageDecoder,
    ImageEncoder, ImageFormat, ImageReader, Limits, Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage,
};
use tch::{Device, Kind, Tensor};

use crate::codec::resample::{add_resized, dot, AaTaps, NoGain, RowGain, Sample, Taps};
use crate::codec::webp::WebpKind;
use crate::model::jnd::JndRows;

/// Shortest side accepted, in pixels. Smaller images are icons or thumbnails rather than
/// photos: squashed up to a working size such as 256 they would be magnified four times or
/// more, and too few of their own pixels would carry the watermark for it to survive.
pub const MIN_SIDE: u32 = 64;

/// Largest photo accepted, in pixels (100 megapixels). The header's dimensions are checked
/// against it before any pixel is decoded, so a crafted header cannot make wmae allocate
/// gigabytes.
pub const MAX_PIXELS: u64 = 100_000_000;

/// Largest photo accepted in decoded samples: 400 MB at 8 bits a sample (100 megapixels with
/// alpha), 300 MB at 16 (50 megapixels RGB, whose PNG and TIFF encoders also make a big-endian
/// copy). A photo is held two or three times over while it is marked (original, marked copy,
/// the read-back's decode), so this bounds what an accepted photo can take: measured, 1.46 GB
/// peak for a 100-megapixel RGBA PNG and 1.25 GB for 100-megapixel RGB ones of any shape.
pub const MAX_SAMPLE_BYTES: [u64; 2] = [400_000_000, 300_000_000];

/// The JPEG quality outputs are written at unless told otherwise: high enough that the
/// re-encoding itself costs the watermark little.
pub const DEFAULT_JPEG_QUALITY: u8 = 95;

/// A photo's file format, from its content rather than its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhotoFormat {
    /// PNG: written back lossless.
    Png,
    /// Baseline or progressive JPEG: written back as baseline JPEG at the output quality.
    Jpeg,
    /// WebP with a VP8 (lossy) image: written back lossy, at the output quality.
    WebpLossy,
    /// WebP with a VP8L (lossless) image: written back lossless.
    WebpLossless,
    /// TIFF: written back lossless.
    Tiff,
}

impl PhotoFormat {
    /// The format's name, as messages and records give it.
    pub fn name(self) -> &'static str {
        match self {
            PhotoFormat::Png => "PNG",
            PhotoFormat::Jpeg => "JPEG",
            PhotoFormat::WebpLossy => "lossy WebP",
            PhotoFormat::WebpLossless => "lossless WebP",
            PhotoFormat::Tiff => "TIFF",
        }
    }

    /// Whether a file name's extension (lowercase, without the dot) names this format; None for
    /// an extension that names no format wmae reads.
    pub fn matches_extension(self, ext: &str) -> Option<bool> {
        let named = match ext {
            "png" => [PhotoFormat::Png; 2],
            "jpg" | "jpeg" | "jpe" | "jfif" => [PhotoFormat::Jpeg; 2],
            "webp" => [PhotoFormat::WebpLossy, PhotoFormat::WebpLossless],
            "tif" | "tiff" => [PhotoFormat::Tiff; 2],
            _ => return None,
        };
        Some(named.contains(&self))
    }

    /// Whether the format is written with loss (so `--jpeg-quality` applies to it).
    pub fn is_lossy(self) -> bool {
        matches!(self, PhotoFormat::Jpeg | PhotoFormat::WebpLossy)
    }
}

type Gray16Image = ImageBuffer<Luma<u16>, Vec<u16>>;
type GrayAlpha16Image = ImageBuffer<LumaA<u16>, Vec<u16>>;
type Rgb16Image = ImageBuffer<Rgb<u16>, Vec<u16>>;
type Rgba16Image = ImageBuffer<Rgba<u16>, Vec<u16>>;

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
    fn from_image(image: DynamicImage) -> Option<Pixels> {
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
    fn channels(&self) -> usize {
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
    fn sample_bytes(&self) -> &[u8] {
        with_samples!(self, raw => bytemuck::cast_slice(raw))
    }

    fn color_type(&self) -> ExtendedColorType {
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
    fn luma_row(&self, y: usize, out: &mut Vec<f32>) {
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

/// A photo read from a PNG, JPEG, WebP or TIFF file, with the metadata its output keeps.
#[derive(Clone)]
pub struct Photo {
    /// The decoded pixels, in the colour type and bit depth of the file.
    pub pixels: Pixels,
    /// The format it was read in, and the one it is saved in.
    pub format: PhotoFormat,
    /// The file it was read from.
    pub path: PathBuf,
    /// What its output cannot keep of the file it was read from (a CMYK JPEG's colour model, a
    /// progressive JPEG's scan order, a TIFF's EXIF tags), in words for the record.
    pub conversions: Vec<&'static str>,
    icc_profile: Option<Vec<u8>>,
    exif: Option<Vec<u8>>,
}

impl std::fmt::Debug for Photo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Photo")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("pixels", &self.pixels)
            .field("conversions", &self.conversions)
            .finish_non_exhaustive()
    }
}

impl Photo {
    /// Reads a photo: PNG (8 or 16 bits, gray, gray+alpha, RGB or RGBA; a palette PNG is read as
    /// RGB or RGBA), JPEG, WebP (lossy or lossless, still) or TIFF (8 or 16 bits). Its format
    /// comes from its content, not its name. The header's dimensions are checked against
    /// [`MIN_SIDE`] and [`MAX_PIXELS`] before anything is decoded.
    pub fn open(path: &Path) -> Result<Photo> {
        let bytes =
            crate::runtime::fsutil::read_input_file(path, crate::runtime::fsutil::MAX_INPUT_BYTES)?;
        Self::decode(path, &bytes)
    }

    /// [`Photo::open`] on a file's bytes already read (`path` names it in errors and is kept).
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Photo> {
        let name = path.display();
        let (format, image_format) = match image::guess_format(bytes) {
            Ok(ImageFormat::Png) => (PhotoFormat::Png, ImageFormat::Png),
            Ok(ImageFormat::Jpeg) => (PhotoFormat::Jpeg, ImageFormat::Jpeg),
            Ok(ImageFormat::WebP) => {
                match crate::codec::webp::kind(bytes).with_context(|| name.to_string())? {
                    WebpKind::Lossy => (PhotoFormat::WebpLossy, ImageFormat::WebP),
                    WebpKind::Lossless => (PhotoFormat::WebpLossless, ImageFormat::WebP),
                }
            }
            Ok(ImageFormat::Tiff) => (PhotoFormat::Tiff, ImageFormat::Tiff),
            Ok(other) => {
                bail!("{name}: a {other:?} file; wmae reads PNG, JPEG, WebP and TIFF photos")
            }
            Err(_) => bail!("{name}: not a PNG, JPEG, WebP or TIFF file"),
        };
        let mut conversions = Vec::new();
        if format == PhotoFormat::Jpeg {
            if !crate::codec::jpeg::is_complete(bytes) {
                bail!("{name}: truncated JPEG (no end-of-image marker after its last scan)");
            }
            if crate::codec::jpeg::is_progressive(bytes) {
                conversions.push("progressive JPEG written as baseline");
            }
            if crate::codec::jpeg::is_four_component(bytes) {
                conversions.push("CMYK written as RGB");
            }
        }
        let format_name = format.name();
        let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
        reader.limits(decoder_limits());
        let mut decoder = reader
            .into_decoder()
            .with_context(|| format!("{name}: not a readable {format_name} file"))?;
        let (width, height) = decoder.dimensions();
        check_size(path, width, height)?;
        let sample_bytes = decoder.total_bytes();
        let deep = decoder.color_type().bytes_per_pixel() > decoder.color_type().channel_count();
        let limit = MAX_SAMPLE_BYTES[usize::from(deep)];
        if sample_bytes > limit {
            bail!(
                "{name}: {width}x{height} pixels of {:?} take {} MB decoded; wmae takes photos \
                 of at most {} MB at {} bits a sample",
                decoder.color_type(),
                sample_bytes / 1_000_000,
                limit / 1_000_000,
                if deep { 16 } else { 8 }
            );
        }
        let icc_profile = decoder
            .icc_profile()
            .with_context(|| format!("{name}: unreadable ICC profile"))?;
        let exif = decoder
            .exif_metadata()
            .with_context(|| format!("{name}: unreadable EXIF metadata"))?;
        match decoder.original_color_type() {
            // A TIFF's; a JPEG's was found in its frame header.
            ExtendedColorType::Cmyk8 | ExtendedColorType::Cmyk16 if format == PhotoFormat::Tiff => {
                conversions.push("CMYK written as RGB")
            }
            ExtendedColorType::L1 | ExtendedColorType::L2 | ExtendedColorType::L4 => {
                conversions.push("gray of 1, 2 or 4 bits written as 8-bit")
            }
            _ => {}
        }
        let orientation = decoder
            .orientation()
            .with_context(|| format!("{name}: unreadable orientation"))?;
        if format == PhotoFormat::Tiff && orientation != image::metadata::Orientation::NoTransforms
        {
            // The TIFF encoder writes no orientation tag: the output is shown as stored.
            conversions.push("TIFF orientation tag not kept");
        }
        let image = DynamicImage::from_decoder(decoder)
            .with_context(|| format!("{name}: cannot decode this {format_name} file"))?;
        let color = image.color();
        let Some(pixels) = Pixels::from_image(image) else {
            bail!("{name}: unsupported colour type {color:?}");
        };
        Ok(Photo {
            pixels,
            format,
            path: path.to_path_buf(),
            conversions,
            icc_profile,
            exif,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.pixels.dimensions().0
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.pixels.dimensions().1
    }

    /// Whether the photo is gray (with or without alpha).
    pub fn is_gray(&self) -> bool {
        self.pixels.is_gray()
    }

    /// The photo's BT.601 luma (0.299 R + 0.587 G + 0.114 B, unrounded, in [0, 1]) squashed to
    /// `size x size`, as a `(1,1,size,size)` float tensor on the CPU. The resize is bilinear with
    /// antialiasing as PyTorch computes it (`interpolate(mode="bilinear", antialias=True,
    /// align_corners=False)`: a triangle filter as wide as the scale, width first, then height),
    /// so every pixel of the photo counts and fine detail does not alias into the watermark's
    /// band. It runs on the host a row at a time, so no full-size float image is made (a
    /// 100-megapixel photo would need 400 MB); tests/photo.rs checks it against libtorch's.
    pub fn luma_at(&self, size: i64) -> Result<Tensor> {
        if size < 1 {
            bail!("working size {size}: must be at least 1");
        }
        let (width, height) = self.pixels.dimensions();
        let (w, h, s) = (width as usize, height as usize, size as usize);
        let (columns, rows) = (AaTaps::new(w, s), AaTaps::new(h, s));
        // Width first: each photo row's luma, resized to `s` values; then height: each output
        // row a weighted sum of those rows. The rows are made one at a time and added into every
        // output row whose window holds them, so no `h x s` buffer is made (6.4 GB for a
        // 64-px-wide 100-megapixel photo), and each output row still sums its rows in order.
        let windows: Vec<(usize, &[f32])> = rows.iter().collect();
        let mut squashed = vec![0f32; s * s];
        let (mut luma, mut narrow) = (Vec::with_capacity(w), vec![0f32; s]);
        let mut first = 0;
        for y in 0..h {
            while first < s && windows[first].0 + windows[first].1.len() <= y {
                first += 1;
            }
            if first == s || windows[first].0 > y {
                continue;
            }
            self.pixels.luma_row(y, &mut luma);
            for (o, (start, weights)) in narrow.iter_mut().zip(columns.iter()) {
                *o = dot(weights, &luma[start..]);
            }
            for (i, &(start, weights)) in windows.iter().enumerate().skip(first) {
                if start > y {
                    break;
                }
                let Some(&weight) = weights.get(y - start) else {
                    continue;
                };
                let out = &mut squashed[i * s..(i + 1) * s];
                for (o, &v) in out.iter_mut().zip(&narrow) {
                    *o += weight * v;
                }
            }
        }
        Ok(Tensor::from_slice(&squashed).view([1, 1, size, size]))
    }

    /// This photo with `residual` added: `residual` is `(1,1,S,S)` in luma units ([0, 1] is the
    /// full 8-bit range), resized bilinearly (align_corners false) to the photo's full size,
    /// multiplied by `strength` and added to each colour channel alike (see the module comment:
    /// this adds exactly that much luma), then clamped to [0, 255] and rounded to 8 bits. Alpha,
    /// size, colour type, format and metadata are kept.
    pub fn with_residual(&self, residual: &Tensor, strength: f64) -> Result<Photo> {
        Ok(self.with_residual_and_mse(residual, strength)?.0)
    }

    /// [`Photo::with_residual`], and the mean squared error (8-bit units, over the colour
    /// channels; alpha is never changed) of the result against this photo, found on the way.
    ///
    /// The resize is done row by row on the host, fused with the addition: the residual's two
    /// source rows are blended once per output row, then each pixel blends two of that row's
    /// values. The coordinates are PyTorch's for `upsample_bilinear2d(align_corners=False)`
    /// (source = (dest + 0.5) x in / out - 0.5, clamped at 0), so the result is that resize up
    /// to float rounding, with no full-size float image in memory.
    pub fn with_residual_and_mse(&self, residual: &Tensor, strength: f64) -> Result<(Photo, f64)> {
        if !strength.is_finite() {
            bail!("watermark strength {strength}: must be a finite number");
        }
        self.add_resized_change(residual, strength * 255.0, None)
    }

    /// This photo with a perceptually shaped change: `pattern` `(1,1,S,S)` (in [-1,1]) resized
    /// as in [`Photo::with_residual_and_mse`], times `gain`, times each pixel's just-noticeable
    /// difference in levels (`crate::model::jnd`, from this photo's own luma at full resolution), added
    /// to each colour channel alike. Returns the photo and the mean squared error over the colour
    /// channels.
    /// `jnd` is this photo's ([`Photo::jnd_levels`]), computed once for every strength tried.
    pub fn with_shaped_pattern_and_mse(
        &self,
        pattern: &Tensor,
        gain: f64,
        jnd: &JndLevels,
    ) -> Result<(Photo, f64)> {
        if !gain.is_finite() {
            bail!("watermark strength {gain}: must be a finite number");
        }
        if (jnd.width, jnd.eighths.len()) != (self.width() as usize, self.pixel_count()) {
            bail!("{}: a JND map of another photo", self.path.display());
        }
        self.add_resized_change(pattern, gain, Some(jnd))
    }

    /// The photo's just-noticeable difference (`crate::model::jnd`) at every pixel, in eighths of a
    /// level: a byte a pixel (100 MB at 100 megapixels, where floats would take 400), and
    /// computing it is most of the cost of shaping a change, which the read-back check may
    /// apply at several strengths.
    pub fn jnd_levels(&self) -> JndLevels {
        let (w, h) = (self.width() as usize, self.height() as usize);
        let mut luma = Vec::with_capacity(w);
        let mut rows = JndRows::new(w, h, |y, out: &mut Vec<f32>| {
            self.pixels.luma_row(y, &mut luma);
            out.clear();
            out.extend(luma.iter().map(|v| v * 255.0));
        });
        let mut eighths = Vec::with_capacity(w * h);
        for y in 0..h {
            // At most MAX_JND_LEVELS (30) levels: 240 eighths fit a byte.
            eighths.extend(
                rows.row(y)
                    .iter()
                    .map(|&j| (j * 8.0).round().clamp(0.0, 255.0) as u8),
            );
        }
        JndLevels { width: w, eighths }
    }

    fn pixel_count(&self) -> usize {
        self.width() as usize * self.height() as usize
    }

    /// `values` resized to the photo, times `scale` (and the JND when `shaped`), added to the
    /// colours; the mean squared error over the colour channels (alpha is never changed).
    fn add_resized_change(
        &self,
        residual: &Tensor,
        strength: f64,
        jnd: Option<&JndLevels>,
    ) -> Result<(Photo, f64)> {
        let size = residual.size();
        let s = match size.as_slice() {
            [1, 1, h, w] if h == w && *h > 0 => *h,
            _ => bail!("residual of shape {size:?}: expected (1,1,S,S)"),
        };
        let residual = residual
            .detach()
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_mul_scalar(strength)?
            .f_contiguous()?;
        let values = Vec::<f32>::try_from(residual.f_reshape([-1])?)?;
        if values.iter().any(|v| !v.is_finite()) {
            bail!("residual ({s}x{s}) holds NaN or infinite values");
        }
        let s = s as usize;
        let (width, height) = self.pixels.dimensions();
        let (w, h) = (width as usize, height as usize);
        let columns = Taps::new(s, w);
        let rows = Taps::new(s, h);

        let mut out = self.clone();
        let channels = out.pixels.channels();
        let colours = if self.pixels.is_gray() { 1 } else { 3 };
        let mut gain: Box<dyn RowGain + '_> = match jnd {
            Some(levels) => Box::new(levels.rows()),
            None => Box::new(NoGain),
        };
        let (squared_error, full_scale) = with_samples_mut!(&mut out.pixels, raw => (
            add_change(channels, raw, &values, s, w, &rows, &columns, &mut *gain),
            sample_max(raw),
        ));
        // In 8-bit levels, whatever the depth, so PSNR means the same for every photo.
        let levels = f64::from(full_scale) / 255.0;
        let mse = squared_error as f64 / (levels * levels) / (w * h * colours) as f64;
        Ok((out, mse))
    }

    /// Writes the photo to `path` in the format it was read in: PNG, TIFF and lossless WebP
    /// losslessly, JPEG and lossy WebP at `jpeg_quality` (1..=100, see [`DEFAULT_JPEG_QUALITY`];
    /// checked for every format, so a bad setting shows up whatever the input). Gray stays gray,
    /// 16 bits stay 16 bits; the ICC profile is copied, and the EXIF block to PNG, JPEG and WebP.
    /// The name's extension is the caller's choice and is not checked. The file is written
    /// atomically.
    pub fn save(&self, path: &Path, jpeg_quality: u8) -> Result<()> {
        let bytes = self.encode_file(jpeg_quality, path)?;
        crate::runtime::fsutil::write_atomically(path, |writer| {
            std::io::Write::write_all(writer, &bytes)
        })
    }

    /// The bytes of the file [`Photo::save`] writes (`path` only names it in errors).
    pub fn encode_file(&self, jpeg_quality: u8, path: &Path) -> Result<Vec<u8>> {
        if !(1..=100).contains(&jpeg_quality) {
            bail!("JPEG quality {jpeg_quality}: must lie in 1..=100");
        }
        if self.format == PhotoFormat::Jpeg && self.pixels.has_alpha() {
            bail!(
                "{}: JPEG has no alpha channel; save this photo as PNG",
                path.display()
            );
        }
        let (width, height) = self.pixels.dimensions();
        let color = self.pixels.color_type();
        let raw = self.pixels.sample_bytes();
        // A JPEG at quality 95 takes about 1 byte a pixel, a PNG up to 3.
        let mut bytes = Vec::with_capacity(raw.len() / 2);
        let encoded = match self.format {
            PhotoFormat::Png => self
                .encode(PngEncoder::new(&mut bytes), raw, width, height, color)
                .map_err(anyhow::Error::from),
            PhotoFormat::Tiff => self
                .encode(
                    TiffEncoder::new(Cursor::new(&mut bytes)),
                    raw,
                    width,
                    height,
                    color,
                )
                .map_err(anyhow::Error::from),
            PhotoFormat::WebpLossless => self
                .encode(
                    WebPEncoder::new_lossless(&mut bytes),
                    raw,
                    width,
                    height,
                    color,
                )
                .map_err(anyhow::Error::from),
            PhotoFormat::WebpLossy => self.encode_webp_lossy(jpeg_quality).map(|b| bytes = b),
            PhotoFormat::Jpeg => self.encode_jpeg(&mut bytes, jpeg_quality),
        };
        encoded.with_context(|| {
            format!("cannot encode {} as {}", path.display(), self.format.name())
        })?;
        Ok(bytes)
    }

    /// Baseline JPEG through the `jpeg-encoder` crate (SIMD, about 4 times the speed of the
    /// `image` crate's encoder here), with the same choices: the standard IJG tables scaled by
    /// quality, and no chroma subsampling, so the photo's colour is not blurred.
    fn encode_jpeg(&self, bytes: &mut Vec<u8>, quality: u8) -> Result<()> {
        let mut encoder = jpeg_encoder::Encoder::new(bytes, quality);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
        if let Some(icc) = &self.icc_profile {
            encoder.add_icc_profile(icc)?;
        }
        if let Some(exif) = &self.exif {
            // APP1 carries EXIF behind its "Exif\0\0" signature.
            let mut segment = b"Exif\0\0".to_vec();
            segment.extend_from_slice(exif);
            encoder.add_app_segment(1, segment)?;
        }
        let (width, height) = self.pixels.dimensions();
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            bail!("{width}x{height} pixels: a JPEG holds at most 65535 a side");
        };
        let (color, raw) = match &self.pixels {
            Pixels::Gray(i) => (jpeg_encoder::ColorType::Luma, i.as_raw()),
            Pixels::Rgb(i) => (jpeg_encoder::ColorType::Rgb, i.as_raw()),
            other => bail!("a JPEG holds 8-bit gray or RGB, not {other:?}"),
        };
        encoder.encode(raw, w, h, color)?;
        Ok(())
    }

    /// Lossy WebP through libwebp (`crate::codec::webp`), at `quality` on its scale. WebP has no gray
    /// mode (a gray WebP decodes as RGB), so gray would only come from another format.
    fn encode_webp_lossy(&self, quality: u8) -> Result<Vec<u8>> {
        let (width, height) = self.pixels.dimensions();
        let (channels, raw) = match &self.pixels {
            Pixels::Rgb(i) => (3, i.as_raw()),
            Pixels::Rgba(i) => (4, i.as_raw()),
            other => bail!("a lossy WebP holds 8-bit RGB or RGBA, not {other:?}"),
        };
        crate::codec::webp::encode_lossy(
            raw,
            width,
            height,
            channels,
            quality,
            self.icc_profile.as_deref(),
            self.exif.as_deref(),
        )
    }

    fn encode(
        &self,
        mut encoder: impl ImageEncoder,
        raw: &[u8],
        width: u32,
        height: u32,
        color: ExtendedColorType,
    ) -> image::ImageResult<()> {
        // The PNG and WebP encoders take both; the TIFF one only the ICC profile (see `save`).
        if let Some(icc) = &self.icc_profile {
            let _ = encoder.set_icc_profile(icc.clone());
        }
        if let Some(exif) = &self.exif {
            let _ = encoder.set_exif_metadata(exif.clone());
        }
        encoder.write_image(raw, width, height, color)
    }
}

/// A photo's JND in eighths of a level, row-major ([`Photo::jnd_levels`]).
pub struct JndLevels {
    width: usize,
    eighths: Vec<u8>,
}

impl JndLevels {
    /// The rows in levels, one at a time, as [`add_resized`] asks for them.
    fn rows(&self) -> JndLevelRows<'_> {
        JndLevelRows {
            levels: self,
            row: vec![0.0; self.width],
        }
    }
}

struct JndLevelRows<'a> {
    levels: &'a JndLevels,
    row: Vec<f32>,
}

impl RowGain for JndLevelRows<'_> {
    fn row(&mut self, y: usize) -> Option<&[f32]> {
        let w = self.levels.width;
        let eighths = &self.levels.eighths[y * w..(y + 1) * w];
        for (r, &e) in self.row.iter_mut().zip(eighths) {
            *r = f32::from(e) / 8.0;
        }
        Some(&self.row)
    }
}

/// [`add_resized`] for a photo of `channels` channels (gray, gray+alpha, RGB, RGBA).
#[allow(clippy::too_many_arguments)]
fn add_change<T: Sample>(
    channels: usize,
    raw: &mut [T],
    values: &[f32],
    s: usize,
    w: usize,
    rows: &Taps,
    columns: &Taps,
    gain: &mut dyn RowGain,
) -> u64 {
    match channels {
        1 => add_resized::<T, 1, 1>(raw, values, s, w, rows, columns, gain),
        2 => add_resized::<T, 2, 1>(raw, values, s, w, rows, columns, gain),
        3 => add_resized::<T, 3, 3>(raw, values, s, w, rows, columns, gain),
        _ => add_resized::<T, 4, 3>(raw, values, s, w, rows, columns, gain),
    }
}

/// The full-scale value of `raw`'s sample type (255 or 65535).
fn sample_max<T: Sample>(_raw: &[T]) -> f32 {
    T::MAX
}

fn check_size(path: &Path, width: u32, height: u32) -> Result<()> {
    if width.min(height) < MIN_SIDE {
        bail!(
            "{}: photo is {width}x{height} pixels (width x height); its shorter side must be at \
             least {MIN_SIDE} pixels{}",
            path.display(),
            if (width, height) == (28, 28) {
                " (a digit image? read digits with --model digits or a digit --checkpoint)"
            } else {
                ""
            }
        );
    }
    check_pixel_count(path, width, height)
}

/// Refuses a photo whose header claims more than [`MAX_PIXELS`]: checked before decoding, since
/// the `image` crate's allocation limit alone does not stop it (a crafted header aborts it).
pub fn check_pixel_count(path: &Path, width: u32, height: u32) -> Result<()> {
    if width as u64 * height as u64 > MAX_PIXELS {
        bail!(
            "{}: photo is {width}x{height} pixels (width x height), over the limit of {} \
             megapixels",
            path.display(),
            MAX_PIXELS / 1_000_000
        );
    }
    Ok(())
}

/// The decoders' limits: no width or height limit (the pixel count is checked with a clear
/// message instead); the allocation bound covers the largest accepted photo at 16-bit RGBA.
pub fn decoder_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_are_inclusive() {
        let path = Path::new("p.png");
        check_size(path, MIN_SIDE, MIN_SIDE).unwrap();
        let pixels = Pixels::Rgb(RgbImage::new(300, 200));
        assert_eq!(format!("{pixels:?}"), "Rgb8(300x200)");
        check_size(path, 10_000, 10_000).unwrap();
        assert!(check_size(path, MIN_SIDE - 1, 5000).is_err());
        assert!(check_size(path, 5000, MIN_SIDE - 1).is_err());
        assert!(check_size(path, 10_000, 10_001).is_err());
        assert!(check_size(path, u32::MAX, u32::MAX).is_err());
    }

    /// A photo in memory: `width x height` RGB of a smooth gradient with ripples (flat and
    /// textured parts, so the JND varies).
    fn rippled_photo(width: u32, height: u32) -> Photo {
        let pixels = RgbImage::from_fn(width, height, |x, y| {
            let ripple = ((x as f32 * 0.7).sin() * (y as f32 * 0.3).cos() * 40.0)
                * (x > width / 2) as u8 as f32;
            let v = (20.0 + 200.0 * y as f32 / height as f32 + ripple).clamp(0.0, 255.0) as u8;
            image::Rgb([v, v / 2, 255 - v])
        });
        Photo {
            pixels: Pixels::Rgb(pixels),
            format: PhotoFormat::Png,
            path: PathBuf::from("rippled.png"),
            conversions: Vec::new(),
            icc_profile: None,
            exif: None,
        }
    }

    #[test]
    fn jnd_levels_keep_the_jnd_to_a_sixteenth_of_a_level() {
        let photo = rippled_photo(150, 200);
        let levels = photo.jnd_levels();
        let (w, h) = (150, 200);
        let mut luma = Vec::new();
        let mut rows = JndRows::new(w, h, |y, out: &mut Vec<f32>| {
            photo.pixels.luma_row(y, &mut luma);
            out.clear();
            out.extend(luma.iter().map(|v| v * 255.0));
        });
        let mut cached = levels.rows();
        let (mut low, mut high) = (f32::MAX, 0f32);
        for y in 0..h {
            let exact = rows.row(y).to_vec();
            let kept = RowGain::row(&mut cached, y).unwrap();
            for (e, k) in exact.iter().zip(kept) {
                assert!(
                    (e - k).abs() <= 1.0 / 16.0 + 1e-6,
                    "row {y}: {e} kept as {k}"
                );
                (low, high) = (low.min(*e), high.max(*e));
            }
        }
        // The photo spans flat and textured parts: the map is not one value.
        assert!(high > 2.0 * low, "JND from {low} to {high}");
    }

    #[test]
    fn a_shaped_change_refuses_another_photos_jnd() {
        let (photo, other) = (rippled_photo(150, 200), rippled_photo(200, 150));
        let pattern = Tensor::ones([1, 1, 16, 16], (Kind::Float, Device::Cpu));
        let error = photo
            .with_shaped_pattern_and_mse(&pattern, 0.1, &other.jnd_levels())
            .unwrap_err();
        assert!(error.to_string().contains("another photo"), "{error}");
        let (marked, mse) = photo
            .with_shaped_pattern_and_mse(&pattern, 0.1, &photo.jnd_levels())
            .unwrap();
        assert!(mse > 0.0 && marked.pixels != photo.pixels);
    }
}
