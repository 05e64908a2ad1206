//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the wmae binary with `args`, without LD_LIBRARY_PATH (the rpath must be enough).
pub fn wmae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wmae"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("cannot start the wmae binary")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The project's embedded digits folder (made by scripts/fetch-data, which scripts/test runs).
pub fn embedded_mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// Runs wmae with `args`, which must fail cleanly: exit status 1, no panic. Returns stderr.
pub fn failure(args: &[&str]) -> String {
    let out = wmae(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "wmae {args:?} should fail with status 1: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Runs wmae with `args`, in which some input must fail on its own: exit status 3 (the run
/// went on; each failed input has its line), no panic. Returns stderr.
pub fn input_failure(args: &[&str]) -> String {
    let out = wmae(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "wmae {args:?} should fail an input (status 3): {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The values of the column called `name` of a CSV text with a header row (metrics.csv).
pub fn csv_column(csv: &str, name: &str) -> Vec<f64> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header row").split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    lines
        .map(|l| l.split(',').nth(col).expect("a full row").parse().unwrap())
        .collect()
}

/// A small run: 256 training and 128 validation digits, batch 64.
pub fn tiny_config(dir: &Path, epochs: usize) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
[data]
dir = "{}"
train_range = [0, 256]
validation_range = [256, 384]
[watermark]
mode = "random"
[loss]
image = "mse"
watermark = "bce"
image_weight = 10.0
watermark_region = "block"
[train]
epochs = {epochs}
batch_size = 64
final_lr_fraction = 0.5
"#,
        embedded_mnist().display()
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `wmae --device cpu --seed 11 train --quiet --config CONFIG --out OUT EXTRA..`.
pub fn train_args<'a>(config: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--device",
        "cpu",
        "--seed",
        "11",
        "train",
        "--quiet",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// libtorch's generator is global to the process: tests that seed it and then draw from it take
/// turns through this lock, or another test's draw could land between the seeding and the draws.
pub fn generator() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Python of the cross-checks (`WMAE_PYTHON`, or the project's `.venv`, which
/// scripts/setup-python makes and scripts/test runs).
pub fn python() -> String {
    let python = std::env::var("WMAE_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: run scripts/setup-python (scripts/test does)"
    );
    python
}

/// A textured colour photo (smooth gradients, edges and noise from a fixed generator).
pub fn synthetic_photo(width: u32, height: u32, seed: u32) -> image::RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state % 24) as f32;
        let wave = 60.0 * ((x as f32 / 23.0).sin() + (y as f32 / 37.0).cos());
        let edge = if (x / 40 + y / 60) % 2 == 0 {
            40.0
        } else {
            0.0
        };
        let v = |base: f32| (base + wave + edge + noise).clamp(0.0, 255.0) as u8;
        image::Rgb([v(90.0), v(110.0), v(70.0)])
    })
}

/// A photo-like colour image without a period of its own (unlike [`synthetic_photo`], whose
/// waves and checkerboard repeat, which a tile-lattice finder would also see): a flat sky over
/// the top third, and below it a landscape of 48 waves in random directions with a 1/f
/// spectrum, a few hard-edged shapes and a little pixel noise.
pub fn natural_photo(width: u32, height: u32, seed: u64) -> image::RgbImage {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let waves: Vec<(f32, f32, f32, f32)> = (0..48)
        .map(|_| {
            let period = 6.0 + 300.0 * next() * next();
            let angle = std::f32::consts::TAU * next();
            let phase = std::f32::consts::TAU * next();
            // 1/f: amplitude grows with the period.
            let amplitude = 1.2 * period.sqrt();
            (
                angle.cos() * std::f32::consts::TAU / period,
                angle.sin() * std::f32::consts::TAU / period,
                phase,
                amplitude,
            )
        })
        .collect();
    let shapes: Vec<(f32, f32, f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                next() * width as f32,
                height as f32 * (0.35 + 0.65 * next()),
                20.0 + 120.0 * next(),
                20.0 + 80.0 * next(),
                -40.0 + 80.0 * next(),
            )
        })
        .collect();
    let horizon = height as f32 / 3.0;
    let mut noise = next;
    image::RgbImage::from_fn(width, height, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let grain = 6.0 * (noise() - 0.5);
        if yf < horizon {
            let sky = 150.0 + 40.0 * yf / horizon;
            let v = |base: f32| (base + 0.5 * grain).clamp(0.0, 255.0) as u8;
            return image::Rgb([v(sky - 60.0), v(sky - 20.0), v(sky + 40.0)]);
        }
        let mut field: f32 = waves
            .iter()
            .map(|&(kx, ky, phase, amplitude)| amplitude * (kx * xf + ky * yf + phase).sin())
            .sum();
        for &(cx, cy, rx, ry, shade) in &shapes {
            if (xf - cx).abs() < rx && (yf - cy).abs() < ry {
                field += shade;
            }
        }
        let v = |base: f32| (base + field + grain).clamp(0.0, 255.0) as u8;
        image::Rgb([v(100.0), v(120.0), v(70.0)])
    })
}

/// A seeded stream of pseudo-random numbers (the fuzz cases are the same on every run).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        wmae::runtime::splitmix::splitmix64(self.0)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `bytes` with one of the mutations a fuzzer applies: flipped bits, overwritten bytes, a cut,
/// inserted or removed bytes. Offsets lean towards the start, where headers are.
pub fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let len = out.len().max(1);
    let offset = |rng: &mut Rng| {
        if rng.below(2) == 0 {
            rng.below(len.min(256))
        } else {
            rng.below(len)
        }
    };
    match rng.below(5) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = offset(rng).min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let i = offset(rng).min(out.len() - 1);
            let end = (i + 1 + rng.below(16)).min(out.len());
            for b in &mut out[i..end] {
                *b = rng.next() as u8;
            }
        }
        2 => out.truncate(offset(rng)),
        3 => {
            let i = offset(rng).min(out.len());
            let extra: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
            out.splice(i..i, extra);
        }
        _ => {
            let i = offset(rng).min(out.len() - 1);
            let end = (i + 1 + rng.below(64)).min(out.len());
            out.drain(i..end);
        }
    }
    out
}

/// A `.npy` header for a uint8 array of `shape` (NPY format 1.0, as numpy writes it).
pub fn npy_header(shape: &str) -> Vec<u8> {
    let dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}");
    let pad = 64 - (10 + dict.len() + 1) % 64;
    let text = format!("{dict}{}\n", " ".repeat(pad));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// An unsigned-byte IDX header of rank 3 with `n` images of 28x28.
pub fn idx_header(n: u32) -> Vec<u8> {
    let mut header = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        header.extend_from_slice(&d.to_be_bytes());
    }
    header
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Runs a Python script (`python -c SCRIPT ARGS...`) of the cross-checks, which must succeed;
/// its standard output.
pub fn run_python(script: &str, args: &[&Path]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
