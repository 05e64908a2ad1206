//! The model under training with the way its losses are taken, and its evaluation passes.

use anyhow::Result;
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::learning::config::Config;
use crate::learning::loss::{self, Losses, Region};
use crate::learning::metrics::{Accumulator, Summary};
use crate::learning::noise::NoiseLayers;
use crate::message::watermark::{BitSource, Layout, Purpose};
use crate::model::{self, WatermarkAutoencoder};
use crate::watermarker::inference::{self, Storage};

/// The model, its variables and how its losses are taken: what a pass over data needs.
pub struct Trainee {
    /// The model's variables, trained in place.
    pub vs: VarStore,
    /// The model being trained.
    pub model: WatermarkAutoencoder,
    /// The run's config.
    pub config: Config,
    /// Per-pixel weights of the watermark loss: 1 on the background, `block_weight` on the block
    /// (Region::Map), or 1 on the block only (Region::Block).
    watermark_weights: Tensor,
    /// What happens to the watermarked image before the extractor sees it, in training.
    pub(super) noise: NoiseLayers,
}

impl Trainee {
    /// A freshly initialised model of `config` on `device`, with its loss weights and noise
    /// layers.
    pub fn new(config: Config, device: Device) -> Result<Self> {
        let vs = VarStore::new(device);
        let mut model =
            WatermarkAutoencoder::build(&vs.root(), config.model.architecture, config.model.head);
        model.jnd_fraction = config.model.jnd_fraction;
        model.jnd_flat_weight = config.model.jnd_flat_weight;
        if config.train.freeze_embedder {
            model.freeze_embedder();
        }
        let block = config.watermark.layout().carrier_mask(Kind::Float, device);
        let watermark_weights = match config.loss.watermark_region {
            Region::Map => block * (config.loss.block_weight - 1.0) + 1.0,
            Region::Block => block,
        };
        let noise = NoiseLayers::new(&config.noise)?;
        Ok(Self {
            vs,
            model,
            config,
            watermark_weights,
            noise,
        })
    }

    /// The watermark layout of the run.
    pub fn layout(&self) -> Layout {
        self.config.watermark.layout()
    }

    /// The weighted losses of both heads' outputs against the originals and the true maps.
    pub(super) fn losses(&self, out: &model::Output, images: &Tensor, map: &Tensor) -> Losses {
        let c = &self.config.loss;
        let image_loss = loss::mean_loss(c.image, &out.watermarked, images);
        let watermark_loss = match (c.watermark_region, c.block_weight) {
            // The seed's plain mean, computed as Keras does.
            (Region::Map, 1.0) => loss::mean_loss(c.watermark, &out.watermark_map, map),
            _ => loss::weighted_mean_loss(
                c.watermark,
                &out.watermark_map,
                map,
                &self.watermark_weights,
            ),
        };
        let total = &image_loss * c.image_weight + &watermark_loss * c.watermark_weight;
        Losses {
            total,
            image: image_loss,
            watermark: watermark_loss,
        }
    }

    /// Evaluation pass over `images` with watermarks for `purpose`, through the inference path
    /// users get: with `Storage::Png8` the watermarked image is rounded to 8 bits before
    /// extraction, exactly what saving it as an 8-bit PNG and reading it back does.
    pub fn evaluate(
        &self,
        images: &Tensor,
        purpose: Purpose,
        seed: u64,
        storage: Storage,
    ) -> Summary {
        let layout = self.layout();
        let source = BitSource::new(
            layout,
            self.config.watermark.mode,
            seed,
            purpose,
            images.device(),
        );
        // Random watermarks for evaluation come from their own seed, the same every epoch.
        tch::manual_seed(eval_seed(seed, purpose));
        let bits = source.draw(images.size()[0]);
        let trip = inference::round_trip(&self.model, &layout, images, &bits, storage);
        let map = layout.map_from_bits(&bits);
        let out = model::Output {
            watermarked: trip.watermarked,
            watermark_map: trip.maps,
        };
        let mut acc = Accumulator::new(layout);
        tch::no_grad(|| acc.add(images, &bits, &out, &self.losses(&out, images, &map)));
        acc.summary()
    }
}

fn eval_seed(seed: u64, purpose: Purpose) -> i64 {
    (crate::runtime::splitmix::splitmix64(seed ^ (0xE7A1 << 16) ^ purpose as u64) >> 1) as i64
}

pub(super) fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    (crate::runtime::splitmix::splitmix64(
        seed.wrapping_mul(0x1_0000_0001).wrapping_add(epoch as u64),
    ) >> 1) as i64
}
