//! Photos in every format wmae reads, written by a real tool (Pillow, in the project's .venv),
//! marked with `wmae embed` and read back: each output keeps its format, its kind of WebP (lossy
//! or lossless), its colour type and its bit depth; Pillow reads it; the record says what could
//! not be kept; and `wmae extract` finds the payload.

mod common;

use std::collections::BTreeMap;

use common::{natural_photo, run_python, stdout, wmae};
use serde_json::Value;
use wmae::codec::webp::{kind, WebpKind};

/// Pillow writes the inputs from one photo: lossy and lossless WebP (the lossless one with a
/// transparent corner), an LZW TIFF, 16-bit gray PNG and TIFF (the luma times 257 plus a ramp,
/// so the low byte is not a copy of the high one), a progressive JPEG and a CMYK JPEG.
const MAKE_INPUTS: &str = r#"
import sys
import numpy as np
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
im = Image.open(src).convert("RGB")
im.save(f"{out}/lossy.webp", quality=90)
rgba = im.convert("RGBA")
a = np.asarray(rgba).copy()
a[:80, :120, 3] = 0
Image.fromarray(a).save(f"{out}/cutout.webp", lossless=True)
im.save(f"{out}/lzw.tif", compression="tiff_lzw")
g = np.asarray(im.convert("L"), dtype=np.uint32) * 257 + np.arange(im.size[0])[None, :] % 200
Image.fromarray(g.astype(np.uint16)).save(f"{out}/deep.png")
Image.fromarray(g.astype(np.uint16)).save(f"{out}/deep.tif")
im.save(f"{out}/progressive.jpg", quality=92, progressive=True)
im.convert("CMYK").save(f"{out}/cmyk.jpg", quality=92)
"#;

/// For each file: Pillow's format and mode, and for 16-bit ones how many samples changed by a
/// step that is not a whole 8-bit level (a multiple of 257) against the input of the same name.
const DESCRIBE_OUTPUTS: &str = r#"
import json, os, sys
import numpy as np
from PIL import Image
inputs, outputs = sys.argv[1], sys.argv[2]
seen = {}
for name in sorted(os.listdir(outputs)):
    im = Image.open(os.path.join(outputs, name))
    im.load()
    entry = {"format": im.format, "mode": im.mode, "size": list(im.size)}
    if im.mode == "I;16":
        before = np.asarray(Image.open(os.path.join(inputs, name)), dtype=np.int64)
        diff = np.asarray(im, dtype=np.int64) - before
        entry["changed"] = int((diff != 0).sum())
        entry["fine_steps"] = int((diff % 257 != 0).sum())
    seen[name] = entry
print(json.dumps(seen))
"#;

/// A file's name, wmae's format and bit depth, Pillow's format and mode, and what the record says
/// could not be kept.
type Expected = (
    &'static str,
    &'static str,
    u64,
    &'static str,
    &'static str,
    &'static [&'static str],
);

#[test]
fn every_format_round_trips_through_embed_and_extract() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, marked) = (dir.path().join("in"), dir.path().join("marked"));
    std::fs::create_dir(&inputs).unwrap();
    let source = dir.path().join("source.png");
    natural_photo(640, 400, 21).save(&source).unwrap();
    run_python(MAKE_INPUTS, &[&source, &inputs]);

    let out = wmae(&[
        "embed",
        inputs.to_str().unwrap(),
        "--payload",
        "text:formats",
        "--out",
        marked.to_str().unwrap(),
        "--jsonl",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let records: BTreeMap<String, Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            let name = r["input"].as_str().unwrap().rsplit('/').next().unwrap();
            (name.to_string(), r)
        })
        .collect();
    let expected: [Expected; 7] = [
        ("lossy.webp", "lossy WebP", 8, "WEBP", "RGB", &[]),
        ("cutout.webp", "lossless WebP", 8, "WEBP", "RGBA", &[]),
        ("lzw.tif", "TIFF", 8, "TIFF", "RGB", &[]),
        ("deep.png", "PNG", 16, "PNG", "I;16", &[]),
        ("deep.tif", "TIFF", 16, "TIFF", "I;16", &[]),
        (
            "progressive.jpg",
            "JPEG",
            8,
            "JPEG",
            "RGB",
            &["progressive JPEG written as baseline"],
        ),
        (
            "cmyk.jpg",
            "JPEG",
            8,
            "JPEG",
            "RGB",
            &["CMYK written as RGB"],
        ),
    ];
    assert_eq!(records.len(), expected.len(), "{records:?}");
    let seen: Value = serde_json::from_str(&run_python(DESCRIBE_OUTPUTS, &[&inputs, &marked]))
        .expect("Pillow's description");
    for (name, format, depth, pil_format, mode, conversions) in expected {
        let r = &records[name];
        assert_eq!(r["status"], "ok", "{name}: {r}");
        assert_eq!(r["verified"], true, "{name}: {r}");
        assert_eq!(r["format"], format, "{name}: {r}");
        assert_eq!(r["bit_depth"], depth, "{name}: {r}");
        let said: Vec<&str> = r["conversions"]
            .as_array()
            .map(|a| a.iter().map(|c| c.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(said, conversions, "{name}: {r}");
        let pil = &seen[name];
        assert_eq!(pil["format"], pil_format, "{name}: {pil}");
        assert_eq!(pil["mode"], mode, "{name}: {pil}");
        assert_eq!(pil["size"], serde_json::json!([640, 400]), "{name}: {pil}");
        if depth == 16 {
            // The change is written in 16-bit steps, not whole 8-bit levels.
            let (changed, fine) = (pil["changed"].as_u64(), pil["fine_steps"].as_u64());
            assert!(changed > Some(10_000), "{name}: {pil}");
            assert!(fine > Some(changed.unwrap() / 2), "{name}: {pil}");
        }
    }
    let bytes = |n: &str| std::fs::read(marked.join(n)).unwrap();
    assert_eq!(kind(&bytes("lossy.webp")).unwrap(), WebpKind::Lossy);
    assert_eq!(kind(&bytes("cutout.webp")).unwrap(), WebpKind::Lossless);
    // Nothing is written under the transparent corner.
    let cutout = image::open(marked.join("cutout.webp")).unwrap().to_rgba8();
    let original = image::open(inputs.join("cutout.webp")).unwrap().to_rgba8();
    for y in 0..80 {
        for x in 0..120 {
            assert_eq!(cutout.get_pixel(x, y), original.get_pixel(x, y));
        }
    }

    let out = wmae(&["extract", marked.to_str().unwrap(), "--jsonl"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let texts: Vec<String> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| format!("{} {}", r["input"], r["text"]))
        .collect();
    assert_eq!(texts.len(), expected.len());
    for t in &texts {
        assert!(t.ends_with("\"formats\""), "{texts:?}");
    }
}

/// `wmae embed FILE ...` that must fail for that input (exit 3, no panic); its stderr.
fn refused(file: &std::path::Path, out: &std::path::Path) -> String {
    let run = wmae(&[
        "embed",
        file.to_str().unwrap(),
        "--payload",
        "text:x",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = common::stderr(&run);
    assert_eq!(run.status.code(), Some(3), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let written = std::fs::read_dir(out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "files written for a refused input");
    err
}

#[test]
fn animated_webp_and_other_formats_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let gif = dir.path().join("moving.gif");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let err = refused(&gif, &dir.path().join("o"));
    assert!(err.contains("moving.gif") && err.contains("Gif"), "{err}");

    // An animated WebP (Pillow writes one from two frames).
    let source = dir.path().join("frame.png");
    natural_photo(200, 150, 3).save(&source).unwrap();
    let animated = dir.path().join("anim.webp");
    run_python(
        "import sys\nfrom PIL import Image\nim = Image.open(sys.argv[1]).convert('RGB')\n\
         im.save(sys.argv[2], save_all=True, append_images=[im.rotate(90)], duration=100)",
        &[&source, &animated],
    );
    let err = refused(&animated, &dir.path().join("o2"));
    assert!(
        err.contains("anim.webp") && err.contains("animated WebP"),
        "{err}"
    );
}
