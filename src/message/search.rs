//! The breadth of the photo reader's search (`crate::watermarker::photo`, with the lattice finder
//! `crate::watermarker::sync`): what it tries, and so how many words a clean photo gets to decode
//! by luck. The payload code is sized by these (`crate::learning::config` checks it), which is
//! why they live with the message and not with the reader.

/// Sub-pixel offsets (in half working pixels: y, x) each reading is tried at.
pub const OFFSETS: [(i64, i64); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];

/// The sizes (fractions of the working size) the photo is squashed to when looking for its tile
/// lattice (`sync` in the reader): the extractor responds best to a tile near its trained size, and a
/// crop keeping a fraction `f` of a side stretches the tile by `1/f`. Levels a factor 0.9 apart
/// from 1 down to 0.39 put some level within 5% of any `f` from 0.4 to 1.
pub const SYNC_LEVELS: [f64; 10] = [
    1.0, 0.9, 0.81, 0.729, 0.656, 0.59, 0.531, 0.478, 0.43, 0.387,
];

/// Angles (degrees) the photo is also turned back by at the first two levels before its map is
/// made: the extractor reads a tile turned by a few degrees, not by 10, so turns up to 15
/// degrees are met within 2.5 of one of these.
pub const SYNC_ANGLES: [f64; 4] = [-10.0, -5.0, 5.0, 10.0];

/// The tile periods (as multiples of the trained tile side) a lattice is looked for at: wide
/// enough for crops keeping different shares of the two sides.
pub const SYNC_PERIODS: (f64, f64) = (0.85, 1.65);

/// How many of the lattices found (best first, over all levels) are read, each upright and
/// mirrored.
pub const SYNC_CANDIDATES: usize = 3;

/// How many estimates of each lattice's geometry are read: refined over every copy of the tile,
/// and as its autocorrelation's peaks put it.
pub const SYNC_ESTIMATES: usize = 2;

/// The sides the whole photo is read at: its own (the reader's `PhotoModel::side_for`) and, for a photo
/// smaller than the working size, the working size too.
pub const WHOLE_SIDES: usize = 2;

/// How many words the full search decodes per photo at most: every tile shift at every offset,
/// of the whole photo upright and mirrored at each of its sides, and of each estimate of each
/// lattice candidate upright and mirrored. Each is a chance for a clean photo to decode by luck.
pub fn readings(tile: i64) -> usize {
    (tile * tile) as usize
        * OFFSETS.len()
        * (2 * WHOLE_SIDES + 2 * SYNC_CANDIDATES * SYNC_ESTIMATES)
}

/// Detection budget: a clean photo is read as a payload at most this often.
pub const MAX_FALSE_POSITIVE_RATE: f64 = 1e-6;
