//! The one inference path every command takes: embed bits into images, store the watermarked
//! images as a file would, extract the watermark maps. Training-time validation, `evaluate`,
//! `extract` and `embed` all call these functions, so what they measure is what a user gets;
//! attacks on the stored images slot in between `store` and `extract`.
//!
//! Everything runs without gradients, in evaluation mode (no dropout), in batches of `BATCH`
//! images so memory stays bounded whatever the number of inputs.

use tch::Tensor;

use crate::codec::gray::quantize_8bit;
use crate::message::watermark::Layout;
use crate::model::WatermarkAutoencoder;

/// Images per forward pass: large enough to keep the CPU busy, small enough that activations of
/// the seed model stay around 200 MB.
pub const BATCH: i64 = 1000;

/// How a watermarked image is kept between embedding and extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The model's float output, as is.
    Float,
    /// Clipped to [0, 1] and rounded to k/255, as an 8-bit PNG file stores it.
    Png8,
}

/// Applies `f` to consecutive batches of `images` `(N,...)` and concatenates the results.
fn batched(images: &Tensor, f: impl Fn(&Tensor, i64, i64) -> Tensor) -> Tensor {
    let n = images.size()[0];
    if n <= BATCH {
        return f(images, 0, n);
    }
    let parts: Vec<Tensor> = (0..n)
        .step_by(BATCH as usize)
        .map(|start| {
            let len = BATCH.min(n - start);
            f(&images.narrow(0, start, len), start, len)
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// The watermarked images `(N,1,H,W)` (float) of `images` carrying `bits` `(N, bits)`, at
/// `strength`: original + strength x (model output - original). 1 is what the model was trained
/// for; less trades robustness for PSNR, more the other way, without retraining.
pub fn embed(
    model: &WatermarkAutoencoder,
    layout: &Layout,
    images: &Tensor,
    bits: &Tensor,
    strength: f64,
) -> Tensor {
    tch::no_grad(|| {
        batched(images, |batch, start, len| {
            let map = layout.map_from_bits(&bits.narrow(0, start, len).to_device(batch.device()));
            let out = model.embed_t(batch, &map, false);
            if strength == 1.0 {
                out
            } else {
                (batch + (out - batch) * strength).clamp(0.0, 1.0)
            }
        })
    })
}

/// What storing the watermarked images as `storage` leaves of them.
pub fn store(watermarked: &Tensor, storage: Storage) -> Tensor {
    match storage {
        Storage::Float => watermarked.shallow_clone(),
        Storage::Png8 => quantize_8bit(watermarked),
    }
}

/// The extracted watermark maps `(N,1,H,W)` of (watermarked or not) `images`.
pub fn extract(model: &WatermarkAutoencoder, images: &Tensor) -> Tensor {
    tch::no_grad(|| {
        batched(images, |batch, _, _| {
            model.extractor.forward_t(batch, false)
        })
    })
}

/// One embed, store and extract of `images` with `bits`.
pub struct RoundTrip {
    /// The watermarked images as stored.
    pub watermarked: Tensor,
    /// The maps extracted from them.
    pub maps: Tensor,
}

/// Embeds `bits` in `images` at full strength, stores the result as `storage` says and extracts
/// the maps back, as validation, `evaluate` and `extract` without inputs do.
pub fn round_trip(
    model: &WatermarkAutoencoder,
    layout: &Layout,
    images: &Tensor,
    bits: &Tensor,
    storage: Storage,
) -> RoundTrip {
    let watermarked = store(&embed(model, layout, images, bits, 1.0), storage);
    let maps = extract(model, &watermarked);
    RoundTrip { watermarked, maps }
}
