//! Adding the network's change to a photo at its full size: the change at the working size,
//! resized (bilinear, fused with the addition, a row at a time) and added to every colour channel
//! alike, plain or shaped by the photo's just-noticeable difference (`crate::model::jnd`).

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::{Photo, Pixels};
use crate::codec::resample::{add_resized, NoGain, RowGain, Sample, Taps};
use crate::model::jnd::JndRows;

impl Photo {
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
    /// apply at several strengths. Flat areas are weighted by `flat_weight` against texture.
    pub fn jnd_levels(&self, flat_weight: f64) -> JndLevels {
        let (w, h) = (self.width() as usize, self.height() as usize);
        let mut luma = Vec::with_capacity(w);
        let mut rows = JndRows::new(w, h, flat_weight, |y, out: &mut Vec<f32>| {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use image::RgbImage;

    use super::*;
    use crate::codec::photo::PhotoFormat;

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
        let levels = photo.jnd_levels(1.0);
        let (w, h) = (150, 200);
        let mut luma = Vec::new();
        let mut rows = JndRows::new(w, h, 1.0, |y, out: &mut Vec<f32>| {
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
            .with_shaped_pattern_and_mse(&pattern, 0.1, &other.jnd_levels(1.0))
            .unwrap_err();
        assert!(error.to_string().contains("another photo"), "{error}");
        let (marked, mse) = photo
            .with_shaped_pattern_and_mse(&pattern, 0.1, &photo.jnd_levels(1.0))
            .unwrap();
        assert!(mse > 0.0 && marked.pixels != photo.pixels);
    }
}
