//! The training photos of the photo watermark model: a folder of real photos (PNG, JPEG, WebP, TIFF) held in
//! memory as 8-bit BT.601 luma (0.299 R + 0.587 G + 0.114 B, the luma `crate::codec::photo` writes the
//! watermark into), from which batches of square `S x S` luma patches are cut.
//!
//! Each photo is downscaled at load so that its longer side is at most `max_side`: the model
//! should see photos at "photo scale" (a whole scene in a few hundred pixels, as inference sees a
//! squashed photo), and a 6000 px wallpaper must not cost 20 MB of luma. EXIF orientation is not
//! applied (pixels stay on their stored grid, as in `crate::codec::photo`) and alpha is ignored.
//!
//! All resampling is the `image` crate's `FilterType::Triangle` (a tent filter widened by the
//! downscale ratio, i.e. antialiased bilinear), reimplemented here on one 8-bit channel with the
//! same arithmetic (a test checks the results are equal): `image::imageops::resize` goes through
//! 4-channel floats pixel by pixel and was measured 3-4 times slower, which matters when
//! thousands of patches are cut per epoch.

use super::walk::files_under;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use image::{DynamicImage, GrayImage, ImageFormat, ImageReader};
use tch::Tensor;

use crate::runtime::splitmix::splitmix64;

/// Smallest crop side of [`PhotoSet::patches`], as a fraction of the photo's shorter side. Crops
/// from a quarter to all of the photo teach the model both photo-scale content (a whole scene
/// squashed, as inference sees it) and close-ups (smooth skies, texture, edges at full detail).
pub const MIN_CROP_FRACTION: f64 = 0.25;

/// One photo's luma, downscaled at load.
struct LumaPhoto {
    path: PathBuf,
    luma: GrayImage,
}

/// A rectangle of one photo to be resampled to one output square.
struct Crop {
    photo: usize,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    flip: bool,
}

/// The photos of a folder as luma, in path order.
pub struct PhotoSet {
    photos: Vec<LumaPhoto>,
    max_side: u32,
    /// Worker threads for loading and cutting patches; results never depend on it.
    threads: usize,
}

impl PhotoSet {
    /// Loads every `.png`, `.jpg` and `.jpeg` file under `dir` (recursively, sorted by path;
    /// hidden files and folders skipped; symbolic links to folders not followed, so a link loop
    /// cannot hang it), decoding on `threads` workers (0 counts as 1). Each photo is reduced to
    /// luma and downscaled so its longer side is at most `max_side`. A file that does not decode
    /// is an error naming it: the data set is curated, so a bad file is a bug to fix, not skip.
    pub fn load(dir: &Path, max_side: u32, threads: usize) -> Result<PhotoSet> {
        if max_side == 0 {
            bail!("max_side 0: photos need a longer side of at least 1 pixel");
        }
        let files = files_under(dir)?;
        if files.is_empty() {
            bail!(
                "{}: no PNG, JPEG, WebP or TIFF photos in this folder or below",
                dir.display()
            );
        }
        let threads = threads.max(1);
        let next = AtomicUsize::new(0);
        let mut slots: Vec<Option<Result<GrayImage>>> = files.iter().map(|_| None).collect();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.min(files.len()))
                .map(|_| {
                    s.spawn(|| {
                        // Work is handed out one file at a time: sizes vary 100-fold.
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(path) = files.get(i) else { break };
                            // A decoder panic on a malformed file becomes an error naming it.
                            let result = std::panic::catch_unwind(|| load_luma(path, max_side))
                                .unwrap_or_else(|_| {
                                    Err(anyhow!("{}: the decoder panicked", path.display()))
                                });
                            done.push((i, result));
                        }
                        done
                    })
                })
                .collect();
            for worker in workers {
                for (i, result) in worker.join().unwrap_or_default() {
                    slots[i] = Some(result);
                }
            }
        });
        let mut photos = Vec::with_capacity(files.len());
        for (path, slot) in files.into_iter().zip(slots) {
            let luma = slot.unwrap_or_else(|| {
                Err(anyhow!(
                    "{}: not loaded (a worker thread failed)",
                    path.display()
                ))
            })?;
            photos.push(LumaPhoto { path, luma });
        }
        Ok(PhotoSet {
            photos,
            max_side,
            threads,
        })
    }

    /// Splits off every `every`-th photo (the `every-1`-th, `2*every-1`-th, ... in path order):
    /// `(kept, held out)`. Whole photos are held out, so validation never sees a training photo.
    pub fn split_every(self, every: usize) -> (PhotoSet, PhotoSet) {
        let every = every.max(1);
        let (mut kept, mut held) = (Vec::new(), Vec::new());
        for (i, photo) in self.photos.into_iter().enumerate() {
            if i % every == every - 1 {
                held.push(photo);
            } else {
                kept.push(photo);
            }
        }
        let set = |photos| PhotoSet {
            photos,
            max_side: self.max_side,
            threads: self.threads,
        };
        (set(kept), set(held))
    }

    /// Number of photos.
    pub fn len(&self) -> usize {
        self.photos.len()
    }

    /// Always false: [`PhotoSet::load`] refuses an empty folder.
    pub fn is_empty(&self) -> bool {
        self.photos.is_empty()
    }

    /// The photos' files, in the order of [`PhotoSet::whole`].
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.photos.iter().map(|p| p.path.as_path())
    }

    /// Pixels held (one byte each), after the downscale at load.
    pub fn total_pixels(&self) -> u64 {
        self.photos
            .iter()
            .map(|p| p.luma.width() as u64 * p.luma.height() as u64)
            .sum()
    }

    /// E.g. "76 photos, 37.4 megapixels at load (longer side <= 1024)".
    pub fn describe(&self) -> String {
        format!(
            "{} photos, {:.1} megapixels at load (longer side <= {})",
            self.len(),
            self.total_pixels() as f64 / 1e6,
            self.max_side
        )
    }

    /// `n` training patches as a `(n,1,size,size)` float tensor in [0, 1] on the CPU. Patch `i`
    /// comes from photo `order[i % len]`, `order` a permutation drawn from `seed`, so every photo
    /// gives the same number of patches (within one). It is a square crop with a side uniform in
    /// [[`MIN_CROP_FRACTION`], 1] x the photo's shorter side at a uniform position, resampled to
    /// `size x size` (Triangle, unrounded) and mirrored left-right with probability 1/2. The
    /// result depends only on the photos, `n`, `size` and `seed`, not on the thread count.
    pub fn patches(&self, n: usize, size: i64, seed: u64) -> Result<Tensor> {
        let side = check_size(size)?;
        let len = self.photos.len();
        let mut order: Vec<usize> = (0..len).collect();
        for j in (1..len).rev() {
            order.swap(j, below(random(seed, 0, j as u64), j as u64 + 1) as usize);
        }
        let crops: Vec<Crop> = (0..n)
            .map(|i| {
                let photo = order[i % len];
                let (w, h) = self.photos[photo].luma.dimensions();
                let short = w.min(h);
                let stream = 1 + i as u64;
                let u = unit(random(seed, stream, 0));
                let fraction = MIN_CROP_FRACTION + (1.0 - MIN_CROP_FRACTION) * u;
                let crop = ((short as f64 * fraction).round() as u32).clamp(1, short);
                Crop {
                    photo,
                    x: below(random(seed, stream, 1), (w - crop + 1) as u64) as u32,
                    y: below(random(seed, stream, 2), (h - crop + 1) as u64) as u32,
                    width: crop,
                    height: crop,
                    flip: random(seed, stream, 3) >> 63 == 1,
                }
            })
            .collect();
        self.render(&crops, side)
    }

    /// Every photo squashed whole to `size x size` (aspect ratio not kept), the way inference
    /// sees a photo, as a `(len,1,size,size)` float tensor in [0, 1] on the CPU, in path order.
    pub fn whole(&self, size: i64) -> Result<Tensor> {
        let side = check_size(size)?;
        let crops: Vec<Crop> = (0..self.photos.len())
            .map(|photo| {
                let (width, height) = self.photos[photo].luma.dimensions();
                Crop {
                    photo,
                    x: 0,
                    y: 0,
                    width,
                    height,
                    flip: false,
                }
            })
            .collect();
        self.render(&crops, side)
    }

    /// Resamples each crop to `side x side`, in parallel over contiguous runs of crops.
    fn render(&self, crops: &[Crop], side: u32) -> Result<Tensor> {
        let per = side as usize * side as usize;
        let total = crops
            .len()
            .checked_mul(per)
            .with_context(|| format!("{} patches of {side}x{side}: too many", crops.len()))?;
        let mut data: Vec<f32> = Vec::new();
        data.try_reserve_exact(total).with_context(|| {
            format!(
                "{} patches of {side}x{side}: cannot allocate {} MB",
                crops.len(),
                total / (1 << 18)
            )
        })?;
        data.resize(total, 0.0);
        let chunk = crops.len().div_ceil(self.threads).max(1);
        std::thread::scope(|s| {
            for (crops, out) in crops.chunks(chunk).zip(data.chunks_mut(chunk * per)) {
                s.spawn(move || {
                    let mut scratch = Vec::new();
                    for (crop, out) in crops.iter().zip(out.chunks_mut(per)) {
                        let luma = &self.photos[crop.photo].luma;
                        resample(luma, crop, side, side, true, &mut scratch, out);
                    }
                });
            }
        });
        let shape = [crops.len() as i64, 1, side as i64, side as i64];
        Ok(Tensor::f_from_slice(&data)?.f_view(shape)?)
    }
}

fn check_size(size: i64) -> Result<u32> {
    match u32::try_from(size) {
        Ok(side) if side >= 1 => Ok(side),
        _ => bail!("patch size {size}: must be between 1 and {}", u32::MAX),
    }
}

/// Decodes one photo (format from its content), checking the header's size first, and returns
/// its luma with the longer side at most `max_side`.
fn load_luma(path: &Path, max_side: u32) -> Result<GrayImage> {
    let bytes =
        crate::runtime::fsutil::read_input_file(path, crate::runtime::fsutil::MAX_INPUT_BYTES)?;
    let mut reader = ImageReader::new(Cursor::new(&bytes[..]))
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if reader.format() == Some(ImageFormat::Jpeg) && !crate::codec::jpeg::is_complete(&bytes) {
        bail!(
            "{}: truncated JPEG (no end-of-image marker after its last scan)",
            path.display()
        );
    }
    reader.limits(crate::codec::photo::decoder_limits());
    let decoder = reader.into_decoder().with_context(|| {
        format!(
            "{}: not a readable PNG, JPEG, WebP or TIFF image",
            path.display()
        )
    })?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    if width == 0 || height == 0 {
        bail!("{}: image is {width}x{height} pixels", path.display());
    }
    crate::codec::photo::check_pixel_count(path, width, height)?;
    let image = DynamicImage::from_decoder(decoder)
        .with_context(|| format!("{}: cannot decode this image", path.display()))?;
    drop(bytes);
    let luma = if image.color().has_color() {
        let rgb = image.into_rgb8();
        let bytes = rgb
            .as_raw()
            .chunks_exact(3)
            .map(|p| {
                ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as u8
            })
            .collect();
        GrayImage::from_raw(width, height, bytes).context("luma has one byte per pixel")?
    } else {
        image.into_luma8()
    };
    let longer = width.max(height);
    if longer <= max_side {
        return Ok(luma);
    }
    let scale = max_side as f64 / longer as f64;
    let fit = |side: u32| ((side as f64 * scale).round() as u32).clamp(1, max_side);
    let (w, h) = (fit(width), fit(height));
    let mut out = vec![0.0; w as usize * h as usize];
    let whole = Crop {
        photo: 0,
        x: 0,
        y: 0,
        width,
        height,
        flip: false,
    };
    resample(&luma, &whole, w, h, false, &mut Vec::new(), &mut out);
    let bytes = out.iter().map(|v| v.round() as u8).collect();
    GrayImage::from_raw(w, h, bytes).context("resampled luma has one byte per pixel")
}

/// The `k`-th number of stream `stream` of `seed`. Counter-based, so a patch's numbers do not
/// depend on which thread cuts it or on how many patches came before.
fn random(seed: u64, stream: u64, k: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ stream).wrapping_add(k))
}

/// Uniform in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-40 for these n).
fn below(x: u64, n: u64) -> u64 {
    ((x as u128 * n as u128) >> 64) as u64
}

/// For each of `n_out` output samples over `n_in` input samples: the first input sample and the
/// normalised weights of the Triangle filter, computed as `image::imageops::resize` does (f32,
/// support widened by the downscale ratio) so that results match it.
fn triangle_taps(n_in: u32, n_out: u32) -> Vec<(usize, Vec<f32>)> {
    let ratio = n_in as f32 / n_out as f32;
    let scale = ratio.max(1.0);
    (0..n_out)
        .map(|o| {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - scale).floor() as i64).clamp(0, n_in as i64 - 1);
            let right = ((centre + scale).ceil() as i64).clamp(left + 1, n_in as i64);
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| {
                    let x = ((i as f32 - centre) / scale).abs();
                    if x < 1.0 {
                        1.0 - x
                    } else {
                        0.0
                    }
                })
                .collect();
            let sum: f32 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= sum);
            (left as usize, weights)
        })
        .collect()
}

/// Resamples `crop` of `luma` to `out_w x out_h` values in [0, 255], or [0, 1] if `unit_range`
/// (row-major into `out`, mirrored left-right if `crop.flip`; unrounded): vertical pass, then
/// horizontal, as `image` does.
fn resample(
    luma: &GrayImage,
    crop: &Crop,
    out_w: u32,
    out_h: u32,
    unit_range: bool,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    let stride = luma.width() as usize;
    let raw = luma.as_raw();
    let (x0, y0, cw) = (crop.x as usize, crop.y as usize, crop.width as usize);
    scratch.clear();
    scratch.resize(out_h as usize * cw, 0.0);
    for ((start, weights), row) in triangle_taps(crop.height, out_h)
        .iter()
        .zip(scratch.chunks_exact_mut(cw))
    {
        for (k, &w) in weights.iter().enumerate() {
            let offset = (y0 + start + k) * stride + x0;
            for (acc, &v) in row.iter_mut().zip(&raw[offset..offset + cw]) {
                *acc += v as f32 * w;
            }
        }
    }
    let taps = triangle_taps(crop.width, out_w);
    for (row, out_row) in scratch
        .chunks_exact(cw)
        .zip(out.chunks_exact_mut(out_w as usize))
    {
        for (ox, (start, weights)) in taps.iter().enumerate() {
            let mut acc = 0.0f32;
            for (&v, &w) in row[*start..].iter().zip(weights) {
                acc += v * w;
            }
            let x = if crop.flip {
                out_w as usize - 1 - ox
            } else {
                ox
            };
            let v = acc.clamp(0.0, 255.0);
            out_row[x] = if unit_range { v / 255.0 } else { v };
        }
    }
}
