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
