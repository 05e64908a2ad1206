//! `wmae evaluate`: on a data set's test split, the image quality of the watermarked images and
//! how well the watermark comes back, for fixed and random watermarks, at threshold 0.5 and
//! with Otsu; plus a PNG grid of samples. Watermarked images are rounded to 8 bits first, as a
//! PNG file stores them: the figures are those of files a user would save.

use std::io::Write as _;

use anyhow::Result;
use image::GrayImage;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::codec::gray;
use crate::commands::cli::{EvaluateArgs, GlobalArgs};
use crate::io::data::dataset::{load_split, Split};
use crate::learning::metrics::{psnr_per_image, roc_auc, ssim_per_image};
use crate::message::binarize::{Method, DEFAULT_THRESHOLD};
use crate::message::watermark::Layout;
use crate::message::watermark::{BitSource, Mode, Purpose};
use crate::watermarker::inference::{self, Storage};
use crate::watermarker::recovery::ImageResult;
use crate::watermarker::DigitWatermarker;

#[derive(Debug, Serialize)]
struct Quality {
    mse: f64,
    mae: f64,
    psnr: f64,
    ssim: f64,
}

#[derive(Debug, Serialize)]
struct Recovery {
    watermark: &'static str,
    method: String,
    bit_accuracy: f64,
    all_zeros_accuracy: f64,
    exact_rate: f64,
    bit_error_rate: f64,
    dice: f64,
    pixel_accuracy: f64,
    low_separability: usize,
}

#[derive(Debug, Serialize)]
struct Row {
    watermark: &'static str,
    quality: Quality,
    /// Threshold-free: ROC AUC of the block's map values against the true bits.
    roc_auc: Option<f64>,
    /// Bit accuracy at 0.5 on the float watermarked image, before the 8-bit rounding: the
    /// difference to the 8-bit figure is what saving as PNG costs.
    float_bit_accuracy: f64,
    recovery: Vec<Recovery>,
}

fn mean(t: Tensor) -> f64 {
    t.mean(Kind::Float).double_value(&[])
}

/// Runs `wmae evaluate`: image quality and watermark recovery on the test split, and the
/// sample grid.
pub(crate) fn run(args: &EvaluateArgs, global: &GlobalArgs) -> Result<()> {
    let device = global.device.resolve()?;
    let model = DigitWatermarker::open(&args.checkpoint, device)?;
    let layout = *model.layout();
    let split = load_split(&args.data_dir, Split::Test)?;
    let originals = split.images_tensor(device);
    let n = originals.size()[0];

    let mut rows = Vec::new();
    for (mode, mode_name) in [(Mode::Fixed, "fixed"), (Mode::Random, "random")] {
        let bits = BitSource::new(layout, mode, global.seed, Purpose::Test, device).draw(n);
        let true_maps = layout.map_from_bits(&bits);
        let float = model.embed_tensor(&originals, &bits, 1.0);
        let float_maps = model.extract_maps(&float);
        let watermarked = inference::store(&float, Storage::Png8);
        let maps = model.extract_maps(&watermarked);
        let quality = Quality {
            mse: mean((&watermarked - &originals).square()),
            mae: mean((&watermarked - &originals).abs()),
            psnr: mean(psnr_per_image(&watermarked, &originals)),
            ssim: mean(ssim_per_image(&watermarked, &originals)),
        };
        let scores = Vec::<f32>::try_from(
            layout
                .bit_values(&maps)
                .to_device(tch::Device::Cpu)
                .flatten(0, -1),
        )?;
        let labels = Vec::<f32>::try_from(bits.to_device(tch::Device::Cpu).flatten(0, -1))?;
        let expected = Vec::<Vec<f32>>::try_from(bits.to_device(tch::Device::Cpu))?;
        let default = Method::Threshold(DEFAULT_THRESHOLD);
        let (_, float_totals) = model.read_maps(&float_maps, default, Some(&expected))?;
        let float_bit_accuracy = float_totals.scored.map_or(0.0, |s| s.bit_accuracy);
        let mut recovery = Vec::new();
        let methods = [
            (default, DEFAULT_THRESHOLD.to_string()),
            (Method::Otsu, "otsu".into()),
        ];
        for (method, method_name) in methods {
            let (results, totals) = model.read_maps(&maps, method, Some(&expected))?;
            let s = totals.scored.clone().unwrap_or_default();
            recovery.push(Recovery {
                watermark: mode_name,
                method: method_name,
                bit_accuracy: s.bit_accuracy,
                all_zeros_accuracy: s.all_zeros_accuracy,
                exact_rate: s.exact_rate,
                bit_error_rate: s.bit_error_rate,
                dice: s.dice,
                pixel_accuracy: s.pixel_accuracy,
                low_separability: totals.unseparable,
            });
            if mode == Mode::Random && method == default {
                write_grid(
                    args,
                    &layout,
                    &originals,
                    &watermarked,
                    &true_maps,
                    &maps,
                    &results,
                )?;
            }
        }
        rows.push(Row {
            watermark: mode_name,
            quality,
            roc_auc: roc_auc(&scores, &labels),
            float_bit_accuracy,
            recovery,
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checkpoint": args.checkpoint, "data_dir": args.data_dir, "images": n, "rows": rows,
            }))?
        );
    } else {
        print_table(args, n, &rows);
    }
    Ok(())
}

fn print_table(args: &EvaluateArgs, n: i64, rows: &[Row]) {
    println!(
        "{} on the {n} test images of {} (watermarked images rounded to 8 bits)",
        args.checkpoint.display(),
        args.data_dir.display()
    );
    println!(
        "image quality      MSE        MAE      PSNR dB   SSIM    | ROC AUC (bits, no threshold)"
    );
    for r in rows {
        println!(
            "  {:<8} {:>10.6} {:>10.6} {:>9.2} {:>7.4}   | {}",
            r.watermark,
            r.quality.mse,
            r.quality.mae,
            r.quality.psnr,
            r.quality.ssim,
            r.roc_auc
                .map_or("n/a (one class)".to_string(), |a| format!("{a:.4}"))
        );
    }
    println!(
        "watermark recovery  threshold  bit acc   all-0 acc  exact    BER       Dice     pixel acc  low-separability maps"
    );
    for rec in rows.iter().flat_map(|r| &r.recovery) {
        println!(
            "  {:<8}          {:<6} {:>8.2}% {:>8.2}% {:>7.2}%  {:.5}  {:.4}   {:>7.2}%   {}",
            rec.watermark,
            rec.method,
            100.0 * rec.bit_accuracy,
            100.0 * rec.all_zeros_accuracy,
            100.0 * rec.exact_rate,
            rec.bit_error_rate,
            rec.dice,
            100.0 * rec.pixel_accuracy,
            rec.low_separability
        );
    }
    for r in rows {
        let png = r.recovery.first().map_or(0.0, |rec| rec.bit_accuracy);
        println!(
            "8-bit PNG round trip, {} watermark: bit accuracy at {DEFAULT_THRESHOLD} {:.3}% on the float image, {:.3}% after rounding",
            r.watermark,
            100.0 * r.float_bit_accuracy,
            100.0 * png
        );
    }
    println!("sample grid: {}", args.grid.display());
}

/// Rows of: original | watermarked | |difference| x10 | true map | extracted map | binarized map.
fn write_grid(
    args: &EvaluateArgs,
    layout: &Layout,
    originals: &Tensor,
    watermarked: &Tensor,
    true_maps: &Tensor,
    maps: &Tensor,
    results: &[ImageResult],
) -> Result<()> {
    let layout = *layout;
    let (h, w) = (layout.height() as u32, layout.width() as u32);
    let samples = args.samples.clamp(1, results.len()) as u32;
    const GAP: u32 = 2;
    let columns = 6u32;
    let mut grid = GrayImage::from_pixel(
        columns * (w + GAP) + GAP,
        samples * (h + GAP) + GAP,
        image::Luma([128]),
    );
    for row in 0..samples {
        let i = row as i64;
        let binary: Vec<f32> = results[row as usize]
            .binary_map
            .iter()
            .map(|&p| p as f32)
            .collect();
        let tiles = [
            originals.get(i),
            watermarked.get(i),
            ((watermarked.get(i) - originals.get(i)).abs() * 10.0).clamp(0.0, 1.0),
            true_maps.get(i),
            maps.get(i),
            Tensor::from_slice(&binary).reshape([1, h as i64, w as i64]),
        ];
        for (col, tile) in tiles.iter().enumerate() {
            let gray = gray::to_gray(tile);
            image::imageops::replace(
                &mut grid,
                &gray,
                (GAP + col as u32 * (w + GAP)) as i64,
                (GAP + row * (h + GAP)) as i64,
            );
        }
    }
    // Scaled up 4x so the 28-pixel tiles are visible.
    let big = image::imageops::resize(
        &grid,
        grid.width() * 4,
        grid.height() * 4,
        image::imageops::FilterType::Nearest,
    );
    gray::write_png(&args.grid, &big)?;
    std::io::stdout().flush().ok();
    Ok(())
}
