//! The library's front door: open a checkpoint, then embed bits into an image and read them back,
//! in a few lines and without the command line. A checkpoint's metadata says which kind of model
//! it is: a digit model (28x28 grayscale images, a word of raw bits, [`DigitWatermarker`]) or a
//! photo model (photos of any size, a BCH-coded payload, [`PhotoModel`]). [`Watermarker::open`]
//! picks by that metadata, never by the image.
//!
//! ```
//! use wmae::codec::gray;
//! use wmae::io::data::dataset;
//! use wmae::watermarker::{DigitWatermarker, Watermarker};
//! # fn main() -> anyhow::Result<()> {
//! let digits = DigitWatermarker::open("checkpoints/default.ot".as_ref(), tch::Device::Cpu)?;
//! let test = dataset::load_split("data/mnist".as_ref(), dataset::Split::Test)?;
//! let image = gray::to_gray(&test.images_tensor(tch::Device::Cpu).get(7));
//! let bits: Vec<bool> = "0110100110010110".chars().map(|c| c == '1').collect();
//! let marked = digits.embed(&image, &bits, 1.0)?;
//! let reading = digits.read(&marked)?;
//! assert!(reading.watermarked && reading.bits == bits);
//! assert!(reading.false_positive_rate < 1e-9, "chance alone does not read this well");
//! assert!(!digits.read(&image)?.watermarked, "a clean digit carries no watermark");
//! // Or whatever the checkpoint holds:
//! match Watermarker::open("checkpoints/photo.ot".as_ref(), tch::Device::Cpu)? {
//!     Watermarker::Photos(model) => assert_eq!(model.code().data_bits(), 64),
//!     Watermarker::Digits(_) => unreachable!("checkpoints/photo.ot is a photo model"),
//! }
//! # Ok(()) }
//! ```
//!
//! `wmae embed` and `wmae extract` on digit files go through [`DigitWatermarker`] image by image,
//! so a library caller gets exactly what the command writes.

pub mod inference;
pub mod photo;
pub mod recovery;
pub mod sync;
pub mod visibility;

use std::path::Path;

use anyhow::{bail, ensure, Result};
use image::GrayImage;
use tch::{Device, Kind, Tensor};

use crate::io::checkpoint::{self, Loaded};
use crate::io::data::dataset::IMAGE_SIDE;
use crate::message::binarize::Method;
use crate::message::detect::{Detector, NullModel};
use crate::message::layout::Layout;
use crate::model::precision::Precision;

pub use crate::watermarker::photo::PhotoModel;

/// A watermarking model opened from a checkpoint, of the kind its metadata names.
pub enum Watermarker {
    /// A digit model: 28x28 grayscale images, a word of raw bits.
    Digits(DigitWatermarker),
    /// A photo model: photos of any size, a BCH-coded payload.
    Photos(PhotoModel),
}

impl Watermarker {
    /// Opens the checkpoint at `path` (`.ot` or `.safetensors` with wmae's metadata) on
    /// `device`: a photo model when its layout is a repeated tile, else a digit model.
    pub fn open(path: &Path, device: Device) -> Result<Self> {
        let (_, meta) = checkpoint::read_described(&checkpoint::resolve_default(path))?;
        Ok(match meta.layout {
            Layout::Tile { .. } => {
                Watermarker::Photos(PhotoModel::load(path, device, Precision::Fp32)?)
            }
            Layout::Block { .. } | Layout::Spread { .. } => {
                Watermarker::Digits(DigitWatermarker::open(path, device)?)
            }
        })
    }
}

/// What [`DigitWatermarker::read`] found in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct DigitReading {
    /// The word read, one entry per bit of the layout.
    pub bits: Vec<bool>,
    /// Whether the image carries a watermark, by the model's detection rule.
    pub watermarked: bool,
    /// Share of the bit-carrying pixels that agree with the word (the detector's evidence).
    pub agreement: f64,
    /// The shift (rows, columns) at which the word was read.
    pub shift: [i64; 2],
    /// Whether the map did not split into two levels (its bits are not to be trusted).
    pub unseparable: bool,
    /// The chance that an image without a watermark agrees at least this much with some word
    /// at some alignment, under the null model (independent cells).
    pub false_positive_rate: f64,
}

impl DigitReading {
    /// The word as a string of '0' and '1', as `wmae extract` prints it.
    pub fn word(&self) -> String {
        self.bits
            .iter()
            .map(|&b| if b { '1' } else { '0' })
            .collect()
    }
}

/// A digit model: embeds a word of bits into a 28x28 grayscale image and reads it back.
pub struct DigitWatermarker {
    loaded: Loaded,
    detector: Detector,
    null: NullModel,
    method: Method,
}

impl DigitWatermarker {
    /// Opens a digit model (any layout but a photo model's tile) on `device`.
    pub fn open(path: &Path, device: Device) -> Result<Self> {
        let loaded = checkpoint::load_for_inference(path, device)?;
        if let Layout::Tile { .. } = loaded.meta.layout {
            bail!(
                "{}: a photo model ({}), not a digit model; open it as a photo model",
                path.display(),
                loaded.meta.layout.describe()
            );
        }
        let detector = loaded.detector();
        let null = NullModel::for_layout(&loaded.meta.layout);
        Ok(Self {
            loaded,
            detector,
            null,
            method: Method::Threshold(0.5),
        })
    }

    /// Runs the model in `precision` from now on (bf16 only where the device computes it).
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.loaded.set_precision(precision)
    }

    /// Binarizes the extracted maps with `method` from now on (default: threshold 0.5).
    pub fn set_binarization(&mut self, method: Method) {
        self.method = method;
    }

    /// How many bits a watermark of this model holds.
    pub fn bit_count(&self) -> usize {
        self.loaded.meta.layout.bit_count() as usize
    }

    /// The model's watermark layout.
    pub fn layout(&self) -> &Layout {
        &self.loaded.meta.layout
    }

    /// The model's detection rule.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The chance that an image without a watermark reads with at least `agreement` (see
    /// [`DigitReading::false_positive_rate`]).
    pub fn false_positive_rate(&self, agreement: f64) -> f64 {
        self.null.false_positive_rate(agreement)
    }

    /// The 28x28 image carrying `bits` (one per bit of the layout), at `strength` (1: as
    /// trained; lower is fainter and less robust), rounded to 8 bits as a PNG stores it.
    pub fn embed(&self, image: &GrayImage, bits: &[bool], strength: f64) -> Result<GrayImage> {
        let mut marked = self.embed_batch(std::slice::from_ref(image), &[bits], strength)?;
        Ok(marked.remove(0))
    }

    /// [`DigitWatermarker::embed`] for several images in one forward pass, image `i` carrying
    /// `words[i]`: the same images as one call each, faster.
    pub fn embed_batch(
        &self,
        images: &[GrayImage],
        words: &[&[bool]],
        strength: f64,
    ) -> Result<Vec<GrayImage>> {
        ensure!(
            images.len() == words.len(),
            "{} images and {} words",
            images.len(),
            words.len()
        );
        if let Some(bad) = words.iter().find(|w| w.len() != self.bit_count()) {
            bail!(
                "{} bits given; this model embeds {}",
                bad.len(),
                self.bit_count()
            );
        }
        ensure!(
            strength.is_finite() && strength > 0.0,
            "strength {strength}: must be a number above 0"
        );
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.loaded.vs.device();
        let bits: Vec<f32> = words
            .iter()
            .flat_map(|w| w.iter().map(|&b| f32::from(u8::from(b))))
            .collect();
        let bits = Tensor::from_slice(&bits)
            .reshape([images.len() as i64, -1])
            .to_device(device);
        let marked = inference::embed(
            &self.loaded.model,
            &self.loaded.meta.layout,
            &images_tensor(images)?.to_device(device),
            &bits,
            strength,
        )
        .to_device(Device::Cpu);
        Ok((0..images.len() as i64)
            .map(|i| crate::codec::gray::to_gray(&marked.get(i)))
            .collect())
    }

    /// Reads the word of a 28x28 image and decides whether it carries a watermark.
    pub fn read(&self, image: &GrayImage) -> Result<DigitReading> {
        Ok(self.read_batch(std::slice::from_ref(image))?.remove(0))
    }

    /// [`DigitWatermarker::read`] for several images in one forward pass.
    pub fn read_batch(&self, images: &[GrayImage]) -> Result<Vec<DigitReading>> {
        Ok(self
            .read_scored(images, None)?
            .into_iter()
            .map(|r| DigitReading {
                bits: r.bits.chars().map(|c| c == '1').collect(),
                watermarked: r.watermarked,
                agreement: r.agreement,
                shift: r.shift,
                unseparable: r.unseparable,
                false_positive_rate: self.false_positive_rate(r.agreement),
            })
            .collect())
    }

    /// Everything read from each image (its word, the detection, the binarized map and how it
    /// was binarized) and, given the words the images should carry (one per image, 0.0 or 1.0
    /// per bit), the scores against them; add the results to a [`recovery::Tally`] for totals.
    pub fn read_scored(
        &self,
        images: &[GrayImage],
        expected: Option<&[Vec<f32>]>,
    ) -> Result<Vec<recovery::ImageResult>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.loaded.vs.device();
        let maps = inference::extract(
            &self.loaded.model,
            &images_tensor(images)?.to_device(device),
        );
        let (results, _) = recovery::read_back(
            &maps.to_kind(Kind::Float),
            &self.loaded.meta.layout,
            self.method,
            &self.detector,
            &[],
            expected,
        )?;
        Ok(results)
    }
}

/// Tensor-level access, for measurements that need what an image file cannot hold: the float
/// output before rounding, attacks applied to whole batches on the device (`wmae evaluate`,
/// `wmae attack`). Images are `(N,1,28,28)` in [0, 1], bits `(N, bits)` of 0.0 and 1.0.
impl DigitWatermarker {
    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.loaded.vs.device()
    }

    /// The watermarked images, float and unrounded, carrying `bits` at `strength`.
    pub fn embed_tensor(&self, images: &Tensor, bits: &Tensor, strength: f64) -> Tensor {
        inference::embed(
            &self.loaded.model,
            &self.loaded.meta.layout,
            images,
            bits,
            strength,
        )
    }

    /// The extracted watermark maps `(N,1,28,28)` of `images`.
    pub fn extract_maps(&self, images: &Tensor) -> Tensor {
        inference::extract(&self.loaded.model, images)
    }

    /// Reads extracted `maps` binarized with `method` (whatever [`set_binarization`] chose for
    /// images), scoring them against `expected` (one word per map) when given.
    ///
    /// [`set_binarization`]: DigitWatermarker::set_binarization
    pub fn read_maps(
        &self,
        maps: &Tensor,
        method: Method,
        expected: Option<&[Vec<f32>]>,
    ) -> Result<(Vec<recovery::ImageResult>, recovery::Totals)> {
        let names: Vec<String> = (0..maps.size()[0]).map(|i| format!("#{i}")).collect();
        recovery::read_back(
            &maps.to_kind(Kind::Float),
            &self.loaded.meta.layout,
            method,
            &self.detector,
            &names,
            expected,
        )
    }
}

/// 28x28 grayscale images as a `(N,1,28,28)` tensor in [0, 1].
fn images_tensor(images: &[GrayImage]) -> Result<Tensor> {
    let side = IMAGE_SIDE as u32;
    let mut pixels = Vec::with_capacity(images.len() * (side * side) as usize);
    for image in images {
        ensure!(
            image.dimensions() == (side, side),
            "image is {}x{} (width x height); the model expects {side}x{side}",
            image.width(),
            image.height()
        );
        pixels.extend(image.as_raw().iter().map(|&b| f32::from(b) / 255.0));
    }
    Ok(Tensor::from_slice(&pixels).reshape([images.len() as i64, 1, side as i64, side as i64]))
}
