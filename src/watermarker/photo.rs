//! Watermarking photographs with a tile-layout model: a payload, BCH-coded, embedded in the luma
//! of a photo of any size, and read back from the photo, its crops, turns and resized copies.
//!
//! The model works at a square working size S. Embedding: the photo's luma squashed to S x S,
//! the model's change at S x S, resized to the photo's size and added to every channel
//! (`crate::codec::photo`), shaped by the photo's just-noticeable difference for a `seed-jnd` model.
//! Reading: the photo squashed to S x S again, the extractor's map binarized (0.5 or Otsu),
//! folded onto one tile and voted at every cyclic shift of the tile; the payload code decodes
//! each shift's word and the one it accepts with the fewest corrections wins. Each reading is
//! also tried offset by half a working pixel in x, in y and in both (`OFFSETS`), since a crop's
//! edge rarely falls on a whole working pixel, and on the mirror image. A photo that was
//! cropped, turned or stretched unevenly shows its tile at another size and angle: the tile
//! lattice is found in the extracted map itself (`crate::watermarker::sync`, by autocorrelation) and the photo
//! resampled so the tile is back at its trained size and orientation before reading. No word
//! accepted anywhere: "no watermark", with the false-positive rate of all the words tried.

use std::cell::OnceCell;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Tensor};

use crate::codec::photo::{JndLevels, Photo};
use crate::io::checkpoint::{self, Loaded};
use crate::learning::config::Config;
use crate::message::binarize::{self, Method};
use crate::message::key::Key;
use crate::message::layout::{Layout, TileReading};
use crate::message::payload::{Payload, PayloadCode, PayloadReading};
use crate::model::precision::Precision;
use views::{at_side, half_pixel_offset, level_side, rotate, warp_to_tile, Place, View};

mod views;

pub use crate::message::search::{
    readings, MAX_FALSE_POSITIVE_RATE, OFFSETS, SYNC_ANGLES, SYNC_CANDIDATES, SYNC_ESTIMATES,
    SYNC_LEVELS, SYNC_PERIODS, WHOLE_SIDES,
};

/// How far `extract` looks for the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Search {
    /// The whole photo upright and mirrored, then the tile lattices found in it
    /// (`SYNC_LEVELS`, `SYNC_ANGLES`), each upright and mirrored, at every offset and shift:
    /// photos that were cropped, resized, flipped or turned.
    #[default]
    Full,
    /// The whole photo, upright, at every offset and shift: photos as they were embedded (or
    /// re-encoded or resized); an eighth of the words and no lattice search.
    Quick,
}

impl Search {
    /// Words decoded at most per photo (each a chance for a clean photo to decode by luck).
    pub fn readings(self, tile: i64) -> usize {
        match self {
            Search::Full => readings(tile),
            Search::Quick => (tile * tile) as usize * OFFSETS.len() * WHOLE_SIDES,
        }
    }
}

/// How the pixels of a binarized map vote for the bit their tile position carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Votes {
    /// One vote a pixel.
    #[default]
    Counted,
    /// Each pixel's vote weighs what the extractor's output says of it: the distance of its
    /// logit from the threshold's, which for a calibrated sigmoid is the pixel's
    /// log-likelihood ratio, with outputs held within [`SURE_OUTPUT`] of 0 and 1. Pixels the
    /// extractor is unsure of count for little. Measured (docs/photos.md, stop 22): 3.6% more
    /// exact reads after attacks for `checkpoints/photo-wide.ot`, 2% fewer for
    /// `checkpoints/photo.ot` (more after JPEG, fewer after crops).
    Weighted,
}

/// How near 0 or 1 an extractor output counts for a weighted vote: outputs (and an Otsu
/// threshold) are held within [0.02, 0.98], so one pixel weighs at most ln(49) = 3.9 against a
/// threshold of 0.5. A few over-sure pixels (an edge the extractor misreads) then cannot outvote
/// many; unheld, an output of 0.9999 would count as much as eleven pixels at 0.7.
pub const SURE_OUTPUT: f64 = 0.02;

/// A photo model: the network, its tile layout and the payload code.
pub struct PhotoModel {
    loaded: Loaded,
    layout: Layout,
    code: PayloadCode,
    size: i64,
    /// The side of the layout's map (the training patches'): the least working side.
    map_size: i64,
    /// The private key the codeword is padded with, if any (`crate::message::key`).
    key: Option<Key>,
    /// How the map's pixels vote.
    votes: Votes,
    /// The JND's flat weight, where it overrides the model's (`model.jnd_flat_weight`).
    flat_weight: Option<f64>,
}

/// What reading a photo gave.
#[derive(Debug, Clone)]
pub struct PhotoReading {
    /// The payload read, if any, with the bits corrected and the false-positive rate.
    pub reading: PayloadReading,
    /// The scale (fraction of the working size) and tile shift the payload was read at.
    pub scale: Option<f64>,
    /// The cyclic shift of the tile (rows, columns) the payload was read at.
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
            size: config.watermark.photo_side(),
            map_size: config.watermark.size,
            loaded,
            layout,
            code,
            key: None,
            votes: Votes::default(),
            flat_weight: None,
        })
    }

    /// Embeds and reads payloads under `key` (none: the public codeword).
    pub fn with_key(mut self, key: Option<Key>) -> Self {
        self.key = key;
        self
    }

    /// Reads with `votes` (default: counted).
    pub fn with_votes(mut self, votes: Votes) -> Self {
        self.votes = votes;
        self
    }

    /// Shapes a `seed-jnd` model's change with this flat weight (`crate::model::jnd`) instead of
    /// the model's own; None keeps the model's.
    pub fn with_flat_weight(mut self, flat_weight: Option<f64>) -> Self {
        self.flat_weight = flat_weight;
        self
    }

    /// Whether the model's change is shaped by the photo's JND (`seed-jnd`), not one residual.
    pub fn is_shaped(&self) -> bool {
        self.loaded.model.architecture.is_shaped()
    }

    /// The JND's flat weight the change is shaped with (a `seed-jnd` model's).
    pub fn flat_weight(&self) -> f64 {
        self.flat_weight
            .unwrap_or(self.loaded.model.jnd_flat_weight)
    }

    /// The BCH code that protects the model's payload.
    pub fn code(&self) -> &PayloadCode {
        &self.code
    }

    /// The model's working size: the side photos are squashed to (smaller photos: see
    /// [`PhotoModel::side_for`]).
    pub fn size(&self) -> i64 {
        self.size
    }

    /// The side `photo` is squashed to: the working size, or for a photo whose shorter side is
    /// smaller, that side cut to whole tiles (never below the map size the model was trained
    /// at). A tile cell then spans at least a photo pixel where it can: resized onto fewer pixels
    /// than cells, the change blurs away (the 17 test photos shrunk to 180 px and saved as JPEG
    /// read back after embedding on 14 of 17 this way, 11 when stretched to 256 px).
    pub fn side_for(&self, photo: &Photo) -> i64 {
        let shorter = i64::from(photo.width().min(photo.height()));
        let tile = self.tile();
        self.size.min((shorter / tile * tile).max(self.map_size))
    }

    /// The layout's bits for a payload: the codeword, then zeros on the slots it leaves over.
    fn slot_bits(&self, payload: &Payload) -> Result<Tensor> {
        let mut word = self.code.encode(payload)?;
        if let Some(key) = &self.key {
            key.apply(&mut word);
        }
        let mut bits: Vec<f32> = word.into_iter().map(|b| f32::from(u8::from(b))).collect();
        bits.resize(self.layout.bit_count() as usize, 0.0);
        Ok(Tensor::from_slice(&bits).reshape([1, -1]))
    }

    /// The watermarked photo: the model's change at the working size, scaled by `strength`,
    /// resized to the photo and added to its luma (shaped by the photo's JND at full resolution
    /// for a `seed-jnd` model).
    pub fn embed(&self, photo: &Photo, payload: &Payload, strength: f64) -> Result<Photo> {
        Ok(self.change(photo, payload)?.apply(photo, strength)?.0)
    }

    /// The model's change for `photo` at the working size, on the CPU: what
    /// [`PhotoModel::embed`] resizes and adds.
    pub fn change(&self, photo: &Photo, payload: &Payload) -> Result<Change> {
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
    pub fn change_for_map(&self, photo: &Photo, map: &Tensor) -> Result<Change> {
        let side = self.side_for(photo);
        let luma = photo.luma_at(side)?.to_device(self.loaded.vs.device());
        let map = &tile_map(map, side);
        let model = &self.loaded.model;
        Ok(tch::no_grad(|| {
            if model.architecture.is_shaped() {
                Change::Shaped {
                    pattern: model.pattern_t(&luma, map, false).to_device(Device::Cpu),
                    jnd_fraction: model.jnd_fraction,
                    flat_weight: self.flat_weight(),
                    jnd: OnceCell::new(),
                }
            } else {
                Change::Residual((model.embed_t(&luma, map, false) - &luma).to_device(Device::Cpu))
            }
        }))
    }

    /// The reading of a photo as it was embedded (whole, upright, on the working grid): what
    /// `embed` checks each output with before writing it. None when no shift decodes there.
    pub fn read_as_embedded(&self, photo: &Photo, method: Method) -> Result<Option<PhotoReading>> {
        let fine = photo
            .luma_at(2 * self.side_for(photo))?
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
        // The whole photo as embedded (or resized, or re-encoded), then its mirror image: at the
        // side it would be embedded at, and at the working size (where a photo that was embedded
        // larger and then resized below the working size has its tile at the trained size).
        let own_side = self.side_for(photo);
        let mirrors: &[bool] = match search {
            Search::Full => &[false, true],
            Search::Quick => &[false],
        };
        let sides = if own_side == self.size {
            vec![self.size]
        } else {
            vec![own_side, self.size]
        };
        let mut fine = Tensor::new();
        for side in sides {
            fine = photo.luma_at(2 * side)?.to_device(device);
            for &mirrored in mirrors {
                let at = Place {
                    scale: 1.0,
                    mirrored,
                    angle: 0.0,
                };
                if self.decode_offsets(&fine, method, at, &mut best)? {
                    return Ok(best.expect("a sure reading"));
                }
            }
        }
        // `fine` is now the photo at twice the working size, which the lattice search squashes.
        // Its levels are fractions of the side the photo is read at (`lattice_candidates`): a
        // lattice is read at the side it was found at. (Until stop 22 this was the working
        // size, so on a photo read below it, such as a crop of a small photo, every lattice was
        // read 256 / side times too large, and none decoded.)
        let whole_side = self.side_for(photo);
        // Cropped, turned or unevenly stretched: the tile lattice found in the photo itself.
        if search == Search::Full {
            let aspect = f64::from(photo.width()) / f64::from(photo.height());
            let tile = self.tile() as f64;
            let estimates = self.lattice_candidates(photo, &fine)?;
            // The photo at level 1, not turned: every refined lattice is read from it, so it is
            // squashed once.
            let level_one = at_side(&fine, whole_side);
            for (view, refined) in estimates {
                // A refined lattice is read from the photo at level 1, not turned: its whole
                // geometry is undone by one warp (read from the squashed and turned view it was
                // found in, resampled again, 2 fewer of the 272 attacked test photos read). The
                // lattice as found is read as before stop 23, from its view.
                let (side, fine, lattice, turn) = if refined {
                    (
                        whole_side,
                        level_one.shallow_clone(),
                        view.in_photo(aspect),
                        0.0,
                    )
                } else {
                    let side = level_side(whole_side, view.level);
                    let mut fine = at_side(&fine, side);
                    if view.angle != 0.0 {
                        fine = rotate(&fine, view.angle, aspect);
                    }
                    (side, fine, view.lattice, view.angle)
                };
                let Some(warped) = warp_to_tile(&fine, side as f64, lattice, tile) else {
                    continue;
                };
                let m = lattice.matrix(tile);
                let determinant = m[0][0] * m[1][1] - m[0][1] * m[1][0];
                for mirrored in [false, true] {
                    let at = Place {
                        scale: side as f64 / whole_side as f64 / determinant.abs().sqrt(),
                        mirrored,
                        // The tile's first axis in photo pixels (the squash scales x by
                        // width / side and y by height / side), plus the turn made first:
                        // turning the photo by -v shows its lattice turned by v more. (Until
                        // stop 23 the turn was subtracted, so a lattice found in a turned view
                        // reported twice that turn: 26.9 degrees for a 7-degree turn.)
                        angle: (lattice.a.1 * f64::from(photo.height()))
                            .atan2(lattice.a.0 * f64::from(photo.width()))
                            .to_degrees()
                            + turn,
                    };
                    if self.decode_offsets(&warped, method, at, &mut best)? {
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

    fn tile(&self) -> i64 {
        match self.layout {
            Layout::Tile { tile, .. } => tile,
            _ => unreachable!("a photo model has a tile layout"),
        }
    }

    /// The tile lattices seen in the photo's extracted map at each of [`SYNC_LEVELS`] (and, at
    /// the first two, turned back by each of [`SYNC_ANGLES`]), the [`SYNC_CANDIDATES`] best
    /// supported.
    /// `whole` is the photo's luma at twice the working size, which each level is squashed
    /// from (a 100-megapixel photo is then squashed from its pixels once, not once a level).
    fn lattice_candidates(&self, photo: &Photo, whole: &Tensor) -> Result<Vec<(View, bool)>> {
        let tile = self.tile() as f64;
        let aspect = f64::from(photo.width()) / f64::from(photo.height());
        let periods = (SYNC_PERIODS.0 * tile, SYNC_PERIODS.1 * tile);
        let whole_side = self.side_for(photo);
        let mut found: Vec<View> = Vec::new();
        // Each level's (and turn's) extracted map, which a lattice found in it is refined over.
        let mut maps: Vec<Tensor> = Vec::new();
        for (i, level) in SYNC_LEVELS.into_iter().enumerate() {
            let side = level_side(whole_side, level);
            if (side as f64) < 2.0 * tile {
                continue;
            }
            let fine = at_side(whole, side);
            let angles: &[f64] = if i < 2 { &SYNC_ANGLES } else { &[] };
            for &angle in std::iter::once(&0.0).chain(angles) {
                let turned = if angle == 0.0 {
                    fine.shallow_clone()
                } else {
                    rotate(&fine, angle, aspect)
                };
                let luma = half_pixel_offset(&turned, (0, 0));
                let map = tch::no_grad(|| self.loaded.model.extractor.forward_t(&luma, false));
                found.extend(
                    crate::watermarker::sync::lattices(&map, periods.0, periods.1, SYNC_CANDIDATES)
                        .into_iter()
                        .map(|lattice| View {
                            level,
                            angle,
                            lattice,
                            map: maps.len(),
                        }),
                );
                maps.push(map);
            }
        }
        found.sort_by(|x, y| y.lattice.strength.total_cmp(&x.lattice.strength));
        // One lattice of the photo shows at several levels: each is read once, from the level
        // where its tile is nearest the trained size (where the extractor reads best).
        let mut distinct: Vec<View> = Vec::new();
        for view in found {
            match distinct.iter_mut().find(|d| d.same_lattice(&view)) {
                Some(d) if view.misfit(tile) < d.misfit(tile) => {
                    let strength = d.lattice.strength;
                    *d = view;
                    d.lattice.strength = strength;
                }
                Some(_) => {}
                None => distinct.push(view),
            }
        }
        distinct.truncate(SYNC_CANDIDATES);
        // Each lattice read is refined over its whole map, and read as refined, then as found
        // ([`SYNC_ESTIMATES`]): the fold corrects the peaks' estimate on weak maps (a period 1 to
        // 3.5% off), but a photo whose own texture repeats (waves, ripples) can pull the fold
        // off a strong map's lattice that the peaks had right. The code tells which decodes.
        let mut estimates = Vec::with_capacity(SYNC_ESTIMATES * distinct.len());
        for view in distinct {
            let refined = crate::watermarker::sync::refined(&maps[view.map], view.lattice, tile);
            estimates.push((
                View {
                    lattice: refined,
                    ..view
                },
                true,
            ));
            estimates.push((view, false));
        }
        Ok(estimates)
    }

    /// [`PhotoModel::decode_all`] at each of [`OFFSETS`] of `fine` (a luma at twice the size
    /// read), mirrored first when `at` says so. True when a sure reading was found.
    fn decode_offsets(
        &self,
        fine: &Tensor,
        method: Method,
        at: Place,
        best: &mut Option<PhotoReading>,
    ) -> Result<bool> {
        let flipped;
        let fine = if at.mirrored {
            flipped = fine.flip([3]);
            &flipped
        } else {
            fine
        };
        for offset in OFFSETS {
            let luma = half_pixel_offset(fine, offset);
            if self.decode_all(&luma, method, at, best)? {
                return Ok(true);
            }
        }
        Ok(false)
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
        let (binary, threshold) = binarize_map(&map, method)?;
        // Pixels in perfectly flat surroundings (a transparent area flattened onto white or
        // black, blown-out sky, a border added around the photo) carry no change: the extractor
        // answers the same there for every bit, so they do not vote.
        let binary = tch::no_grad(|| {
            let high = luma.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false);
            let low = -(-luma).max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false);
            let flat = (high - low).lt(0.5 / 255.0);
            binary
                .to_kind(tch::Kind::Float)
                .masked_fill(&flat, f64::NAN)
        });
        let size = binary.size();
        let (h, w) = (size[2] as usize, size[3] as usize);
        let pixels = Vec::<f32>::try_from(binary.reshape([-1]).to_device(Device::Cpu))?;
        // Too little of the photo carries anything (a flat or nearly blank image): no reading.
        // (With no votes at all, every bit would read 0, and the all-zero word is a codeword.)
        let voting = pixels.iter().filter(|v| !v.is_nan()).count();
        if 4 * voting < pixels.len() {
            return Ok(false);
        }
        let weights = match self.votes {
            Votes::Weighted => Some(Vec::<f32>::try_from(
                vote_weights(&map, threshold)
                    .reshape([-1])
                    .to_device(Device::Cpu),
            )?),
            Votes::Counted => None,
        };
        let readings = self
            .layout
            .tile_readings_weighted(&pixels, weights.as_deref(), h, w)
            .expect("a photo model has a tile layout");
        let tile = (readings.len() as f64).sqrt() as i64;
        // Every shift of a tiled map agrees equally with the pixels (the vote cannot find the
        // shift), so each is decoded in turn and the code tells which one holds a codeword.
        let pad = self.key.as_ref().map(|k| k.pad(n));
        for (
            shift,
            TileReading {
                mut word,
                agreement,
                unvoted,
            },
        ) in readings.into_iter().enumerate()
        {
            if unvoted > 0 {
                continue;
            }
            if let Some(pad) = &pad {
                word[..n].iter_mut().zip(pad).for_each(|(b, p)| *b ^= p);
            }
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

/// A tiled watermark map `(1,1,h,w)` repeated (or cut) to `size x size`: the layout's map holds a
/// whole number of tiles, so the repetition continues the tiling.
fn tile_map(map: &Tensor, size: i64) -> Tensor {
    let s = map.size();
    let (h, w) = (s[2], s[3]);
    if (h, w) == (size, size) {
        return map.shallow_clone();
    }
    let (ry, rx) = ((size + h - 1) / h, (size + w - 1) / w);
    map.repeat([1, 1, ry, rx])
        .narrow(2, 0, size)
        .narrow(3, 0, size)
}

/// A photo model's change at the working size, before it is resized to a photo and added.
pub enum Change {
    /// A residual model's change `(1,1,S,S)` in luma units, the same everywhere it lands.
    Residual(Tensor),
    /// A `seed-jnd` model's pattern `(1,1,S,S)` in [-1,1]: each pixel of the photo changes by
    /// the pattern there times `jnd_fraction` of its just-noticeable difference (`crate::model::jnd`),
    /// computed at the first strength applied and kept for the others (a change is made for one
    /// photo, [`PhotoModel::change_for_map`]).
    Shaped {
        /// The pattern `(1,1,S,S)` in [-1,1].
        pattern: Tensor,
        /// The fraction of each pixel's JND the change reaches at full pattern.
        jnd_fraction: f64,
        /// The JND's weight of flat areas against texture.
        flat_weight: f64,
        /// The photo's JND, computed once at the first strength applied.
        jnd: OnceCell<JndLevels>,
    },
}

impl Change {
    /// The photo with this change at `strength`, and the mean squared error (8-bit units, colour
    /// channels) it made.
    pub fn apply(&self, photo: &Photo, strength: f64) -> Result<(Photo, f64)> {
        match self {
            Change::Residual(residual) => photo.with_residual_and_mse(residual, strength),
            Change::Shaped {
                pattern,
                jnd_fraction,
                flat_weight,
                jnd,
            } => photo.with_shaped_pattern_and_mse(
                pattern,
                strength * jnd_fraction,
                jnd.get_or_init(|| photo.jnd_levels(*flat_weight)),
            ),
        }
    }
}

/// A `(1,1,H,W)` map binarized by `method` (exact 0/1, same shape), with the threshold used.
fn binarize_map(map: &Tensor, method: Method) -> Result<(Tensor, f64)> {
    match method {
        Method::Threshold(t) => Ok((binarize::at_threshold(map, t), t)),
        Method::Otsu => {
            let size = map.size();
            let b = binarize::binarize_maps(map, method)?;
            let pixels: Vec<f32> = b[0].pixels.iter().map(|&p| f32::from(p)).collect();
            let binary = Tensor::from_slice(&pixels)
                .reshape(size.as_slice())
                .to_device(map.device());
            Ok((binary, b[0].threshold))
        }
    }
}

/// Each pixel's vote weight (float, the map's shape): `|logit(p) - logit(threshold)|`, both
/// held within [`SURE_OUTPUT`] of 0 and 1.
fn vote_weights(map: &Tensor, threshold: f64) -> Tensor {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let (lo, hi) = (SURE_OUTPUT, 1.0 - SURE_OUTPUT);
    let at = logit(threshold.clamp(lo, hi));
    tch::no_grad(|| {
        let p = map.to_kind(tch::Kind::Float).clamp(lo, hi);
        let odds = &p / (p.ones_like() - &p);
        (odds.log() - at).abs()
    })
}

/// PSNR in dB of a mean squared error in 8-bit units (infinity for 0).
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

/// PSNR in dB of a photo against another of the same size and colour type, over the colour
/// channels only (alpha is not a colour: counting its unchanged samples would flatter the
/// score), or infinity when they are equal. 16-bit photos are compared at 8 bits.
pub fn psnr(a: &Photo, b: &Photo) -> Result<f64> {
    let (x, y) = (a.pixels.eight_bit_samples(), b.pixels.eight_bit_samples());
    if x.len() != y.len() || a.width() != b.width() || a.height() != b.height() {
        bail!(
            "{} and {}: different sizes or colour types",
            a.path.display(),
            b.path.display()
        );
    }
    let channels = x.len() / (a.width() as usize * a.height() as usize);
    let colours = if a.pixels.has_alpha() {
        channels - 1
    } else {
        channels
    };
    let se: f64 = x
        .chunks_exact(channels)
        .zip(y.chunks_exact(channels))
        .flat_map(|(p, q)| p[..colours].iter().zip(&q[..colours]))
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum();
    Ok(psnr_from_mse(
        se / (a.width() as usize * a.height() as usize * colours) as f64,
    ))
}
