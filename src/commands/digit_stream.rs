//! Streaming `embed` and `extract` for the digit models (a block or spread layout on 28x28
//! images), so that the streaming options work with every checkpoint: one image file at a
//! time, through the same runner as photos (`crate::stream`), one record per image. The bits of
//! each image are given (`--bits`) or drawn from `--seed` and the image's output name, so a
//! resumed or sharded run gives every image the bits an uninterrupted one would.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::{GrayImage, ImageEncoder};

use crate::commands::cli::{EmbedArgs, ExtractArgs, GlobalArgs};
use crate::message::binarize::Method;
use crate::message::layout::Layout;
use crate::stream::{Input, Record, Worker};
use crate::watermarker::DigitWatermarker;

use super::streaming::{read_input, skip_if_written};
use crate::message::watermark;

/// One model per worker (see `super::photo`), in the precision asked for.
fn load_models(
    checkpoint: &Path,
    global: &GlobalArgs,
    stream: &crate::commands::cli::StreamArgs,
) -> Result<Vec<DigitWatermarker>> {
    let device = global.device.resolve()?;
    (0..super::streaming::worker_count())
        .map(|_| {
            let mut model = DigitWatermarker::open(checkpoint, device)?;
            model.set_precision(stream.precision)?;
            Ok(model)
        })
        .collect()
}

/// A digit image file as an 8-bit grayscale image of the model's size.
fn read_digit(path: &Path, record: &mut Record) -> Result<GrayImage> {
    let bytes = read_input(path, record)?;
    record.time("decode", || {
        let image = image::load_from_memory(&bytes).with_context(|| {
            format!(
                "{}: not a readable PNG, JPEG, WebP or TIFF image",
                path.display()
            )
        })?;
        let side = crate::io::data::dataset::IMAGE_SIDE as u32;
        if (image.width(), image.height()) != (side, side) {
            bail!(
                "{}: image is {}x{} (width x height), the model expects {side}x{side}",
                path.display(),
                image.width(),
                image.height()
            );
        }
        Ok(image.to_luma8())
    })
}

/// The bits an image gets without `--bits`: drawn from the seed and its output name alone.
pub fn bits_for(layout: &Layout, seed: u64, key: &Path) -> Vec<f32> {
    let base = crate::stream::shard::key_hash(key) ^ crate::runtime::splitmix::splitmix64(seed);
    (0..layout.bit_count() as u64)
        .map(|i| (crate::runtime::splitmix::splitmix64(base.wrapping_add(i)) >> 63) as f32)
        .collect()
}

struct EmbedWorker {
    model: DigitWatermarker,
    bits: Option<Vec<f32>>,
    seed: u64,
    out: PathBuf,
    strength: f64,
    skip_existing: bool,
}

impl Worker for EmbedWorker {
    fn process(&mut self, input: &Input, record: &mut Record) -> Result<()> {
        // Digits are written as 8-bit PNG, whatever they were read from.
        let out = &self.out.join(&input.key).with_extension("png");
        record.set_path("output", out);
        if self.skip_existing && skip_if_written(out, input, record) {
            return Ok(());
        }
        let original = read_digit(&input.path, record)?;
        let bits = match &self.bits {
            Some(b) => b.clone(),
            None => bits_for(self.model.layout(), self.seed, &input.key),
        };
        let marked = record.time("model", || {
            let word: Vec<bool> = bits.iter().map(|&b| b == 1.0).collect();
            self.model.embed(&original, &word, self.strength)
        })?;
        let original = original.into_raw();
        let se: f64 = marked
            .as_raw()
            .iter()
            .zip(&original)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        let psnr = crate::watermarker::photo::psnr_from_mse(se / original.len() as f64);
        let file = record.time("encode", || -> Result<Vec<u8>> {
            let mut bytes = Vec::new();
            image::codecs::png::PngEncoder::new(&mut bytes).write_image(
                marked.as_raw(),
                marked.width(),
                marked.height(),
                image::ExtendedColorType::L8,
            )?;
            Ok(bytes)
        })?;
        record.time("write", || {
            crate::runtime::fsutil::write_through_part_file(out, &file)
        })?;
        let bits = watermark::format_bits(&bits);
        record.set("bits", bits.clone());
        record.set(
            "psnr",
            psnr.is_finite().then_some((psnr * 1e4).round() / 1e4),
        );
        record.text = format!(
            "{} -> {}: bits {bits}, PSNR {psnr:.2} dB",
            input.path.display(),
            out.display()
        );
        Ok(())
    }
}

/// `wmae embed` with a digit model and a streaming option: one PNG per image file under
/// `--out`, its bits on its record (no manifest: the records are the manifest).
pub fn embed(args: &EmbedArgs, global: &GlobalArgs, checkpoint: &Path) -> Result<()> {
    let models = load_models(checkpoint, global, &args.stream)?;
    let layout = *models[0].layout();
    let bits = args
        .bits
        .as_deref()
        .map(|b| watermark::parse_bits(b, &layout))
        .transpose()?;
    let _lock = super::streaming::lock_output(&args.out, &args.stream)?;
    let workers = models
        .into_iter()
        .map(|model| EmbedWorker {
            model,
            bits: bits.clone(),
            seed: global.seed,
            out: args.out.clone(),
            strength: args.strength,
            skip_existing: args.skip_existing,
        })
        .collect();
    super::streaming::stream_run(
        &args.stream,
        &args.inputs,
        workers,
        global,
        Some(&args.out),
        |s, _| {
            format!(
                "embedded {} watermark(s) of {} bits ({}) into PNG files in {}",
                s.ok,
                layout.bit_count(),
                if bits.is_some() {
                    "given"
                } else {
                    "drawn from --seed and each name"
                },
                args.out.display()
            )
        },
    )
}

struct ExtractWorker {
    model: DigitWatermarker,
}

impl Worker for ExtractWorker {
    fn process(&mut self, input: &Input, record: &mut Record) -> Result<()> {
        let image = read_digit(&input.path, record)?;
        let name = input.path.display().to_string();
        let result = record.time("search", || self.model.read(&image))?;
        let bits = result.word();
        record.set("watermark", result.watermarked);
        record.set("bits", bits.clone());
        record.set("agreement", (result.agreement * 1e4).round() / 1e4);
        record.set("shift", result.shift.to_vec());
        record.text = format!(
            "{name}: bits {bits}, agreement {:.3}: {}",
            result.agreement,
            if result.watermarked {
                "watermark found"
            } else {
                "no watermark"
            }
        );
        Ok(())
    }
}

/// `wmae extract` with a digit model and a streaming option: the bits and the detection of
/// each image file.
pub fn extract(
    args: &ExtractArgs,
    global: &GlobalArgs,
    checkpoint: &Path,
    method: Method,
) -> Result<()> {
    if args.expect.is_some() || args.manifest.is_some() || args.out.is_some() {
        bail!(
            "--expect, --manifest and --out score a batch: use them without the streaming options"
        );
    }
    let workers = load_models(checkpoint, global, &args.stream)?
        .into_iter()
        .map(|mut model| {
            model.set_binarization(method);
            ExtractWorker { model }
        })
        .collect();
    let mut stream = args.stream.clone();
    stream.jsonl |= args.json;
    super::streaming::stream_run(
        &stream,
        &args.inputs,
        workers,
        global,
        None,
        |s, tallies| format!("watermark found in {} of {} image(s)", tallies.found, s.ok),
    )
}
