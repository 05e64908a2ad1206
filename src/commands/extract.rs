//! `wmae extract`: runs the extractor on watermarked images and binarizes each map at 0.5 (or
//! --threshold) or at its Otsu threshold; prints the bits per image and, when the expected bits
//! are known, honest scores beside the all-zeros baseline.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::Tensor;

use crate::codec::gray;
use crate::commands::cli::{ExtractArgs, GlobalArgs};
use crate::io::checkpoint::{self, Loaded};
use crate::io::data::dataset::{load_split, Split};
use crate::io::data::images;
use crate::io::manifest::Manifest;
use crate::message::binarize::Method;
use crate::message::watermark::{self, Layout};
use crate::watermarker::inference::{self, Storage};
use crate::watermarker::recovery::{self, ImageResult, Totals};

/// The bits each image should carry, when known.
type ExpectedBits = Option<Vec<Vec<f32>>>;

/// Runs `wmae extract`: reads the watermark back from digit images or photos.
pub(crate) fn run(args: &ExtractArgs, global: &GlobalArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!("--threshold {}: must lie in [0, 1]", args.threshold);
    }
    let method = if args.otsu {
        Method::Otsu
    } else {
        Method::Threshold(args.threshold)
    };
    let checkpoint = super::photo::extract_checkpoint(args);
    if super::photo::is_photo_model(&checkpoint) {
        return super::photo::extract(args, global, &checkpoint);
    }
    if args.key.is_some() {
        bail!(
            "--key keys photo payloads; {} is a digit model",
            checkpoint.display()
        );
    }
    if super::streaming::wants_streaming(&args.stream, false) {
        if args.inputs.is_empty() && args.stream.input_list.is_none() {
            bail!("the streaming options read image files: give files, folders or --input-list");
        }
        return super::digit_stream::extract(args, global, &checkpoint, method);
    }
    let device = global.device.resolve()?;
    let loaded = checkpoint::load_for_inference(&checkpoint, device)?;
    let layout = loaded.meta.layout;

    let (names, maps, expected) = if args.inputs.is_empty() {
        demo_inputs(args, &loaded)?
    } else {
        let inputs = images::read_inputs(&args.inputs)?;
        let expected = expected_bits(args, &layout, &inputs.names)?;
        let maps = inference::extract(&loaded.model, &inputs.tensor().to_device(device));
        (inputs.names.clone(), maps, expected)
    };
    let (results, totals) = recovery::read_back(
        &maps,
        &layout,
        method,
        &loaded.detector(),
        &names,
        expected.as_deref(),
    )?;

    if let Some(dir) = &args.out {
        write_maps(dir, &results, &layout)?;
    }
    report(args, method, &results, &totals)
}

/// Without inputs: the embedded test digits, watermarked with random bits by the checkpoint and
/// rounded to 8 bits as a PNG would store them; returns their names, extracted maps and bits.
fn demo_inputs(args: &ExtractArgs, loaded: &Loaded) -> Result<(Vec<String>, Tensor, ExpectedBits)> {
    let layout = loaded.meta.layout;
    let split = load_split(&args.data_dir, Split::Test)?;
    let device = loaded.vs.device();
    let images = split.images_tensor(device);
    let n = images.size()[0];
    let bits = watermark::random_bits(&layout, n, device);
    let maps = inference::round_trip(&loaded.model, &layout, &images, &bits, Storage::Png8).maps;
    let names = (0..n)
        .map(|i| format!("{}/t10k#{i}", args.data_dir.display()))
        .collect();
    let expected =
        Vec::<Vec<f32>>::try_from(bits.to_device(tch::Device::Cpu)).context("bits to host")?;
    if !args.json {
        println!(
            "no input given: watermarked the {n} test digits of {} with random {}-bit watermarks using {}, \
             rounded to 8 bits (as PNG files store them), and read them back",
            args.data_dir.display(),
            layout.bit_count(),
            args.checkpoint
                .as_deref()
                .unwrap_or(Path::new(crate::commands::cli::DEFAULT_CHECKPOINT))
                .display()
        );
    }
    Ok((names, maps, Some(expected)))
}

/// Expected bits per image from --expect or --manifest (matched by file name).
fn expected_bits(args: &ExtractArgs, layout: &Layout, names: &[String]) -> Result<ExpectedBits> {
    if let Some(bits) = &args.expect {
        let b = watermark::parse_bits(bits, layout)?;
        return Ok(Some(vec![b; names.len()]));
    }
    let Some(path) = &args.manifest else {
        return Ok(None);
    };
    let manifest = Manifest::load(path)?;
    if manifest.layout != *layout {
        bail!(
            "{}: its watermark layout differs from the checkpoint's",
            path.display()
        );
    }
    // By file name, or by stem: the same images saved again as .jpg still match their entry.
    let stem = |file: &str| {
        Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let by_file: HashMap<&str, &str> = manifest
        .images
        .iter()
        .map(|e| (e.file.as_str(), e.bits.as_str()))
        .collect();
    let by_stem: HashMap<String, &str> = manifest
        .images
        .iter()
        .map(|e| (stem(&e.file), e.bits.as_str()))
        .collect();
    names
        .iter()
        .map(|name| {
            let file = Path::new(name)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bits = by_file
                .get(file.as_str())
                .or_else(|| by_stem.get(&stem(&file)))
                .with_context(|| {
                    format!("{name}: not listed in the manifest {}", path.display())
                })?;
            watermark::parse_bits(bits, layout)
                .with_context(|| format!("{}: entry {file}", path.display()))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Each binarized map as a 0/255 PNG named after its input (`map-NAME.png`, made unique as
/// embed's outputs are).
fn write_maps(dir: &Path, results: &[ImageResult], layout: &Layout) -> Result<()> {
    let names: Vec<String> = results.iter().map(|r| r.name.clone()).collect();
    for (r, file) in results
        .iter()
        .zip(crate::io::manifest::output_names(&names))
    {
        let pixels: Vec<u8> = r.binary_map.iter().map(|&p| p * 255).collect();
        let image =
            image::GrayImage::from_raw(layout.width() as u32, layout.height() as u32, pixels)
                .context("binarized map size")?;
        gray::write_png(&dir.join(format!("map-{file}")), &image)?;
    }
    Ok(())
}

fn method_name(method: Method) -> String {
    match method {
        Method::Threshold(t) => format!("threshold {t}"),
        Method::Otsu => "Otsu (per image)".to_string(),
    }
}

fn report(
    args: &ExtractArgs,
    method: Method,
    results: &[ImageResult],
    totals: &Totals,
) -> Result<()> {
    if args.json {
        for r in results {
            println!("{}", serde_json::to_string(r)?);
        }
        let total = serde_json::json!({ "totals": totals, "method": method_name(method) });
        println!("{total}");
        return Ok(());
    }
    // Per image lines for small inputs; a summary always.
    if results.len() <= 50 {
        for r in results {
            let verdict = if r.watermarked {
                format!("watermark {}", r.bits)
            } else {
                "no watermark".to_string()
            };
            let mut line = format!(
                "{}  {verdict}  (bits read {}, agreement {:.3} at shift {:?}, threshold {:.3}, separability {:.2})",
                r.name, r.bits, r.agreement, r.shift, r.threshold, r.separability
            );
            if let (Some(e), Some(exp), Some(d)) = (r.bit_errors, &r.expected, r.dice) {
                line.push_str(&format!("  expected {exp}  errors {e}  Dice {d:.3}"));
            }
            println!("{line}");
        }
    }
    recovery::print_totals(&format!("binarized with {}", method_name(method)), totals);
    Ok(())
}
