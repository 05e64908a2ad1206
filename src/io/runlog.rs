//! What a run records and shows: the rows of metrics.csv, the per-epoch console lines, the JSON
//! of test figures and the Keras-like progress bar.

use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::learning::metrics::Summary;

const CSV_HEADER_PREFIX: &str = "epoch,lr";

/// The header line of metrics.csv: `epoch,lr`, then every figure of the training pass
/// (`train_...`) and of the validation pass (`val_...`).
pub(crate) fn csv_header() -> String {
    let names: Vec<&str> = Summary::default()
        .fields()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let mut cols = vec![CSV_HEADER_PREFIX.to_string()];
    for split in ["train", "val"] {
        cols.extend(names.iter().map(|n| format!("{split}_{n}")));
    }
    cols.join(",")
}

/// One epoch's line of metrics.csv, in the columns of `csv_header`.
pub(crate) fn csv_row(epoch: usize, lr: f64, train: &Summary, val: &Summary) -> String {
    let mut cols = vec![epoch.to_string(), format!("{lr:.9}")];
    for s in [train, val] {
        cols.extend(s.fields().iter().map(|(_, v)| format!("{v:.9}")));
    }
    cols.join(",")
}

/// Keeps the header and the rows of epochs 1..=`epochs` of an existing metrics.csv.
pub fn truncate_csv(path: &Path, epochs: usize) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut kept: Vec<&str> = text.lines().take(1 + epochs).collect();
    if kept.first().copied() != Some(csv_header().as_str()) || kept.len() != 1 + epochs {
        bail!(
            "{}: does not hold the {epochs} epochs that last.ot has; cannot resume",
            path.display()
        );
    }
    kept.push("");
    Ok(kept.join("\n"))
}

/// Prints a pass's figures on one console line, after `label` (`train`, `val`, ...).
pub(crate) fn print_summary(label: &str, s: &Summary) {
    println!(
        "  {label:<5} loss {:.5} (image {:.5}, watermark {:.5})  MAE {:.4}/{:.4}  PSNR {:.2} dB  \
         bits {:.2}%  exact {:.1}%  pixels {:.2}%  Dice {:.4}",
        s.loss,
        s.image_loss,
        s.watermark_loss,
        s.image_mae,
        s.watermark_mae,
        s.psnr,
        100.0 * s.bit_accuracy,
        100.0 * s.exact_rate,
        100.0 * s.pixel_accuracy,
        s.dice
    );
}

/// A pass's figures as a JSON object, named as in metrics.csv, with its image count.
pub fn summary_json(s: &Summary) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, v) in s.fields() {
        map.insert(name.to_string(), serde_json::json!(v));
    }
    map.insert("images".to_string(), serde_json::json!(s.images));
    serde_json::Value::Object(map)
}

/// The progress bar of one epoch of `len` batches; hidden when `quiet`.
pub(crate) fn progress_bar(len: u64, epoch: usize, epochs: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} batches  {msg}  ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
