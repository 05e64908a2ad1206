//! The training loop: batches taken on the device, Adadelta on both heads' losses, a Keras-like
//! progress bar, validation every epoch, `metrics.csv`, TensorBoard events, `last.ot` (with the
//! optimizer state, for `--resume`) and `best.ot` (lowest validation loss).
//!
//! Reproducibility: libtorch's generator is reseeded from (seed, epoch) at the start of every
//! epoch, so shuffling, dropout and random watermarks of epoch k do not depend on whether the run
//! was resumed before it; validation and test draw their watermarks from their own seeds.
//!
//! Faults: the run folder is locked for the whole run (a second run into it stops at once); every
//! file is written to a temporary file and renamed into place, checkpoints as one file each, so a
//! run killed at any moment resumes from a consistent epoch to the uninterrupted result.

mod folder;
mod trainee;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::io::checkpoint::{self, Metadata};
use crate::io::data::dataset::Dataset;
use crate::io::data::photos::PhotoSet;
use crate::io::runlog::{csv_row, print_summary, progress_bar, summary_json};
use crate::io::tensorboard::EventWriter;
use crate::learning::config::{Config, DataKind};
use crate::learning::metrics::{Accumulator, Summary};
use crate::learning::optim::Adadelta;
use crate::message::detect::Calibration;
use crate::message::watermark::{BitSource, Layout, Mode, Purpose};
use crate::model::{self, WatermarkAutoencoder};
use crate::watermarker::inference::{self, Storage};

use folder::{start, Progress, RunFolder};
use trainee::epoch_seed;
pub use trainee::Trainee;

/// How a run is placed and started.
pub struct RunOptions {
    /// The run folder.
    pub dir: PathBuf,
    /// Where the model trains.
    pub device: Device,
    /// Seed of the weights, shuffling, dropout and watermarks (libtorch's generator is reseeded
    /// from it and the epoch every epoch).
    pub seed: u64,
    /// Continue the run in `dir` from its `last.ot`.
    pub resume: bool,
    /// Stop after this many epochs in total, as if interrupted (to test `--resume`).
    pub stop_after: Option<usize>,
    /// Start from these weights (fine-tuning) instead of a fresh initialisation.
    pub init: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
}

/// The images a run trains, validates and tests on, on its device.
struct Splits {
    train: Tensor,
    validation: Tensor,
    test: Tensor,
    /// Photos: the training photos, from which `train` is cut afresh every epoch.
    photos: Option<PhotoSet>,
    device: Device,
}

impl Splits {
    fn load(config: &Config, device: Device) -> Result<Self> {
        match config.data.kind {
            DataKind::Idx => Self::load_idx(config, device),
            DataKind::Photos => Self::load_photos(config, device),
        }
    }

    /// Photos: `dir/train` minus every `validation_every`-th photo for training crops, those
    /// for validation crops (fixed), and `dir/test`'s whole photos squashed to the working size,
    /// as inference sees a photo.
    fn load_photos(config: &Config, device: Device) -> Result<Self> {
        let d = &config.data;
        let size = config.watermark.size;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let all = PhotoSet::load(&d.dir.join("train"), d.max_side, threads)?;
        let (train, validation) = all.split_every(d.validation_every);
        if train.is_empty() || validation.is_empty() {
            bail!(
                "{}: {} training photos leave none for training or validation with \
                 data.validation_every = {}",
                d.dir.join("train").display(),
                train.len() + validation.len(),
                d.validation_every
            );
        }
        let test = PhotoSet::load(&d.dir.join("test"), d.max_side, threads)?;
        println!(
            "photos: train {}, validation {}, test {}",
            train.describe(),
            validation.describe(),
            test.describe()
        );
        Ok(Self {
            train: train.patches(d.patches, size, 0)?.to_device(device),
            validation: validation
                .patches(d.validation_patches, size, 0x7A11D)?
                .to_device(device),
            test: test.whole(size)?.to_device(device),
            photos: Some(train),
            device,
        })
    }

    /// The training images of `epoch`: photos are cut into fresh crops every epoch.
    fn train_images(&self, config: &Config, epoch: usize, seed: u64) -> Result<Tensor> {
        match &self.photos {
            None => Ok(self.train.shallow_clone()),
            Some(photos) => Ok(photos
                .patches(
                    config.data.patches,
                    config.watermark.size,
                    crate::runtime::splitmix::splitmix64(
                        seed ^ (epoch as u64).wrapping_mul(0x9E37),
                    ),
                )?
                .to_device(self.device)),
        }
    }

    /// IDX: cuts the training and validation ranges out of the data set's training split.
    fn load_idx(config: &Config, device: Device) -> Result<Self> {
        let dataset = Dataset::load(&config.data.dir)?;
        let all_train = dataset.train.images_tensor(device);
        let splits = Self {
            train: slice_images(&all_train, config.data.train_range, "data.train_range")?,
            validation: slice_images(
                &all_train,
                config.data.validation_range,
                "data.validation_range",
            )?,
            test: dataset.test.images_tensor(device),
            photos: None,
            device,
        };
        let n_train = splits.train.size()[0] as usize;
        if config.train.batch_size > n_train {
            bail!(
                "train.batch_size = {}: larger than the {n_train} training images of \
                 data.train_range; no batch could be formed",
                config.train.batch_size
            );
        }
        Ok(splits)
    }
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

fn print_banner(
    config: &Config,
    opts: &RunOptions,
    splits: &Splits,
    (parameters, trained): (i64, i64),
    progress: &Progress,
) {
    let c = config;
    let layout = c.watermark.layout();
    println!(
        "wmae train: run {} | device {} | {} parameters{} | watermark {}, {} mode | head {:?}",
        opts.dir.display(),
        crate::runtime::device::describe(opts.device),
        parameters,
        if trained < parameters {
            format!(" ({trained} trained, the embedder frozen)")
        } else {
            String::new()
        },
        layout.describe(),
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
        splits.train.size()[0],
        splits.validation.size()[0],
        splits.test.size()[0],
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
    if progress.next_epoch > 0 {
        println!(
            "  resumed from {} after epoch {}",
            opts.dir.join("last.ot").display(),
            progress.next_epoch
        );
    }
}

/// One epoch of shuffled batches with fresh watermarks; returns the training figures.
fn train_epoch(
    trainee: &Trainee,
    optimizer: &mut Adadelta,
    images: &Tensor,
    epoch: usize,
    opts: &RunOptions,
) -> Summary {
    let c = &trainee.config;
    let layout = trainee.layout();
    tch::manual_seed(epoch_seed(opts.seed, epoch));
    optimizer.config.lr = c.lr_at(epoch);
    let n = images.size()[0];
    let batch_size = c.train.batch_size as i64;
    let batches = (n + batch_size - 1) / batch_size;
    let bar = progress_bar(batches as u64, epoch + 1, c.train.epochs, opts.quiet);
    let source = BitSource::new(
        layout,
        c.watermark.mode,
        opts.seed,
        Purpose::Train,
        opts.device,
    );
    let order = Tensor::randperm(n, (Kind::Int64, opts.device));
    let mut acc = Accumulator::new(layout);
    for b in 0..batches {
        let start = b * batch_size;
        let len = batch_size.min(n - start);
        let batch = images.index_select(0, &order.narrow(0, start, len));
        let bits = source.draw(len);
        let map = layout.map_from_bits(&bits);
        let watermarked = trainee.model.embed_t(&batch, &map, true);
        let attacked = trainee.noise.apply(&watermarked, &batch);
        let out = model::Output {
            watermark_map: trainee.model.extractor.forward_t(&attacked, true),
            watermarked,
        };
        let losses = trainee.losses(&out, &batch, &map);
        optimizer.zero_grad();
        losses.total.backward();
        optimizer.step();
        acc.add(&batch, &bits, &out, &losses);
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
    acc.summary()
}

/// The per-epoch records: a metrics.csv row, TensorBoard scalars, `best.ot` when validation
/// improved, and `last.ot` last, so a resumed run restarts after the last complete epoch.
#[allow(clippy::too_many_arguments)]
fn record_epoch(
    folder: &RunFolder,
    trainee: &Trainee,
    optimizer: &Adadelta,
    events: &mut EventWriter,
    progress: &mut Progress,
    epoch: usize,
    train: &Summary,
    val: &Summary,
) -> Result<()> {
    let c = &trainee.config;
    let lr = optimizer.config.lr;
    progress.csv.push_str(&csv_row(epoch + 1, lr, train, val));
    progress.csv.push('\n');
    folder.write("metrics.csv", &progress.csv)?;
    let mut scalars = vec![("lr".to_string(), lr)];
    for (split, s) in [("train", train), ("val", val)] {
        scalars.extend(s.fields().iter().map(|(n, v)| (format!("{split}/{n}"), *v)));
    }
    events.scalars((epoch + 1) as i64, &scalars)?;

    let improved = val.loss < progress.best_loss;
    if improved {
        progress.best_loss = val.loss;
    }
    let mut meta = Metadata::seed(
        trainee.layout(),
        c.model.head,
        model::parameter_count(&trainee.vs),
        epoch + 1,
    );
    meta.architecture = c.model.architecture.name().to_string();
    meta.best_validation_loss = Some(progress.best_loss).filter(|l| l.is_finite());
    meta.config = c.to_toml()?;
    if improved {
        checkpoint::save(&folder.best(), &trainee.vs, None, &meta)?;
    }
    checkpoint::save(&folder.last(), &trainee.vs, Some(optimizer), &meta)
}

/// The detector's calibration: the agreement of the model's maps with the words read from them on
/// clean (unwatermarked) `images`, as `extract` reads them (threshold 0.5, shift search).
pub fn calibrate(
    model: &WatermarkAutoencoder,
    layout: &Layout,
    images: &Tensor,
) -> Result<Calibration> {
    let maps = inference::extract(model, images);
    let binary =
        crate::message::binarize::at_threshold(&maps, crate::message::binarize::DEFAULT_THRESHOLD);
    let agreement = layout.read(&binary, true).agreement;
    let values = Vec::<f64>::try_from(agreement.to_kind(Kind::Double).to_device(Device::Cpu))?;
    Ok(Calibration::from_agreements(&values))
}

/// Test figures of the best checkpoint, float and after the 8-bit round trip, printed and
/// written to test_metrics.json; the best checkpoint gets the detector's calibration on the clean
/// training images.
fn final_test(folder: &RunFolder, trainee: &mut Trainee, splits: &Splits, seed: u64) -> Result<()> {
    let best = folder.best();
    let (named, mut meta) = checkpoint::read_with_metadata(&best)?;
    checkpoint::load_model(&best, &mut trainee.vs, &named)?;
    let calibration = calibrate(&trainee.model, &trainee.layout(), &splits.train)?;
    println!(
        "detector calibration on {} clean training images: agreement mean {:.4}, std {:.4}, max {:.4}",
        calibration.images, calibration.mean, calibration.std, calibration.max
    );
    meta.calibration = Some(calibration);
    checkpoint::save_ot(&best, &named, &meta)?;
    let images = &splits.test;
    let test = trainee.evaluate(images, Purpose::Test, seed, Storage::Float);
    let test_8bit = trainee.evaluate(images, Purpose::Test, seed, Storage::Png8);
    println!("test split, best checkpoint ({}):", best.display());
    print_summary("float", &test);
    print_summary("8-bit", &test_8bit);
    let report = serde_json::json!({
        "checkpoint": best,
        "float": summary_json(&test),
        "png_8bit": summary_json(&test_8bit),
    });
    folder.write("test_metrics.json", &serde_json::to_string_pretty(&report)?)
}

/// Trains per `config` in `opts.dir`; returns the folder of the run.
pub fn run(config: Config, opts: &RunOptions) -> Result<PathBuf> {
    let splits = Splits::load(&config, opts.device)?;
    let folder = RunFolder::open(&opts.dir)?;
    let mut trainee = Trainee::new(config.clone(), opts.device)?;
    let mut optimizer = Adadelta::new(&trainee.vs, config.optimizer);
    let mut progress = start(&folder, opts, &mut trainee, &mut optimizer)?;
    folder.write("config.toml", &config.to_toml()?)?;
    let mut events = EventWriter::create(&folder.events(), progress.next_epoch as i64 + 1)?;
    print_banner(
        &config,
        opts,
        &splits,
        (
            model::parameter_count(&trainee.vs),
            model::trained_parameter_count(&trainee.vs),
        ),
        &progress,
    );

    let epochs = config.train.epochs;
    let end_epoch = opts.stop_after.map_or(epochs, |k| k.min(epochs));
    for epoch in progress.next_epoch..end_epoch {
        let started = Instant::now();
        let images = splits.train_images(&config, epoch, opts.seed)?;
        let train = train_epoch(&trainee, &mut optimizer, &images, epoch, opts);
        let val = trainee.evaluate(
            &splits.validation,
            Purpose::Validation,
            opts.seed,
            Storage::Float,
        );
        if !train.loss.is_finite() {
            bail!(
                "epoch {}: the training loss is {}; lower optimizer.lr",
                epoch + 1,
                train.loss
            );
        }
        println!(
            "epoch {}/{epochs} ({:.1} s, lr {:.4})",
            epoch + 1,
            started.elapsed().as_secs_f64(),
            optimizer.config.lr
        );
        print_summary("train", &train);
        print_summary("val", &val);
        record_epoch(
            &folder,
            &trainee,
            &optimizer,
            &mut events,
            &mut progress,
            epoch,
            &train,
            &val,
        )?;
    }
    if end_epoch < epochs {
        println!("stopped after epoch {end_epoch} as asked; continue with --resume");
        return Ok(opts.dir.clone());
    }
    final_test(&folder, &mut trainee, &splits, opts.seed)?;
    Ok(opts.dir.clone())
}
