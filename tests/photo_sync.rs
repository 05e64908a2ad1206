//! The photo reader finds the tile wherever a crop, a turn or a resize put it (src/watermarker/sync.rs): the
//! shipped photo model's payload reads back from crops keeping shares of each side that no list
//! of scales holds, and from a turn, with no list of scales or angles to hit. A key keeps the
//! payload from anyone without it; an RGBA photo reads after flattening.

mod common;

use std::path::Path;

use common::{natural_photo, stdout, wmae};
use image::{imageops, Rgb, RgbImage};

/// `img` turned by `degrees` counter-clockwise about its centre, bilinear, black corners, same
/// size.
fn turn(img: &RgbImage, degrees: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        let (sx, sy) = (
            cos * dx - sin * dy + cx - 0.5,
            sin * dx + cos * dy + cy - 0.5,
        );
        if sx < 0.0 || sy < 0.0 || sx >= (w - 1) as f32 || sy >= (h - 1) as f32 {
            return Rgb([0, 0, 0]);
        }
        let (x0, y0) = (sx as u32, sy as u32);
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let p = |x, y, c| f32::from(img.get_pixel(x, y)[c]);
        Rgb(std::array::from_fn(|c| {
            let top = p(x0, y0, c) * (1.0 - fx) + p(x0 + 1, y0, c) * fx;
            let bottom = p(x0, y0 + 1, c) * (1.0 - fx) + p(x0 + 1, y0 + 1, c) * fx;
            (top * (1.0 - fy) + bottom * fy).round() as u8
        }))
    })
}

/// The box keeping `fx` of the width and `fy` of the height, its corner at `(ax, ay)` of the room
/// left over.
fn crop(img: &RgbImage, fx: f64, fy: f64, ax: f64, ay: f64) -> RgbImage {
    let (w, h) = img.dimensions();
    let (cw, ch) = (
        (f64::from(w) * fx).round() as u32,
        (f64::from(h) * fy).round() as u32,
    );
    let (x, y) = (
        (f64::from(w - cw) * ax).round() as u32,
        (f64::from(h - ch) * ay).round() as u32,
    );
    imageops::crop_imm(img, x, y, cw, ch).to_image()
}

fn read(file: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["extract", file.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = wmae(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

/// Embeds a payload into a generated photo with `model` (none: the default), then reads it back
/// from crops keeping shares of each side that no list of scales holds (the reader before the
/// lattice search read only 85% and 71%), a small turn and a mirror image: the cases that do not
/// read, or report an angle other than the one it was turned by. (Half-area, off-centre and
/// uneven crops and turns of 7 degrees and more are read on some photos, not reliably on this
/// one: see docs/photos.md.) The original must read as no watermark, with the false-positive
/// rate of every word tried.
fn unread_after_crops_turns_and_a_mirror(model: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("p.png");
    natural_photo(1200, 800, 5).save(&original).unwrap();
    let marked = dir.path().join("marked");
    let mut args = vec![
        "embed",
        original.to_str().unwrap(),
        "--payload",
        "text:sync 5",
        "--out",
        marked.to_str().unwrap(),
        "--no-score",
    ];
    args.extend_from_slice(model);
    let out = wmae(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let img = image::open(marked.join("p.png")).unwrap().to_rgb8();
    // Each case with the angle the reader must report turning it back by (degrees, clockwise
    // positive as the image's y axis points down), where it says.
    let mut cases: Vec<(String, RgbImage, Option<f64>)> = Vec::new();
    for f in [0.95, 0.9, 0.8, 0.75] {
        cases.push((format!("centre {f}"), crop(&img, f, f, 0.5, 0.5), Some(0.0)));
    }
    cases.push(("turned 3".into(), turn(&img, 3.0), Some(-3.0)));
    cases.push(("mirror".into(), imageops::flip_horizontal(&img), None));
    let mut failed = Vec::new();
    for (name, attacked, angle) in &cases {
        let file = dir.path().join(format!("{}.png", name.replace(' ', "_")));
        attacked.save(&file).unwrap();
        let r = read(&file, model);
        let reported = r["angle"].as_f64().unwrap_or(0.0);
        if r["text"] != "sync 5" {
            failed.push(format!("{name}: {r}"));
        } else if angle.is_some_and(|a| (reported - a).abs() > 1.0) {
            failed.push(format!(
                "{name}: reported turned back by {reported}, not {angle:?}: {r}"
            ));
        }
    }
    let clean = read(&original, model);
    assert_eq!(clean["watermark"], false, "{clean}");
    assert!(
        clean["false_positive_rate"].as_f64().unwrap() < 1e-9,
        "{clean}"
    );
    failed
}

/// The shipped (perceptually shaped) model's tile is fine (16 px at a 256-px working size): its
/// map's spectrum is mostly the tile's own lines, which a too-narrow whitening window once
/// divided away, so that no crop or turn of it read at all.
#[test]
fn payload_reads_after_crops_turns_and_a_mirror() {
    let failed = unread_after_crops_turns_and_a_mirror(&[]);
    assert!(failed.is_empty(), "not read: {failed:#?}");
}

/// The wider reader trained with the embedder (checkpoints/photo-wide.ot, issue 17's stop 21
/// experiment) reads the same cases.
#[test]
fn wide_payload_reads_after_crops_turns_and_a_mirror() {
    let failed =
        unread_after_crops_turns_and_a_mirror(&["--checkpoint", "checkpoints/photo-wide.ot"]);
    assert!(failed.is_empty(), "not read: {failed:#?}");
}

/// The earlier residual model (16-px tile at 128 px) reads the same cases.
#[test]
fn residual_payload_reads_after_crops_turns_and_a_mirror() {
    let failed =
        unread_after_crops_turns_and_a_mirror(&["--checkpoint", "checkpoints/photo-residual.ot"]);
    assert!(failed.is_empty(), "not read: {failed:#?}");
}

#[test]
fn a_keyed_payload_reads_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("k.png");
    natural_photo(800, 600, 9).save(&original).unwrap();
    let (key, other) = (dir.path().join("a.key"), dir.path().join("b.key"));
    std::fs::write(&key, b"a private key of thirty-two bytes").unwrap();
    std::fs::write(&other, b"another key, also long enough!!").unwrap();
    let marked = dir.path().join("marked");
    let out = wmae(&[
        "embed",
        original.to_str().unwrap(),
        "--payload",
        "text:keyed",
        "--out",
        marked.to_str().unwrap(),
        "--no-score",
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let file = marked.join("k.png");
    let with_key = read(&file, &["--key", key.to_str().unwrap()]);
    assert_eq!(with_key["text"], "keyed", "{with_key}");
    assert_eq!(read(&file, &[])["watermark"], false);
    assert_eq!(
        read(&file, &["--key", other.to_str().unwrap()])["watermark"],
        false
    );
    // The key also comes from the environment; a short key file is refused, naming it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wmae"))
        .args(["extract", file.to_str().unwrap(), "--json"])
        .env("WMAE_KEY_FILE", &key)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(r["text"], "keyed", "{r}");
    let short = dir.path().join("short.key");
    std::fs::write(&short, b"tiny").unwrap();
    let message = common::failure(&[
        "extract",
        file.to_str().unwrap(),
        "--key",
        short.to_str().unwrap(),
    ]);
    assert!(
        message.contains("short.key") && message.contains("16"),
        "{message}"
    );
}

/// An RGBA photo gets no change under its transparent pixels, and its payload still reads once
/// it is flattened onto white or onto black (as a viewer or a JPEG export shows it).
#[test]
fn an_rgba_photo_reads_after_flattening() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = natural_photo(900, 700, 13);
    let (w, h) = rgb.dimensions();
    // A transparent band a quarter wide on the left (its colours are left as they were, as
    // editors do), half-transparent pixels next to it, opaque elsewhere.
    let rgba = image::RgbaImage::from_fn(w, h, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        let alpha = match x * 4 / w {
            0 => 0,
            1 if x % 2 == 0 => 128,
            _ => 255,
        };
        image::Rgba([p[0], p[1], p[2], alpha])
    });
    let original = dir.path().join("cutout.png");
    rgba.save(&original).unwrap();
    let marked = dir.path().join("marked");
    let out = wmae(&[
        "embed",
        original.to_str().unwrap(),
        "--payload",
        "text:cutout",
        "--out",
        marked.to_str().unwrap(),
        "--jsonl",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let record: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let out_img = image::open(marked.join("cutout.png")).unwrap().to_rgba8();
    for (before, after) in rgba.pixels().zip(out_img.pixels()) {
        assert_eq!(before.0[3], after.0[3]);
        if before.0[3] == 0 {
            assert_eq!(before, after, "a transparent pixel changed");
        }
    }
    // PSNR over the colour channels only, as `wmae score` computes it.
    let score = wmae(&[
        "score",
        original.to_str().unwrap(),
        marked.join("cutout.png").to_str().unwrap(),
        "--json",
    ]);
    let score: serde_json::Value = serde_json::from_str(stdout(&score).trim()).unwrap();
    assert!(
        (score["psnr"].as_f64().unwrap() - record["psnr"].as_f64().unwrap()).abs() < 0.01,
        "{score} {record}"
    );
    for (name, background) in [("white", 255.0f32), ("black", 0.0)] {
        let flat = RgbImage::from_fn(w, h, |x, y| {
            let p = out_img.get_pixel(x, y).0;
            let a = f32::from(p[3]) / 255.0;
            Rgb(std::array::from_fn(|c| {
                (f32::from(p[c]) * a + background * (1.0 - a)).round() as u8
            }))
        });
        let file = dir.path().join(format!("on-{name}.png"));
        flat.save(&file).unwrap();
        let r = read(&file, &[]);
        assert_eq!(r["text"], "cutout", "flattened onto {name}: {r}");
    }
}

/// A crop of a small photo is read below the working size (its shorter side under 256 px, here
/// 233, read at 224): the lattice the reader finds there is read at the side it was found at.
/// (Until stop 22 it was read at the working size, 256 / side times too large; these two crops
/// happened to read even so, but the frontier's small-photo crops gained from the fix: see
/// docs/photos.md, stop 22.)
#[test]
fn crops_of_a_small_photo_read_below_the_working_size() {
    let dir = tempfile::tempdir().unwrap();
    let marked = dir.path().join("marked");
    let out = wmae(&[
        "embed",
        "data/photos/test/opencv_data_rubberwhale1.png",
        "--checkpoint",
        "checkpoints/photo-wide.ot",
        "--strength",
        "1.75",
        "--payload",
        "text:small",
        "--out",
        marked.to_str().unwrap(),
        "--no-score",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let img = image::open(marked.join("opencv_data_rubberwhale1.png"))
        .unwrap()
        .to_rgb8();
    let mut failed = Vec::new();
    // 60% of each side at (47, 108), and 60% x 90% at (93, 12), of the 584x388 photo.
    for (name, x, y, w, h) in [
        ("off-centre 60%", 47, 108, 350, 233),
        ("60x90%", 93, 12, 350, 349),
    ] {
        let file = dir.path().join(format!("{}.png", name.replace(' ', "_")));
        imageops::crop_imm(&img, x, y, w, h)
            .to_image()
            .save(&file)
            .unwrap();
        let r = read(&file, &["--checkpoint", "checkpoints/photo-wide.ot"]);
        if r["text"] != "small" {
            failed.push(format!("{name}: {r}"));
        }
    }
    assert!(failed.is_empty(), "not read: {failed:#?}");
}
