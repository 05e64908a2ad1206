//! `wmae attack`: how a watermark fares against the edits a user's images go through. Images are
//! watermarked with random bits (at each strength), stored as 8-bit PNG files would be, edited by
//! each attack of the suite (`crate::attack`), and read back through the one inference path.
//! Beside them: clean images (what the detector says of images without a watermark) and three
//! model-free attacks that use the layout but not the model: reading the bits straight from the
//! pixels, forging a watermark by painting the map into a clean image, and removing it by
//! overwriting the bit-carrying pixels.

use std::io::Write as _;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::attack as attacks;
use crate::codec::gray;
use crate::codec::gray::quantize_8bit;
use crate::commands::cli::{AttackArgs, GlobalArgs};
use crate::io::data::dataset::{load_split, Split};
use crate::io::data::images;
use crate::learning::metrics::psnr_per_image;
use crate::message::binarize::{Method, DEFAULT_THRESHOLD};
use crate::message::detect::Detector;
use crate::message::layout::Layout;
use crate::message::watermark;
use crate::watermarker::DigitWatermarker;

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    attack: String,
    strength: f64,
    /// PSNR of the attacked image against the watermarked one (dB; 100 when unchanged).
    psnr_vs_watermarked: f64,
    bit_accuracy: f64,
    exact_rate: f64,
    /// Share of images the detector calls watermarked.
    detected: f64,
}

fn mean(t: &Tensor) -> f64 {
    t.mean(Kind::Float).double_value(&[])
}

/// Runs `wmae attack`: watermarks the inputs, applies each attack at each strength and reports
/// how the watermark fares per attack.
pub(crate) fn run(args: &AttackArgs, global: &GlobalArgs) -> Result<()> {
    let suite = attacks::parse_list(&args.attacks).context("--attacks")?;
    if let Some(a) = args.strength.iter().find(|a| !(**a > 0.0 && **a <= 10.0)) {
        bail!("--strength {a}: must lie in (0, 10]");
    }
    let device = global.device.resolve()?;
    let model = DigitWatermarker::open(&args.checkpoint, device)?;
    let layout = *model.layout();
    let detector = *model.detector();
    let originals = if args.inputs.is_empty() {
        load_split(&args.data_dir, Split::Test)?.images_tensor(device)
    } else {
        images::read_inputs(&args.inputs)?
            .tensor()
            .to_device(device)
    };
    let n = originals.size()[0];
    let score = |images: &Tensor, bits: &Tensor| -> Result<(f64, f64, f64)> {
        let maps = model.extract_maps(images);
        let expected = Vec::<Vec<f32>>::try_from(bits.to_device(Device::Cpu))?;
        let method = Method::Threshold(DEFAULT_THRESHOLD);
        let (_, totals) = model.read_maps(&maps, method, Some(&expected))?;
        let s = totals.scored.unwrap_or_default();
        Ok((
            s.bit_accuracy,
            s.exact_rate,
            totals.watermarked as f64 / n as f64,
        ))
    };

    let mut rows = Vec::new();
    let mut quality = Vec::new();
    for &strength in &args.strength {
        let bits = watermark::random_bits(&layout, n, device);
        let watermarked = quantize_8bit(&model.embed_tensor(&originals, &bits, strength));
        quality.push((strength, mean(&psnr_per_image(&watermarked, &originals))));
        for (i, attack) in suite.iter().enumerate() {
            let attacked =
                attacks::apply(attack, &watermarked, &originals, global.seed + i as u64)?;
            let (bit_accuracy, exact_rate, detected) = score(&attacked, &bits)?;
            rows.push(Row {
                attack: attack.name(),
                strength,
                psnr_vs_watermarked: mean(&psnr_per_image(&attacked, &watermarked)),
                bit_accuracy,
                exact_rate,
                detected,
            });
        }
        // Model-free: the best of two pixel readers that know the layout (the checkpoint holds
        // the key), and the same readers with another key's layout (without the checkpoint).
        for (who, reader_layout) in [
            ("read-pixels (no model)", layout),
            ("read-pixels (no model, no key)", guessed_key(&layout)),
        ] {
            rows.push(Row {
                attack: who.into(),
                strength,
                psnr_vs_watermarked: 100.0,
                bit_accuracy: model_free_reading(&watermarked, &reader_layout, &bits)?,
                exact_rate: f64::NAN,
                detected: f64::NAN,
            });
        }
        let removed = remove(&watermarked, &layout)?;
        let (bit_accuracy, exact_rate, detected) = score(&removed, &bits)?;
        rows.push(Row {
            attack: "remove (median over the bit pixels)".into(),
            strength,
            psnr_vs_watermarked: mean(&psnr_per_image(&removed, &watermarked)),
            bit_accuracy,
            exact_rate,
            detected,
        });
    }
    // Images that carry no watermark: the detector's false alarms, and forgeries painted into
    // them with the distortion budget of the model's own embedding at strength 1.
    let clean = quantize_8bit(&originals);
    let no_bits = watermark::random_bits(&layout, n, device);
    let (_, _, false_alarms) = score(&clean, &no_bits)?;
    rows.push(Row {
        attack: "clean (no watermark)".into(),
        strength: 0.0,
        psnr_vs_watermarked: f64::NAN,
        bit_accuracy: f64::NAN,
        exact_rate: f64::NAN,
        detected: false_alarms,
    });
    let budget_db = quality.first().map_or(35.0, |q| q.1);
    // A forger who knows the layout but not its key paints a layout of another key; one who
    // has the checkpoint (which holds the key) paints the real one.
    for (who, painted) in [
        ("forge without the key", guessed_key(&layout)),
        ("forge with the key", layout),
    ] {
        let forged = forge(&clean, &painted, &no_bits, budget_db);
        let (bit_accuracy, exact_rate, detected) = score(&forged, &no_bits)?;
        rows.push(Row {
            attack: format!("{who} ({budget_db:.1} dB budget)"),
            strength: 0.0,
            psnr_vs_watermarked: mean(&psnr_per_image(&forged, &clean)),
            bit_accuracy,
            exact_rate,
            detected,
        });
    }

    if let Some(path) = &args.csv {
        write_csv(path, &rows)?;
    }
    if args.json {
        let report = serde_json::json!({
            "checkpoint": args.checkpoint,
            "images": n,
            "layout": layout,
            "detection_threshold": detector.threshold,
            "psnr_vs_original": quality.iter().map(|(a, p)| serde_json::json!({"strength": a, "psnr": p})).collect::<Vec<_>>(),
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(args, n, &layout, &detector, &quality, &rows);
    }
    Ok(())
}

/// Bit accuracy of the best of four readers without the model: a pixel is 1 when it is lit
/// (above 0.5/255, the stamp reader), or when it is brighter than its 3x3 neighbourhood, and
/// each of the two with every bit flipped (a model may write 1 by darkening).
fn model_free_reading(watermarked: &Tensor, layout: &Layout, bits: &Tensor) -> Result<f64> {
    let lit = watermarked.gt(0.5 / 255.0).to_kind(Kind::Float);
    let local = watermarked.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>);
    let brighter = watermarked.gt_tensor(&local).to_kind(Kind::Float);
    let accuracy = |binary: &Tensor| {
        mean(
            &layout
                .read(binary, false)
                .bits
                .eq_tensor(bits)
                .to_kind(Kind::Float),
        )
    };
    Ok([accuracy(&lit), accuracy(&brighter)]
        .into_iter()
        .map(|a| a.max(1.0 - a))
        .fold(0.0, f64::max))
}

/// Overwrites every bit-carrying pixel with the 3x3 median of the image around it.
fn remove(watermarked: &Tensor, layout: &Layout) -> Result<Tensor> {
    let mask = layout.carrier_mask(Kind::Float, watermarked.device());
    let median = gray::map_8bit(watermarked, |image| {
        Ok(imageproc::filter::median_filter(image, 1, 1))
    })?;
    Ok(&mask * median + (mask.neg() + 1.0) * watermarked)
}

/// The layout with another key: what a forger who does not hold the key can paint. A block
/// layout has no key: its forger paints the real block.
fn guessed_key(layout: &Layout) -> Layout {
    match *layout {
        Layout::Spread {
            bits,
            cell,
            key,
            search,
            height,
            width,
        } => Layout::Spread {
            bits,
            cell,
            key: crate::runtime::splitmix::splitmix64(key ^ 0x00F0_E6E5),
            search,
            height,
            width,
        },
        block => block,
    }
}

/// Clean images with the map of `bits` painted in: +d where the map is 1 and -d where it is 0 on
/// the bit-carrying pixels, d chosen so the PSNR against the clean image is about `budget_db`.
fn forge(clean: &Tensor, layout: &Layout, bits: &Tensor, budget_db: f64) -> Tensor {
    let mask = layout.carrier_mask(Kind::Float, clean.device());
    let carriers = mask.sum(Kind::Float).double_value(&[]);
    let pixels = (layout.height() * layout.width()) as f64;
    let mse = 10f64.powf(-budget_db / 10.0);
    let d = (mse * pixels / carriers.max(1.0)).sqrt();
    let signs = layout.map_from_bits(bits) * 2.0 - 1.0;
    quantize_8bit(&(clean + signs * mask * d))
}

fn fmt_pct(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else {
        format!("{:.2}%", 100.0 * v)
    }
}

fn print_table(
    args: &AttackArgs,
    n: i64,
    layout: &Layout,
    detector: &Detector,
    quality: &[(f64, f64)],
    rows: &[Row],
) {
    println!(
        "{} on {n} images; watermark {}; detection at agreement >= {:.3} (false-positive rate {:.1e} \
         for independent cells)",
        args.checkpoint.display(),
        layout.describe(),
        detector.threshold,
        detector.null_fpr_at_threshold
    );
    for (a, p) in quality {
        println!(
            "  strength {a}: PSNR of the 8-bit watermarked image against the original {p:.2} dB"
        );
    }
    println!(
        "{:<44} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "attack", "strength", "PSNR dB", "bits", "exact", "detected"
    );
    for r in rows {
        let psnr = if r.psnr_vs_watermarked.is_nan() {
            "-".to_string()
        } else {
            format!("{:.2}", r.psnr_vs_watermarked)
        };
        println!(
            "{:<44} {:>8} {:>10} {:>9} {:>9} {:>9}",
            r.attack,
            r.strength,
            psnr,
            fmt_pct(r.bit_accuracy),
            fmt_pct(r.exact_rate),
            fmt_pct(r.detected)
        );
    }
    println!(
        "(PSNR of the attacked image against the watermarked one; bits and exact against the \
         embedded bits, at threshold {DEFAULT_THRESHOLD} with the shift search; the clean and forge \
         rows use images without a watermark)"
    );
}

fn write_csv(path: &std::path::Path, rows: &[Row]) -> Result<()> {
    let mut text =
        String::from("attack,strength,psnr_vs_watermarked,bit_accuracy,exact_rate,detected\n");
    for r in rows {
        text.push_str(&format!(
            "\"{}\",{},{},{},{},{}\n",
            r.attack.replace('"', "'"),
            r.strength,
            r.psnr_vs_watermarked,
            r.bit_accuracy,
            r.exact_rate,
            r.detected
        ));
    }
    crate::runtime::fsutil::write_atomically(path, |f| f.write_all(text.as_bytes()))
}
