//! Watermarking photographs with a tile-layout model: a payload, BCH-coded, embedded in the luma
//! of a photo of any size, and read back from the photo, its crops and its resized copies.
//!
//! The model works at a square working size S. Embedding: the photo's luma squashed to S x S,
//! the model's change at S x S, resized to the photo's size and added to every channel
//! (`crate::photo`). Reading: the photo squashed to S x S again, the extractor's map binarized
//! (0.5 or Otsu), folded onto one tile and voted at every cyclic shift of the tile; the payload
//! code decodes each shift's word and the one it accepts with the fewest corrections wins. A
//! centre crop keeping a fraction f of each side shows the tiles f times larger once squashed to
//! S, so the photo is also read squashed to f x S for each f of `SCALES`. A crop's edge rarely
//! falls on a whole working pixel, so each scale is also read offset by half a pixel in x, in y
//! and in both (`OFFSETS`). No word accepted at any shift, scale or offset: "no watermark", with
//! the false-positive rate of all those tries together. A mirrored photo is read too: the reader
//! also tries the photo flipped back.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Tensor};

use crate::binarize::{self, Method};
use crate::checkpoint::{self, Loaded};
use crate::config::Config;
use crate::layout::{Layout, TileReading};
use crate::payload::{Payload, PayloadCode, PayloadReading};
use crate::photo::Photo;
use crate::precision::Precision;

/// The sides (as fractions of the working size) a photo is read at: uncropped, and centre crops
/// that keep 85%, 71% (half the area) and 50% (a quarter) of each side.
pub const SCALES: [f64; 5] = [1.0, 0.85, 0.71, 0.6, 0.5];

/// Sub-pixel offsets (in half working pixels: y, x) each scale is read at.
pub const OFFSETS: [(i64, i64); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];

/// Angles (degrees) a photo that reads nowhere else is turned back by before reading.
pub const ANGLES: [f64; 10] = [-12.5, -10.0, -7.5, -5.0, -2.5, 2.5, 5.0, 7.5, 10.0, 12.5];

/// How many words the reader tries to decode per photo: every tile shift at every offset, at
/// every scale of the photo and of its mirror image, and at every angle. Each is a chance for a
/// clean photo to decode by luck.
pub fn readings(tile: i64) -> usize {
    (tile * tile) as usize * OFFSETS.len() * (SCALES.len() * 2 + ANGLES.len())
}

/// How far `extract` looks for the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Search {
    /// Every crop scale, offset and shift, upright and mirrored, then turned back by each of
    /// `ANGLES`: photos that were cropped, resized, flipped or turned.
    #[default]
    Full,
    /// The whole photo, upright, at every offset and shift: photos as they were embedded (or
    /// re-encoded or resized), about 20 times quicker on a photo without a watermark.
    Quick,
}

impl Search {
    /// Words decoded at most per photo (each a chance for a clean photo to decode by luck).
    pub fn readings(self, tile: i64) -> usize {
        match self {
            Search::Full => readings(tile),
            Search::Quick => (tile * tile) as usize * OFFSETS.len(),
        }
    }
}

/// Detection budget: a clean photo is read as a payload at most this often.
pub const MAX_FALSE_POSITIVE_RATE: f64 = 1e-6;

/// A photo model: the network, its tile layout and the payload code.
pub struct PhotoModel {
    loaded: Loaded,
    layout: Layout,
    code: PayloadCode,
    size: i64,
}

/// What reading a photo gave.
#[derive(Debug, Clone)]
pub struct PhotoReading {
    pub reading: PayloadReading,
    /// The scale (fraction of the working size) and tile shift the payload was read at.
    pub scale: Option<f64>,
    pub shift: Option<(i64, i64)>,
    /// Whether it was read from the photo's mirror image (the photo was flipped).
    pub mirrored: bool,
    /// The angle (degrees) the photo was turned back by to read it.
    pub angle: Option<f64>,
    /// Agreement of the pixels with the word at that shift (diagnostic).
    pub agreement: Option<f64>,
}

impl PhotoModel {
    /// Loads a checkpoint trained with a tile layout and a payload size (`watermark.payload_bits`
    /// of the config kept in its metadata).
    pub fn load(path: &Path, device: Device, precision: Precision) -> Result<Self> {
        let mut loaded = checkpoint::load_for_inference(path, device)?;
        loaded.set_precision(precision)?;
        let layout = loaded.meta.layout;
        let Layout::Tile { bits, tile, .. } = layout else {
            bail!(
                "{}: a {} model, not a photo model (tile layout); photos need one such as \
                 checkpoints/photo.ot",
                path.display(),
                layout.describe()
            );
        };
        let config = Config::parse(&loaded.meta.config)
            .with_context(|| format!("{}: the config in its metadata", path.display()))?;
        let data_bits = config.watermark.payload_bits;
        if data_bits == 0 {
            bail!(
                "{}: its config sets no watermark.payload_bits",
                path.display()
            );
        }
        let code = PayloadCode::new(
            data_bits,
            bits as usize,
            readings(tile),
            MAX_FALSE_POSITIVE_RATE,
        )
        .with_context(|| format!("{}: its payload code", path.display()))?;
        Ok(Self {
            size: layout.height(),
            loaded,
            layout,
            code,
        })
    }

    pub fn code(&self) -> &PayloadCode {
        &self.code
    }

    pub fn size(&self) -> i64 {
        self.size
    }

    /// The layout's bits for a payload: the codeword, then zeros on the slots it leaves over.
    fn slot_bits(&self, payload: &Payload) -> Result<Tensor> {
        let mut bits: Vec<f32> = self
            .code
            .encode(payload)?
            .into_iter()
            .map(|b| f32::from(u8::from(b)))
            .collect();
        bits.resize(self.layout.bit_count() as usize, 0.0);
        Ok(Tensor::from_slice(&bits).reshape([1, -1]))
    }

    /// The watermarked photo: the model's change at the working size, scaled by `strength`,
    /// resized to the photo and added to its luma.
    pub fn embed(&self, photo: &Photo, payload: &Payload, strength: f64) -> Result<Photo> {
        photo.with_residual(&self.change(photo, payload)?, strength)
    }

    /// The model's change for `photo` at the working size, `(1,1,S,S)` on the CPU: what
    /// [`PhotoModel::embed`] resizes and adds.
    pub fn change(&self, photo: &Photo, payload: &Payload) -> Result<Tensor> {
        self.change_for_map(photo, &self.watermark_map(payload)?)
    }

    /// The watermark map of a payload (the model's second input), on the model's device: made
    /// once for a run that marks every photo with one payload.
    pub fn watermark_map(&self, payload: &Payload) -> Result<Tensor> {
        let device = self.loaded.vs.device();
        Ok(self
            .layout
            .map_from_bits(&self.slot_bits(payload)?.to_device(device)))
    }

    /// [`PhotoModel::change`] with the payload's map made already ([`PhotoModel::watermark_map`]).
    pub fn change_for_map(&self, photo: &Photo, map: &Tensor) -> Result<Tensor> {
        let luma = photo.luma_at(self.size)?.to_device(self.loaded.vs.device());
        let change = tch::no_grad(|| self.loaded.model.embed_t(&luma, map, false) - &luma);
        Ok(change.to_device(Device::Cpu))
    }

    /// The reading of a photo as it was embedded (whole, upright, on the working grid): what
    /// `embed` checks each output with before writing it. None when no shift decodes there.
    pub fn read_as_embedded(&self, photo: &Photo, method: Method) -> Result<Option<PhotoReading>> {
        let fine = photo
            .luma_at(2 * self.size)?
            .to_device(self.loaded.vs.device());
        let at = Place {
            scale: 1.0,
            mirrored: false,
            angle: 0.0,
        };
        let mut best = None;
        self.decode_all(&half_pixel_offset(&fine, (0, 0)), method, at, &mut best)?;
        Ok(best)
    }

    /// Reads the payload of a photo, or "no watermark", searching everywhere (`Search::Full`).
    pub fn read(&self, photo: &Photo, method: Method) -> Result<PhotoReading> {
        self.read_with(photo, method, Search::Full)
    }

    /// Reads the payload of a photo, or "no watermark", as far as `search` looks; the reading's
    /// false-positive rate is that of the words this search decodes.
    pub fn read_with(&self, photo: &Photo, method: Method, search: Search) -> Result<PhotoReading> {
        let mut reading = self.search(photo, method, search)?;
        let Layout::Tile { tile, .. } = self.layout else {
            unreachable!("a photo model has a tile layout")
        };
        reading.reading.false_positive_rate =
            self.code.false_positive_rate_over(search.readings(tile));
        Ok(reading)
    }

    fn search(&self, photo: &Photo, method: Method, search: Search) -> Result<PhotoReading> {
        let device = self.loaded.vs.device();
        let mut best: Option<PhotoReading> = None;
        let scales: &[f64] = match search {
            Search::Full => &SCALES,
            Search::Quick => &[1.0],
        };
        for &scale in scales {
            let side = ((self.size as f64) * scale).round() as i64;
            // Read at twice the side, then averaged 2x2 from each half-pixel offset: the photo
            // at `side`, moved by half a working pixel (the last row or column is dropped).
            let upright = photo.luma_at(2 * side)?.to_device(device);
            let mirrored = match search {
                Search::Full => Some(upright.flip([3])),
                Search::Quick => None,
            };
            let images =
                std::iter::once((&upright, false)).chain(mirrored.as_ref().map(|m| (m, true)));
            for (fine, is_mirror) in images {
                for offset in OFFSETS {
                    let luma = half_pixel_offset(fine, offset);
                    let at = Place {
                        scale,
                        mirrored: is_mirror,
                        angle: 0.0,
                    };
                    if self.decode_all(&luma, method, at, &mut best)? {
                        return Ok(best.expect("a sure reading"));
                    }
                }
            }
        }
        // Nothing read: the photo may have been rotated. Turned back by each of `ANGLES` (whole
        // photo only), as a last resort, since each angle costs as much as a scale.
        if best.is_none() && search == Search::Full {
            let fine = photo.luma_at(2 * self.size)?.to_device(device);
            let aspect = f64::from(photo.width()) / f64::from(photo.height());
            for angle in ANGLES {
                let turned = rotate(&fine, angle, aspect);
                for offset in OFFSETS {
                    let luma = half_pixel_offset(&turned, offset);
                    let at = Place {
                        scale: 1.0,
                        mirrored: false,
                        angle,
                    };
                    if self.decode_all(&luma, method, at, &mut best)? {
                        return Ok(best.expect("a sure reading"));
                    }
                }
            }
        }
        Ok(best.unwrap_or(PhotoReading {
            reading: PayloadReading {
                payload: None,
                corrected: 0,
                false_positive_rate: self.code.false_positive_rate(),
            },
            scale: None,
            shift: None,
            mirrored: false,
            angle: None,
            agreement: None,
        }))
    }

    /// Decodes the words of every tile shift of one reading of the photo (`luma` at the working
    /// scale of `at`), keeping in `best` the payload with the fewest corrections. True when that
    /// payload lies within half the code's reach: as sure as a reading gets, so the caller stops
    /// there (a clean photo is still tried everywhere, so the false-positive rate holds).
    fn decode_all(
        &self,
        luma: &Tensor,
        method: Method,
        at: Place,
        best: &mut Option<PhotoReading>,
    ) -> Result<bool> {
        let n = self.code.coded_bits();
        let map = tch::no_grad(|| self.loaded.model.extractor.forward_t(luma, false));
        let binary = binarize_map(&map, method)?;
        let size = binary.size();
        let (h, w) = (size[2] as usize, size[3] as usize);
        let pixels = Vec::<f32>::try_from(binary.reshape([-1]).to_device(Device::Cpu))?;
        let readings = self
            .layout
            .tile_readings_host(&pixels, h, w)
            .expect("a photo model has a tile layout");
        let tile = (readings.len() as f64).sqrt() as i64;
        // Every shift of a tiled map agrees equally with the pixels (the vote cannot find the
        // shift), so each is decoded in turn and the code tells which one holds a codeword.
        for (shift, TileReading { word, agreement }) in readings.into_iter().enumerate() {
            let reading = self.code.decode(&word[..n])?;
            if reading.payload.is_none() {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|b| reading.corrected < b.reading.corrected)
            {
                *best = Some(PhotoReading {
                    reading,
                    scale: Some(at.scale),
                    shift: Some((shift as i64 / tile, shift as i64 % tile)),
                    mirrored: at.mirrored,
                    angle: Some(at.angle),
                    agreement: Some(agreement),
                });
                if best
                    .as_ref()
                    .is_some_and(|b| 2 * b.reading.corrected <= self.code.t())
                {
                    return Ok(true);
                }
            }
        }
        Ok(best
            .as_ref()
            .is_some_and(|b| 2 * b.reading.corrected <= self.code.t()))
    }
}

/// Where a reading looks: the crop scale, the mirror image or not, the angle turned back.
#[derive(Debug, Clone, Copy)]
struct Place {
    scale: f64,
    mirrored: bool,
    angle: f64,
}

/// `fine` (a photo's luma at twice the side read) averaged 2x2 from the half-pixel `offset`.
fn half_pixel_offset(fine: &Tensor, (oy, ox): (i64, i64)) -> Tensor {
    let size = fine.size();
    fine.narrow(2, oy, size[2] - oy)
        .narrow(3, ox, size[3] - ox)
        .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
}

/// A squashed photo's luma `(1,1,S,S)` turned by `degrees` about its centre as the photo itself
/// would be (`aspect` = its width / height: a turn of the photo is a sheared turn of the squashed
/// square), bilinear, zeros outside.
fn rotate(luma: &Tensor, degrees: f64, aspect: f64) -> Tensor {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let theta = Tensor::from_slice(&[
        cos as f32,
        (-sin / aspect) as f32,
        0.0,
        (sin * aspect) as f32,
        cos as f32,
        0.0,
    ])
    .reshape([1, 2, 3])
    .to_device(luma.device());
    let grid = Tensor::affine_grid_generator(&theta, luma.size(), false);
    luma.grid_sampler(&grid, 0, 0, false)
}

/// A `(1,1,H,W)` map binarized by `method` (exact 0/1, same shape).
fn binarize_map(map: &Tensor, method: Method) -> Result<Tensor> {
    match method {
        Method::Threshold(t) => Ok(binarize::at_threshold(map, t)),
        Method::Otsu => {
            let size = map.size();
            let b = binarize::binarize_maps(map, method)?;
            let pixels: Vec<f32> = b[0].pixels.iter().map(|&p| f32::from(p)).collect();
            Ok(Tensor::from_slice(&pixels)
                .reshape(size.as_slice())
                .to_device(map.device()))
        }
    }
}

/// PSNR in dB of a mean squared error in 8-bit units (infinity for 0).
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

/// PSNR in dB of an 8-bit photo against another of the same size and colour type (all
/// channels, alpha included), or infinity when they are equal.
pub fn psnr(a: &Photo, b: &Photo) -> Result<f64> {
    let (x, y) = (a.pixels.as_bytes(), b.pixels.as_bytes());
    if x.len() != y.len() || a.width() != b.width() || a.height() != b.height() {
        bail!(
            "{} and {}: different sizes or colour types",
            a.path.display(),
            b.path.display()
        );
    }
    let se: f64 = x
        .iter()
        .zip(y)
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum();
    Ok(psnr_from_mse(se / x.len() as f64))
}
