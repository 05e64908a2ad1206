//! A data set in the MNIST layout: a folder with `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each plain or
//! `.gz` (the `train-images.idx3-ubyte` spelling of some mirrors is accepted too). The embedded
//! MNIST digits, Fashion-MNIST and the full MNIST all come in this layout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::idx::{self, IdxArray};

/// Side of the square images the seed model works on.
pub const IMAGE_SIDE: usize = 28;

/// Which half of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training split (`train-*` files).
    Train,
    /// The test split (`t10k-*` files).
    Test,
}

impl Split {
    fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The split's name in messages: `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Images and labels of one split, still as bytes.
#[derive(Debug, Clone)]
pub struct RawSplit {
    /// The images, `(N,28,28)` bytes.
    pub images: IdxArray,
    /// The labels, `(N)` bytes, one per image.
    pub labels: IdxArray,
}

impl RawSplit {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Images as an `f32` tensor `(N,1,28,28)` in [0, 1] on `device`.
    pub fn images_tensor(&self, device: Device) -> Tensor {
        let d = &self.images.dims;
        Tensor::from_slice(&self.images.data)
            .reshape([d[0] as i64, 1, d[1] as i64, d[2] as i64])
            .to_device(device)
            .to_kind(Kind::Float)
            / 255.0
    }

    /// Labels as an `i64` tensor `(N,)` on `device`.
    pub fn labels_tensor(&self, device: Device) -> Tensor {
        Tensor::from_slice(&self.labels.data)
            .to_kind(Kind::Int64)
            .to_device(device)
    }
}

/// Finds the `what` (images or labels) file of `split` in `dir`, trying the usual spellings
/// (`train-images-idx3-ubyte`, `train-images.idx3-ubyte`), plain or gzip.
fn find_file(dir: &Path, split: Split, what: &str, rank: usize) -> Result<PathBuf> {
    let prefix = split.file_prefix();
    let stems = [
        format!("{prefix}-{what}-idx{rank}-ubyte"),
        format!("{prefix}-{what}.idx{rank}-ubyte"),
    ];
    for stem in &stems {
        for name in [stem.clone(), format!("{stem}.gz")] {
            let path = dir.join(&name);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    bail!(
        "{}: no {} file for the {} split (looked for {}[.gz])",
        dir.display(),
        what,
        split.name(),
        stems.join("[.gz] or ")
    )
}

/// Loads one split of the data set in `dir`, checking that images are `N x 28 x 28` and that
/// there is one label per image.
pub fn load_split(dir: &Path, split: Split) -> Result<RawSplit> {
    if !dir.is_dir() {
        bail!(
            "data folder {} does not exist (run `scripts/fetch-data` for the embedded digits, or pass --data-dir)",
            dir.display()
        );
    }
    let images_path = find_file(dir, split, "images", 3)?;
    let labels_path = find_file(dir, split, "labels", 1)?;
    let images = idx::read(&images_path, Some(3))?;
    if images.dims[1] != IMAGE_SIDE || images.dims[2] != IMAGE_SIDE {
        bail!(
            "{}: images are {}x{}, wmae's model expects {IMAGE_SIDE}x{IMAGE_SIDE}",
            images_path.display(),
            images.dims[1],
            images.dims[2]
        );
    }
    let labels = idx::read(&labels_path, Some(1))?;
    if labels.len() != images.len() {
        bail!(
            "{} holds {} labels but {} holds {} images",
            labels_path.display(),
            labels.len(),
            images_path.display(),
            images.len()
        );
    }
    Ok(RawSplit { images, labels })
}

/// Both splits of a data set folder.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder it was loaded from.
    pub dir: PathBuf,
    /// The training split.
    pub train: RawSplit,
    /// The test split.
    pub test: RawSplit,
}

impl Dataset {
    /// Loads and checks both splits of the data set folder `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let train = load_split(dir, Split::Train).context("loading the training split")?;
        let test = load_split(dir, Split::Test).context("loading the test split")?;
        Ok(Self {
            dir: dir.to_path_buf(),
            train,
            test,
        })
    }
}
