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

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::codecs::png::PngEncoder;
use image::codecs::tiff::TiffEncoder;
use image::codecs::webp::WebPEncoder;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, Limits,
};
use tch::Tensor;

use crate::codec::resample::{dot, AaTaps};
use crate::codec::webp::WebpKind;

// The pixel types and the macros over their samples come first: the other parts use them.
#[macro_use]
mod pixels;
mod change;

pub use change::JndLevels;
pub use pixels::Pixels;

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
    use image::RgbImage;

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
}
