//! Photos of any size: reading PNG/JPEG, squashing luma to the working size, adding a resized
//! residual to every colour channel, and writing the result back in the input's format.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{
    DynamicImage, GrayAlphaImage, GrayImage, ImageDecoder, ImageEncoder, ImageReader, Rgb,
    RgbImage, RgbaImage,
};
use tch::{Device, Kind, Tensor};
use wmae::codec::photo::{Photo, PhotoFormat, Pixels, DEFAULT_JPEG_QUALITY, MIN_SIDE};

/// Deterministic bytes for test images (a 64-bit LCG's high byte).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn zeros(s: i64) -> Tensor {
    Tensor::zeros([1, 1, s, s], (Kind::Float, Device::Cpu))
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).view([-1])).unwrap()
}

fn save_png(image: &DynamicImage, path: &Path) {
    image
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

fn save_jpeg(image: &DynamicImage, path: &Path, quality: u8) {
    let file = std::fs::File::create(path).unwrap();
    let encoder = JpegEncoder::new_with_quality(std::io::BufWriter::new(file), quality);
    image.write_with_encoder(encoder).unwrap();
}

fn error_of(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", result.expect_err("should fail"))
}

/// The Python of the cross-checks, or None (with a message) when it or Pillow is missing.
fn pillow_python() -> Option<String> {
    let python = std::env::var("WMAE_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    if !Path::new(&python).exists() {
        println!("skipping the Pillow check: {python} is missing (run scripts/setup-python)");
        return None;
    }
    let ok = Command::new(&python)
        .args(["-c", "import PIL"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{python} exists but cannot import PIL (Pillow)");
    Some(python)
}

#[test]
fn zero_residual_keeps_png_pixels_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (97u32, 70u32);
    let n = (w * h) as usize;
    let images: Vec<DynamicImage> = vec![
        RgbImage::from_raw(w, h, bytes(3 * n, 1)).unwrap().into(),
        GrayImage::from_raw(w, h, bytes(n, 2)).unwrap().into(),
        RgbaImage::from_raw(w, h, bytes(4 * n, 3)).unwrap().into(),
        GrayAlphaImage::from_raw(w, h, bytes(2 * n, 4))
            .unwrap()
            .into(),
    ];
    for (i, image) in images.iter().enumerate() {
        let input = dir.path().join(format!("in{i}.png"));
        let output = dir.path().join(format!("out{i}.png"));
        save_png(image, &input);
        let photo = Photo::open(&input).unwrap();
        assert_eq!(photo.format, PhotoFormat::Png);
        assert_eq!(photo.is_gray(), i % 2 == 1);
        assert_eq!(photo.pixels.bit_depth(), 8);
        assert!(photo.conversions.is_empty());
        let marked = photo.with_residual(&zeros(32), 1.0).unwrap();
        marked.save(&output, DEFAULT_JPEG_QUALITY).unwrap();
        let back = image::open(&output).unwrap();
        assert_eq!(back.color(), image.color(), "image {i}");
        assert_eq!(back, *image, "image {i}: pixels changed");
    }
    // No temporary file is left beside the outputs.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
}

#[test]
fn constant_residual_raises_luma_and_keeps_chroma() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (150u32, 100u32);
    let n = (w * h) as usize;
    // Mid-gray-ish colours, plus a bright band at the top whose pixels clip.
    let mut raw: Vec<u8> = bytes(3 * n, 5).iter().map(|b| 60 + b / 2).collect();
    for v in &mut raw[..3 * w as usize * 10] {
        *v = 250;
    }
    let original = RgbImage::from_raw(w, h, raw).unwrap();
    let input = dir.path().join("in.png");
    save_png(&original.clone().into(), &input);
    let photo = Photo::open(&input).unwrap();

    // 20/255 at strength 0.5 is +10 levels.
    let residual = Tensor::full([1, 1, 48, 48], 20.0 / 255.0, (Kind::Float, Device::Cpu));
    let output = dir.path().join("out.png");
    photo
        .with_residual(&residual, 0.5)
        .unwrap()
        .save(&output, DEFAULT_JPEG_QUALITY)
        .unwrap();
    let marked = image::open(&output).unwrap().into_rgb8();
    assert_eq!(marked.dimensions(), (w, h));

    let ycbcr = |p: &Rgb<u8>| {
        let [r, g, b] = p.0.map(f64::from);
        (
            0.299 * r + 0.587 * g + 0.114 * b,
            -0.168736 * r - 0.331264 * g + 0.5 * b,
            0.5 * r - 0.418688 * g - 0.081312 * b,
        )
    };
    let (mut unclipped, mut clipped) = (0, 0);
    for (before, after) in original.pixels().zip(marked.pixels()) {
        if before.0.iter().all(|&v| v <= 245) {
            unclipped += 1;
            assert_eq!(after.0, before.0.map(|v| v + 10), "{before:?}");
            let (y0, cb0, cr0) = ycbcr(before);
            let (y1, cb1, cr1) = ycbcr(after);
            assert!((y1 - y0 - 10.0).abs() < 1e-6, "Y {y0} -> {y1}");
            assert!((cb1 - cb0).abs() < 1e-6 && (cr1 - cr0).abs() < 1e-6);
        } else {
            clipped += 1;
            assert_eq!(after.0, [255, 255, 255]);
        }
    }
    assert_eq!(clipped, 10 * w as usize);
    assert_eq!(unclipped, n - clipped);

    // Changes are rounded to the nearest level, up or down.
    for (change, levels) in [(0.6, 1i16), (-0.6, -1), (0.4, 0), (-0.4, 0)] {
        let residual = Tensor::full([1, 1, 8, 8], change / 255.0, (Kind::Float, Device::Cpu));
        let Pixels::Rgb(rounded) = photo.with_residual(&residual, 1.0).unwrap().pixels else {
            panic!("RGB should stay RGB")
        };
        for (before, after) in original.as_raw().iter().zip(rounded.as_raw()) {
            let expected = (*before as i16 + levels).clamp(0, 255) as u8;
            assert_eq!(*after, expected, "{before} {change:+}");
        }
    }

    // The same change on an RGBA photo leaves alpha as it was and is scaled by each pixel's
    // opacity (nothing is written under transparent pixels); a negative one lowers luma.
    let rgba = RgbaImage::from_raw(w, h, bytes(4 * n, 6)).unwrap();
    let input = dir.path().join("alpha.png");
    save_png(&rgba.clone().into(), &input);
    let lowered = Photo::open(&input)
        .unwrap()
        .with_residual(&residual, -0.5)
        .unwrap();
    let Pixels::Rgba(lowered) = lowered.pixels else {
        panic!("RGBA should stay RGBA")
    };
    for (before, after) in rgba.pixels().zip(lowered.pixels()) {
        assert_eq!(after.0[3], before.0[3]);
        let change = -10.0 * f32::from(before.0[3]) / 255.0;
        for c in 0..3 {
            let expected = ((f32::from(before.0[c]) + change).clamp(0.0, 255.0) + 0.5) as u8;
            assert_eq!(after.0[c], expected, "{before:?}");
        }
        if before.0[3] == 0 {
            assert_eq!(after.0[..3], before.0[..3]);
        }
    }
}

#[test]
fn sizes_and_formats_are_kept_and_pillow_reads_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let residual = Tensor::from_slice(&bytes(64 * 64, 7))
        .to_kind(Kind::Float)
        .view([1, 1, 64, 64])
        / (255.0 * 16.0);
    for (w, h) in [(257u32, 131u32), (131, 257), (64, 1000)] {
        let input = dir.path().join(format!("{w}x{h}.png"));
        let image = RgbImage::from_raw(w, h, bytes((3 * w * h) as usize, 8)).unwrap();
        save_png(&image.into(), &input);
        let output = dir.path().join(format!("{w}x{h}-out.png"));
        Photo::open(&input)
            .unwrap()
            .with_residual(&residual, 1.0)
            .unwrap()
            .save(&output, DEFAULT_JPEG_QUALITY)
            .unwrap();
        let back = image::open(&output).unwrap();
        assert_eq!((back.width(), back.height()), (w, h));
        assert!(matches!(back, DynamicImage::ImageRgb8(_)));
    }

    // A 4K colour JPEG and a gray JPEG, named without an extension hint.
    let (w, h) = (3840u32, 2160u32);
    let big = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let big_in = dir.path().join("big.data");
    save_jpeg(&big.into(), &big_in, 90);
    let gray_in = dir.path().join("gray.jpg");
    let gray = GrayImage::from_raw(300, 200, bytes(300 * 200, 9)).unwrap();
    save_jpeg(&gray.into(), &gray_in, 90);

    let mut outputs = Vec::new();
    for (input, mode, (w, h)) in [(&big_in, "RGB", (w, h)), (&gray_in, "L", (300, 200))] {
        let photo = Photo::open(input).unwrap();
        assert_eq!(photo.format, PhotoFormat::Jpeg);
        assert_eq!((photo.width(), photo.height()), (w, h));
        assert_eq!(photo.is_gray(), mode == "L");
        let output: PathBuf = input.with_extension("out.jpg");
        photo
            .with_residual(&residual, 1.0)
            .unwrap()
            .save(&output, DEFAULT_JPEG_QUALITY)
            .unwrap();
        let bytes = std::fs::read(&output).unwrap();
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "not a JPEG");
        let back = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (w, h));
        assert_eq!(back.color().has_color(), mode == "RGB");
        outputs.push((output, mode, w, h));
    }

    let Some(python) = pillow_python() else {
        return;
    };
    for (output, mode, w, h) in outputs {
        let out = Command::new(&python)
            .args([
                "-c",
                "import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.load(); \
                 print(im.format, im.size[0], im.size[1], im.mode)",
            ])
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("JPEG {w} {h} {mode}")
        );
    }
}

#[test]
fn luma_is_bt601_squashed_to_the_working_size() {
    let dir = tempfile::tempdir().unwrap();
    let halves = dir.path().join("halves.png");
    let image = RgbImage::from_fn(300, 120, |x, _| {
        if x < 150 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    save_png(&image.into(), &halves);
    let luma = Photo::open(&halves).unwrap().luma_at(32).unwrap();
    assert_eq!(luma.size(), [1, 1, 32, 32]);
    assert_eq!(luma.kind(), Kind::Float);
    assert_eq!(luma.device(), Device::Cpu);
    let v = values(&luma);
    for row in v.chunks(32) {
        assert!(row[..14].iter().all(|&l| l.abs() < 1e-4), "{row:?}");
        assert!(row[18..].iter().all(|&l| (l - 1.0).abs() < 1e-4), "{row:?}");
        assert!(row[15] > 0.0 && row[15] < 1.0 && row[16] > 0.0 && row[16] < 1.0);
    }

    let red = dir.path().join("red.png");
    save_png(
        &RgbImage::from_pixel(100, 80, Rgb([255, 0, 0])).into(),
        &red,
    );
    let v = values(&Photo::open(&red).unwrap().luma_at(256).unwrap());
    assert_eq!(v.len(), 256 * 256);
    assert!(v.iter().all(|&l| (l - 0.299).abs() < 1e-5), "{}", v[0]);

    let gray = dir.path().join("gray.png");
    save_png(
        &GrayImage::from_pixel(90, 70, image::Luma([51])).into(),
        &gray,
    );
    let v = values(&Photo::open(&gray).unwrap().luma_at(16).unwrap());
    assert!(v.iter().all(|&l| (l - 0.2).abs() < 1e-6), "{}", v[0]);
    assert!(Photo::open(&gray).unwrap().luma_at(0).is_err());
}

/// One PNG chunk: length, type, data and the CRC-32 of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut covered = kind.to_vec();
    covered.extend_from_slice(data);
    out.extend_from_slice(&crc32(&covered).to_be_bytes());
    out
}

/// A PNG whose header claims `width x height` RGB pixels, with one tiny stored-deflate IDAT.
fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x01, 0x00, 0xFE, 0xFF, 0x00, 0x00, 0x01, 0x00, 0x01,
        ],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image at all\n").unwrap();
    let err = error_of(Photo::open(&text));
    assert!(
        err.contains("notes.png") && err.contains("not a PNG, JPEG, WebP or TIFF"),
        "{err}"
    );

    let gif = dir.path().join("anim.png");
    std::fs::write(&gif, b"GIF89a\x10\x00\x10\x00\x00\x00\x00").unwrap();
    let err = error_of(Photo::open(&gif));
    assert!(err.contains("anim.png") && err.contains("Gif"), "{err}");

    let missing = dir.path().join("missing.png");
    assert!(error_of(Photo::open(&missing)).contains("missing.png"));

    let good = dir.path().join("good.png");
    save_png(
        &RgbImage::from_raw(100, 100, bytes(30_000, 10))
            .unwrap()
            .into(),
        &good,
    );
    let full = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let err = error_of(Photo::open(&truncated));
    assert!(err.contains("truncated.png"), "{err}");
    // The image crate decodes a cut-off JPEG scan as gray without an error: refused here.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&RgbImage::from_raw(100, 100, bytes(30_000, 11)).unwrap())
        .unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() * 2 / 3]).unwrap();
    let err = error_of(Photo::open(&cut));
    assert!(
        err.contains("cut.jpg") && err.contains("truncated JPEG"),
        "{err}"
    );

    let tiny = dir.path().join("tiny.png");
    save_png(&GrayImage::new(10, 10).into(), &tiny);
    let err = error_of(Photo::open(&tiny));
    assert!(
        err.contains("tiny.png") && err.contains(&format!("at least {MIN_SIDE} pixels")),
        "{err}"
    );
    // The minimum itself is accepted.
    let edge = dir.path().join("edge.png");
    save_png(&GrayImage::new(MIN_SIDE, 300).into(), &edge);
    Photo::open(&edge).unwrap();

    // The crafted header is well formed: at an ordinary size it gets past the header checks.
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, png_with_header(100_000, 100_000)).unwrap();
    let err = error_of(Photo::open(&huge));
    assert!(
        err.contains("huge.png") && err.contains("100000x100000") && err.contains("megapixels"),
        "{err}"
    );
    let small = dir.path().join("small.png");
    std::fs::write(&small, png_with_header(10, 10)).unwrap();
    let err = error_of(Photo::open(&small));
    assert!(err.contains("at least"), "{err}");

    let photo = Photo::open(&good).unwrap();
    for quality in [0u8, 101] {
        let err = error_of(photo.save(&dir.path().join("q.png"), quality));
        assert!(err.contains(&format!("quality {quality}")), "{err}");
    }
    assert!(!dir.path().join("q.png").exists());

    for shape in [
        vec![1, 3, 32, 32],
        vec![1, 1, 32, 33],
        vec![2, 1, 32, 32],
        vec![1, 32, 32],
        vec![1, 1, 0, 0],
    ] {
        let residual = Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu));
        let err = error_of(photo.with_residual(&residual, 1.0));
        assert!(err.contains("expected (1,1,S,S)"), "{err}");
    }
    let nan = Tensor::full([1, 1, 8, 8], f64::NAN, (Kind::Float, Device::Cpu));
    assert!(error_of(photo.with_residual(&nan, 1.0)).contains("NaN"));
    assert!(error_of(photo.with_residual(&zeros(8), f64::INFINITY)).contains("strength"));
}

#[test]
fn residual_survives_the_resize_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flat.png");
    save_png(
        &GrayImage::from_pixel(640, 480, image::Luma([128])).into(),
        &input,
    );
    let photo = Photo::open(&input).unwrap();

    // A smooth pattern: a horizontal ramp of +-8 levels plus a vertical one of +-4.
    let s = 64i64;
    let pattern: Vec<f32> = (0..s * s)
        .map(|i| {
            let (y, x) = ((i / s) as f32, (i % s) as f32);
            ((x - 31.5) / 31.5 * 8.0 + (y - 31.5) / 31.5 * 4.0) / 255.0
        })
        .collect();
    let residual = Tensor::from_slice(&pattern).view([1, 1, s, s]);
    let output = dir.path().join("marked.png");
    photo
        .with_residual(&residual, 1.0)
        .unwrap()
        .save(&output, DEFAULT_JPEG_QUALITY)
        .unwrap();
    let marked = Photo::open(&output).unwrap();
    assert!(marked.is_gray());

    let found = values(&(marked.luma_at(s).unwrap() - photo.luma_at(s).unwrap()));
    let (mut sum, mut count) = (0.0f64, 0);
    for y in 2..s - 2 {
        for x in 2..s - 2 {
            let i = (y * s + x) as usize;
            sum += (found[i] - pattern[i]).abs() as f64;
            count += 1;
        }
    }
    let mean = sum / count as f64;
    println!("mean abs error {:.4} levels", mean * 255.0);
    assert!(mean < 0.5 / 255.0, "mean abs error {} levels", mean * 255.0);
    // And the pattern is really there, not a flat image that happens to be close.
    assert!((found[(32 * s + 60) as usize] - found[(32 * s + 3) as usize]) * 255.0 > 13.0);
}

/// The same photo at 8 and at 16 bits (each sample times 257) gets the same change: the 16-bit
/// result, in 8-bit levels, is within half a level of the 8-bit one (which rounds to whole
/// levels), mostly between whole levels, and its error differs only by the 8-bit rounding's.
#[test]
fn a_sixteen_bit_photo_gets_the_change_in_its_own_finer_steps() {
    let dir = tempfile::tempdir().unwrap();
    let eight = RgbImage::from_raw(90, 70, bytes(90 * 70 * 3, 11)).unwrap();
    let deep = image::ImageBuffer::<Rgb<u16>, _>::from_fn(90, 70, |x, y| {
        Rgb(eight.get_pixel(x, y).0.map(|v| u16::from(v) * 257))
    });
    let (p8, p16) = (dir.path().join("8.png"), dir.path().join("16.png"));
    save_png(&eight.clone().into(), &p8);
    save_png(&deep.clone().into(), &p16);
    // A change of a few levels, not whole ones.
    let residual = Tensor::from_slice(&bytes(32 * 32, 12))
        .to_kind(Kind::Float)
        .view([1, 1, 32, 32])
        / (255.0 * 40.0)
        - 3.0 / 255.0;
    let (a, mse8) = Photo::open(&p8)
        .unwrap()
        .with_residual_and_mse(&residual, 1.0)
        .unwrap();
    let (b, mse16) = Photo::open(&p16)
        .unwrap()
        .with_residual_and_mse(&residual, 1.0)
        .unwrap();
    let (Pixels::Rgb(a), Pixels::Rgb16(b)) = (a.pixels, b.pixels) else {
        panic!("colour types changed");
    };
    let mut fine = 0;
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let level = f32::from(*y) / 257.0;
        assert!((level - f32::from(*x)).abs() <= 0.5 + 1e-3, "{x} {y}");
        fine += usize::from(y % 257 != 0);
    }
    assert!(fine > a.as_raw().len() / 2, "{fine} samples between levels");
    // The 8-bit MSE carries the rounding's own 1/12 level² on top of the change.
    assert!((mse8 - mse16 - 1.0 / 12.0).abs() < 0.1, "{mse8} {mse16}");
}

#[test]
fn sixteen_bit_png_stays_16_bit_and_metadata_is_carried() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("deep.png");
    let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(80, 70, |x, y| {
        Rgb([(x * 800) as u16, (y * 900) as u16, 65535])
    });
    save_png(&deep.clone().into(), &input);
    let photo = Photo::open(&input).unwrap();
    assert_eq!(photo.pixels.bit_depth(), 16);
    let output = dir.path().join("deep-out.png");
    photo.save(&output, DEFAULT_JPEG_QUALITY).unwrap();
    let back = image::open(&output).unwrap();
    assert_eq!(back, DynamicImage::from(deep));

    // A JPEG turned on its side by EXIF: the stored grid and the EXIF block (orientation
    // included) come back unchanged, so viewers still show it upright. An ICC profile too.
    // EXIF: little-endian TIFF, one IFD with Orientation (0x0112) = 6.
    let exif: Vec<u8> = [
        &b"II*\x00\x08\x00\x00\x00\x01\x00"[..],
        &[
            0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
        ],
        &[0, 0, 0, 0],
    ]
    .concat();
    let icc = bytes(600, 11);
    let sideways = dir.path().join("sideways.jpg");
    {
        let file = std::fs::File::create(&sideways).unwrap();
        let mut encoder = JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90);
        encoder.set_exif_metadata(exif.clone()).unwrap();
        encoder.set_icc_profile(icc.clone()).unwrap();
        let image = RgbImage::from_raw(160, 90, bytes(160 * 90 * 3, 12)).unwrap();
        encoder
            .write_image(image.as_raw(), 160, 90, image::ExtendedColorType::Rgb8)
            .unwrap();
    }
    let png_with_icc = dir.path().join("icc.png");
    {
        let file = std::fs::File::create(&png_with_icc).unwrap();
        let mut encoder = PngEncoder::new(std::io::BufWriter::new(file));
        encoder.set_icc_profile(icc.clone()).unwrap();
        encoder
            .write_image(
                &bytes(100 * 100, 13),
                100,
                100,
                image::ExtendedColorType::L8,
            )
            .unwrap();
    }
    for input in [&sideways, &png_with_icc] {
        let photo = Photo::open(input).unwrap();
        let output = input.with_extension("out");
        photo
            .with_residual(&zeros(16), 1.0)
            .unwrap()
            .save(&output, DEFAULT_JPEG_QUALITY)
            .unwrap();
        let mut decoder = ImageReader::open(&output)
            .unwrap()
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        assert_eq!(decoder.dimensions(), (photo.width(), photo.height()));
        assert_eq!(decoder.icc_profile().unwrap().as_ref(), Some(&icc));
        if input == &sideways {
            assert_eq!(decoder.exif_metadata().unwrap().as_ref(), Some(&exif));
            assert_eq!(
                decoder.orientation().unwrap(),
                image::metadata::Orientation::Rotate90
            );
        }
    }
}

/// PyTorch's bilinear sample (align_corners false) of `values` at output index `i` of `out`.
fn bilinear(values: &[f64], i: usize, out: usize) -> f64 {
    let scale = values.len() as f64 / out as f64;
    let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(values.len() - 1);
    let i1 = (i0 + 1).min(values.len() - 1);
    let t = src - i0 as f64;
    values[i0] * (1.0 - t) + values[i1] * t
}

#[test]
fn residual_is_resized_like_pytorch_bilinear() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flat.png");
    let (w, h) = (128usize, 96usize);
    save_png(
        &GrayImage::from_pixel(w as u32, h as u32, image::Luma([100])).into(),
        &input,
    );
    // r[y][x] = cx[x] + cy[y]: bilinear weights sum to 1, so its resize is the sum of the two
    // one-dimensional resizes.
    let cx = [0.0, 40.0, 80.0, 120.0];
    let cy = [0.0, -20.0, 10.0, 30.0];
    let residual: Vec<f32> = (0..16)
        .map(|i| ((cx[i % 4] + cy[i / 4]) / 255.0) as f32)
        .collect();
    let marked = Photo::open(&input)
        .unwrap()
        .with_residual(&Tensor::from_slice(&residual).view([1, 1, 4, 4]), 1.0)
        .unwrap();
    let Pixels::Gray(marked) = marked.pixels else {
        panic!("gray should stay gray")
    };
    let mut checked = 0;
    for y in 0..h {
        for x in 0..w {
            let exact = 100.0 + bilinear(&cx, x, w) + bilinear(&cy, y, h);
            if (exact.fract() - 0.5).abs() < 0.01 {
                continue;
            }
            assert_eq!(
                marked.get_pixel(x as u32, y as u32).0[0],
                exact.round() as u8,
                "({x},{y}) should be {exact}"
            );
            checked += 1;
        }
    }
    assert!(checked > w * h * 9 / 10, "{checked}");
}

/// The fused host resize-and-add matches libtorch's `upsample_bilinear2d` followed by the
/// addition, on a random residual and a colour photo of odd size (a pixel may differ by one
/// level where float rounding falls on either side of .5), and its mean squared error is the
/// one `psnr` measures on the result.
#[test]
fn fused_residual_matches_libtorch_upsampling_and_reports_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("noise.png");
    let (w, h) = (211i64, 97i64);
    let pixels = bytes((w * h * 3) as usize, 5);
    save_png(
        &RgbImage::from_raw(w as u32, h as u32, pixels)
            .unwrap()
            .into(),
        &input,
    );
    let photo = Photo::open(&input).unwrap();
    tch::manual_seed(3);
    let residual = (Tensor::rand([1, 1, 16, 16], (tch::Kind::Float, tch::Device::Cpu)) - 0.5) * 0.2;
    let (marked, mse) = photo.with_residual_and_mse(&residual, 0.8).unwrap();
    let full = residual.upsample_bilinear2d([h, w], false, None, None) * (0.8 * 255.0);
    let change = values(&full);
    let (Pixels::Rgb(before), Pixels::Rgb(after)) = (&photo.pixels, &marked.pixels) else {
        panic!("RGB stays RGB")
    };
    let mut off_by_one = 0;
    for (i, (p, q)) in before.pixels().zip(after.pixels()).enumerate() {
        for c in 0..3 {
            let expected = (p.0[c] as f32 + change[i]).round().clamp(0.0, 255.0);
            let diff = (q.0[c] as f32 - expected).abs();
            assert!(
                diff <= 1.0,
                "pixel {i} channel {c}: {} vs {expected}",
                q.0[c]
            );
            off_by_one += usize::from(diff > 0.0);
        }
    }
    assert!(
        off_by_one * 1000 < (w * h * 3) as usize,
        "{off_by_one} off by one"
    );
    let measured = wmae::watermarker::photo::psnr(&photo, &marked).unwrap();
    assert!((wmae::watermarker::photo::psnr_from_mse(mse) - measured).abs() < 1e-9);
    assert!(mse > 1.0, "{mse}");
}

/// The host's antialiased squash matches libtorch's `_upsample_bilinear2d_aa` on the photo's
/// full-resolution luma (what PyTorch's `interpolate(antialias=True)` runs), down and up, on
/// sides that do not divide evenly, for colour and gray photos.
#[test]
fn luma_squash_matches_libtorch_antialiased_resize() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h, size, gray) in [
        (1920u32, 1080u32, 128i64, false),
        (333, 97, 256, false),
        (333, 97, 64, true),
        (64, 80, 256, false),
        (1000, 700, 77, true),
    ] {
        let path = dir.path().join(format!("p{w}x{h}.png"));
        let rgb = RgbImage::from_raw(w, h, bytes((w * h * 3) as usize, u64::from(w))).unwrap();
        let image: DynamicImage = if gray {
            DynamicImage::ImageRgb8(rgb).to_luma8().into()
        } else {
            rgb.into()
        };
        save_png(&image, &path);
        let luma: Vec<f32> = if gray {
            image
                .to_luma8()
                .pixels()
                .map(|p| p.0[0] as f32 / 255.0)
                .collect()
        } else {
            image
                .to_rgb8()
                .pixels()
                .map(|p| {
                    (0.299 * p.0[0] as f32 + 0.587 * p.0[1] as f32 + 0.114 * p.0[2] as f32) / 255.0
                })
                .collect()
        };
        let full = Tensor::from_slice(&luma).view([1, 1, h as i64, w as i64]);
        let expected =
            values(&full.internal_upsample_bilinear2d_aa([size, size], false, None, None));
        let got = values(&Photo::open(&path).unwrap().luma_at(size).unwrap());
        assert_eq!(got.len(), expected.len());
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-6, "{w}x{h} -> {size}: differs by up to {worst}");
    }
}
