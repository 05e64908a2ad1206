//! The training loop: batches taken on the device, Adadelta on both heads' losses, a Keras-like
//! progress bar, validation every epoch, `metrics.csv`, TensorBoard events, `last.ot` (with the
//! optimizer state, for `--resume`) and `best.ot` (lowest validation loss).
//!
//! Reproducibility: libtorch's generator is reseeded from (seed, epoch) at the start of every
//! epoch, so shuffling, dropout and random watermarks of epoch k do not depend on whether the run
//! was resumed before it; validation and test draw their watermarks from their own seeds.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::checkpoint::{self, Metadata};
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::data::images::quantize_8bit;
use crate::loss::{self, Losses, Region};
use crate::metrics::{Accumulator, Summary};
use crate::model::{self, WatermarkAutoencoder};
use crate::optim::Adadelta;
use crate::runlog::{csv_header, csv_row, print_summary, progress_bar, summary_json, truncate_csv};
use crate::watermark::{BitSource, Layout, Mode, Purpose};

/// Batch size of validation and test passes (no gradients, so larger batches are cheap).
const EVAL_BATCH: i64 = 1000;

/// How a run is placed and started.
pub struct RunOptions {
    pub dir: PathBuf,
    pub device: Device,
    pub seed: u64,
    pub resume: bool,
    /// Stop after this many epochs in total, as if interrupted (to test `--resume`).
    pub stop_after: Option<usize>,
    /// Start from these weights (fine-tuning) instead of a fresh initialisation.
    pub init: Option<PathBuf>,
    pub quiet: bool,
}

/// The model, its variables and how its losses are taken: what a pass over data needs.
pub struct Trainee {
    pub vs: VarStore,
    pub model: WatermarkAutoencoder,
    pub config: Config,
    /// Per-pixel weights of the watermark loss: 1 on the background, `block_weight` on the block
    /// (Region::Map), or 1 on the block only (Region::Block).
    watermark_weights: Tensor,
}

impl Trainee {
    pub fn new(config: Config, device: Device) -> Self {
        let vs = VarStore::new(device);
        let model = WatermarkAutoencoder::new(&vs.root(), config.model.head);
        let block = config.watermark.layout().block_mask(Kind::Float, device);
        let watermark_weights = match config.loss.watermark_region {
            Region::Map => block * (config.loss.block_weight - 1.0) + 1.0,
            Region::Block => block,
        };
        Self {
            vs,
            model,
            config,
            watermark_weights,
        }
    }

    pub fn layout(&self) -> Layout {
        self.config.watermark.layout()
    }

    /// Forward pass and the weighted losses: (total, image, watermark).
    fn losses(&self, out: &model::Output, images: &Tensor, map: &Tensor) -> Losses {
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

    /// Evaluation pass (no dropout, no gradients) over `images` with watermarks for `purpose`.
    /// With `quantize`, the watermarked image is rounded to 8 bits before extraction, exactly
    /// what saving it as an 8-bit PNG and reading it back does.
    pub fn evaluate(
        &self,
        images: &Tensor,
        purpose: Purpose,
        seed: u64,
        quantize: bool,
    ) -> Summary {
        let layout = self.layout();
        let source = BitSource::new(
            layout,
            self.config.watermark.mode,
            seed,
            purpose,
            images.device(),
        );
        let n = images.size()[0];
        let mut acc = Accumulator::new(layout);
        tch::no_grad(|| {
            // Random watermarks for evaluation come from their own seed, the same every epoch.
            tch::manual_seed(eval_seed(seed, purpose));
            let mut start = 0;
            while start < n {
                let len = EVAL_BATCH.min(n - start);
                let batch = images.narrow(0, start, len);
                let map = layout.map_from_bits(&source.draw(len));
                let mut watermarked = self.model.embed_t(&batch, &map, false);
                if quantize {
                    watermarked = quantize_8bit(&watermarked);
                }
                let predicted = self.model.extractor.forward_t(&watermarked, false);
                let out = model::Output {
                    watermarked,
                    watermark_map: predicted,
                };
                let losses = self.losses(&out, &batch, &map);
                acc.add(&batch, &map, &out, &losses);
                start += len;
            }
        });
        acc.summary()
    }
}

fn eval_seed(seed: u64, purpose: Purpose) -> i64 {
    (crate::splitmix::splitmix64(seed ^ (0xE7A1 << 16) ^ purpose as u64) >> 1) as i64
}

fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    (crate::splitmix::splitmix64(seed.wrapping_mul(0x1_0000_0001).wrapping_add(epoch as u64)) >> 1)
        as i64
}

/// The images of `range` of a split, checked against its size.
fn slice_images(all: &Tensor, range: [usize; 2], key: &str) -> Result<Tensor> {
    let n = all.size()[0] as usize;
    let [start, end] = range;
    if end > n {
        bail!("{key} = [{start}, {end}]: the training split has only {n} images");
    }
    Ok(all.narrow(0, start as i64, (end - start) as i64))
}

pub fn run(config: Config, opts: &RunOptions) -> Result<PathBuf> {
    let device = opts.device;
    let dataset = Dataset::load(&config.data.dir)?;
    let all_train = dataset.train.images_tensor(device);
    let train_images = slice_images(&all_train, config.data.train_range, "data.train_range")?;
    let val_images = slice_images(
        &all_train,
        config.data.validation_range,
        "data.validation_range",
    )?;
    let test_images = dataset.test.images_tensor(device);

    let mut trainee = Trainee::new(config.clone(), device);
    let layout = trainee.layout();
    let mut optimizer = Adadelta::new(&trainee.vs, config.optimizer);
    let parameters = model::parameter_count(&trainee.vs);

    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let csv_path = opts.dir.join("metrics.csv");
    let last_path = opts.dir.join("last.ot");
    let best_path = opts.dir.join("best.ot");
    let config_toml = config.to_toml()?;

    let (start_epoch, mut best_loss, mut csv) = if opts.resume {
        let meta = checkpoint::load_metadata(&last_path)?;
        let named = checkpoint::load_tensors(&last_path)?;
        checkpoint::load_model(&last_path, &mut trainee.vs, &named)?;
        optimizer
            .load_state(&named)
            .with_context(|| format!("{}", last_path.display()))?;
        (
            meta.epoch,
            meta.best_validation_loss.unwrap_or(f64::INFINITY),
            truncate_csv(&csv_path, meta.epoch)?,
        )
    } else {
        if let Some(init) = &opts.init {
            let named = checkpoint::load_tensors(init)?;
            checkpoint::load_model(init, &mut trainee.vs, &named)?;
        }
        (0, f64::INFINITY, format!("{}\n", csv_header()))
    };
    crate::fsutil::write_atomically(&opts.dir.join("config.toml"), |f| {
        f.write_all(config_toml.as_bytes())
    })?;
    let events_dir = opts.dir.join("tensorboard");
    if !opts.resume && last_path.exists() {
        // A fresh run in an old run's folder replaces it; its event files would otherwise be
        // shown by TensorBoard as one run with two histories.
        println!("note: replacing the earlier run in {}", opts.dir.display());
        if events_dir.exists() {
            std::fs::remove_dir_all(&events_dir)
                .with_context(|| format!("cannot clear {}", events_dir.display()))?;
        }
    }
    let mut events = crate::tensorboard::EventWriter::create(&events_dir)?;

    let c = &config;
    println!(
        "wmae train: run {} | device {} | {} parameters | watermark {}x{} at ({}, {}), {} mode | head {:?}",
        opts.dir.display(),
        crate::device::describe(device),
        parameters,
        layout.rows,
        layout.cols,
        layout.top,
        layout.left,
        match c.watermark.mode {
            Mode::Fixed => "fixed",
            Mode::Random => "random",
        },
        c.model.head,
    );
    println!(
        "  data {} ({} train, {} validation, {} test) | loss image {:?} x{} + watermark {:?} x{} on the {:?} (block weight {}) | \
         Adadelta lr {} rho {} eps {:e} | batch {} | epochs {} (lr decays to x{})",
        c.data.dir.display(),
        train_images.size()[0],
        val_images.size()[0],
        test_images.size()[0],
        c.loss.image,
        c.loss.image_weight,
        c.loss.watermark,
        c.loss.watermark_weight,
        c.loss.watermark_region,
        c.loss.block_weight,
        c.optimizer.lr,
        c.optimizer.rho,
        c.optimizer.eps,
        c.train.batch_size,
        c.train.epochs,
        c.train.final_lr_fraction
    );
    if start_epoch > 0 {
        println!(
            "  resumed from {} after epoch {start_epoch}",
            last_path.display()
        );
    }

    let end_epoch = opts
        .stop_after
        .map_or(c.train.epochs, |k| k.min(c.train.epochs));
    let n_train = train_images.size()[0];
    let batch_size = c.train.batch_size as i64;
    let batches = (n_train + batch_size - 1) / batch_size;
    let source = BitSource::new(layout, c.watermark.mode, opts.seed, Purpose::Train, device);
    for epoch in start_epoch..end_epoch {
        let started = Instant::now();
        tch::manual_seed(epoch_seed(opts.seed, epoch));
        let lr = c.lr_at(epoch);
        optimizer.config.lr = lr;
        let bar = progress_bar(batches as u64, epoch + 1, c.train.epochs, opts.quiet);
        let order = Tensor::randperm(n_train, (Kind::Int64, device));
        let mut acc = Accumulator::new(layout);
        for b in 0..batches {
            let start = b * batch_size;
            let len = batch_size.min(n_train - start);
            let idx = order.narrow(0, start, len);
            let images = train_images.index_select(0, &idx);
            let map = layout.map_from_bits(&source.draw(len));
            let out = trainee.model.forward_t(&images, &map, true);
            let losses = trainee.losses(&out, &images, &map);
            optimizer.zero_grad();
            losses.total.backward();
            optimizer.step();
            acc.add(&images, &map, &out, &losses);
            if b % 8 == 7 || b + 1 == batches {
                let s = acc.summary();
                bar.set_message(format!(
                    "loss {:.5}  bits {:.2}%",
                    s.loss,
                    100.0 * s.bit_accuracy
                ));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train = acc.summary();
        let val = trainee.evaluate(&val_images, Purpose::Validation, opts.seed, false);
        if !train.loss.is_finite() {
            bail!(
                "epoch {}: the training loss is {}; lower optimizer.lr",
                epoch + 1,
                train.loss
            );
        }
        println!(
            "epoch {}/{} ({:.1} s, lr {:.4})",
            epoch + 1,
            c.train.epochs,
            started.elapsed().as_secs_f64(),
            lr
        );
        print_summary("train", &train);
        print_summary("val", &val);

        csv.push_str(&csv_row(epoch + 1, lr, &train, &val));
        csv.push('\n');
        crate::fsutil::write_atomically(&csv_path, |f| f.write_all(csv.as_bytes()))?;
        let mut scalars = vec![("lr".to_string(), lr)];
        for (split, s) in [("train", &train), ("val", &val)] {
            scalars.extend(s.fields().iter().map(|(n, v)| (format!("{split}/{n}"), *v)));
        }
        events.scalars((epoch + 1) as i64, &scalars)?;

        let improved = val.loss < best_loss;
        if improved {
            best_loss = val.loss;
        }
        let meta = Metadata {
            format: checkpoint::FORMAT.to_string(),
            architecture: "seed".to_string(),
            layout,
            head: c.model.head,
            parameters,
            epoch: epoch + 1,
            best_validation_loss: Some(best_loss),
            config: config_toml.clone(),
        };
        if improved {
            checkpoint::save(&best_path, &trainee.vs, None, &meta)?;
        }
        checkpoint::save(&last_path, &trainee.vs, Some(&optimizer), &meta)?;
    }
    if end_epoch < c.train.epochs {
        println!("stopped after epoch {end_epoch} as asked; continue with --resume");
        return Ok(opts.dir.clone());
    }

    // Test figures of the best checkpoint, float and after the 8-bit round trip.
    let named = checkpoint::load_tensors(&best_path)?;
    checkpoint::load_model(&best_path, &mut trainee.vs, &named)?;
    let test = trainee.evaluate(&test_images, Purpose::Test, opts.seed, false);
    let test_8bit = trainee.evaluate(&test_images, Purpose::Test, opts.seed, true);
    println!("test split, best checkpoint ({}):", best_path.display());
    print_summary("float", &test);
    print_summary("8-bit", &test_8bit);
    let report = serde_json::json!({
        "checkpoint": best_path,
        "float": summary_json(&test),
        "png_8bit": summary_json(&test_8bit),
    });
    let text = serde_json::to_string_pretty(&report)?;
    crate::fsutil::write_atomically(&opts.dir.join("test_metrics.json"), |f| {
        f.write_all(text.as_bytes())
    })?;
    Ok(opts.dir.clone())
}
