//! Otsu's threshold against an independent brute-force computation, separability, ROC AUC and
//! SSIM against hand values.

use tch::{Device, Kind, Tensor};
use wmae::learning::metrics::{roc_auc, ssim_per_image};
use wmae::message::binarize::{binarize, map_to_gray, separability, Method, MIN_LEVEL_GAP};

/// Otsu by brute force over 256 levels in f64: the level maximising the between-class variance
/// of the split `<= level` / `> level` (the first one on ties).
fn brute_force_otsu(values: &[u8]) -> (u8, f64) {
    let n = values.len() as f64;
    let mut best = (0u8, -1.0f64);
    for level in 0..=255u8 {
        let (lo, hi): (Vec<f64>, Vec<f64>) = {
            let lo = values
                .iter()
                .filter(|&&v| v <= level)
                .map(|&v| v as f64)
                .collect();
            let hi = values
                .iter()
                .filter(|&&v| v > level)
                .map(|&v| v as f64)
                .collect();
            (lo, hi)
        };
        if lo.is_empty() || hi.is_empty() {
            continue;
        }
        let m0 = lo.iter().sum::<f64>() / lo.len() as f64;
        let m1 = hi.iter().sum::<f64>() / hi.len() as f64;
        let between = (lo.len() as f64 / n) * (hi.len() as f64 / n) * (m0 - m1).powi(2);
        if between > best.1 + 1e-9 {
            best = (level, between);
        }
    }
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let total = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (best.0, best.1 / total)
}

fn pseudo_random_map(seed: u64) -> Vec<f32> {
    // Bimodal: 16 "bits" near 0.8 +- 0.05, the rest near 0.15 +- 0.05.
    (0..784u64)
        .map(|i| {
            let h = wmae::runtime::splitmix::splitmix64(seed * 1000 + i);
            let noise = (h % 1000) as f32 / 1000.0 * 0.1 - 0.05;
            if i % 49 == 0 {
                0.8 + noise
            } else {
                0.15 + noise
            }
        })
        .collect()
}

#[test]
fn otsu_matches_brute_force() {
    for seed in 0..10 {
        let map = pseudo_random_map(seed);
        let gray = map_to_gray(&map, 28, 28);
        let (level, want_separability) = brute_force_otsu(gray.as_raw());
        let b = binarize(&map, 28, 28, Method::Otsu);
        let want: Vec<u8> = gray.as_raw().iter().map(|&v| u8::from(v > level)).collect();
        assert_eq!(b.pixels, want, "seed {seed}: level {level}");
        assert!((b.threshold - (level as f64 + 0.5) / 255.0).abs() < 1e-12);
        assert_eq!(b.pixels.iter().filter(|&&p| p == 1).count(), 16);
        assert!(
            (b.separability - want_separability).abs() < 1e-9,
            "{} vs {want_separability}",
            b.separability
        );
        assert!(
            b.separability > 0.8,
            "a clean bimodal map separates well: {}",
            b.separability
        );
    }
}

#[test]
fn unimodal_noise_is_flagged() {
    // Uniform noise around 0.1, no signal: Otsu still splits it, but separability stays ~0.75.
    let map: Vec<f32> = (0..784u64)
        .map(|i| 0.1 + (wmae::runtime::splitmix::splitmix64(i) % 1000) as f32 / 1e4)
        .collect();
    let b = binarize(&map, 28, 28, Method::Otsu);
    assert!(b.pixels.contains(&1), "Otsu always splits");
    assert!(
        // Otsu's best split of a uniform distribution: 0.75.
        b.separability < 0.8 && b.separability > 0.7,
        "{}",
        b.separability
    );
    assert!(b.is_unseparable(), "class means {} apart", b.level_gap);
}

#[test]
fn separability_by_hand() {
    // Two values, half each: all the variance is between the classes.
    let two: Vec<f32> = (0..784)
        .map(|i| if i % 2 == 0 { 0.0 } else { 1.0 })
        .collect();
    let g = map_to_gray(&two, 28, 28);
    assert!((separability(&g, 100) - 1.0).abs() < 1e-12);
    // A constant map has nothing to separate.
    let flat = map_to_gray(&[0.3; 784], 28, 28);
    assert_eq!(separability(&flat, 76), 0.0);
    // Values 0, 0, 2, 4 (as levels): split at 0: classes {0,0} and {2,4}; mean 1.5, total
    // variance (2.25+2.25+0.25+6.25)/4 = 2.75, between (1/2)(1/2)(0-3)^2 = 2.25.
    let mut img = image::GrayImage::new(2, 2);
    for (k, v) in [0u8, 0, 2, 4].iter().enumerate() {
        img.put_pixel(k as u32 % 2, k as u32 / 2, image::Luma([*v]));
    }
    assert!((separability(&img, 0) - 2.25 / 2.75).abs() < 1e-12);
}

#[test]
fn fixed_threshold_is_strictly_above() {
    let b = binarize(&[0.5, 0.50001, 0.2, 0.9], 2, 2, Method::Threshold(0.5));
    assert_eq!(b.pixels, vec![0, 1, 0, 1]);
}

#[test]
fn roc_auc_by_hand() {
    assert_eq!(
        roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]),
        Some(0.75)
    );
    assert_eq!(
        roc_auc(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]),
        Some(1.0)
    );
    assert_eq!(roc_auc(&[0.5, 0.5], &[0.0, 1.0]), Some(0.5)); // a tie counts half
    assert_eq!(roc_auc(&[0.5, 0.7], &[1.0, 1.0]), None);
}

#[test]
fn ssim_by_hand() {
    let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    let same = Vec::<f32>::try_from(ssim_per_image(&x, &x)).unwrap();
    assert!(same.iter().all(|&s| (s - 1.0).abs() < 1e-5), "{same:?}");
    // Constant images a and b: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1).
    let (a, b, c1) = (0.3f64, 0.5f64, 0.0001f64);
    let ia = Tensor::full([1, 1, 28, 28], a, (Kind::Float, Device::Cpu));
    let ib = Tensor::full([1, 1, 28, 28], b, (Kind::Float, Device::Cpu));
    let got = ssim_per_image(&ia, &ib).double_value(&[0]);
    let want = (2.0 * a * b + c1) / (a * a + b * b + c1);
    assert!((got - want).abs() < 1e-4, "{got} vs {want}"); // float32 window sums
}

#[test]
fn empty_maps_are_unseparable_however_separable_otsu_finds_them() {
    // An empty output's 8-bit map: a few 1/255 values on 0. Otsu splits it perfectly
    // (separability 1), but its two levels are no 0 and 1.
    let mut empty = vec![0f32; 784];
    for v in empty.iter_mut().step_by(50) {
        *v = 1.0 / 255.0;
    }
    let b = binarize(&empty, 28, 28, Method::Otsu);
    assert!(b.separability > 0.99, "{}", b.separability);
    assert!(b.level_gap < MIN_LEVEL_GAP && b.is_unseparable());
    // A map near 0.5 everywhere is no split either; a clean 0/1 map is.
    let flat: Vec<f32> = (0..784)
        .map(|i| 0.5 + 0.01 * ((i % 7) as f32 - 3.0))
        .collect();
    assert!(binarize(&flat, 28, 28, Method::Threshold(0.5)).is_unseparable());
    let two: Vec<f32> = (0..784)
        .map(|i| if i % 3 == 0 { 0.97 } else { 0.02 })
        .collect();
    let b = binarize(&two, 28, 28, Method::Otsu);
    assert!(
        !b.is_unseparable() && (b.level_gap - 0.95).abs() < 1e-3,
        "{}",
        b.level_gap
    );
}
