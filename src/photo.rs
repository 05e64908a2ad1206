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
use image::{
    DynamicImage, ExtendedColorType, GrayAlphaImage, GrayImage, ImageDecoder, ImageEncoder,
    ImageFormat, ImageReader, Limits, RgbImage, RgbaImage,
};
use tch::{Device, Kind, Tensor};

use crate::jnd::JndRows;
use crate::resample::{add_resized, dot, AaTaps, NoGain, RowGain, Taps};

/// Shortest side accepted, in pixels. Smaller images are icons or thumbnails rather than
/// photos: squashed up to a working size such as 256 they would be magnified four times or
/// more, and too few of their own pixels would carry the watermark for it to survive.
pub const MIN_SIDE: u32 = 64;

/// Largest photo accepted, in pixels (100 megapixels). The header's dimensions are checked
/// against it before any pixel is decoded, so a crafted header cannot make wmae allocate
/// gigabytes.
pub const MAX_PIXELS: u64 = 100_000_000;

/// The JPEG quality outputs are written at unless told otherwise: high enough that the
/// re-encoding itself costs the watermark little.
pub const DEFAULT_JPEG_QUALITY: u8 = 95;

/// A photo's file format, from its content rather than its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhotoFormat {
    Png,
    Jpeg,
}

/// A photo's 8-bit pixels, in the colour type it was stored with.
#[derive(Clone, PartialEq)]
pub enum Pixels {
    Gray(GrayImage),
    GrayAlpha(GrayAlphaImage),
    Rgb(RgbImage),
    Rgba(RgbaImage),
}

impl Pixels {
    /// `(width, height)`.
    /// The raw 8-bit samples, interleaved as the colour type has them.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Pixels::Gray(i) => i.as_raw(),
            Pixels::GrayAlpha(i) => i.as_raw(),
            Pixels::Rgb(i) => i.as_raw(),
            Pixels::Rgba(i) => i.as_raw(),
        }
    }

    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Gray(i) => i.dimensions(),
            Pixels::GrayAlpha(i) => i.dimensions(),
            Pixels::Rgb(i) => i.dimensions(),
            Pixels::Rgba(i) => i.dimensions(),
        }
    }

    pub fn is_gray(&self) -> bool {
        matches!(self, Pixels::Gray(_) | Pixels::GrayAlpha(_))
    }

    pub fn has_alpha(&self) -> bool {
        matches!(self, Pixels::GrayAlpha(_) | Pixels::Rgba(_))
    }

    /// Bytes per pixel, alpha included.
    fn channels(&self) -> usize {
        match self {
            Pixels::Gray(_) => 1,
            Pixels::GrayAlpha(_) => 2,
            Pixels::Rgb(_) => 3,
            Pixels::Rgba(_) => 4,
        }
    }

    fn raw(&self) -> &[u8] {
        match self {
            Pixels::Gray(i) => i.as_raw(),
            Pixels::GrayAlpha(i) => i.as_raw(),
            Pixels::Rgb(i) => i.as_raw(),
            Pixels::Rgba(i) => i.as_raw(),
        }
    }

    fn raw_mut(&mut self) -> &mut [u8] {
        match self {
            Pixels::Gray(i) => i,
            Pixels::GrayAlpha(i) => i,
            Pixels::Rgb(i) => i,
            Pixels::Rgba(i) => i,
        }
    }

    fn color_type(&self) -> ExtendedColorType {
        match self {
            Pixels::Gray(_) => ExtendedColorType::L8,
            Pixels::GrayAlpha(_) => ExtendedColorType::La8,
            Pixels::Rgb(_) => ExtendedColorType::Rgb8,
            Pixels::Rgba(_) => ExtendedColorType::Rgba8,
        }
    }

    /// BT.601 luma in [0,1] of each pixel of `raw` (whole pixels), unrounded; alpha ignored.
    fn luma_of(&self, raw: &[u8], out: &mut Vec<f32>) {
        out.clear();
        let c = self.channels();
        if self.is_gray() {
            out.extend(raw.chunks_exact(c).map(|p| p[0] as f32 / 255.0));
        } else {
            out.extend(raw.chunks_exact(c).map(|p| {
                (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0
            }));
        }
    }
}

/// Debug output names the colour type and size, not millions of bytes.
impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, h) = self.dimensions();
        write!(f, "{:?}({w}x{h})", self.color_type())
    }
}

/// A photo read from a PNG or JPEG file, with the metadata its output keeps.
#[derive(Clone)]
pub struct Photo {
    pub pixels: Pixels,
    /// The format it was read in, and the one it is saved in.
    pub format: PhotoFormat,
    /// The file it was read from.
    pub path: PathBuf,
    /// A 16-bit PNG is read scaled to 8 bits and saved as an 8-bit PNG: the watermark is
    /// written in 8-bit steps anyway, and one 8-bit pipeline keeps the code small. True when
    /// that happened, so a caller can say so.
    pub converted_from_16_bit: bool,
    icc_profile: Option<Vec<u8>>,
    exif: Option<Vec<u8>>,
}

impl std::fmt::Debug for Photo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Photo")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("pixels", &self.pixels)
            .field("converted_from_16_bit", &self.converted_from_16_bit)
            .finish_non_exhaustive()
    }
}

impl Photo {
    /// Reads a PNG or JPEG photo (8-bit or 16-bit PNG, gray, gray+alpha, RGB or RGBA; a palette
    /// PNG is read as RGB or RGBA). Its format comes from its content, not its name. The header's
    /// dimensions are checked against [`MIN_SIDE`] and [`MAX_PIXELS`] before anything is decoded.
    pub fn open(path: &Path) -> Result<Photo> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot open {}", path.display()))?;
        Self::decode(path, &bytes)
    }

    /// [`Photo::open`] on a file's bytes already read (`path` names it in errors and is kept).
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Photo> {
        let (format, image_format) = match image::guess_format(bytes) {
            Ok(ImageFormat::Png) => (PhotoFormat::Png, ImageFormat::Png),
            Ok(ImageFormat::Jpeg) => (PhotoFormat::Jpeg, ImageFormat::Jpeg),
            Ok(other) => bail!(
                "{}: a {other:?} file; only PNG and JPEG photos are supported",
                path.display()
            ),
            Err(_) => bail!("{}: not a PNG or JPEG file", path.display()),
        };
        if format == PhotoFormat::Jpeg && !crate::jpeg::is_complete(bytes) {
            bail!(
                "{}: truncated JPEG (no end-of-image marker after its last scan)",
                path.display()
            );
        }
        let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
        reader.limits(decoder_limits());
        let mut decoder = reader
            .into_decoder()
            .with_context(|| format!("{}: not a readable {format:?} file", path.display()))?;
        let (width, height) = decoder.dimensions();
        check_size(path, width, height)?;
        let icc_profile = decoder
            .icc_profile()
            .with_context(|| format!("{}: unreadable ICC profile", path.display()))?;
        let exif = decoder
            .exif_metadata()
            .with_context(|| format!("{}: unreadable EXIF metadata", path.display()))?;
        let image = DynamicImage::from_decoder(decoder)
            .with_context(|| format!("{}: cannot decode this {format:?} file", path.display()))?;
        let converted_from_16_bit = matches!(
            image,
            DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA16(_)
                | DynamicImage::ImageRgb16(_)
                | DynamicImage::ImageRgba16(_)
        );
        let pixels = match image {
            DynamicImage::ImageLuma8(i) => Pixels::Gray(i),
            DynamicImage::ImageLumaA8(i) => Pixels::GrayAlpha(i),
            DynamicImage::ImageRgb8(i) => Pixels::Rgb(i),
            DynamicImage::ImageRgba8(i) => Pixels::Rgba(i),
            i @ DynamicImage::ImageLuma16(_) => Pixels::Gray(i.into_luma8()),
            i @ DynamicImage::ImageLumaA16(_) => Pixels::GrayAlpha(i.into_luma_alpha8()),
            i @ DynamicImage::ImageRgb16(_) => Pixels::Rgb(i.into_rgb8()),
            i @ DynamicImage::ImageRgba16(_) => Pixels::Rgba(i.into_rgba8()),
            other => bail!(
                "{}: unsupported colour type {:?}",
                path.display(),
                other.color()
            ),
        };
        Ok(Photo {
            pixels,
            format,
            path: path.to_path_buf(),
            converted_from_16_bit,
            icc_profile,
            exif,
        })
    }

    pub fn width(&self) -> u32 {
        self.pixels.dimensions().0
    }

    pub fn height(&self) -> u32 {
        self.pixels.dimensions().1
    }

    pub fn is_gray(&self) -> bool {
        self.pixels.is_gray()
    }

    /// The photo's BT.601 luma (0.299 R + 0.587 G + 0.114 B, unrounded, in [0,1]) squashed to
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
        // Width first: each photo row's luma, resized to `s` values.
        let mut narrow = vec![0f32; h * s];
        let mut luma = Vec::with_capacity(w);
        let row_bytes = w * self.pixels.channels();
        for (row, out) in self
            .pixels
            .raw()
            .chunks_exact(row_bytes)
            .zip(narrow.chunks_exact_mut(s))
        {
            self.pixels.luma_of(row, &mut luma);
            for (o, (start, weights)) in out.iter_mut().zip(columns.iter()) {
                *o = dot(weights, &luma[start..]);
            }
        }
        // Then height: each output row a weighted sum of the narrow rows.
        let mut squashed = vec![0f32; s * s];
        for (out, (start, weights)) in squashed.chunks_exact_mut(s).zip(rows.iter()) {
            for (k, &weight) in weights.iter().enumerate() {
                let src = &narrow[(start + k) * s..(start + k + 1) * s];
                for (o, &v) in out.iter_mut().zip(src) {
                    *o += weight * v;
                }
            }
        }
        Ok(Tensor::from_slice(&squashed).view([1, 1, size, size]))
    }

    /// This photo with `residual` added: `residual` is `(1,1,S,S)` in luma units ([0,1] is the
    /// full 8-bit range), resized bilinearly (align_corners false) to the photo's full size,
    /// multiplied by `strength` and added to each colour channel alike (see the module comment:
    /// this adds exactly that much luma), then clamped to [0,255] and rounded to 8 bits. Alpha,
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
    /// difference in levels (`crate::jnd`, from this photo's own luma at full resolution), added
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

    /// The photo's just-noticeable difference (`crate::jnd`) at every pixel, in eighths of a
    /// level: a byte a pixel (100 MB at 100 megapixels, where floats would take 400), and
    /// computing it is most of the cost of shaping a change, which the read-back check may
    /// apply at several strengths.
    pub fn jnd_levels(&self) -> JndLevels {
        let (w, h) = (self.width() as usize, self.height() as usize);
        let source = self.pixels.raw();
        let row_bytes = w * self.pixels.channels();
        let mut luma = Vec::with_capacity(w);
        let mut rows = JndRows::new(w, h, |y, out: &mut Vec<f32>| {
            self.pixels
                .luma_of(&source[y * row_bytes..(y + 1) * row_bytes], &mut luma);
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
        let raw = out.pixels.raw_mut();
        let squared_error = match jnd {
            Some(levels) => {
                let mut gain = levels.rows();
                add_change(channels, raw, &values, s, w, &rows, &columns, &mut gain)
            }
            None => add_change(channels, raw, &values, s, w, &rows, &columns, &mut NoGain),
        };
        let mse = squared_error as f64 / (w * h * colours) as f64;
        Ok((out, mse))
    }

    /// Writes the photo to `path` in the format it was read in: PNG losslessly, JPEG at
    /// `jpeg_quality` (1..=100, see [`DEFAULT_JPEG_QUALITY`]; checked for PNG too, so a bad
    /// setting shows up whatever the input). Gray stays gray; the ICC profile and EXIF block are
    /// copied. The name's extension is the caller's choice and is not checked. The file is
    /// written atomically.
    pub fn save(&self, path: &Path, jpeg_quality: u8) -> Result<()> {
        let bytes = self.encode_file(jpeg_quality, path)?;
        crate::fsutil::write_atomically(path, |writer| std::io::Write::write_all(writer, &bytes))
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
        let raw = self.pixels.raw();
        // A JPEG at quality 95 takes about 1 byte a pixel, a PNG up to 3.
        let mut bytes = Vec::with_capacity(raw.len() / 2);
        match self.format {
            PhotoFormat::Png => self
                .encode(PngEncoder::new(&mut bytes), raw, width, height, color)
                .with_context(|| format!("cannot encode {}", path.display()))?,
            PhotoFormat::Jpeg => self
                .encode_jpeg(&mut bytes, jpeg_quality)
                .with_context(|| format!("cannot encode {}", path.display()))?,
        }
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
        let color = match &self.pixels {
            Pixels::Gray(_) => jpeg_encoder::ColorType::Luma,
            Pixels::Rgb(_) => jpeg_encoder::ColorType::Rgb,
            Pixels::GrayAlpha(_) | Pixels::Rgba(_) => bail!("JPEG has no alpha channel"),
        };
        encoder.encode(self.pixels.raw(), w, h, color)?;
        Ok(())
    }

    fn encode(
        &self,
        mut encoder: impl ImageEncoder,
        raw: &[u8],
        width: u32,
        height: u32,
        color: ExtendedColorType,
    ) -> image::ImageResult<()> {
        // Both encoders accept both; an encoder that did not would only lose the metadata.
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
fn add_change(
    channels: usize,
    raw: &mut [u8],
    values: &[f32],
    s: usize,
    w: usize,
    rows: &Taps,
    columns: &Taps,
    gain: &mut impl RowGain,
) -> u64 {
    match channels {
        1 => add_resized::<1, 1>(raw, values, s, w, rows, columns, gain),
        2 => add_resized::<2, 1>(raw, values, s, w, rows, columns, gain),
        3 => add_resized::<3, 3>(raw, values, s, w, rows, columns, gain),
        _ => add_resized::<4, 3>(raw, values, s, w, rows, columns, gain),
    }
}

fn check_size(path: &Path, width: u32, height: u32) -> Result<()> {
    if width.min(height) < MIN_SIDE {
        bail!(
            "{}: photo is {width}x{height} pixels (width x height); its shorter side must be at \
             least {MIN_SIDE} pixels",
            path.display()
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
            converted_from_16_bit: false,
            icc_profile: None,
            exif: None,
        }
    }

    #[test]
    fn jnd_levels_keep_the_jnd_to_a_sixteenth_of_a_level() {
        let photo = rippled_photo(150, 200);
        let levels = photo.jnd_levels();
        let (w, h) = (150, 200);
        let source = photo.pixels.raw().to_vec();
        let mut luma = Vec::new();
        let mut rows = JndRows::new(w, h, |y, out: &mut Vec<f32>| {
            photo
                .pixels
                .luma_of(&source[y * w * 3..(y + 1) * w * 3], &mut luma);
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
        assert!(mse > 0.0 && marked.pixels.raw() != photo.pixels.raw());
    }
}
