//! The TOML schema of a training run, its defaults, CLI overrides and validation. Unknown keys
//! and bad values are refused with the key and the allowed values named.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::learning::loss::{LossKind, Region};
use crate::learning::noise::NoiseConfig;
use crate::learning::optim::AdadeltaConfig;
use crate::message::watermark::{Layout, Mode};
use crate::model::Head;

/// A training run's config, as its TOML file gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the run folder under `runs/`.
    pub name: String,
    /// The data trained and validated on (`[data]`).
    pub data: DataConfig,
    /// The watermark's bits and layout (`[watermark]`).
    #[serde(default)]
    pub watermark: WatermarkConfig,
    /// The network (`[model]`).
    #[serde(default)]
    pub model: ModelConfig,
    /// The losses of both heads and how they are weighed (`[loss]`).
    pub loss: LossConfig,
    /// Adadelta's settings (`[optimizer]`).
    #[serde(default)]
    pub optimizer: AdadeltaConfig,
    /// Epochs, batch size and learning-rate schedule (`[train]`).
    pub train: TrainConfig,
    /// Noise layers between the decoder and the extractor in training (default: none).
    #[serde(default, skip_serializing_if = "NoiseConfig::is_default")]
    pub noise: NoiseConfig,
}

/// The `[data]` table: where the images come from and how they are split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// What `dir` holds: a data set in the MNIST IDX layout, or photos.
    #[serde(default)]
    pub kind: DataKind,
    /// Folder in the MNIST IDX layout, or (photos) a folder with `train/` and `test/` photos.
    pub dir: PathBuf,
    /// IDX: training images, `[start, end)` of the data set's training split (Python slice).
    #[serde(default)]
    pub train_range: [usize; 2],
    /// IDX: validation images, `[start, end)` of the training split.
    #[serde(default)]
    pub validation_range: [usize; 2],
    /// Photos: random crops drawn from the training photos afresh every epoch.
    #[serde(default)]
    pub patches: usize,
    /// Photos: every `validation_every`-th training photo is held out for validation crops.
    #[serde(default = "eight")]
    pub validation_every: usize,
    /// Photos: crops drawn from the validation photos (the same every epoch).
    #[serde(default)]
    pub validation_patches: usize,
    /// Photos: longer side of a photo once loaded (downscaled to it): the scale the model sees.
    #[serde(default = "default_max_side")]
    pub max_side: u32,
}

fn eight() -> usize {
    8
}

fn default_max_side() -> u32 {
    1024
}

/// What a data folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// MNIST-like 28x28 grayscale images in IDX files.
    #[default]
    Idx,
    /// Photos of any size (PNG, JPEG), trained on as luma crops at `watermark.size`.
    Photos,
}

/// Where the bits go in the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// `rows x cols` bits in one block at (`top`, `left`): the seed.
    #[default]
    Block,
    /// `rows x cols` bits spread over the whole map in `cell x cell` cells (keyed by `key`),
    /// read back at shifts up to `search` pixels.
    Spread,
    /// `rows x cols` bits in a `tile x tile` tile (positions keyed by `key`) repeated over the
    /// map, read at every cyclic shift of the tile: survives crops (the photo layout).
    Tile,
}

/// The `[watermark]` table: how the bits are drawn in training and where they go in the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkConfig {
    /// Fixed bits per purpose (the seed) or fresh random bits for every image.
    pub mode: Mode,
    /// Where the bits go in the map: block, spread or tile.
    pub layout: LayoutKind,
    /// The payload: rows x cols bits (a block's shape; for a spread layout only the product counts).
    pub rows: i64,
    /// The payload's columns: see `rows`.
    pub cols: i64,
    /// Block layout: the block's top-left pixel.
    pub top: i64,
    /// Block layout: the column of the block's top-left pixel (`top` is its row).
    pub left: i64,
    /// Spread layout: cell side in pixels, the key of the cell assignment, the shift search.
    pub cell: i64,
    /// Spread and tile layouts: the key that places the bits.
    pub key: u64,
    /// Spread layout: the largest shift, in pixels, the reader tries in each direction.
    pub search: i64,
    /// Tile layout: the tile's side in pixels.
    pub tile: i64,
    /// Side of the square map, which is the side of the images the model works at (28 for the
    /// digits; the working size for photos).
    pub size: i64,
    /// Tile layout: data bits of the payload that `embed --payload` writes, BCH-coded into the
    /// tile's bits (0: none; training uses random bits either way).
    pub payload_bits: usize,
    /// Tile layout: the side of the square a photo is squashed to for embedding and reading
    /// (0: `size`). The networks are convolutional, so a model trained on `size` patches runs at
    /// any side; a larger one writes a finer pattern (less visible on a large photo) with more
    /// copies of the tile to vote (a fainter change reads).
    pub photo_size: i64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Random,
            layout: LayoutKind::Block,
            rows: 4,
            cols: 4,
            top: 0,
            left: 0,
            cell: 1,
            key: 0x5EED,
            search: 2,
            tile: 16,
            size: crate::model::SEED_IMAGE_SIDE,
            payload_bits: 0,
            photo_size: 0,
        }
    }
}

impl WatermarkConfig {
    /// The side photos are squashed to (`photo_size`, or `size` when that is 0).
    pub fn photo_side(&self) -> i64 {
        if self.photo_size > 0 {
            self.photo_size
        } else {
            self.size
        }
    }

    /// The layout on the `size x size` map.
    pub fn layout(&self) -> Layout {
        let side = self.size;
        match self.layout {
            LayoutKind::Block => Layout::Block {
                rows: self.rows,
                cols: self.cols,
                top: self.top,
                left: self.left,
                height: side,
                width: side,
            },
            LayoutKind::Spread => Layout::Spread {
                bits: self.rows.saturating_mul(self.cols),
                cell: self.cell,
                key: self.key,
                search: self.search,
                height: side,
                width: side,
            },
            LayoutKind::Tile => Layout::Tile {
                bits: self.rows.saturating_mul(self.cols),
                tile: self.tile,
                key: self.key,
                height: side,
                width: side,
            },
        }
    }
}

/// The `[model]` table: the network's graph and head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The graph around the seed's layers.
    pub architecture: crate::model::Architecture,
    /// The activation of the watermark head.
    pub head: Head,
    /// `seed-jnd` only: the fraction of each pixel's just-noticeable difference the change
    /// reaches at full pattern (`crate::model::jnd`).
    pub jnd_fraction: f64,
    /// `seed-jnd` only: the weight of flat areas against texture in the just-noticeable
    /// difference (`crate::model::jnd`): 1 is the classic model.
    pub jnd_flat_weight: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            architecture: crate::model::Architecture::default(),
            head: Head::default(),
            jnd_fraction: crate::model::DEFAULT_JND_FRACTION,
            jnd_flat_weight: crate::model::jnd::DEFAULT_FLAT_WEIGHT,
        }
    }
}

/// The `[loss]` table: each head's loss and their weights in the trained sum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// The image head's loss (watermarked image against the original).
    pub image: LossKind,
    /// The watermark head's loss (extracted map against the embedded one).
    pub watermark: LossKind,
    /// Weight of the image loss in the total (default 1, >= 0).
    #[serde(default = "one")]
    pub image_weight: f64,
    /// Weight of the watermark loss in the total (default 1, >= 0).
    #[serde(default = "one")]
    pub watermark_weight: f64,
    /// Where the watermark loss is taken: the whole map (seed) or the bit block.
    #[serde(default)]
    pub watermark_region: Region,
    /// With `watermark_region = "map"`: how much more a block pixel counts than a background
    /// pixel (1: the seed's plain mean; 49 = 784/16: block and background weigh the same).
    #[serde(default = "one")]
    pub block_weight: f64,
}

/// Checks a flat weight (`model.jnd_flat_weight`, `embed --flat-weight`), named `key` in the
/// message: from an eighth to 8 times the classic model's luminance adaptation.
pub fn check_flat_weight(weight: f64, key: &str) -> Result<()> {
    if !(0.125..=8.0).contains(&weight) {
        bail!("{key} = {weight}: must lie in [0.125, 8] (1 is the classic JND, 2 marks flat areas twice as strongly)");
    }
    Ok(())
}

fn one() -> f64 {
    1.0
}

/// The `[train]` table: how long and in what batches to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs in total (at least 1).
    pub epochs: usize,
    /// Images (or photo crops) per batch (at least 1).
    pub batch_size: usize,
    /// Epochs over which lr decays by a cosine to `final_lr_fraction * lr`; 1.0 keeps it constant.
    #[serde(default = "one")]
    pub final_lr_fraction: f64,
    /// Train the extractor alone: the encoder and decoder keep their `--init` weights and run
    /// without dropout, so the pattern photos get stays what it was.
    #[serde(default)]
    pub freeze_embedder: bool,
}

/// Values given on the command line that replace the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `train.epochs`.
    pub epochs: Option<usize>,
    /// Replaces `train.batch_size`.
    pub batch_size: Option<usize>,
    /// Replaces `optimizer.lr`.
    pub lr: Option<f64>,
    /// Replaces `data.dir`.
    pub data_dir: Option<PathBuf>,
    /// Replaces `name`.
    pub name: Option<String>,
    /// Replaces `watermark.mode`.
    pub watermark_mode: Option<Mode>,
    /// Replaces `model.head`.
    pub head: Option<Head>,
}

impl Config {
    /// Reads, parses and validates a TOML config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses and validates a config from TOML text.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        config.validate()?;
        Ok(config)
    }

    /// Replaces the values `o` gives, then validates the result.
    pub fn apply(&mut self, o: &Overrides) -> Result<()> {
        if let Some(v) = o.epochs {
            self.train.epochs = v;
        }
        if let Some(v) = o.batch_size {
            self.train.batch_size = v;
        }
        if let Some(v) = o.lr {
            self.optimizer.lr = v;
        }
        if let Some(v) = &o.data_dir {
            self.data.dir = v.clone();
        }
        if let Some(v) = &o.name {
            self.name = v.clone();
        }
        if let Some(v) = o.watermark_mode {
            self.watermark.mode = v;
        }
        if let Some(v) = o.head {
            self.model.head = v;
        }
        self.validate()
    }

    /// A payload needs a tile layout and a BCH code that fits its bits within the detection
    /// budget of every reading the photo reader tries.
    fn validate_payload(&self) -> Result<()> {
        let bits = self.watermark.payload_bits;
        if bits == 0 {
            return Ok(());
        }
        if !bits.is_multiple_of(8) {
            bail!("watermark.payload_bits = {bits}: must be a multiple of 8 (payloads are bytes)");
        }
        let Layout::Tile {
            bits: slots, tile, ..
        } = self.watermark.layout()
        else {
            bail!("watermark.payload_bits = {bits}: payloads need layout = \"tile\"");
        };
        crate::message::payload::PayloadCode::new(
            bits,
            slots as usize,
            crate::message::search::readings(tile),
            crate::message::search::MAX_FALSE_POSITIVE_RATE,
        )
        .map(|_| ())
        .with_context(|| format!("watermark.payload_bits = {bits}"))
    }

    /// Checks every value and how they fit together, naming the key of the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            bail!(
                "name = {:?}: a run name must be a non-empty folder name without '/'",
                self.name
            );
        }
        let photo_size = self.watermark.photo_size;
        if photo_size != 0 && !(16..=2048).contains(&photo_size) {
            bail!("watermark.photo_size = {photo_size}: must be 0 (the size) or 16..=2048");
        }
        let fraction = self.model.jnd_fraction;
        if !(fraction > 0.0 && fraction <= 4.0) {
            bail!("model.jnd_fraction = {fraction}: must lie in (0, 4]");
        }
        check_flat_weight(self.model.jnd_flat_weight, "model.jnd_flat_weight")?;
        match self.data.kind {
            DataKind::Idx => {
                for (key, [start, end]) in [
                    ("data.train_range", self.data.train_range),
                    ("data.validation_range", self.data.validation_range),
                ] {
                    if start >= end {
                        bail!("{key} = [{start}, {end}]: start must be below end");
                    }
                }
                let size = self.watermark.size;
                if size != crate::model::SEED_IMAGE_SIDE {
                    bail!(
                        "watermark.size = {size}: IDX data sets hold {0}x{0} images",
                        crate::model::SEED_IMAGE_SIDE
                    );
                }
            }
            DataKind::Photos => {
                let d = &self.data;
                if d.patches < self.train.batch_size.max(1) {
                    bail!(
                        "data.patches = {}: photos need at least one batch ({}) of training crops \
                         per epoch",
                        d.patches,
                        self.train.batch_size
                    );
                }
                if d.validation_patches == 0 || d.validation_every < 2 {
                    bail!(
                        "data.validation_patches = {} and data.validation_every = {}: photos need \
                         validation crops (> 0) from every n-th training photo (n >= 2)",
                        d.validation_patches,
                        d.validation_every
                    );
                }
                if !(64..=8192).contains(&d.max_side) {
                    bail!("data.max_side = {}: must lie in 64..=8192", d.max_side);
                }
                if !(16..=1024).contains(&self.watermark.size) {
                    bail!(
                        "watermark.size = {}: must lie in 16..=1024",
                        self.watermark.size
                    );
                }
            }
        }
        self.watermark.layout().validate("watermark")?;
        self.validate_payload()?;
        for (key, w) in [
            ("loss.image_weight", self.loss.image_weight),
            ("loss.watermark_weight", self.loss.watermark_weight),
            ("loss.block_weight", self.loss.block_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                bail!("{key} = {w}: a loss weight must be a number >= 0");
            }
        }
        if self.loss.watermark == LossKind::Bce && self.model.head == Head::Hard {
            bail!(
                "loss.watermark = \"bce\" with model.head = \"hard\": BCE clips the head's exact 0/1 \
                 outputs to [1e-7, 1-1e-7], where no gradient flows; use loss.watermark = \"mse\" \
                 or model.head = \"sigmoid\""
            );
        }
        self.optimizer.validate("optimizer")?;
        self.noise.validate("noise")?;
        if self.train.epochs == 0 {
            bail!("train.epochs = 0: at least one epoch is needed");
        }
        if self.train.batch_size == 0 {
            bail!("train.batch_size = 0: a batch needs at least one image");
        }
        let f = self.train.final_lr_fraction;
        if !(f > 0.0 && f <= 1.0) {
            bail!("train.final_lr_fraction = {f}: must lie in (0, 1]");
        }
        Ok(())
    }

    /// The learning rate of `epoch` (0-based): cosine decay from lr to final_lr_fraction * lr.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let lr = self.optimizer.lr;
        let f = self.train.final_lr_fraction;
        if self.train.epochs <= 1 || f >= 1.0 {
            return lr;
        }
        let t = epoch as f64 / (self.train.epochs - 1) as f64;
        lr * (f + (1.0 - f) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }

    /// The config as TOML text, as a run folder's config.toml holds it.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot serialise the config")
    }
}
