//! The shipped model as a watermark: it survives common edits, a model-free reader sees nothing,
//! a forger without the key fails, and images without a watermark are answered "no watermark".

mod common;

use std::path::{Path, PathBuf};

use wmae::io::data::dataset::{load_split, Split};
use wmae::io::data::idx::{self, IdxArray};

fn checkpoint() -> String {
    format!("{}/checkpoints/default.ot", env!("CARGO_MANIFEST_DIR"))
}

/// The first `n` embedded test digits as an IDX file.
fn test_digits(dir: &Path, n: usize) -> PathBuf {
    let split = load_split(&common::embedded_mnist(), Split::Test).unwrap();
    let path = dir.join("digits-idx3-ubyte");
    let array = IdxArray::new(vec![n, 28, 28], split.images.data[..n * 784].to_vec()).unwrap();
    idx::write(&path, &array).unwrap();
    path
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = common::wmae(args);
    assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
    serde_json::from_str(&common::stdout(&out)).unwrap()
}

#[test]
fn the_watermark_survives_edits_and_the_model_free_attacks_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let digits = test_digits(tmp.path(), 300);
    let ck = checkpoint();
    let report = json(&[
        "--device",
        "cpu",
        "--seed",
        "2",
        "attack",
        digits.to_str().unwrap(),
        "--checkpoint",
        &ck,
        "--attacks",
        "none,jpeg-90,noise-5,dropout-30%,shift-2,crop2-resize",
        "--json",
    ]);
    let rows = report["rows"].as_array().unwrap();
    let row = |prefix: &str| {
        rows.iter()
            .find(|r| r["attack"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix}: {rows:?}"))
    };
    let value = |prefix: &str, key: &str| row(prefix)[key].as_f64().unwrap();
    for (attack, least) in [
        ("none", 0.999),
        ("jpeg-90", 0.99),
        ("noise-5", 0.99),
        ("dropout-30%", 0.99),
        ("shift-2", 0.95),
        ("crop2-resize", 0.9),
    ] {
        assert!(
            value(attack, "bit_accuracy") >= least,
            "{attack}: {}",
            row(attack)
        );
    }
    assert!(value("none", "detected") >= 0.99, "{}", row("none"));
    // Images without a watermark, pixels read without the checkpoint (another key's layout),
    // a forger without the key.
    assert!(value("clean", "detected") <= 0.01, "{}", row("clean"));
    assert!(
        value("read-pixels (no model, no key)", "bit_accuracy") <= 0.6,
        "{}",
        row("read-pixels (no model, no key)")
    );
    // A reader with the checkpoint's layout is reported as the best of a reading and its
    // complement: never below one half.
    assert!(value("read-pixels (no model)", "bit_accuracy") >= 0.5);
    let forged = row("forge without the key");
    assert!(forged["exact_rate"].as_f64().unwrap() <= 0.01, "{forged}");
    assert!(forged["detected"].as_f64().unwrap() <= 0.01, "{forged}");
    // The image stays close to the original (32.78 dB on the whole test split).
    let psnr = report["psnr_vs_original"][0]["psnr"].as_f64().unwrap();
    assert!(psnr >= 32.5, "PSNR {psnr}");
}

/// Images without a watermark, written by numpy (`np.save`) through scripts/clean-images.py:
/// flat black, gray and white, uniform noise, checkerboards of periods 1, 2, 4 and 7 px (3 each).
fn synthetic(dir: &Path) -> PathBuf {
    let path = dir.join("clean.npy");
    let script = format!("{}/scripts/clean-images.py", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(common::python())
        .args([script.as_str(), path.to_str().unwrap(), "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn images_without_a_watermark_are_answered_no_watermark() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = checkpoint();
    for input in [synthetic(tmp.path()), test_digits(tmp.path(), 500)] {
        let out = common::wmae(&[
            "--device",
            "cpu",
            "extract",
            input.to_str().unwrap(),
            "--checkpoint",
            &ck,
            "--json",
        ]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let text = common::stdout(&out);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (images, totals) = lines.split_at(lines.len() - 1);
        let found: Vec<&serde_json::Value> =
            images.iter().filter(|r| r["watermarked"] == true).collect();
        assert!(found.is_empty(), "{}: {found:?}", input.display());
        assert!(totals[0]["totals"]["detection_threshold"].as_f64().unwrap() < 1.0);
    }
    // A flat image's map has no two levels: the warning fires.
    let flat = synthetic(tmp.path());
    let out = common::wmae(&[
        "--device",
        "cpu",
        "extract",
        flat.to_str().unwrap(),
        "--checkpoint",
        &ck,
        "--json",
    ]);
    let first: serde_json::Value =
        serde_json::from_str(common::stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["unseparable"], true, "{first}");
}
