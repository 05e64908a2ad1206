//! `wmae bench`: training and inference throughput of the seed model on synthetic 28x28 batches.
//!
//! Training: batch of random images and random 16-bit watermarks, dropout on, MSE on both heads
//! (the seed's losses), backward, Adadelta step. Inference: embed + extract in eval mode without
//! autograd. At side 28, "embed+read": the shipped digit checkpoint through `DigitWatermarker`,
//! 8-bit images embedded and read back with the shift search, as `embed` and `extract` run each
//! batch (files left out). Each figure is the median images/s over `repeats` timed runs of `steps` steps, after
//! `warmup` untimed steps. scripts/bench-reference.py measures the same in PyTorch eager mode.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::ValueEnum;
use serde::Serialize;
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::commands::cli::{BenchArgs, GlobalArgs};
use crate::learning::loss::{self, LossKind};
use crate::learning::optim::{Adadelta, AdadeltaConfig};
use crate::message::watermark::Layout;
use crate::model::precision::Precision;
use crate::model::{DropoutMask, Head, KernelLayout, WatermarkAutoencoder};

#[derive(Debug, Serialize)]
struct Figure {
    what: String,
    precision: String,
    batch: i64,
    images_per_s: f64,
    runs: Vec<f64>,
}

/// The command-line spelling of an option value (`nhwc`, `packed-bits`).
fn option_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `repeats` runs of `steps` calls of `step` after `warmup` calls; images/s per run.
fn measure(device: Device, batch: i64, args: &BenchArgs, mut step: impl FnMut()) -> Vec<f64> {
    for _ in 0..args.warmup {
        step();
    }
    sync(device);
    (0..args.repeats)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..args.steps {
                step();
            }
            sync(device);
            (args.steps as i64 * batch) as f64 / start.elapsed().as_secs_f64()
        })
        .collect()
}

/// Runs `wmae bench`: measures training and inference throughput on synthetic batches.
pub(crate) fn run(args: &BenchArgs, global: &GlobalArgs) -> Result<()> {
    if args.steps == 0 || args.repeats == 0 {
        bail!("--steps and --repeats must be at least 1");
    }
    if let Some(b) = args
        .train_batch
        .iter()
        .chain(&args.infer_batch)
        .find(|&&b| b < 1)
    {
        bail!("--train-batch and --infer-batch take batch sizes of at least 1 (got {b})");
    }
    if !(8..=1024).contains(&args.side) || args.side % 4 != 0 {
        bail!("--side {}: must be a multiple of 4 in 8..=1024", args.side);
    }
    let device = global.device.resolve()?;
    for p in &args.precision {
        p.check(device)?;
    }
    // The seed's 4x4 bits in the top-left corner, on a map of the images' side.
    let layout = Layout::Block {
        rows: 4,
        cols: 4,
        top: 0,
        left: 0,
        height: args.side,
        width: args.side,
    };
    let mut vs = VarStore::new(device);
    let mut model = WatermarkAutoencoder::new(&vs.root(), Head::Sigmoid);
    // The model is built with the device's defaults; only an asked-for variant changes them.
    if let Some(layout) = args.kernel_layout {
        crate::model::set_kernel_layout(&vs, layout);
    }
    if let Some(mask) = args.dropout_mask {
        model.set_dropout_mask(mask);
    }
    let kernel_layout = args
        .kernel_layout
        .unwrap_or(KernelLayout::for_device(device));
    let dropout_mask = args.dropout_mask.unwrap_or(DropoutMask::for_device(device));
    let mut optimizer = Adadelta::new(&vs, AdadeltaConfig::default());
    let noise_config = match &args.noise {
        Some(path) => crate::learning::config::Config::load(path)?.noise,
        None => crate::learning::noise::NoiseConfig::default(),
    };
    let noise = crate::learning::noise::NoiseLayers::new(&noise_config)?;
    let batch_of = |n: i64| {
        let images = Tensor::rand([n, 1, args.side, args.side], (Kind::Float, device));
        let bits = crate::message::watermark::random_bits(&layout, n, device);
        (images, layout.map_from_bits(&bits))
    };

    let mut figures = Vec::new();
    for &batch in &args.train_batch {
        let (images, map) = batch_of(batch);
        let runs = measure(device, batch, args, || {
            let watermarked = model.embed_t(&images, &map, true);
            let attacked = noise.apply(&watermarked, &images);
            let extracted = model.extractor.forward_t(&attacked, true);
            let total = loss::mean_loss(LossKind::Mse, &watermarked, &images)
                + loss::mean_loss(LossKind::Mse, &extracted, &map);
            optimizer.zero_grad();
            total.backward();
            optimizer.step();
        });
        figures.push(Figure {
            what: "train".into(),
            precision: option_name(Precision::Fp32),
            batch,
            images_per_s: median(runs.clone()),
            runs,
        });
    }
    // fp32 first: bf16 converts the weights in place.
    let mut precisions = args.precision.clone();
    precisions.sort_by_key(|&p| p == Precision::Bf16);
    precisions.dedup();
    for precision in precisions {
        if precision == Precision::Bf16 {
            vs.bfloat16();
        }
        for &batch in &args.infer_batch {
            let (images, map) = batch_of(batch);
            let runs = measure(device, batch, args, || {
                tch::no_grad(|| {
                    let watermarked = model.embed_t(&images, &map, false);
                    let _ = model.extractor.forward_t(&watermarked, false);
                })
            });
            figures.push(Figure {
                what: "infer".into(),
                precision: option_name(precision),
                batch,
                images_per_s: median(runs.clone()),
                runs,
            });
        }
    }

    if args.side == crate::io::data::dataset::IMAGE_SIDE as i64 {
        figures.extend(watermarker_figures(args, device)?);
    }

    if args.json {
        let report = serde_json::json!({
            "tool": "wmae",
            "device": crate::runtime::device::describe(device),
            "threads": tch::get_num_threads(),
            "side": args.side,
            "kernel_layout": kernel_layout,
            "dropout_mask": dropout_mask,
            "keeps_freed_memory": crate::runtime::alloc::keeps_freed_memory(),
            "noise_layers": noise_config.layers.iter().map(|l| l.name()).collect::<Vec<_>>(),
            "figures": figures,
        });
        println!("{report}");
    } else {
        println!(
            "wmae bench on {}, {}x{} images (median of {} runs of {} steps, {} warm-up steps)",
            crate::runtime::device::describe(device),
            args.side,
            args.side,
            args.repeats,
            args.steps,
            args.warmup
        );
        println!(
            "  training noise layers: {}",
            noise_config
                .layers
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  kernels {}, dropout mask {}, freed memory {}",
            option_name(kernel_layout),
            option_name(dropout_mask),
            if crate::runtime::alloc::keeps_freed_memory() {
                "kept for reuse"
            } else {
                "returned (glibc defaults)"
            }
        );
        for f in &figures {
            println!(
                "  {:<12} {:<5} batch {:>5}: {:>9.1} images/s",
                f.what, f.precision, f.batch, f.images_per_s
            );
        }
    }
    Ok(())
}

/// Images/s of `DigitWatermarker::embed_batch` and `read_batch` with the `--checkpoint` model on
/// random 8-bit digits: what `wmae embed` and `wmae extract` spend per batch besides files.
fn watermarker_figures(args: &BenchArgs, device: Device) -> Result<Vec<Figure>> {
    use crate::watermarker::DigitWatermarker;
    let mut figures = Vec::new();
    let mut precisions = args.precision.clone();
    precisions.sort_by_key(|&p| p == Precision::Bf16);
    precisions.dedup();
    let mut model = DigitWatermarker::open(&args.checkpoint, device)?;
    let side = args.side as u32;
    for precision in precisions {
        model.set_precision(precision)?;
        for &batch in &args.infer_batch {
            let images: Vec<image::GrayImage> = (0..batch)
                .map(|i| {
                    let pixels = (0..side * side)
                        .map(|p| {
                            (crate::runtime::splitmix::splitmix64(i as u64 * 7919 + p as u64) >> 56)
                                as u8
                        })
                        .collect();
                    image::GrayImage::from_raw(side, side, pixels).expect("side x side pixels")
                })
                .collect();
            let words: Vec<Vec<bool>> = (0..batch as u64)
                .map(|i| {
                    (0..model.bit_count() as u64)
                        .map(|b| crate::runtime::splitmix::splitmix64(i * 131 + b) & 1 == 1)
                        .collect()
                })
                .collect();
            let words: Vec<&[bool]> = words.iter().map(Vec::as_slice).collect();
            let mut failed = None;
            let runs = measure(device, batch, args, || {
                let read = model
                    .embed_batch(&images, &words, 1.0)
                    .and_then(|marked| model.read_batch(&marked));
                if let Err(e) = read {
                    failed.get_or_insert(e);
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            figures.push(Figure {
                what: "embed+read".into(),
                precision: option_name(precision),
                batch,
                images_per_s: median(runs.clone()),
                runs,
            });
        }
    }
    Ok(figures)
}
