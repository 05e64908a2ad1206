//! Watermark layouts: which pixels of the watermark map carry which bit, and how the bits are read
//! back from a binarized map.
//!
//! - `Block` (the seed): `rows x cols` bits in a block at (`top`, `left`) of a zero map; one pixel
//!   per bit. A model-free reader sees it, and an empty (all-zero) map reads as the all-zero word.
//! - `Spread`: every `cell x cell` cell of the map carries one bit, the cells assigned to the bits
//!   by a keyed pseudo-random permutation (each bit gets the same number of cells, spread over the
//!   whole image), and half of each bit's cells carry it inverted. The map is then half ones
//!   whatever the bits, so an empty map agrees with no word better than chance.
//!
//! - `Tile`: a `tile x tile` tile, repeated over the whole map, carries every bit once (at keyed
//!   positions, keyed bits inverted). A crop of the image keeps whole tiles and only moves their
//!   origin, so the reader tries every cyclic shift of the tile: the photo layout.
//!
//! Reading: each bit is the majority vote of its pixels (inverted ones counted inverted). For a
//! spread layout the vote is taken at every integer shift of the map within `search` pixels and
//! the shift whose pixels agree best wins: a shifted image gives a shifted map (the extractor is a
//! convolution), and this re-synchronises it. The share of pixels that agree with the word read is
//! the evidence `detect` weighs: about one half on a map without a watermark, near one with one.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::runtime::splitmix::splitmix64;

/// The largest pixels x bits matrix a layout may need (1 GiB of float32).
const MAX_ASSIGNMENT_ENTRIES: i64 = 1 << 28;

/// How many floats the reader stacks at once (alignments x pixels x images): 16 MB.
const ALIGNMENT_FLOATS: i64 = 1 << 22;

/// Which pixels of a watermark map carry which bit (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Layout {
    /// `rows x cols` bits in one block at (`top`, `left`) of a `height x width` map.
    Block {
        /// Rows of bits in the block.
        rows: i64,
        /// Columns of bits in the block.
        cols: i64,
        /// Row of the block's top-left pixel.
        top: i64,
        /// Column of the block's top-left pixel.
        left: i64,
        /// Height of the map in pixels.
        height: i64,
        /// Width of the map in pixels.
        width: i64,
    },
    /// `bits` bits, each on an equal share of the `cell x cell` cells of a `height x width` map,
    /// assigned by a permutation keyed by `key`; read back at shifts up to `search` pixels.
    Spread {
        /// Number of bits.
        bits: i64,
        /// Side of a cell in pixels.
        cell: i64,
        /// Key of the permutation that assigns cells to bits.
        key: u64,
        /// Largest shift, in pixels, tried in each direction when reading.
        search: i64,
        /// Height of the map in pixels.
        height: i64,
        /// Width of the map in pixels.
        width: i64,
    },
    /// `bits` bits, each once in a `tile x tile` tile at positions keyed by `key`, the tile
    /// repeated over a `height x width` map; read back at every cyclic shift of the tile.
    Tile {
        /// Number of bits (each carried once per tile).
        bits: i64,
        /// Side of the tile in pixels.
        tile: i64,
        /// Key of the bits' positions in the tile (and of which are inverted).
        key: u64,
        /// Height of the map in pixels.
        height: i64,
        /// Width of the map in pixels.
        width: i64,
    },
}

/// One shift's reading of a tile layout (see [`Layout::tile_readings_host`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TileReading {
    /// Each bit's majority vote.
    pub word: Vec<bool>,
    /// The share of voting pixels that agree with their bit's majority.
    pub agreement: f64,
    /// Bits no pixel voted for (their place in the word is a guess: false).
    pub unvoted: usize,
}

impl Default for Layout {
    /// The seed's: 4x4 bits in the top-left corner of a 28x28 map.
    fn default() -> Self {
        Layout::Block {
            rows: 4,
            cols: 4,
            top: 0,
            left: 0,
            height: 28,
            width: 28,
        }
    }
}

/// For each map pixel (row-major): the bit it carries (None: no bit) and whether inverted.
struct Assignment {
    bit_of: Vec<Option<usize>>,
    inverted: Vec<bool>,
}

/// The bits read from binarized maps.
pub struct Reading {
    /// `(N, bits)` 0./1.
    pub bits: Tensor,
    /// `(N,)` share of the bit-carrying pixels that agree with the bits read (inverted ones
    /// counted inverted), at the chosen shift.
    pub agreement: Tensor,
    /// `(N, 2)` the shift (rows, columns) at which the bits were read.
    pub shift: Tensor,
}

impl Layout {
    /// Height of the map in pixels.
    pub fn height(&self) -> i64 {
        match *self {
            Layout::Block { height, .. }
            | Layout::Spread { height, .. }
            | Layout::Tile { height, .. } => height,
        }
    }

    /// Width of the map in pixels.
    pub fn width(&self) -> i64 {
        match *self {
            Layout::Block { width, .. }
            | Layout::Spread { width, .. }
            | Layout::Tile { width, .. } => width,
        }
    }

    /// Bits a watermark holds.
    pub fn bit_count(&self) -> i64 {
        match *self {
            Layout::Block { rows, cols, .. } => rows * cols,
            Layout::Spread { bits, .. } | Layout::Tile { bits, .. } => bits,
        }
    }

    /// Checks that the layout describes bits that fit its map; `key` names the config key.
    pub fn validate(&self, key: &str) -> Result<()> {
        let (height, width) = (self.height(), self.width());
        if height < 1 || width < 1 || height > 4096 || width > 4096 {
            bail!("{key}: a {height}x{width} map: height and width must lie in 1..=4096");
        }
        match *self {
            Layout::Block {
                rows,
                cols,
                top,
                left,
                ..
            } => {
                if rows < 1 || cols < 1 {
                    bail!("{key}: rows and cols must be at least 1 (got {rows}x{cols})");
                }
                // Checked sums: a top or left near i64::MAX must not wrap around into "fits".
                let fits = |start: i64, len: i64, size: i64| {
                    start >= 0 && start.checked_add(len).is_some_and(|end| end <= size)
                };
                if !fits(top, rows, height) || !fits(left, cols, width) {
                    bail!(
                        "{key}: a {rows}x{cols} block at top {top}, left {left} does not fit in a \
                         {height}x{width} image"
                    );
                }
            }
            Layout::Spread {
                bits, cell, search, ..
            } => {
                if !(1..=height.min(width)).contains(&cell) {
                    bail!(
                        "{key}: cell = {cell}: must lie in 1..={}",
                        height.min(width)
                    );
                }
                let cells = (height / cell) * (width / cell);
                // `bits > cells / 2`, not `bits * 2 > cells`: a bits near i64::MAX must not wrap.
                if bits < 1 || bits > cells / 2 {
                    bail!(
                        "{key}: bits = {bits}: a {height}x{width} map of {cell}x{cell} cells has \
                         {cells} cells, and every bit needs at least two (one plain, one inverted)"
                    );
                }
                if !(0..=8).contains(&search) {
                    bail!("{key}: search = {search}: must lie in 0..=8 pixels");
                }
            }
            Layout::Tile { bits, tile, .. } => {
                if !(2..=64).contains(&tile) || tile > height.min(width) {
                    bail!(
                        "{key}: tile = {tile}: must lie in 2..=64 and fit the {height}x{width} map"
                    );
                }
                if bits < 1 || bits > tile * tile {
                    bail!(
                        "{key}: bits = {bits}: a {tile}x{tile} tile holds 1..={} bits",
                        tile * tile
                    );
                }
            }
        }
        // The reader and writer hold a pixels x bits matrix (`matrices`): bound it before anyone
        // allocates it, so a crafted file is an error and not an abort for want of memory.
        let entries = (height * width).checked_mul(self.bit_count());
        if entries.is_none_or(|e| e > MAX_ASSIGNMENT_ENTRIES) {
            bail!(
                "{key}: {} bits on a {height}x{width} map: the layout's pixel-to-bit matrix would \
                 exceed {MAX_ASSIGNMENT_ENTRIES} entries",
                self.bit_count()
            );
        }
        Ok(())
    }

    fn assignment(&self) -> Assignment {
        let (h, w) = (self.height() as usize, self.width() as usize);
        let mut bit_of = vec![None; h * w];
        let mut inverted = vec![false; h * w];
        match *self {
            Layout::Block {
                rows,
                cols,
                top,
                left,
                ..
            } => {
                for k in 0..(rows * cols) as usize {
                    let r = top as usize + k / cols as usize;
                    let c = left as usize + k % cols as usize;
                    bit_of[r * w + c] = Some(k);
                }
            }
            Layout::Spread {
                bits, cell, key, ..
            } => {
                let (bits, cell) = (bits as usize, cell as usize);
                let (rows, cols) = (h / cell, w / cell);
                let per_bit = rows * cols / bits;
                // Fisher-Yates over the cells, driven by the key: cell order -> (bit, polarity).
                let mut order: Vec<usize> = (0..rows * cols).collect();
                for i in (1..order.len()).rev() {
                    let j = (splitmix64(key ^ splitmix64(i as u64)) % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
                for (rank, &c) in order.iter().take(per_bit * bits).enumerate() {
                    let (bit, nth) = (rank % bits, rank / bits);
                    let (r0, c0) = ((c / cols) * cell, (c % cols) * cell);
                    for r in r0..r0 + cell {
                        for cc in c0..c0 + cell {
                            bit_of[r * w + cc] = Some(bit);
                            inverted[r * w + cc] = nth % 2 == 1;
                        }
                    }
                }
            }
            Layout::Tile { tile, .. } => {
                let (slot_bit, slot_inverted) = self.tile_slots();
                let tile = tile as usize;
                for r in 0..h {
                    for c in 0..w {
                        let slot = (r % tile) * tile + c % tile;
                        bit_of[r * w + c] = slot_bit[slot];
                        inverted[r * w + c] = slot_inverted[slot];
                    }
                }
            }
        }
        Assignment { bit_of, inverted }
    }

    /// For a tile layout, what each of the tile's positions (row-major) carries: the bit (None:
    /// a spare position) and whether inverted. Positions by a keyed Fisher-Yates shuffle; each
    /// bit inverted by a keyed coin, so no bit pattern (all zeros, say) paints a flat map.
    fn tile_slots(&self) -> (Vec<Option<usize>>, Vec<bool>) {
        let Layout::Tile {
            bits, tile, key, ..
        } = *self
        else {
            return (Vec::new(), Vec::new());
        };
        let slots = (tile * tile) as usize;
        let mut order: Vec<usize> = (0..slots).collect();
        for i in (1..slots).rev() {
            let j = (splitmix64(key ^ splitmix64(i as u64)) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut bit_of = vec![None; slots];
        let mut inverted = vec![false; slots];
        for (bit, &slot) in order.iter().take(bits as usize).enumerate() {
            bit_of[slot] = Some(bit);
            inverted[slot] = splitmix64(key.rotate_left(17) ^ bit as u64) & 1 == 1;
        }
        (bit_of, inverted)
    }

    /// `(H*W, bits)` 0/1: which bit each pixel carries; and `(H*W,)` 1 where inverted.
    fn matrices(&self, device: Device) -> (Tensor, Tensor) {
        let a = self.assignment();
        let bits = self.bit_count() as usize;
        let mut onehot = vec![0f32; a.bit_of.len() * bits];
        for (p, b) in a.bit_of.iter().enumerate() {
            if let Some(k) = b {
                onehot[p * bits + k] = 1.0;
            }
        }
        let inverted: Vec<f32> = a.inverted.iter().map(|&i| f32::from(u8::from(i))).collect();
        (
            Tensor::from_slice(&onehot)
                .reshape([a.bit_of.len() as i64, bits as i64])
                .to_device(device),
            Tensor::from_slice(&inverted).to_device(device),
        )
    }

    /// The watermark map `(N,1,H,W)` of `bits` `(N, bits)`: each pixel the value of its bit
    /// (inverted where the layout says), 0 where it carries none.
    pub fn map_from_bits(&self, bits: &Tensor) -> Tensor {
        let n = bits.size()[0];
        let (onehot, inverted) = self.matrices(bits.device());
        let plain = bits.to_kind(Kind::Float).matmul(&onehot.tr());
        let carried = onehot.sum_dim_intlist(1, false, Kind::Float);
        let map = &plain + &inverted * (carried - &plain * 2.0);
        map.reshape([n, 1, self.height(), self.width()])
    }

    /// A mask `(1,1,H,W)` that is 1 on the pixels that carry bits and 0 elsewhere.
    pub fn carrier_mask(&self, kind: Kind, device: Device) -> Tensor {
        let (onehot, _) = self.matrices(device);
        onehot
            .sum_dim_intlist(1, false, kind)
            .reshape([1, 1, self.height(), self.width()])
    }

    /// The mean map value of each bit's pixels `(N, bits)`, inverted pixels counted as 1 - value:
    /// near 1 for a 1-bit and near 0 for a 0-bit in an extracted map (soft bits, not shifted).
    pub fn bit_values(&self, maps: &Tensor) -> Tensor {
        let n = maps.size()[0];
        let (onehot, inverted) = self.matrices(maps.device());
        let m = maps.to_kind(Kind::Float).reshape([n, -1]);
        let corrected = &m + &inverted * (m.neg() * 2.0 + 1.0);
        corrected.matmul(&onehot) / onehot.sum_dim_intlist(0, false, Kind::Float)
    }

    /// How many pixels carry each bit.
    pub fn carrier_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.bit_count() as usize];
        for k in self.assignment().bit_of.into_iter().flatten() {
            counts[k] += 1;
        }
        counts
    }

    /// How many independent units carry each bit, for the detector's null model: the pixels of a
    /// bit, counted in whole cells where a cell of `cell x cell` pixels carries one value (its
    /// pixels agree, so they are one coin, not `cell^2`); a partial cell at the border counts
    /// as one.
    pub fn carrier_units(&self) -> Vec<usize> {
        let area = match *self {
            Layout::Spread { cell, .. } => (cell * cell) as usize,
            Layout::Block { .. } | Layout::Tile { .. } => 1,
        };
        self.carrier_counts()
            .into_iter()
            .map(|n| n.div_ceil(area))
            .collect()
    }

    /// How many alignments `read` tries when it searches: every shift at every rescale.
    pub fn shift_count(&self) -> usize {
        match *self {
            Layout::Tile { tile, .. } => (tile * tile) as usize,
            Layout::Block { .. } => 1,
            Layout::Spread { search, .. } => self.alignments(search).len(),
        }
    }

    /// Reads the bits of binary maps `(N,1,H,W)` (exact 0/1) by majority vote over each bit's
    /// pixels, at the best shift when `search` is set (ties: the first shift, no shift first).
    /// A tile layout is read unshifted (see `tile_readings`).
    pub fn read(&self, binary: &Tensor, search: bool) -> Reading {
        if let Some((bits, agreement)) = self.tile_readings(binary) {
            // Unshifted: the shift of a tile layout is the payload code's to find.
            return Reading {
                bits: bits.select(1, 0),
                agreement: agreement.select(1, 0),
                shift: Tensor::zeros([binary.size()[0], 2], (Kind::Int64, binary.device())),
            };
        }
        let n = binary.size()[0];
        let device = binary.device();
        let (onehot, inverted) = self.matrices(device);
        let radius = match (*self, search) {
            (Layout::Spread { search, .. }, true) => search,
            _ => 0,
        };
        // Images are read in chunks so that the stacked alignments stay within ~16 MB (an empty
        // batch is one empty chunk).
        let per_image = (2 * radius + 1).pow(2) * (radius + 1) * self.height() * self.width();
        let chunk = (ALIGNMENT_FLOATS / per_image.max(1)).max(1);
        let mut parts = Vec::new();
        let mut first = 0;
        while first < n || parts.is_empty() {
            let len = chunk.min(n - first);
            parts.push(self.read_aligned(
                &binary.narrow(0, first, len),
                radius,
                &onehot,
                &inverted,
            ));
            first += len;
        }
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        let cat =
            |f: fn(&Reading) -> &Tensor| Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), 0);
        Reading {
            bits: cat(|r| &r.bits),
            agreement: cat(|r| &r.agreement),
            shift: cat(|r| &r.shift),
        }
    }

    /// [`read`](Self::read) of one chunk of maps at every alignment within `radius` at once:
    /// each border crop undone (`0..=radius`), then every shift of the map within `radius`
    /// pixels, stacked as `(N, alignments, H*W)` and voted in one product. The best alignment
    /// is the first with the highest agreement, in [`alignments`](Self::alignments) order.
    fn read_aligned(
        &self,
        binary: &Tensor,
        radius: i64,
        onehot: &Tensor,
        inverted: &Tensor,
    ) -> Reading {
        let n = binary.size()[0];
        let device = binary.device();
        let pixels = self.height() * self.width();
        let side = 2 * radius + 1;
        let mut seen = Vec::new();
        let mut valid = Vec::new();
        for crop in 0..=radius {
            let (unscaled, ones) = undo_crop(binary, crop);
            // Window (i, j) of the padded map starts at (i - radius, j - radius): it holds
            // map[r + dy, c + dx] for the shift (dy, dx) = (i - radius, j - radius), and
            // pixels shifted in from outside are 0 in `valid` (they do not vote).
            let windows = |m: &Tensor| {
                m.constant_pad_nd([radius, radius, radius, radius])
                    .unfold(2, self.height(), 1)
                    .unfold(3, self.width(), 1)
                    .reshape([m.size()[0], side * side, pixels])
            };
            seen.push(windows(&unscaled));
            valid.push(windows(&ones.narrow(0, 0, 1)));
        }
        // (N, A, H*W) in stacking order: crop-major, then shifts row-major.
        let seen = Tensor::cat(&seen, 1);
        let valid = Tensor::cat(&valid, 1);
        // A pixel votes for 1 when it reads 1, or 0 where its bit is stored inverted:
        // seen * (1 - 2 inv) + inv on the valid pixels. `seen` is already 0 wherever `valid` is
        // (padding and undone crops are zeros), so the inversion folds into the vote matrices
        // and the (N, A, H*W) stack goes through one product, with no elementwise pass over it.
        let flip = onehot * (inverted.neg() * 2.0 + 1.0).unsqueeze(1); // (H*W, bits)
        let stored_inverted = onehot * inverted.unsqueeze(1);
        let ones_votes = seen.matmul(&flip) + valid.matmul(&stored_inverted); // (N, A, bits)
        let totals = valid.matmul(onehot); // (1, A, bits)
        let bits = (&ones_votes * 2.0).gt_tensor(&totals).to_kind(Kind::Float);
        let agreeing = ones_votes
            .max_other(&(&totals - &ones_votes))
            .sum_dim_intlist(2, false, Kind::Float);
        let agreement = agreeing / totals.sum_dim_intlist(2, false, Kind::Float).clamp_min(1.0);
        // Only the (N, A) agreements go into preference order: argmax gives the first of equal
        // maxima, so ties go to the earlier alignment; `order` maps it back to its stack index.
        let order = Tensor::from_slice(&self.alignment_order(radius)).to_device(device);
        let preferred = agreement.index_select(1, &order).argmax(1, false); // (N,)
        let best = order.index_select(0, &preferred).unsqueeze(1); // (N, 1), stack index
        let bit_count = self.bit_count();
        let shifts: Vec<i64> = self
            .alignments(radius)
            .into_iter()
            .flat_map(|(_, dy, dx)| [dy, dx])
            .collect();
        let shifts = Tensor::from_slice(&shifts)
            .reshape([-1, 2])
            .to_device(device);
        Reading {
            bits: bits
                .gather(
                    1,
                    &best.unsqueeze(2).expand([n, 1, bit_count], false),
                    false,
                )
                .squeeze_dim(1),
            agreement: agreement.gather(1, &best, false).squeeze_dim(1),
            shift: shifts.index_select(0, &preferred),
        }
    }

    /// The alignments `(crop, dy, dx)` the reader tries within `radius`, in order of
    /// preference: crop 0 first, and at each crop the unshifted map first, then the shifts
    /// row-major.
    fn alignments(&self, radius: i64) -> Vec<(i64, i64, i64)> {
        let mut shifts = vec![(0, 0)];
        for dy in -radius..=radius {
            for dx in -radius..=radius {
                if (dy, dx) != (0, 0) {
                    shifts.push((dy, dx));
                }
            }
        }
        (0..=radius)
            .flat_map(|c| shifts.iter().map(move |&(dy, dx)| (c, dy, dx)))
            .collect()
    }

    /// For each of [`alignments`](Self::alignments), its index among the stacked windows of
    /// `read_aligned` (crop-major, then `(dy + radius) * side + dx + radius`).
    fn alignment_order(&self, radius: i64) -> Vec<i64> {
        let side = 2 * radius + 1;
        self.alignments(radius)
            .into_iter()
            .map(|(c, dy, dx)| c * side * side + (dy + radius) * side + dx + radius)
            .collect()
    }

    /// The bits of binary maps `(N,1,H,W)` under a tile layout at every cyclic shift of the tile:
    /// `(N, tile*tile, bits)` bits and `(N, tile*tile)` agreements, shift `dy * tile + dx` meaning
    /// that the map's tile origin sits at (dy, dx). The map is folded onto one tile (per tile
    /// position, how many pixels are 1 and how many there are) and each shift votes on the folded
    /// counts. The vote cannot tell the shifts apart (a tiled map is consistent under all of
    /// them): the payload's code does, by decoding at each shift. `None` for other layouts.
    pub fn tile_readings(&self, binary: &Tensor) -> Option<(Tensor, Tensor)> {
        let Layout::Tile { bits, tile, .. } = *self else {
            return None;
        };
        let size = binary.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        let device = binary.device();
        let (slot_bit, slot_inverted) = self.tile_slots();
        let slots = (tile * tile) as usize;
        let mut onehot = vec![0f32; slots * bits as usize];
        for (p, b) in slot_bit.iter().enumerate() {
            if let Some(k) = b {
                onehot[p * bits as usize + k] = 1.0;
            }
        }
        let onehot = Tensor::from_slice(&onehot)
            .reshape([slots as i64, bits])
            .to_device(device);
        let inverted: Vec<f32> = slot_inverted
            .iter()
            .map(|&i| f32::from(u8::from(i)))
            .collect();
        let inverted = Tensor::from_slice(&inverted).to_device(device);
        // Pad to whole tiles; padded pixels do not vote.
        let (ph, pw) = ((tile - h % tile) % tile, (tile - w % tile) % tile);
        let fold = |t: &Tensor| {
            t.to_kind(Kind::Float)
                .reshape([n, h, w])
                .constant_pad_nd([0, pw, 0, ph])
                .reshape([n, (h + ph) / tile, tile, (w + pw) / tile, tile])
                .sum_dim_intlist([1, 3].as_slice(), false, Kind::Float)
        };
        let (ones, counts) = (fold(binary), fold(&binary.ones_like()));
        let mut all_bits = Vec::with_capacity(slots);
        let mut all_agreements = Vec::with_capacity(slots);
        for dy in 0..tile {
            for dx in 0..tile {
                // Map pixel (r, c) holds the layout's tile position (r - dy, c - dx): the layout
                // position p sees the folded count at p + (dy, dx).
                let seen = ones.roll([-dy, -dx], [1, 2]).reshape([n, -1]);
                let valid = counts.roll([-dy, -dx], [1, 2]).reshape([n, -1]);
                let corrected = &seen + &inverted * (&valid - &seen * 2.0);
                let ones_votes = corrected.matmul(&onehot);
                let totals = valid.matmul(&onehot);
                all_bits.push((&ones_votes * 2.0).gt_tensor(&totals).to_kind(Kind::Float));
                all_agreements.push(
                    ones_votes
                        .max_other(&(&totals - &ones_votes))
                        .sum_dim_intlist(1, false, Kind::Float)
                        / totals.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0),
                );
            }
        }
        Some((
            Tensor::stack(&all_bits, 1),
            Tensor::stack(&all_agreements, 1),
        ))
    }

    /// [`Layout::tile_readings`] of one `h x w` binary map given as row-major 0/1 values, on the
    /// host: for each shift `dy * tile + dx`, the word's bits and the agreement. The same
    /// arithmetic without a libtorch call per shift, which is what makes a photo quick to read.
    pub fn tile_readings_host(
        &self,
        binary: &[f32],
        h: usize,
        w: usize,
    ) -> Option<Vec<TileReading>> {
        self.tile_readings_weighted(binary, None, h, w)
    }

    /// [`Layout::tile_readings_host`] with a weight for each pixel's vote (`weights`, row-major
    /// like `binary`, each >= 0; `None`: one vote a pixel). A bit reads 1 when the weights of its
    /// pixels that read 1 outweigh those that read 0; the agreement is then a share of weight.
    pub fn tile_readings_weighted(
        &self,
        binary: &[f32],
        weights: Option<&[f32]>,
        h: usize,
        w: usize,
    ) -> Option<Vec<TileReading>> {
        let Layout::Tile { bits, tile, .. } = *self else {
            return None;
        };
        assert_eq!(binary.len(), h * w, "a {h}x{w} map");
        if let Some(weights) = weights {
            assert_eq!(
                weights.len(),
                h * w,
                "a weight for each pixel of the {h}x{w} map"
            );
        }
        let (tile, bits) = (tile as usize, bits as usize);
        let (slot_bit, slot_inverted) = self.tile_slots();
        // Ones and pixels seen at each tile position, over all tiles.
        let (mut ones, mut counts) = (vec![0f32; tile * tile], vec![0f32; tile * tile]);
        for (r, row) in binary.chunks_exact(w).enumerate() {
            let base = (r % tile) * tile;
            for (c, &v) in row.iter().enumerate() {
                // NaN: a pixel the caller knows carries nothing (no vote).
                if v.is_nan() {
                    continue;
                }
                let weight = weights.map_or(1.0, |ws| ws[r * w + c]);
                ones[base + c % tile] += weight * v;
                counts[base + c % tile] += weight;
            }
        }
        let mut readings = Vec::with_capacity(tile * tile);
        let (mut votes, mut totals) = (vec![0f32; bits], vec![0f32; bits]);
        for dy in 0..tile {
            for dx in 0..tile {
                votes.fill(0.0);
                totals.fill(0.0);
                for py in 0..tile {
                    for px in 0..tile {
                        let p = py * tile + px;
                        let Some(k) = slot_bit[p] else { continue };
                        let q = ((py + dy) % tile) * tile + (px + dx) % tile;
                        let (seen, valid) = (ones[q], counts[q]);
                        votes[k] += if slot_inverted[p] { valid - seen } else { seen };
                        totals[k] += valid;
                    }
                }
                let word = votes
                    .iter()
                    .zip(&totals)
                    .map(|(&v, &t)| 2.0 * v > t)
                    .collect();
                let agreeing: f32 = votes.iter().zip(&totals).map(|(&v, &t)| v.max(t - v)).sum();
                let total: f32 = totals.iter().sum();
                let unvoted = totals.iter().filter(|&&t| t <= 0.0).count();
                readings.push(TileReading {
                    word,
                    agreement: f64::from(agreeing / total.max(1.0)),
                    unvoted,
                });
            }
        }
        Some(readings)
    }

    /// One line for banners and reports.
    pub fn describe(&self) -> String {
        match *self {
            Layout::Block {
                rows,
                cols,
                top,
                left,
                ..
            } => format!("{rows}x{cols} block at ({top}, {left})"),
            Layout::Spread {
                bits, cell, search, ..
            } => format!(
                "{bits} bits spread over {cell}x{cell} cells, read at shifts up to {search} px \
                 and border crops up to {search} px"
            ),
            Layout::Tile { bits, tile, .. } => format!(
                "{bits} bits in a {tile}x{tile} tile repeated over the map, read at every cyclic \
                 shift of the tile"
            ),
        }
    }
}

/// A binary map of an image cut by `crop` pixels per side and resized back, scaled back down
/// and padded to its place (re-binarized at 0.5), with the mask of the pixels that hold data.
fn undo_crop(binary: &Tensor, crop: i64) -> (Tensor, Tensor) {
    let ones = binary.ones_like();
    if crop == 0 {
        return (binary.shallow_clone(), ones);
    }
    let size = binary.size();
    let (h, w) = (size[2] - 2 * crop, size[3] - 2 * crop);
    let down = binary
        .to_kind(Kind::Float)
        .upsample_bilinear2d([h, w], false, None, None)
        .gt(0.5)
        .to_kind(Kind::Float);
    let pad = [crop, crop, crop, crop];
    (
        down.constant_pad_nd(pad),
        ones.narrow(2, 0, h).narrow(3, 0, w).constant_pad_nd(pad),
    )
}

/// `out[r, c] = map[r + dy, c + dx]`, 0 outside the map.
#[cfg(test)]
fn shift_map(map: &Tensor, dy: i64, dx: i64) -> Tensor {
    let size = map.size();
    let (h, w) = (size[2], size[3]);
    if dy == 0 && dx == 0 {
        return map.shallow_clone();
    }
    // Pad by |d| on both sides, then take the window that starts at |d| + d.
    let (py, px) = (dy.abs(), dx.abs());
    map.constant_pad_nd([px, px, py, py])
        .narrow(2, py + dy, h)
        .narrow(3, px + dx, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader as one loop over the alignments (what `read_aligned` stacks): the reference
    /// the batched reader must match bit for bit, ties included.
    fn read_one_by_one(layout: &Layout, binary: &Tensor, radius: i64) -> (Tensor, Tensor, Tensor) {
        let n = binary.size()[0];
        let (onehot, inverted) = layout.matrices(Device::Cpu);
        let mut best: Option<(Tensor, Tensor, Tensor)> = None;
        for (crop, dy, dx) in layout.alignments(radius) {
            let (unscaled, ones) = undo_crop(binary, crop);
            let seen = shift_map(&unscaled, dy, dx).reshape([n, -1]);
            let valid = shift_map(&ones, dy, dx).reshape([n, -1]);
            let corrected = (&seen + &inverted * (seen.neg() * 2.0 + 1.0)) * &valid;
            let ones_votes = corrected.matmul(&onehot);
            let totals = valid.matmul(&onehot);
            let bits = (&ones_votes * 2.0).gt_tensor(&totals).to_kind(Kind::Float);
            let agreement = ones_votes
                .max_other(&(&totals - &ones_votes))
                .sum_dim_intlist(1, false, Kind::Float)
                / totals.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
            let shift = Tensor::from_slice(&[dy, dx]).expand([n, 2], false);
            best = Some(match best {
                None => (bits, agreement, shift),
                Some((b, a, s)) => {
                    let better = agreement.gt_tensor(&a);
                    (
                        bits.where_self(&better.unsqueeze(1), &b),
                        agreement.where_self(&better, &a),
                        shift.where_self(&better.unsqueeze(1), &s),
                    )
                }
            });
        }
        best.unwrap()
    }

    #[test]
    fn the_batched_search_reads_what_one_alignment_at_a_time_reads() {
        tch::manual_seed(7);
        for search in 0..=4 {
            let layout = Layout::Spread {
                bits: 16,
                cell: 1,
                key: 24301,
                search,
                height: 28,
                width: 28,
            };
            // Random maps, flat maps (every alignment ties) and shifted copies of a true map.
            let random = Tensor::rand([40, 1, 28, 28], (Kind::Float, Device::Cpu))
                .gt(0.5)
                .to_kind(Kind::Float);
            let flat = Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu));
            let word = Tensor::rand([1, 16], (Kind::Float, Device::Cpu))
                .gt(0.5)
                .to_kind(Kind::Float);
            let map = layout.map_from_bits(&word).reshape([1, 1, 28, 28]);
            let shifted = Tensor::cat(&[shift_map(&map, 2, -1), shift_map(&map, -3, 3)], 0);
            let maps = Tensor::cat(&[random, flat, shifted], 0);
            let reading = layout.read(&maps, true);
            let (bits, agreement, shift) = read_one_by_one(&layout, &maps, search);
            assert!(reading.bits.equal(&bits), "bits differ at search {search}");
            assert!(reading.agreement.equal(&agreement), "agreement at {search}");
            assert!(
                reading.shift.equal(&shift),
                "shift differs at search {search}"
            );
        }
    }

    /// Weighted votes, checked against counts made by hand: per tile position, three pixels of
    /// weight 1 read the wrong value and one of weight 4 the right one. Counted, the three win;
    /// weighted, the one does (4 against 3), and the agreement is 4 / 7 of the weight. Weights of
    /// one give the counted reading.
    #[test]
    fn a_sure_pixel_outvotes_unsure_ones_when_votes_are_weighted() {
        let layout = Layout::Tile {
            bits: 8,
            tile: 4,
            key: 11,
            height: 8,
            width: 8,
        };
        let (slot_bit, slot_inverted) = layout.tile_slots();
        let word: Vec<bool> = (0..8).map(|k| k % 3 == 0).collect();
        // The map a pixel at tile position p shows for `word` (unshifted); unused slots read 0.
        let clean = |p: usize| match slot_bit[p] {
            Some(k) => f32::from(u8::from(word[k] != slot_inverted[p])),
            None => 0.0,
        };
        // Tile copy 0 (top left) reads right with weight 4; the other three copies read wrong.
        let (mut binary, mut weights) = (vec![0f32; 64], vec![0f32; 64]);
        for r in 0..8 {
            for c in 0..8 {
                let p = (r % 4) * 4 + c % 4;
                let sure = r < 4 && c < 4;
                binary[r * 8 + c] = if sure { clean(p) } else { 1.0 - clean(p) };
                weights[r * 8 + c] = if sure { 4.0 } else { 1.0 };
            }
        }
        let weighted = layout
            .tile_readings_weighted(&binary, Some(&weights), 8, 8)
            .unwrap();
        assert_eq!(weighted[0].word[..8], word[..]);
        assert!((weighted[0].agreement - 4.0 / 7.0).abs() < 1e-6);
        let counted = layout.tile_readings_host(&binary, 8, 8).unwrap();
        let flipped: Vec<bool> = word.iter().map(|b| !b).collect();
        assert_eq!(counted[0].word[..8], flipped[..]);
        assert!((counted[0].agreement - 0.75).abs() < 1e-6);
        let ones = layout
            .tile_readings_weighted(&binary, Some(&[1.0; 64]), 8, 8)
            .unwrap();
        assert_eq!(ones, counted);
    }
}
