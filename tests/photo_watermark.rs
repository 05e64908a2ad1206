//! Photos end to end: training on a folder of photos, `embed --payload` and `extract` on photos
//! of any size with a photo model, and the errors around them. What the shipped photo model reads
//! after attacks is measured by scripts/compare-imwatermark (docs/photos.md).

mod common;

use std::path::{Path, PathBuf};

use common::{failure, stdout, wmae};
use image::{Rgb, RgbImage};

use common::synthetic_photo as photo;

/// A photo folder with train/ (six photos) and test/ (two).
fn photo_folder(dir: &Path) -> PathBuf {
    let root = dir.join("photos");
    for (split, count) in [("train", 6), ("test", 2)] {
        std::fs::create_dir_all(root.join(split)).unwrap();
        for i in 0..count {
            let name = root.join(split).join(format!("p{i}.png"));
            photo(160 + 16 * i, 120 + 8 * i, i + 7 * count)
                .save(name)
                .unwrap();
        }
    }
    root
}

/// A small photo model: 64 px working size, a 16x16 tile of 256 bits, 64-bit payloads.
fn photo_config(dir: &Path, photos: &Path) -> PathBuf {
    let path = dir.join("photo.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "tiny-photo"
[data]
kind = "photos"
dir = "{}"
patches = 64
validation_every = 3
validation_patches = 16
max_side = 256
[watermark]
layout = "tile"
rows = 16
cols = 16
tile = 16
key = 5
size = 64
payload_bits = 64
[model]
architecture = "seed-residual"
[loss]
image = "mse"
watermark = "bce"
[train]
epochs = 1
batch_size = 16
"#,
            photos.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_photo_model_trains_embeds_and_reads_photos_of_any_size() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    let config = photo_config(dir.path(), &photos);
    let run = dir.path().join("run");
    let out = wmae(&[
        "--threads",
        "1",
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    let log = stdout(&out);
    assert!(out.status.success(), "{log}{}", common::stderr(&out));
    assert!(
        log.contains("photos: train 4 photos") && log.contains("validation 2 photos"),
        "{log}"
    );
    let checkpoint = run.join("best.ot");
    let ck = checkpoint.to_str().unwrap();

    // Any size, colour type and format in; the same out.
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    photo(333, 97, 1).save(inputs.join("wide.png")).unwrap();
    image::DynamicImage::ImageRgb8(photo(120, 200, 2))
        .to_luma8()
        .save(inputs.join("sub/gray.jpg"))
        .unwrap();
    let marked = dir.path().join("marked");
    let embed = |extra: &[&str]| {
        let mut args = vec![
            "embed",
            inputs.to_str().unwrap(),
            "--payload",
            "text:tiny",
            "--out",
            marked.to_str().unwrap(),
            "--checkpoint",
            ck,
        ];
        args.extend_from_slice(extra);
        wmae(&args)
    };
    // A one-epoch model's payload does not read back: by default each photo fails (exit 3) and
    // nothing is written for it.
    let out = embed(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("wide.png: its payload does not read back"),
        "{err}"
    );
    assert!(!marked.join("wide.png").exists() && !marked.join("sub/gray.jpg").exists());
    // --keep-unread writes them anyway.
    let out = embed(&["--keep-unread"]);
    let log = stdout(&out);
    assert!(out.status.success(), "{log}{}", common::stderr(&out));
    assert!(log.contains("embedded payload 74696e7900000000"), "{log}");
    let wide = image::open(marked.join("wide.png")).unwrap();
    assert_eq!((wide.width(), wide.height()), (333, 97));
    assert!(matches!(wide, image::DynamicImage::ImageRgb8(_)));
    // A folder's files keep their path below it.
    let gray_bytes = std::fs::read(marked.join("sub/gray.jpg")).unwrap();
    assert_eq!(&gray_bytes[..2], &[0xFF, 0xD8], "a JPEG stays a JPEG");
    let gray = image::load_from_memory(&gray_bytes).unwrap();
    assert_eq!((gray.width(), gray.height()), (120, 200));
    assert!(matches!(gray, image::DynamicImage::ImageLuma8(_)));

    // One epoch reads nothing yet, but extract answers for every photo, payload or not.
    let out = wmae(&[
        "extract",
        marked.to_str().unwrap(),
        "--json",
        "--checkpoint",
        ck,
    ]);
    let log = stdout(&out);
    assert!(out.status.success(), "{log}{}", common::stderr(&out));
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let fpr = line["false_positive_rate"].as_f64().unwrap();
        assert!(fpr > 0.0 && fpr <= 1e-6, "{line}");
        assert!(line["watermark"].is_boolean());
    }

    // Errors name what is at fault.
    let err = failure(&[
        "embed",
        inputs.to_str().unwrap(),
        "--payload",
        "text:much too long for 64 bits",
        "--out",
        marked.to_str().unwrap(),
        "--checkpoint",
        ck,
    ]);
    assert!(
        err.contains("do not fit in the model's 64-bit payload"),
        "{err}"
    );
    let err = failure(&[
        "embed",
        inputs.to_str().unwrap(),
        "--payload",
        "hex:ff",
        "--jpeg-quality",
        "0",
        "--out",
        marked.to_str().unwrap(),
        "--checkpoint",
        ck,
    ]);
    assert!(err.contains("--jpeg-quality 0"), "{err}");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/default.ot");
    let err = failure(&[
        "embed",
        inputs.to_str().unwrap(),
        "--payload",
        "hex:ff",
        "--out",
        marked.to_str().unwrap(),
        "--checkpoint",
        digits.to_str().unwrap(),
    ]);
    assert!(err.contains("not a photo model"), "{err}");
    let tiny = dir.path().join("tiny.png");
    photo(40, 40, 3).save(&tiny).unwrap();
    // A bad photo is that photo's failure: reported by name, counted, exit status 3.
    let out = wmae(&["extract", tiny.to_str().unwrap(), "--checkpoint", ck]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("tiny.png") && err.contains("64"), "{err}");
    assert!(err.contains("1 of 1 input(s) failed"), "{err}");
    // Two folders holding one name: the second would overwrite the first, so it fails.
    let twice = dir.path().join("twice");
    std::fs::create_dir_all(twice.join("a")).unwrap();
    std::fs::create_dir_all(twice.join("b")).unwrap();
    photo(100, 100, 4).save(twice.join("a/x.png")).unwrap();
    photo(100, 100, 5).save(twice.join("b/x.png")).unwrap();
    let out = wmae(&[
        "embed",
        twice.join("a").to_str().unwrap(),
        twice.join("b").to_str().unwrap(),
        "--payload",
        "hex:ff",
        "--out",
        dir.path().join("twice-out").to_str().unwrap(),
        "--checkpoint",
        ck,
    ]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("b/x.png: another input of this run is also written as x.png"),
        "{err}"
    );
}

#[test]
fn photo_configs_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    let config = photo_config(dir.path(), &photos);
    let text = std::fs::read_to_string(&config).unwrap();
    for (from, to, needle) in [
        (
            "payload_bits = 64",
            "payload_bits = 200",
            "watermark.payload_bits = 200",
        ),
        (
            "layout = \"tile\"",
            "layout = \"spread\"",
            "payloads need layout = \"tile\"",
        ),
        ("patches = 64", "patches = 4", "data.patches = 4"),
        ("size = 64", "size = 8", "watermark.size = 8"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text.replace(from, to)).unwrap();
        let err = failure(&["train", "--config", bad.to_str().unwrap()]);
        assert!(err.contains(needle), "{from} -> {to}: {err}");
    }
}

/// The shipped photo model on a synthetic photo: the payload reads back exactly from the PNG,
/// after JPEG q50 by the `image` crate, after halving the size, from the mirror image and turned
/// by 10 degrees; the
/// unmarked photo and a flat one read as "no watermark".
#[test]
fn shipped_photo_model_reads_its_payload_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("p.png");
    photo(900, 600, 11).save(&original).unwrap();
    let flat = dir.path().join("flat.png");
    RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]))
        .save(&flat)
        .unwrap();
    let marked = dir.path().join("marked");
    let out = wmae(&[
        "embed",
        original.to_str().unwrap(),
        "--payload",
        "uuid:123e4567-e89b-12d3-a456-426614174000",
        "--out",
        marked.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a UUID is 128 bits, the payload 64"
    );
    let out = wmae(&[
        "embed",
        original.to_str().unwrap(),
        "--payload",
        "text:wmae 11",
        "--out",
        marked.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let img = image::open(marked.join("p.png")).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 50)
        .encode_image(&img)
        .unwrap();
    std::fs::write(dir.path().join("q50.jpg"), jpeg).unwrap();
    img.resize_exact(450, 300, image::imageops::FilterType::Triangle)
        .save(dir.path().join("half.png"))
        .unwrap();
    img.fliph().save(dir.path().join("mirror.png")).unwrap();
    // Turned by 10 degrees about the centre (nearest neighbour, black corners), same size.
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let (sin, cos) = 10f32.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (sx, sy) = (cos * dx + sin * dy + cx, -sin * dx + cos * dy + cy);
        if sx >= 0.0 && sy >= 0.0 && (sx as u32) < w && (sy as u32) < h {
            *rgb.get_pixel(sx as u32, sy as u32)
        } else {
            Rgb([0, 0, 0])
        }
    })
    .save(dir.path().join("turned.png"))
    .unwrap();
    let read = |file: &Path| -> serde_json::Value {
        let out = wmae(&["extract", file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    for file in [
        marked.join("p.png"),
        dir.path().join("q50.jpg"),
        dir.path().join("half.png"),
    ] {
        let r = read(&file);
        assert_eq!(r["text"], "wmae 11", "{}: {r}", file.display());
    }
    for file in [original, flat] {
        assert_eq!(read(&file)["watermark"], false, "{}", file.display());
    }
}
