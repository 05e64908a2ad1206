//! `wmae extract`: runs the extractor on watermarked images and binarizes each map at 0.5 (or
//! --threshold) or at its Otsu threshold; prints the bits per image and, when the expected bits
//! are known, honest scores beside the all-zeros baseline. Files and arrays go through
//! `super::digits` (digits) or `super::photo` (photos); without inputs, the demo below.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::codec::gray;
use crate::commands::cli::{ExtractArgs, GlobalArgs};
use crate::io::data::dataset::{load_split, Split};
use crate::message::binarize::Method;
use crate::message::watermark;
use crate::watermarker::recovery::{self, Tally};
use crate::watermarker::DigitWatermarker;

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
    if args.inputs.is_empty() && args.stream.input_list.is_none() {
        return demo(args, global, &checkpoint, method);
    }
    super::digits::extract(args, global, &checkpoint, method)
}

/// Without inputs: the embedded test digits, watermarked with random bits (from --seed) by the
/// checkpoint and rounded to 8 bits as a PNG would store them, then read back and scored.
fn demo(args: &ExtractArgs, global: &GlobalArgs, checkpoint: &Path, method: Method) -> Result<()> {
    if args.expect.is_some() || !args.manifest.is_empty() || args.out.is_some() {
        bail!("--expect, --manifest and --out score image files: give the files to read");
    }
    let mut model = DigitWatermarker::open(checkpoint, global.device.resolve()?)?;
    model.set_binarization(method);
    let layout = *model.layout();
    let split = load_split(&args.data_dir, Split::Test)?;
    let images = split.images_tensor(tch::Device::Cpu);
    let n = images.size()[0];
    let bits = watermark::random_bits(&layout, n, tch::Device::Cpu);
    let bits = Vec::<Vec<f32>>::try_from(&bits).context("bits to host")?;
    let mut tally = Tally::default();
    let mut lines = Vec::new();
    // In slices, so memory stays bounded whatever the size of the split.
    for start in (0..n).step_by(crate::watermarker::inference::BATCH as usize) {
        let end = (start + crate::watermarker::inference::BATCH).min(n);
        let originals: Vec<image::GrayImage> = (start..end)
            .map(|i| gray::to_gray(&images.get(i)))
            .collect();
        let expected = &bits[start as usize..end as usize];
        let words: Vec<Vec<bool>> = expected
            .iter()
            .map(|w| w.iter().map(|&b| b == 1.0).collect())
            .collect();
        let words: Vec<&[bool]> = words.iter().map(Vec::as_slice).collect();
        let marked = model.embed_batch(&originals, &words, 1.0)?;
        for (k, mut r) in model
            .read_scored(&marked, Some(expected))?
            .into_iter()
            .enumerate()
        {
            r.name = format!("{}/t10k#{}", args.data_dir.display(), start as usize + k);
            tally.add(&r);
            if args.json {
                lines.push(serde_json::to_string(&r)?);
            }
        }
    }
    let totals = tally.totals(&layout, model.detector());
    let method_name = super::digits::method_name(method);
    if args.json {
        for line in lines {
            println!("{line}");
        }
        println!(
            "{}",
            serde_json::json!({ "totals": totals, "method": method_name })
        );
        return Ok(());
    }
    println!(
        "no input given: watermarked the {n} test digits of {} with random {}-bit watermarks \
         using {}, rounded to 8 bits (as PNG files store them), and read them back",
        args.data_dir.display(),
        layout.bit_count(),
        checkpoint.display()
    );
    recovery::print_totals(&format!("binarized with {method_name}"), &totals);
    Ok(())
}
