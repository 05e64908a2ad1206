//! The IDX reader and writer: round trips and one clear error per kind of bad file.

use std::path::Path;

use wmae::io::data::dataset::{load_split, Dataset, Split};
use wmae::io::data::idx::{self, IdxArray};

fn sample(n: usize) -> IdxArray {
    let data = (0..n * 28 * 28).map(|i| (i * 7 % 256) as u8).collect();
    IdxArray::new(vec![n, 28, 28], data).unwrap()
}

fn labels(n: usize) -> IdxArray {
    IdxArray::new(vec![n], (0..n).map(|i| (i % 10) as u8).collect()).unwrap()
}

fn read_err(path: &Path, rank: Option<usize>) -> String {
    format!("{:#}", idx::read(path, rank).unwrap_err())
}

#[test]
fn round_trip_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let array = sample(3);
    for name in ["a-idx3-ubyte", "a-idx3-ubyte.gz"] {
        let path = dir.path().join(name);
        idx::write(&path, &array).unwrap();
        assert_eq!(idx::read(&path, Some(3)).unwrap(), array);
    }
    // The .gz really is gzip (magic 1f 8b) and the plain file is the exact IDX byte layout.
    let gz = std::fs::read(dir.path().join("a-idx3-ubyte.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let plain = std::fs::read(dir.path().join("a-idx3-ubyte")).unwrap();
    assert_eq!(
        &plain[..16],
        &[0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28]
    );
    assert_eq!(plain.len(), 16 + 3 * 784);
}

#[test]
fn wrong_magic_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-magic");
    let mut bytes = idx::to_bytes(&labels(4));
    bytes[0] = 0x42;
    std::fs::write(&path, bytes).unwrap();
    let err = read_err(&path, None);
    assert!(
        err.contains("bad-magic") && err.contains("wrong magic number"),
        "{err}"
    );
}

#[test]
fn truncated_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short-idx3-ubyte");
    let bytes = idx::to_bytes(&sample(2));
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = read_err(&path, Some(3));
    assert!(
        err.contains("short-idx3-ubyte") && err.contains("truncated data"),
        "{err}"
    );
    assert!(
        err.contains("need 1568 bytes") && err.contains("has 1558"),
        "{err}"
    );
}

#[test]
fn truncated_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("header");
    std::fs::write(&path, [0u8, 0, 8, 3, 0, 0, 0]).unwrap();
    let err = read_err(&path, None);
    assert!(
        err.contains("header") && err.contains("truncated header"),
        "{err}"
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long");
    let mut bytes = idx::to_bytes(&labels(4));
    bytes.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&path, bytes).unwrap();
    let err = read_err(&path, None);
    assert!(err.contains("3 unexpected trailing bytes"), "{err}");
}

#[test]
fn corrupt_gzip_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("x.gz");
    idx::write(&good, &sample(4)).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let cut = bytes.len() / 2;
    bytes.truncate(cut);
    let path = dir.path().join("cut.gz");
    std::fs::write(&path, &bytes).unwrap();
    let err = read_err(&path, None);
    assert!(
        err.contains("cut.gz") && err.contains("corrupt or truncated gzip"),
        "{err}"
    );

    // Flipped bytes in the middle of the deflate stream: the CRC or the stream fails.
    let mut flipped = std::fs::read(&good).unwrap();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 8] {
        *b ^= 0xff;
    }
    let path = dir.path().join("flipped.gz");
    std::fs::write(&path, &flipped).unwrap();
    let err = read_err(&path, None);
    assert!(err.contains("flipped.gz"), "{err}");
}

#[test]
fn wrong_rank_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels-as-images");
    idx::write(&path, &labels(5)).unwrap();
    let err = read_err(&path, Some(3));
    assert!(
        err.contains("labels-as-images") && err.contains("wrong rank 1: expected a rank-3"),
        "{err}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floats");
    let mut bytes = idx::to_bytes(&labels(4));
    bytes[2] = 0x0D;
    std::fs::write(&path, bytes).unwrap();
    let err = read_err(&path, None);
    assert!(err.contains("0x0d (f32) is not supported"), "{err}");
}

fn write_dataset(dir: &Path, n_train: usize, n_test: usize, gzip: bool) {
    let ext = if gzip { ".gz" } else { "" };
    idx::write(
        &dir.join(format!("train-images-idx3-ubyte{ext}")),
        &sample(n_train),
    )
    .unwrap();
    idx::write(
        &dir.join(format!("train-labels-idx1-ubyte{ext}")),
        &labels(n_train),
    )
    .unwrap();
    idx::write(
        &dir.join(format!("t10k-images-idx3-ubyte{ext}")),
        &sample(n_test),
    )
    .unwrap();
    idx::write(
        &dir.join(format!("t10k-labels-idx1-ubyte{ext}")),
        &labels(n_test),
    )
    .unwrap();
}

#[test]
fn dataset_folder_plain_or_gzip_gives_unit_range_tensors() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), 6, 2, gzip);
        let ds = Dataset::load(dir.path()).unwrap();
        let images = ds.train.images_tensor(tch::Device::Cpu);
        assert_eq!(images.size(), vec![6, 1, 28, 28]);
        assert_eq!(images.kind(), tch::Kind::Float);
        // Pixel k of the flat data is (k*7 % 256) / 255.
        let flat = Vec::<f32>::try_from(images.flatten(0, -1)).unwrap();
        for k in [0usize, 1, 37, 4000] {
            assert!((flat[k] - ((k * 7 % 256) as f32 / 255.0)).abs() < 1e-7);
        }
        assert_eq!(ds.test.labels_tensor(tch::Device::Cpu).size(), vec![2]);
    }
}

#[test]
fn label_count_mismatch_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 6, 2, false);
    idx::write(&dir.path().join("t10k-labels-idx1-ubyte"), &labels(3)).unwrap();
    let err = format!("{:#}", load_split(dir.path(), Split::Test).unwrap_err());
    assert!(
        err.contains("holds 3 labels") && err.contains("holds 2 images"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    let err = format!("{:#}", load_split(dir.path(), Split::Train).unwrap_err());
    assert!(err.contains("no images file for the train split"), "{err}");
}

#[test]
fn wrong_image_size_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 2, 2, false);
    let big = IdxArray::new(vec![2, 32, 32], vec![0; 2 * 32 * 32]).unwrap();
    idx::write(&dir.path().join("train-images-idx3-ubyte"), &big).unwrap();
    let err = format!("{:#}", load_split(dir.path(), Split::Train).unwrap_err());
    assert!(
        err.contains("images are 32x32, wmae's model expects 28x28"),
        "{err}"
    );
}
