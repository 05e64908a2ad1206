//! `embed` and `extract` with a digit model (a block or spread layout on 28x28 images): the one
//! path for every input, through the same streaming runner as photos (`crate::stream`), so
//! folders, lists, shards, resume and JSON lines work alike for both. Image files and the images
//! of array files (IDX, `.npy`) go through [`DigitWatermarker`] in batches of what the queue
//! holds; each gets one record.
//!
//! The bits of each image are given (`--bits`) or drawn from `--seed` and the image's output
//! name, so a resumed or sharded run gives every image the bits an uninterrupted one would, and
//! the manifest of a resumed run can name the bits of outputs it skipped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use image::{GrayImage, ImageEncoder};

use crate::commands::cli::{EmbedArgs, ExtractArgs, GlobalArgs, StreamArgs};
use crate::io::data::images::DigitArray;
use crate::io::manifest::{Manifest, ManifestEntry, ManifestIndex, MANIFEST_FORMAT, MANIFEST_NAME};
use crate::message::binarize::Method;
use crate::message::layout::Layout;
use crate::message::watermark;
use crate::runtime::fsutil::PendingFolders;
use crate::stream::{Input, Record, Status, Worker};
use crate::watermarker::recovery::{self, ImageResult, Tally};
use crate::watermarker::DigitWatermarker;

use super::streaming::{read_input, skip_if_written, stream_run, InputKind};

/// Images a worker runs through the model at once, at most: 28x28 digits cost more in
/// per-call overhead than in arithmetic, so one forward pass takes what the queue holds.
const BATCH: usize = 256;

/// One model per worker, in the precision asked for.
fn load_models(
    checkpoint: &Path,
    global: &GlobalArgs,
    stream: &StreamArgs,
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

/// Reads inputs as 8-bit grayscale digits: image files, and images of array files (the array a
/// worker last opened is kept, since its images come one after another).
#[derive(Default)]
struct DigitReader {
    array: Option<(PathBuf, DigitArray)>,
}

impl DigitReader {
    fn read(&mut self, input: &Input, record: &mut Record) -> Result<GrayImage> {
        let Some(k) = input.item else {
            return read_digit_file(&input.path, record);
        };
        if self.array.as_ref().is_none_or(|(p, _)| *p != input.path) {
            let array = record.time("read", || DigitArray::open(&input.path))?;
            self.array = Some((input.path.clone(), array));
        }
        let (_, array) = self.array.as_ref().expect("opened above");
        array
            .image(k)
            .with_context(|| format!("{}: no image {k} in the array", input.path.display()))
    }
}

/// A digit image file as an 8-bit grayscale image of the model's size.
fn read_digit_file(path: &Path, record: &mut Record) -> Result<GrayImage> {
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

/// The inputs of a batch that reach the model: their places in the batch, their images and
/// what else each needs (the bits to embed, or to expect).
struct Ready<X> {
    at: Vec<usize>,
    images: Vec<GrayImage>,
    extra: Vec<X>,
}

impl<X> Ready<X> {
    fn new() -> Self {
        Ready {
            at: Vec::new(),
            images: Vec::new(),
            extra: Vec::new(),
        }
    }

    fn push(&mut self, at: usize, image: GrayImage, extra: X) {
        self.at.push(at);
        self.images.push(image);
        self.extra.push(extra);
    }

    /// Runs `model` once over the images, booking an equal share of its time as `stage` on
    /// each of their records, and hands each output to `finish` with its record; a failed
    /// model call fails every one of them.
    fn run<O>(
        &self,
        records: &mut [Record],
        results: &mut [Result<()>],
        stage: &'static str,
        model: impl FnOnce(&[GrayImage], &[X]) -> Result<Vec<O>>,
        mut finish: impl FnMut(usize, &GrayImage, &X, O, &mut Record) -> Result<()>,
    ) {
        if self.at.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let outputs = model(&self.images, &self.extra);
        let ms = started.elapsed().as_secs_f64() * 1e3 / self.at.len() as f64;
        for &i in &self.at {
            records[i].stages.push((stage, ms));
        }
        match outputs {
            Ok(outputs) => {
                for (k, output) in outputs.into_iter().enumerate() {
                    let i = self.at[k];
                    results[i] =
                        finish(i, &self.images[k], &self.extra[k], output, &mut records[i]);
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                for &i in &self.at {
                    results[i] = Err(anyhow::anyhow!("{why}"));
                }
            }
        }
    }
}

struct EmbedWorker {
    model: DigitWatermarker,
    reader: DigitReader,
    bits: Option<Vec<f32>>,
    seed: u64,
    out: PathBuf,
    strength: f64,
    skip_existing: bool,
    folders: Arc<PendingFolders>,
}

impl EmbedWorker {
    fn bits(&self, input: &Input) -> Vec<f32> {
        match &self.bits {
            Some(b) => b.clone(),
            None => bits_for(self.model.layout(), self.seed, &input.key),
        }
    }

    /// Encodes and writes one marked image; its record gets the bits and PSNR.
    fn write(
        &self,
        input: &Input,
        original: &GrayImage,
        marked: &GrayImage,
        bits: &[f32],
        record: &mut Record,
    ) -> Result<()> {
        let out = &self.out.join(&input.key);
        let se: f64 = marked
            .as_raw()
            .iter()
            .zip(original.as_raw())
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
            crate::runtime::fsutil::write_through_part_file_deferred(
                out,
                &file,
                Some(&self.folders),
            )
        })?;
        let bits = watermark::format_bits(bits);
        record.set("bits", bits.clone());
        record.set(
            "psnr",
            psnr.is_finite().then_some((psnr * 1e4).round() / 1e4),
        );
        record.text = format!(
            "{} -> {}: bits {bits}, PSNR {psnr:.2} dB",
            record.input.display(),
            out.display()
        );
        Ok(())
    }
}

impl Worker for EmbedWorker {
    fn process(&mut self, input: &Input, record: &mut Record) -> Result<()> {
        self.process_batch(std::slice::from_ref(input), std::slice::from_mut(record))
            .remove(0)
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    fn process_batch(&mut self, inputs: &[Input], records: &mut [Record]) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = inputs.iter().map(|_| Ok(())).collect();
        let mut ready = Ready::new();
        for (i, (input, record)) in inputs.iter().zip(records.iter_mut()).enumerate() {
            let out = self.out.join(&input.key);
            record.set_path("output", &out);
            let bits = self.bits(input);
            if self.skip_existing && skip_if_written(&out, input, record) {
                // Its bits, for the manifest: the same rule gave them to the run that wrote it.
                record.set("bits", watermark::format_bits(&bits));
                continue;
            }
            match self.reader.read(input, record) {
                Ok(image) => ready.push(i, image, bits),
                Err(e) => results[i] = Err(e),
            }
        }
        ready.run(
            records,
            &mut results,
            "model",
            |images, bits| {
                let words: Vec<Vec<bool>> = bits
                    .iter()
                    .map(|b| b.iter().map(|&b| b == 1.0).collect())
                    .collect();
                let words: Vec<&[bool]> = words.iter().map(Vec::as_slice).collect();
                self.model.embed_batch(images, &words, self.strength)
            },
            |i, original, bits, marked, record| {
                self.write(&inputs[i], original, &marked, bits, record)
            },
        );
        results
    }
}

/// The manifest file a run writes into `--out`: `manifest.json`, or one per shard so that the
/// shards of one job never write one file.
fn manifest_name(stream: &StreamArgs) -> Result<String> {
    let choice = crate::stream::shard::choose(stream.shard.as_deref(), stream.shards, |k| {
        std::env::var(k).ok()
    })?;
    Ok(match choice {
        None => MANIFEST_NAME.to_string(),
        Some(c) => format!("manifest-shard-{}-of-{}.json", c.shard.index, c.shard.count),
    })
}

/// `wmae embed` with a digit model: one PNG per image under `--out` (at its path below its
/// folder argument), its bits on its record, and a manifest of every output written or skipped.
pub fn embed(args: &EmbedArgs, global: &GlobalArgs, checkpoint: &Path) -> Result<()> {
    let models = load_models(checkpoint, global, &args.stream)?;
    let layout = *models[0].layout();
    let bits = args
        .bits
        .as_deref()
        .map(|b| watermark::parse_bits(b, &layout))
        .transpose()?;
    let manifest_file = args.out.join(manifest_name(&args.stream)?);
    let _lock = super::streaming::lock_output(&args.out, &args.stream)?;
    let folders = Arc::new(PendingFolders::default());
    let workers = models
        .into_iter()
        .map(|model| EmbedWorker {
            model,
            reader: DigitReader::default(),
            bits: bits.clone(),
            seed: global.seed,
            out: args.out.clone(),
            strength: args.strength,
            skip_existing: args.skip_existing,
            folders: folders.clone(),
        })
        .collect();
    let mut entries = Vec::new();
    let run = stream_run(
        &args.stream,
        &args.inputs,
        InputKind::Digits,
        workers,
        global,
        Some(&args.out),
        |record| {
            if record.status == Status::Failed {
                return;
            }
            let file = record.fields.get("output").and_then(|o| o.as_str());
            let bits = record.fields.get("bits").and_then(|b| b.as_str());
            if let (Some(file), Some(bits)) = (file, bits) {
                let file = Path::new(file)
                    .strip_prefix(&args.out)
                    .unwrap_or(file.as_ref());
                entries.push(ManifestEntry {
                    file: file.display().to_string(),
                    source: record.input.display().to_string(),
                    bits: bits.to_string(),
                });
            }
        },
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
    );
    // Whatever failed, the outputs that were written are listed and made durable.
    if !entries.is_empty() {
        entries.sort_by(|a, b| a.file.cmp(&b.file));
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_string(),
            checkpoint: checkpoint.to_path_buf(),
            layout,
            images: entries,
        };
        let json = serde_json::to_string_pretty(&manifest)?;
        crate::runtime::fsutil::write_atomically(&manifest_file, |f| {
            std::io::Write::write_all(f, json.as_bytes())
        })?;
        let line = format!(
            "bits of the {} output(s) in {}",
            manifest.images.len(),
            manifest_file.display()
        );
        // Standard output holds only the records with --jsonl.
        if args.stream.jsonl {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    folders.flush()?;
    run
}

/// The bits each input should carry: the same for all (`--expect`), or looked up in manifests.
enum Expected {
    None,
    All(Vec<f32>),
    Listed(Box<ManifestIndex>),
}

impl Expected {
    fn for_input(&self, input: &Input) -> Result<Option<Vec<f32>>> {
        match self {
            Expected::None => Ok(None),
            Expected::All(bits) => Ok(Some(bits.clone())),
            Expected::Listed(index) => {
                let Some(bits) = index.lookup(&input.key) else {
                    bail!(
                        "{}: not listed in the manifest {}",
                        input.name().display(),
                        index.describe()
                    );
                };
                watermark::parse_bits(bits, index.layout()).map(Some)
            }
        }
    }
}

struct ExtractWorker {
    model: DigitWatermarker,
    reader: DigitReader,
    expected: Arc<Expected>,
    maps: Option<PathBuf>,
    tally: Arc<Mutex<Tally>>,
}

impl ExtractWorker {
    /// Fills a record from what was read, and writes the binarized map with `--out`.
    fn report(&self, input: &Input, r: &ImageResult, record: &mut Record) -> Result<()> {
        if let Some(dir) = &self.maps {
            let layout = self.model.layout();
            let pixels: Vec<u8> = r.binary_map.iter().map(|&p| p * 255).collect();
            let map = GrayImage::from_raw(layout.width() as u32, layout.height() as u32, pixels)
                .context("binarized map size")?;
            let name = format!(
                "map-{}.png",
                input.key.file_stem().unwrap_or_default().to_string_lossy()
            );
            let path = dir.join(input.key.with_file_name(name));
            record.time("write", || crate::codec::gray::write_png(&path, &map))?;
            record.set_path("map", &path);
        }
        record.set("watermark", r.watermarked);
        record.set("bits", r.bits.clone());
        record.set("agreement", (r.agreement * 1e4).round() / 1e4);
        record.set(
            "false_positive_rate",
            self.model.false_positive_rate(r.agreement),
        );
        record.set("shift", r.shift.to_vec());
        record.set("threshold", (r.threshold * 1e4).round() / 1e4);
        record.set("separability", (r.separability * 1e4).round() / 1e4);
        record.set("unseparable", r.unseparable);
        let verdict = if r.watermarked {
            format!("watermark {}", r.bits)
        } else {
            "no watermark".to_string()
        };
        record.text = format!(
            "{}  {verdict}  (bits read {}, agreement {:.3} at shift {:?}, threshold {:.3}, \
             separability {:.2})",
            record.input.display(),
            r.bits,
            r.agreement,
            r.shift,
            r.threshold,
            r.separability
        );
        if let (Some(expected), Some(errors), Some(dice)) = (&r.expected, r.bit_errors, r.dice) {
            record.set("expected", expected.clone());
            record.set("bit_errors", errors);
            record.set("exact", errors == 0);
            record.set("bit_accuracy", r.bit_accuracy);
            record.set("dice", (dice * 1e4).round() / 1e4);
            record.text.push_str(&format!(
                "  expected {expected}  errors {errors}  Dice {dice:.3}"
            ));
        }
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).add(r);
        Ok(())
    }
}

impl Worker for ExtractWorker {
    fn process(&mut self, input: &Input, record: &mut Record) -> Result<()> {
        self.process_batch(std::slice::from_ref(input), std::slice::from_mut(record))
            .remove(0)
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    fn process_batch(&mut self, inputs: &[Input], records: &mut [Record]) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = inputs.iter().map(|_| Ok(())).collect();
        let mut ready = Ready::new();
        for (i, (input, record)) in inputs.iter().zip(records.iter_mut()).enumerate() {
            let read = self
                .expected
                .for_input(input)
                .and_then(|bits| Ok((self.reader.read(input, record)?, bits)));
            match read {
                Ok((image, bits)) => ready.push(i, image, bits),
                Err(e) => results[i] = Err(e),
            }
        }
        ready.run(
            records,
            &mut results,
            "search",
            |images, expected| {
                let expected: Option<Vec<Vec<f32>>> = expected.iter().cloned().collect();
                self.model.read_scored(images, expected.as_deref())
            },
            |i, _, _, read, record| self.report(&inputs[i], &read, record),
        );
        results
    }
}

/// How a map was binarized, in words.
pub fn method_name(method: Method) -> String {
    match method {
        Method::Threshold(t) => format!("threshold {t}"),
        Method::Otsu => "Otsu (per image)".to_string(),
    }
}

/// `wmae extract` with a digit model on image files and arrays: the bits and the detection of
/// each image, scored against `--expect` or `--manifest` when given, and the totals.
pub fn extract(
    args: &ExtractArgs,
    global: &GlobalArgs,
    checkpoint: &Path,
    method: Method,
) -> Result<()> {
    let models = load_models(checkpoint, global, &args.stream)?;
    let layout = *models[0].layout();
    let detector = *models[0].detector();
    let expected = Arc::new(if let Some(bits) = &args.expect {
        Expected::All(watermark::parse_bits(bits, &layout)?)
    } else if !args.manifest.is_empty() {
        Expected::Listed(Box::new(ManifestIndex::load(&args.manifest, &layout)?))
    } else {
        Expected::None
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers = models
        .into_iter()
        .map(|mut model| {
            model.set_binarization(method);
            ExtractWorker {
                model,
                reader: DigitReader::default(),
                expected: expected.clone(),
                maps: args.out.clone(),
                tally: tally.clone(),
            }
        })
        .collect();
    let mut stream = args.stream.clone();
    stream.jsonl |= args.json;
    let run = stream_run(
        &stream,
        &args.inputs,
        InputKind::Digits,
        workers,
        global,
        None,
        |_| {},
        |s, tallies| format!("watermark found in {} of {} image(s)", tallies.found, s.ok),
    );
    let totals = tally
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .totals(&layout, &detector);
    // --json (not --jsonl, whose lines are one per input) ends with the totals.
    if totals.images > 0 {
        if args.json {
            let line = serde_json::json!({ "totals": totals, "method": method_name(method) });
            println!("{line}");
        } else if !stream.jsonl {
            recovery::print_totals(&format!("binarized with {}", method_name(method)), &totals);
        }
    }
    run
}
