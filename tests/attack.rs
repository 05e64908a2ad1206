//! The inference-time attack suite (`wmae::attack`), checked against independent computations:
//! hand-computed pixels, the `image`/`imageproc` crates, torch's own bilinear resize and
//! Pillow's rank and box filters.

mod common;

use image::codecs::jpeg::JpegEncoder;
use image::{GrayImage, ImageBuffer, ImageFormat, Luma};
use tch::{Device, Kind, Tensor};
use wmae::attack::{
    self, apply, apply_float, apply_from, parse, parse_list, standard_suite, Attack,
};
use wmae::runtime::splitmix::splitmix64;

const S: i64 = 28;

fn tensor(levels: &[f32], n: i64, h: i64, w: i64) -> Tensor {
    Tensor::from_slice(levels).reshape([n, 1, h, w]) / 255.0
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).contiguous().flatten(0, -1)).unwrap()
}

fn levels(t: &Tensor) -> Vec<f32> {
    values(t).iter().map(|v| v * 255.0).collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Random 8-bit images (uniform levels in lo..=hi), from a SplitMix64 stream of `seed`.
fn random_8bit(n: i64, h: i64, w: i64, lo: u32, hi: u32, seed: u64) -> Tensor {
    let v: Vec<f32> = (0..(n * h * w) as u64)
        .map(|i| (lo + (splitmix64(seed ^ (i << 8)) % (hi - lo + 1) as u64) as u32) as f32)
        .collect();
    tensor(&v, n, h, w)
}

/// Digit-like 8-bit images: black background, a bright smooth ring of varying centre.
fn digit_like(n: i64, seed: u64) -> Tensor {
    let mut v = Vec::new();
    for k in 0..n as u64 {
        let cx = 11.0 + (splitmix64(seed + k) % 7) as f64;
        let cy = 11.0 + (splitmix64(seed + 100 + k) % 7) as f64;
        for y in 0..S {
            for x in 0..S {
                let r = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                let value = 255.0 * (-(r - 6.0).powi(2) / 4.0).exp();
                v.push(value.round() as f32);
            }
        }
    }
    tensor(&v, n, S, S)
}

fn psnr(a: &Tensor, b: &Tensor) -> f64 {
    let mse = (a - b).square().mean(Kind::Double).double_value(&[]);
    10.0 * (1.0 / mse).log10()
}

const SUITE_NAMES: [&str; 30] = [
    "none",
    "jpeg-95",
    "jpeg-90",
    "jpeg-75",
    "jpeg-61",
    "jpeg-50",
    "noise-2",
    "noise-5",
    "noise-10",
    "blur-0.5",
    "blur-1.0",
    "box-1",
    "median-3",
    "brightness+10",
    "brightness-10",
    "contrast-0.8",
    "contrast-1.2",
    "salt-pepper-1%",
    "dropout-10%",
    "dropout-30%",
    "cropout-50%",
    "shift-1",
    "shift-2",
    "shift-3",
    "crop2-resize",
    "crop3-resize",
    "rescale-0.5",
    "rotate-3",
    "rotate-5",
    "hflip",
];

#[test]
fn suite_order_names_and_parse_round_trip() {
    let suite = standard_suite();
    let names: Vec<String> = suite.iter().map(Attack::name).collect();
    assert_eq!(names, SUITE_NAMES);
    for a in &suite {
        assert_eq!(&parse(&a.name()).unwrap(), a, "{a}");
        assert_eq!(a.to_string(), a.name());
        let json = serde_json::to_string(a).unwrap();
        assert_eq!(json, format!("\"{}\"", a.name()));
        assert_eq!(&serde_json::from_str::<Attack>(&json).unwrap(), a);
    }
    assert_eq!(parse(" JPEG-90 ").unwrap(), Attack::Jpeg { quality: 90 });
    assert_eq!(
        parse("rotate--5").unwrap(),
        Attack::Rotate { degrees: -5.0 }
    );
    assert_eq!(parse("blur-1").unwrap(), Attack::Blur { sigma: 1.0 });
    assert_eq!(
        parse("crop3-resize").unwrap(),
        Attack::CropResize { border: 3 }
    );
    assert_eq!(
        parse("salt-pepper-0.5%").unwrap(),
        Attack::SaltPepper { percent: 0.5 }
    );
    assert_eq!(
        parse_list("jpeg-90, shift-1").unwrap(),
        vec![Attack::Jpeg { quality: 90 }, Attack::Shift { pixels: 1 }]
    );
    assert_eq!(parse_list("standard").unwrap(), suite);
    let random: Vec<String> = suite
        .iter()
        .filter(|a| a.is_random())
        .map(Attack::name)
        .collect();
    assert_eq!(
        random,
        [
            "noise-2",
            "noise-5",
            "noise-10",
            "salt-pepper-1%",
            "dropout-10%",
            "dropout-30%",
            "cropout-50%"
        ]
    );
}

#[test]
fn parse_refuses_bad_names_clearly() {
    let err = format!("{:#}", parse("sharpen-2").unwrap_err());
    for part in [
        "unknown attack 'sharpen-2'",
        "jpeg-Q",
        "rotate-D",
        "jpeg-90",
        "shift-1",
        "hflip",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
    for (name, part) in [
        ("jpeg-101", "1..=100"),
        ("jpeg-0", "1..=100"),
        ("jpeg-x", "not a valid number"),
        ("dropout-30", "%"),
        ("dropout-130%", "0%..=100%"),
        ("brightness10", "sign"),
        ("blur-0", "above 0"),
        ("noise-nan", "0..=255"),
        ("rescale-0", "above 0"),
        ("cropout-0%", "(0%, 100%]"),
    ] {
        let err = format!("{:#}", parse(name).unwrap_err());
        assert!(err.contains(part), "{name}: {err}");
    }
    assert!(parse_list("jpeg-90,,shift-1").is_err());
    assert!(format!("{:#}", parse_list("jpeg-90,jpeg-90").unwrap_err()).contains("twice"));
    assert!(serde_json::from_str::<Attack>("\"jpeg-101\"").is_err());
}

#[test]
fn every_attack_keeps_shape_range_and_8bit_levels() {
    let mut attacks = standard_suite();
    attacks.extend([
        Attack::Rotate { degrees: 90.0 },
        Attack::Rescale { factor: 0.3 },
        Attack::Noise { sigma: 60.0 },
        Attack::Contrast { factor: 3.0 },
        Attack::Shift { pixels: 40 },
    ]);
    let batches = [
        Tensor::cat(&[digit_like(3, 1), random_8bit(3, S, S, 0, 255, 2)], 0),
        random_8bit(2, 20, 32, 0, 255, 3),
    ];
    for x in &batches {
        let original = random_8bit(x.size()[0], x.size()[2], x.size()[3], 0, 255, 9);
        for a in &attacks {
            let out = apply(a, x, &original, 7).unwrap();
            assert_eq!(out.size(), x.size(), "{a}");
            assert_eq!(out.kind(), Kind::Float, "{a}");
            for v in levels(&out) {
                assert!((0.0..=255.0).contains(&v), "{a}: {v}");
                assert!(
                    (v - v.round()).abs() < 1e-3,
                    "{a}: {v} is not an 8-bit level"
                );
            }
        }
    }
    // An empty batch stays empty.
    let empty = Tensor::zeros([0, 1, S, S], (Kind::Float, Device::Cpu));
    for a in &attacks {
        assert_eq!(apply(a, &empty, &empty, 1).unwrap().size(), [0, 1, S, S]);
    }
}

#[test]
fn none_is_the_identity_and_rounds_float_input() {
    let x = random_8bit(4, S, S, 0, 255, 11);
    let out = apply(&Attack::None, &x, &x, 1).unwrap();
    assert!(out.equal(&x));
    let float = Tensor::from_slice(&[0.1001f32, 0.5, -0.2, 1.3]).reshape([1, 1, 2, 2]);
    let out = levels(&apply(&Attack::None, &float, &float, 1).unwrap());
    assert_eq!(out, [26.0, 128.0, 0.0, 255.0]);
}

#[test]
fn same_seed_same_result_and_batches_compose() {
    let x = Tensor::cat(&[digit_like(3, 4), random_8bit(3, S, S, 0, 255, 5)], 0);
    let original = random_8bit(6, S, S, 0, 255, 6);
    for a in standard_suite() {
        let first = apply(&a, &x, &original, 42).unwrap();
        assert!(first.equal(&apply(&a, &x, &original, 42).unwrap()), "{a}");
        let other = apply(&a, &x, &original, 43).unwrap();
        assert_eq!(!first.equal(&other), a.is_random(), "{a}: seed dependence");
        // Batch by batch (first index 0 then 2) gives the whole set's result.
        let parts = Tensor::cat(
            &[
                apply_from(&a, &x.narrow(0, 0, 2), &original.narrow(0, 0, 2), 42, 0).unwrap(),
                apply_from(&a, &x.narrow(0, 2, 4), &original.narrow(0, 2, 4), 42, 2).unwrap(),
            ],
            0,
        );
        assert!(parts.equal(&first), "{a}: batches differ from the whole");
        if a.is_random() {
            // Images do not share one random pattern: two equal inputs are attacked differently.
            let same = Tensor::cat(&[x.narrow(0, 0, 1), x.narrow(0, 0, 1)], 0);
            let out = apply(&a, &same, &original.narrow(0, 0, 2), 42).unwrap();
            assert!(
                !out.get(0).equal(&out.get(1)),
                "{a}: same pattern for two images"
            );
        }
    }
}

#[test]
fn jpeg_is_the_image_crates_own_round_trip() {
    let x = Tensor::cat(&[digit_like(4, 21), random_8bit(2, S, S, 60, 200, 22)], 0);
    let mut last_psnr = f64::INFINITY;
    for quality in [100u8, 95, 90, 75, 50] {
        let out = apply(&Attack::Jpeg { quality }, &x, &x, 1).unwrap();
        // Independently: encode each 8-bit image with the image crate, decode it, compare bytes.
        let input = levels(&x);
        let got = levels(&out);
        for (i, chunk) in input.chunks((S * S) as usize).enumerate() {
            let bytes: Vec<u8> = chunk.iter().map(|v| v.round() as u8).collect();
            let image = GrayImage::from_raw(S as u32, S as u32, bytes).unwrap();
            let mut jpeg = Vec::new();
            JpegEncoder::new_with_quality(&mut jpeg, quality)
                .encode_image(&image)
                .unwrap();
            let decoded = image::load_from_memory_with_format(&jpeg, ImageFormat::Jpeg)
                .unwrap()
                .to_luma8();
            let expected: Vec<f32> = decoded.as_raw().iter().map(|&b| b as f32).collect();
            let start = i * (S * S) as usize;
            let actual: Vec<f32> = got[start..start + (S * S) as usize]
                .iter()
                .map(|v| v.round())
                .collect();
            assert_eq!(actual, expected, "jpeg-{quality} image {i}");
        }
        let p = psnr(&out, &x);
        if quality == 100 {
            let worst = max_abs_diff(&out, &x) * 255.0;
            assert!(
                worst <= 4.0 + 1e-3,
                "jpeg-100 moved a pixel by {worst} levels"
            );
        }
        assert!(
            p < last_psnr,
            "jpeg-{quality}: PSNR {p:.2} not below {last_psnr:.2}"
        );
        last_psnr = p;
    }
    assert!(
        last_psnr > 20.0,
        "jpeg-50 PSNR {last_psnr:.2} implausibly low"
    );
}

#[test]
fn gaussian_noise_has_the_stated_sigma() {
    let x = Tensor::full([64, 1, S, S], 128.0 / 255.0, (Kind::Float, Device::Cpu));
    for sigma in [5.0f32, 10.0] {
        let out = apply(&Attack::Noise { sigma }, &x, &x, 3).unwrap();
        let d: Vec<f64> = levels(&(out - &x)).iter().map(|&v| v as f64).collect();
        let n = d.len() as f64;
        let mean = d.iter().sum::<f64>() / n;
        let std = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        // The rounding to levels adds 1/12 level^2 of variance.
        let expected = ((sigma as f64).powi(2) + 1.0 / 12.0).sqrt();
        assert!(mean.abs() < 0.1, "noise-{sigma}: mean {mean}");
        assert!(
            (std - expected).abs() < 0.03 * expected,
            "noise-{sigma}: std {std}"
        );
        // Neighbouring pixels are independent.
        let pairs: Vec<(f64, f64)> = d
            .chunks(S as usize)
            .flat_map(|row| row.windows(2).map(|w| (w[0], w[1])))
            .collect();
        let cov = pairs
            .iter()
            .map(|(a, b)| (a - mean) * (b - mean))
            .sum::<f64>()
            / pairs.len() as f64;
        assert!(
            (cov / std.powi(2)).abs() < 0.03,
            "noise-{sigma}: neighbour correlation"
        );
    }
}

/// Separable Gaussian blur by hand, in f64: kernel radius ceil(2 sigma), normalised weights,
/// border pixels replicated.
fn blur_by_hand(image: &[f32], w: usize, h: usize, sigma: f64) -> Vec<f64> {
    let r = (2.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / sum).collect();
    let at = |v: &[f64], x: i64, y: i64| {
        v[(y.clamp(0, h as i64 - 1) as usize) * w + x.clamp(0, w as i64 - 1) as usize]
    };
    let src: Vec<f64> = image.iter().map(|&v| v as f64).collect();
    let mut horizontal = vec![0.0; w * h];
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            horizontal[y as usize * w + x as usize] = (-r..=r)
                .map(|i| k[(i + r) as usize] * at(&src, x + i, y))
                .sum();
        }
    }
    let mut out = vec![0.0; w * h];
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            out[y as usize * w + x as usize] = (-r..=r)
                .map(|i| k[(i + r) as usize] * at(&horizontal, x, y + i))
                .sum();
        }
    }
    out
}

#[test]
fn blur_matches_a_hand_computed_gaussian() {
    let x = Tensor::cat(&[digit_like(1, 31), random_8bit(1, S, S, 0, 255, 32)], 0);
    let input = values(&x);
    let mut variance = Vec::new();
    for sigma in [0.5f32, 1.0] {
        let a = Attack::Blur { sigma };
        let float = values(&apply_float(&a, &x, &x, 0, 0).unwrap());
        let rounded = levels(&apply(&a, &x, &x, 0).unwrap());
        let per = (S * S) as usize;
        for i in 0..2 {
            let expected = blur_by_hand(&input[i * per..(i + 1) * per], 28, 28, sigma as f64);
            for (j, e) in expected.iter().enumerate() {
                let got = float[i * per + j] as f64;
                assert!(
                    (got - e).abs() < 1e-5,
                    "blur-{sigma} image {i} pixel {j}: {got} vs {e}"
                );
                assert!((rounded[i * per + j] as f64 - e * 255.0).abs() <= 0.5 + 1e-3);
            }
        }
        variance.push(apply(&a, &x, &x, 0).unwrap().var(false).double_value(&[]));
    }
    let before = x.var(false).double_value(&[]);
    assert!(
        variance[1] < variance[0] && variance[0] < before,
        "{variance:?} vs {before}"
    );
}

#[test]
fn brightness_and_contrast_by_hand() {
    let x = tensor(&[0., 5., 100., 250., 255., 128.], 1, 2, 3);
    let up = levels(&apply(&parse("brightness+10").unwrap(), &x, &x, 0).unwrap());
    assert_eq!(up, [10., 15., 110., 255., 255., 138.]);
    let down = levels(&apply(&parse("brightness-10").unwrap(), &x, &x, 0).unwrap());
    assert_eq!(down, [0., 0., 90., 240., 245., 118.]);

    // Image 0: mean 138.75, rounded to 139 as PIL does; image 1: mean 20.
    let x = tensor(&[0., 100., 200., 255., 10., 10., 10., 50.], 2, 2, 2);
    let low = levels(&apply(&parse("contrast-0.8").unwrap(), &x, &x, 0).unwrap());
    // 139 + 0.8 (x - 139) = 27.8, 107.8, 187.8, 231.8; 20 + 0.8 (x - 20) = 12, 44.
    assert_eq!(low, [28., 108., 188., 232., 12., 12., 12., 44.]);
    let high = levels(&apply(&parse("contrast-1.2").unwrap(), &x, &x, 0).unwrap());
    // 139 + 1.2 (x - 139) = -27.8, 92.2, 212.2, 278.2; 20 + 1.2 (x - 20) = 8, 56.
    assert_eq!(high, [0., 92., 212., 255., 8., 8., 8., 56.]);
    // Before rounding: the mean is the rounded level (139, not 138.75; 1 for a mean of 0.5,
    // rounded half up as PIL's int(mean + 0.5), not half to even).
    let x = tensor(&[0., 100., 200., 255., 0., 1., 0., 1.], 2, 2, 2);
    let float = levels(&apply_float(&parse("contrast-0.8").unwrap(), &x, &x, 0, 0).unwrap());
    let expected = [27.8, 107.8, 187.8, 231.8, 0.2, 1.0, 0.2, 1.0];
    for (g, e) in float.iter().zip(expected) {
        assert!((g - e).abs() < 1e-3, "{float:?}");
    }
}

#[test]
fn salt_and_pepper_share() {
    let x = Tensor::full([200, 1, S, S], 128.0 / 255.0, (Kind::Float, Device::Cpu));
    let out = levels(&apply(&parse("salt-pepper-1%").unwrap(), &x, &x, 5).unwrap());
    let n = out.len() as f64;
    let pepper = out.iter().filter(|&&v| v == 0.0).count() as f64;
    let salt = out.iter().filter(|&&v| v == 255.0).count() as f64;
    let kept = out.iter().filter(|&&v| v == 128.0).count() as f64;
    assert_eq!(
        pepper + salt + kept,
        n,
        "a pixel was neither kept nor set to 0 or 255"
    );
    for share in [pepper / n, salt / n] {
        assert!((share - 0.005).abs() < 0.0008, "share {share}");
    }
}

#[test]
fn dropout_takes_the_originals_pixels() {
    let wm = random_8bit(200, S, S, 128, 255, 41);
    let orig = random_8bit(200, S, S, 0, 127, 42);
    let (w, o) = (levels(&wm), levels(&orig));
    for p in [10.0f32, 30.0] {
        let out = levels(&apply(&Attack::Dropout { percent: p }, &wm, &orig, 8).unwrap());
        let mut from_original = 0usize;
        for i in 0..out.len() {
            if out[i] == o[i] {
                from_original += 1;
            } else {
                assert_eq!(
                    out[i], w[i],
                    "dropout-{p}%: pixel {i} is from neither image"
                );
            }
        }
        let share = from_original as f64 / out.len() as f64;
        assert!(
            (share - p as f64 / 100.0).abs() < 0.005,
            "dropout-{p}%: share {share}"
        );
    }
    let none = apply(&Attack::Dropout { percent: 0.0 }, &wm, &orig, 8).unwrap();
    assert!(none.equal(&wm));
    let all = apply(&Attack::Dropout { percent: 100.0 }, &wm, &orig, 8).unwrap();
    assert!(all.equal(&orig));
    // The originals must match the watermarked images' shape.
    assert!(apply(
        &Attack::Dropout { percent: 10.0 },
        &wm,
        &orig.narrow(0, 0, 3),
        8
    )
    .is_err());
}

#[test]
fn cropout_keeps_one_watermarked_rectangle() {
    let n = 50;
    let wm = random_8bit(n, S, S, 128, 255, 51);
    let orig = random_8bit(n, S, S, 0, 127, 52);
    let out = levels(&apply(&parse("cropout-50%").unwrap(), &wm, &orig, 9).unwrap());
    let (w, o) = (levels(&wm), levels(&orig));
    let per = (S * S) as usize;
    let mut corners = std::collections::HashSet::new();
    for i in 0..n as usize {
        let kept: Vec<(usize, usize)> = (0..per)
            .filter(|&j| {
                let k = i * per + j;
                assert!(out[k] == w[k] || out[k] == o[k], "image {i} pixel {j}");
                out[k] == w[k]
            })
            .map(|j| (j / S as usize, j % S as usize))
            .collect();
        // round(28 sqrt(0.5)) = 20: a 20x20 square, every pixel inside it kept.
        assert_eq!(kept.len(), 400, "image {i}");
        let top = kept.iter().map(|p| p.0).min().unwrap();
        let left = kept.iter().map(|p| p.1).min().unwrap();
        assert!(kept
            .iter()
            .all(|&(y, x)| (top..top + 20).contains(&y) && (left..left + 20).contains(&x)));
        corners.insert((top, left));
    }
    assert!(
        corners.len() > 20,
        "the rectangle hardly moves: {corners:?}"
    );
    let full = apply(&parse("cropout-100%").unwrap(), &wm, &orig, 9).unwrap();
    assert!(full.equal(&wm));
}

#[test]
fn shift_by_hand() {
    let x = random_8bit(2, S, S, 1, 255, 61);
    let input = levels(&x);
    for k in [1usize, 2] {
        let out = levels(&apply(&Attack::Shift { pixels: k as u32 }, &x, &x, 0).unwrap());
        let s = S as usize;
        for i in 0..2 {
            for y in 0..s {
                for x in 0..s {
                    let expected = if y < k || x < k {
                        0.0
                    } else {
                        input[i * s * s + (y - k) * s + (x - k)]
                    };
                    assert_eq!(out[i * s * s + y * s + x], expected, "shift-{k} ({x},{y})");
                }
            }
        }
    }
}

#[test]
fn resizes_keep_constant_images() {
    let x = Tensor::full([2, 1, S, S], 77.0 / 255.0, (Kind::Float, Device::Cpu));
    for name in [
        "crop2-resize",
        "crop5-resize",
        "rescale-0.5",
        "rescale-0.3",
        "rescale-1.7",
    ] {
        let out = apply(&parse(name).unwrap(), &x, &x, 0).unwrap();
        assert!(out.equal(&x), "{name}");
    }
}

fn upsample_bilinear(x: &Tensor, h: i64, w: i64) -> Tensor {
    x.upsample_bilinear2d([h, w], false, None, None)
}

#[test]
fn crop_resize_and_rescale_are_bilinear() {
    let x = Tensor::cat(&[digit_like(2, 71), random_8bit(2, S, S, 0, 255, 72)], 0);
    // Crop 2 px, upsample 24 -> 28: plain bilinear, torch's align_corners=False.
    let expected = upsample_bilinear(&x.narrow(2, 2, 24).narrow(3, 2, 24), S, S);
    let got = apply_float(&parse("crop2-resize").unwrap(), &x, &x, 0, 0).unwrap();
    assert!(max_abs_diff(&got, &expected) < 1e-5);

    // Rescale 0.5: 28 -> 14 with the triangle stretched by 2 (weights 1/8, 3/8, 3/8, 1/8 on
    // input pixels 2j-1..2j+2, renormalised where they fall off the image), then bilinear up.
    let mut down = vec![vec![0.0f32; 28]; 14];
    for (j, row) in down.iter_mut().enumerate() {
        let centre = 2.0 * j as f64 + 0.5;
        let weights: Vec<(usize, f64)> = (0..28usize)
            .map(|i| (i, (1.0 - ((i as f64 - centre) / 2.0).abs()).max(0.0)))
            .filter(|&(_, w)| w > 0.0)
            .collect();
        let sum: f64 = weights.iter().map(|w| w.1).sum();
        for (i, w) in weights {
            row[i] = (w / sum) as f32;
        }
    }
    let d = Tensor::from_slice(&down.concat()).reshape([14, 28]);
    let small = d.matmul(&x).matmul(&d.tr());
    let expected = upsample_bilinear(&small, S, S);
    let got = apply_float(&parse("rescale-0.5").unwrap(), &x, &x, 0, 0).unwrap();
    assert!(
        max_abs_diff(&got, &expected) < 1e-5,
        "{}",
        max_abs_diff(&got, &expected)
    );
}

fn rotate_float(x: &Tensor, degrees: f32) -> Tensor {
    apply_float(&Attack::Rotate { degrees }, x, x, 0, 0).unwrap()
}

#[test]
fn rotation() {
    let x = Tensor::cat(&[digit_like(1, 81), random_8bit(1, S, S, 0, 255, 82)], 0);
    assert!(rotate_float(&x, 0.0).equal(&x));
    // 90 degrees clockwise about (13.5, 13.5): out(x, y) = in(y, 27 - x).
    let expected_by_hand = {
        let v = values(&x);
        let mut out = vec![0f32; v.len()];
        for i in 0..2 {
            for y in 0..28 {
                for xx in 0..28 {
                    out[i * 784 + y * 28 + xx] = v[i * 784 + (27 - xx) * 28 + y];
                }
            }
        }
        Tensor::from_slice(&out).reshape([2, 1, S, S])
    };
    let got = rotate_float(&x, 90.0);
    assert!(max_abs_diff(&got, &expected_by_hand) < 1e-5);
    // Four quarter turns come back.
    let mut back = x.shallow_clone();
    for _ in 0..4 {
        back = apply(&Attack::Rotate { degrees: 90.0 }, &back, &back, 0).unwrap();
    }
    assert!(back.equal(&x));

    // 5 degrees against imageproc's rotate about the same centre, wherever imageproc's four
    // neighbours lie inside the image (elsewhere it returns the default, -1 here).
    let got = values(&rotate_float(&x, 5.0));
    let input = values(&x);
    let mut compared = 0;
    for i in 0..2 {
        let image: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(28, 28, input[i * 784..(i + 1) * 784].to_vec()).unwrap();
        let theirs = imageproc::geometric_transformations::rotate(
            &image,
            (13.5, 13.5),
            5f32.to_radians(),
            imageproc::geometric_transformations::Interpolation::Bilinear,
            Luma([-1.0]),
        );
        for (j, v) in theirs.into_raw().iter().enumerate() {
            if *v != -1.0 {
                compared += 1;
                assert!(
                    (got[i * 784 + j] - v).abs() < 1e-4,
                    "pixel {j}: {} vs {v}",
                    got[i * 784 + j]
                );
            }
        }
    }
    assert!(compared > 2 * 600, "only {compared} pixels compared");

    // A centred disc stays in place; a horizontal line through the centre turns clockwise.
    let disc: Vec<f32> = (0..784)
        .map(|j| {
            let (y, x) = ((j / 28) as f64 - 13.5, (j % 28) as f64 - 13.5);
            if x * x + y * y <= 64.0 {
                255.0
            } else {
                0.0
            }
        })
        .collect();
    let disc = tensor(&disc, 1, S, S);
    let turned = apply(&parse("rotate-5").unwrap(), &disc, &disc, 0).unwrap();
    let mae = (&turned - &disc).abs().mean(Kind::Float).double_value(&[]);
    assert!(mae < 0.02, "disc moved: mean abs difference {mae}");
    let line: Vec<f32> = (0..784)
        .map(|j| {
            if (13..=14).contains(&(j / 28)) && (2..26).contains(&(j % 28)) {
                255.0
            } else {
                0.0
            }
        })
        .collect();
    let line = tensor(&line, 1, S, S);
    let turned = values(&rotate_float(&line, 5.0));
    for column in [5usize, 8, 19, 22] {
        let (mut mass, mut moment) = (0.0f64, 0.0f64);
        for y in 0..28 {
            mass += turned[y * 28 + column] as f64;
            moment += y as f64 * turned[y * 28 + column] as f64;
        }
        let expected = 13.5 + (column as f64 - 13.5) * 5f64.to_radians().tan();
        let centroid = moment / mass;
        assert!(
            (centroid - expected).abs() < 0.05,
            "column {column}: {centroid} vs {expected}"
        );
    }
}

#[test]
fn hflip() {
    let x = random_8bit(3, S, S, 0, 255, 91);
    let once = apply(&Attack::HFlip, &x, &x, 0).unwrap();
    assert!(!once.equal(&x));
    assert!(apply(&Attack::HFlip, &once, &once, 0).unwrap().equal(&x));
    let (a, b) = (levels(&x), levels(&once));
    for i in 0..3 * 28 {
        for c in 0..28 {
            assert_eq!(b[i * 28 + c], a[i * 28 + 27 - c]);
        }
    }
}

#[test]
fn refuses_bad_shapes_and_checks_fields() {
    let x = random_8bit(2, S, S, 0, 255, 1);
    let three_d = x.squeeze_dim(1);
    let err = format!(
        "{:#}",
        apply(&Attack::None, &three_d, &three_d, 0).unwrap_err()
    );
    assert!(err.contains("(N,1,H,W)"), "{err}");
    let rgb = Tensor::cat(&[&x, &x, &x], 1);
    assert!(apply(&Attack::HFlip, &rgb, &rgb, 0).is_err());
    // Fields are public: apply re-checks them.
    assert!(apply(&Attack::Jpeg { quality: 0 }, &x, &x, 0).is_err());
    assert!(apply(&Attack::Blur { sigma: -1.0 }, &x, &x, 0).is_err());
    assert!(apply(&Attack::CropResize { border: 14 }, &x, &x, 0).is_err());
    // Attacks that ignore the originals accept any tensor for them.
    let dummy = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    assert!(apply(&parse("jpeg-90").unwrap(), &x, &dummy, 0).is_ok());
    assert!(!attack::standard_suite()
        .iter()
        .filter(|a| !matches!(a, Attack::Dropout { .. } | Attack::Cropout { .. }))
        .any(Attack::needs_original));
}

#[test]
fn cuda_gives_the_cpu_result() {
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device: skipped");
        return;
    }
    let x = Tensor::cat(&[digit_like(3, 101), random_8bit(3, S, S, 0, 255, 102)], 0);
    let original = random_8bit(6, S, S, 0, 255, 103);
    let (gx, go) = (
        x.to_device(Device::Cuda(0)),
        original.to_device(Device::Cuda(0)),
    );
    for a in standard_suite() {
        let cpu = apply(&a, &x, &original, 5).unwrap();
        let gpu = apply(&a, &gx, &go, 5).unwrap();
        assert_eq!(gpu.device(), Device::Cuda(0), "{a}");
        // Float sums may differ in the last bit on the GPU (the contrast mean): at most one
        // level, on almost no pixel.
        let gpu = gpu.to_device(Device::Cpu);
        let diff = (&gpu - &cpu).abs();
        assert!(diff.max().double_value(&[]) * 255.0 < 1.0 + 1e-3, "{a}");
        let changed = diff.gt(1e-6).sum(Kind::Int64).int64_value(&[]);
        assert!(
            changed <= 2,
            "{a}: {changed} pixels differ from the CPU result"
        );
    }
}

/// The median and box filters are Pillow's `ImageFilter.MedianFilter(K)` and
/// `ImageFilter.BoxBlur(R)` (what a user removing a watermark would run), on digit-like images
/// and on noise (where every pixel's neighbourhood differs), borders included.
#[test]
fn median_and_box_blur_match_pillow() {
    let dir = tempfile::tempdir().unwrap();
    let images = Tensor::cat(&[digit_like(2, 5), random_8bit(2, S, S, 0, 255, 9)], 0);
    let mut paths = Vec::new();
    for (i, pixels) in levels(&images).chunks((S * S) as usize).enumerate() {
        let path = dir.path().join(format!("{i}.png"));
        let bytes: Vec<u8> = pixels.iter().map(|&v| v.round() as u8).collect();
        GrayImage::from_raw(S as u32, S as u32, bytes)
            .unwrap()
            .save(&path)
            .unwrap();
        paths.push(path);
    }
    let script = r#"
import sys
from PIL import Image, ImageFilter
for path in sys.argv[1:]:
    image = Image.open(path)
    for name, f in [("median-3", ImageFilter.MedianFilter(3)),
                    ("median-5", ImageFilter.MedianFilter(5)),
                    ("box-1", ImageFilter.BoxBlur(1)),
                    ("box-2", ImageFilter.BoxBlur(2))]:
        print(name, " ".join(str(v) for v in image.filter(f).getdata()))
"#;
    let args: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let pillow = common::run_python(script, &args);
    let mut lines = pillow.lines();
    for i in 0..paths.len() as i64 {
        let image = images.narrow(0, i, 1);
        for _ in 0..4 {
            let line = lines.next().unwrap();
            let (name, values) = line.split_once(' ').unwrap();
            let expected: Vec<f32> = values.split(' ').map(|v| v.parse().unwrap()).collect();
            let ours = levels(&apply(&parse(name).unwrap(), &image, &image, 0).unwrap());
            let worst = ours
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a.round() - b).abs())
                .fold(0.0, f32::max);
            // The median picks one of the pixels: exact. Pillow's box blur rounds between its
            // passes: within one level of the exact mean that wmae rounds once.
            let allowed = if name.starts_with("median") { 0.0 } else { 1.0 };
            assert!(
                worst <= allowed,
                "{name} on image {i}: {worst} levels from Pillow"
            );
        }
    }
    // The box blur is the exact mean of the square, border pixels repeated, rounded once.
    let image = random_8bit(1, 6, 5, 0, 255, 3);
    let pixels = levels(&image);
    let ours = levels(&apply(&Attack::BoxBlur { radius: 1 }, &image, &image, 0).unwrap());
    for y in 0..6i64 {
        for x in 0..5i64 {
            let mut sum = 0.0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (yy, xx) = ((y + dy).clamp(0, 5), (x + dx).clamp(0, 4));
                    sum += pixels[(yy * 5 + xx) as usize].round() as f64;
                }
            }
            let expected = (sum / 9.0).round() as f32;
            assert_eq!(ours[(y * 5 + x) as usize].round(), expected, "({y}, {x})");
        }
    }
}
