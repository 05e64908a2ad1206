//! Training-time noise layers (src/learning/noise/): each layer is the identity at strength 0, has the
//! statistics its strength says, keeps the shape and lets gradients reach the watermarked image;
//! the config parses, round-trips and refuses bad values naming the key; the default draws only
//! the identity.

mod common;

use tch::{Device, Kind, Tensor};
use wmae::codec::gray::quantize_8bit;
use wmae::learning::noise::{self, Layer, NoiseConfig, NoiseLayers};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

// Every test here draws from libtorch's process-wide generator, so each holds
// `common::generator()`: a seeded test's draws cannot interleave with another test's.

fn images(n: i64) -> Tensor {
    Tensor::rand([n, 1, 28, 28], CPU)
}

/// A fresh leaf copy of `t` that records gradients.
fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

/// The gradient of `out.sum()` with respect to `x`.
fn grad_of_sum(out: &Tensor, x: &Tensor) -> Tensor {
    out.sum(Kind::Float).backward();
    x.grad()
}

fn f(t: &Tensor) -> f64 {
    t.double_value(&[])
}

fn share(mask: &Tensor) -> f64 {
    f(&mask.to_kind(Kind::Double).mean(Kind::Double))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f(&(a - b).abs().max())
}

/// Every strength at the value that makes its layer the identity.
fn zero_strength() -> NoiseConfig {
    NoiseConfig {
        layers: Layer::ALL.to_vec(),
        weights: None,
        gaussian_sigma: [0.0, 0.0],
        dropout_keep: [1.0, 1.0],
        cropout_keep: [1.0, 1.0],
        salt_pepper: [0.0, 0.0],
        blur_sigma: [0.0, 0.0],
        brightness: [0.0, 0.0],
        contrast: [1.0, 1.0],
        shift_max: 0,
        crop_resize: [1.0, 1.0],
        rotation_degrees: 0.0,
        jpeg_quality: [90, 90],
        median_radius: [0, 0],
        box_radius: [0, 0],
        round_8bit: false,
    }
}

/// Every strength clearly away from the identity.
fn strong() -> NoiseConfig {
    NoiseConfig {
        layers: Layer::ALL.to_vec(),
        weights: None,
        gaussian_sigma: [0.02, 0.05],
        dropout_keep: [0.5, 0.8],
        cropout_keep: [0.3, 0.7],
        salt_pepper: [0.05, 0.1],
        blur_sigma: [0.8, 1.2],
        brightness: [0.05, 0.1],
        contrast: [0.6, 0.8],
        shift_max: 2,
        crop_resize: [0.6, 0.8],
        rotation_degrees: 10.0,
        jpeg_quality: [40, 60],
        median_radius: [1, 2],
        box_radius: [1, 2],
        round_8bit: false,
    }
}

fn layers(config: &NoiseConfig) -> NoiseLayers {
    NoiseLayers::new(config).unwrap()
}

#[test]
fn every_layer_is_the_identity_at_strength_zero() {
    let _generator = common::generator();
    let noise = layers(&zero_strength());
    let x = images(8);
    let original = images(8);
    for layer in Layer::ALL {
        if layer == Layer::Jpeg {
            continue; // no strength 0: see jpeg_forward_is_the_codec_and_backward_the_identity
        }
        let w = leaf(&x);
        let out = noise.apply_layer(layer, &w, &original);
        assert_eq!(out.size(), x.size(), "{layer}");
        let grad = grad_of_sum(&out, &w);
        match layer {
            // Resampling through affine_grid + grid_sampler at the identity map: pixel centres
            // up to float rounding.
            Layer::CropResize | Layer::Rotation => {
                assert!(max_abs_diff(&out, &x) < 1e-5, "{layer}");
                assert!(max_abs_diff(&grad, &grad.ones_like()) < 1e-4, "{layer}");
            }
            _ => {
                assert!(out.equal(&x), "{layer}: {}", max_abs_diff(&out, &x));
                assert!(
                    max_abs_diff(&grad, &grad.ones_like()) < 1e-6,
                    "{layer}: gradient"
                );
            }
        }
    }
}

#[test]
fn every_layer_keeps_the_shape_changes_the_image_and_passes_gradients() {
    let _generator = common::generator();
    for round in [false, true] {
        let config = NoiseConfig {
            round_8bit: round,
            ..strong()
        };
        let noise = layers(&config);
        let x = images(16) * 0.8 + 0.1;
        let original = images(16);
        for layer in Layer::ALL {
            let w = leaf(&x);
            assert!(w.requires_grad());
            let out = noise.apply_layer(layer, &w, &original);
            assert_eq!(out.size(), x.size(), "{layer}");
            assert!(out.requires_grad(), "{layer}");
            let changed = max_abs_diff(&out, &x);
            if layer == Layer::Identity && !round {
                assert_eq!(changed, 0.0);
            } else {
                assert!(changed > 1e-3, "{layer} (round {round}) changed nothing");
            }
            let grad = grad_of_sum(&out, &w);
            assert!(f(&grad.isfinite().all()) == 1.0, "{layer}");
            assert!(
                f(&grad.abs().sum(Kind::Double)) > 0.0,
                "{layer}: no gradient"
            );
        }
    }
}

#[test]
fn gaussian_noise_has_the_drawn_standard_deviation() {
    let _generator = common::generator();
    let zeros = leaf(&Tensor::zeros([256, 1, 28, 28], CPU));
    let out = noise::gaussian(&zeros, [0.05, 0.05]);
    // 200,704 draws: the sample standard deviation is within 0.3% of sigma.
    let std = f(&out.std(true));
    assert!((std - 0.05).abs() < 0.0005, "std {std}");
    assert!(f(&out.mean(Kind::Double)).abs() < 0.0005);
    assert!(grad_of_sum(&out, &zeros).equal(&zeros.ones_like()));
    // Per-image sigma uniform in [0, 0.1]: spread over the range, never above it.
    let out = noise::gaussian(&zeros.detach(), [0.0, 0.1]);
    let per_image = out.view([256, -1]).std_dim(1, true, false);
    let (lo, hi) = (f(&per_image.min()), f(&per_image.max()));
    assert!(
        lo < 0.02 && hi > 0.08 && hi < 0.1 * 1.1,
        "per-image std {lo}..{hi}"
    );
}

#[test]
fn dropout_keeps_the_share_and_takes_the_rest_from_the_original() {
    let _generator = common::generator();
    let x = images(64);
    let original = images(64) + 2.0; // distinct from every watermarked pixel
    let w = leaf(&x);
    let out = noise::dropout(&w, &original, [0.7, 0.7]);
    let kept = out.eq_tensor(&x);
    let dropped = out.eq_tensor(&original);
    // Every pixel is the watermarked one or the original one.
    assert!(f(&kept.logical_xor(&dropped).all()) == 1.0);
    // 50,176 pixels: standard deviation of the share 0.002.
    let s = share(&kept);
    assert!((s - 0.7).abs() < 0.01, "kept share {s}");
    let grad = grad_of_sum(&out, &w);
    assert!(grad.equal(&kept.to_kind(Kind::Float)));
    // Per-image keep uniform in [0.2, 1.0].
    let out = noise::dropout(&x, &original, [0.2, 1.0]);
    let per_image = out
        .eq_tensor(&x)
        .to_kind(Kind::Double)
        .view([64, -1])
        .mean_dim(1, false, Kind::Double);
    let (lo, hi) = (f(&per_image.min()), f(&per_image.max()));
    assert!(
        lo < 0.35 && lo > 0.1 && hi > 0.85,
        "per-image kept {lo}..{hi}"
    );
}

#[test]
fn cropout_keeps_one_rectangle_of_the_drawn_area() {
    let _generator = common::generator();
    let x = images(64);
    let original = images(64) + 2.0;
    let w = leaf(&x);
    // A quarter of the area: a 14x14 square.
    let out = noise::cropout(&w, &original, [0.25, 0.25]);
    let kept = out.eq_tensor(&x);
    assert!(f(&kept.logical_or(&out.eq_tensor(&original)).all()) == 1.0);
    let kept2 = kept.view([64, 28, 28]);
    let rows = kept2
        .any_dim(2, false)
        .sum_dim_intlist(1, false, Kind::Int64);
    let cols = kept2
        .any_dim(1, false)
        .sum_dim_intlist(1, false, Kind::Int64);
    let count = kept2.sum_dim_intlist(&[1i64, 2][..], false, Kind::Int64);
    assert!(rows.eq(14).all().int64_value(&[]) == 1, "{rows}");
    assert!(cols.eq(14).all().int64_value(&[]) == 1, "{cols}");
    assert!(
        count.eq(196).all().int64_value(&[]) == 1,
        "not rectangles: {count}"
    );
    // Rectangles sit at different places.
    let tops = kept2
        .any_dim(2, false)
        .to_kind(Kind::Int64)
        .argmax(1, false);
    assert!(f(&tops.min()) < f(&tops.max()));
    assert!(grad_of_sum(&out, &w).equal(&kept.to_kind(Kind::Float)));
    // Per-image area shares in [0.3, 0.7] average about 0.5.
    let out = noise::cropout(&x, &original, [0.3, 0.7]);
    let s = share(&out.eq_tensor(&x));
    assert!((s - 0.5).abs() < 0.05, "kept share {s}");
}

#[test]
fn salt_and_pepper_sets_the_drawn_share_to_zero_or_one() {
    let _generator = common::generator();
    let x = leaf(&Tensor::full([64, 1, 28, 28], 0.5, CPU));
    let out = noise::salt_pepper(&x, [0.1, 0.1]);
    let (pepper, salt) = (share(&out.eq(0.0)), share(&out.eq(1.0)));
    let untouched = out.eq(0.5);
    assert!((pepper - 0.05).abs() < 0.006, "pepper {pepper}");
    assert!((salt - 0.05).abs() < 0.006, "salt {salt}");
    assert!((share(&untouched) - 0.9).abs() < 0.008);
    assert!(grad_of_sum(&out, &x).equal(&untouched.to_kind(Kind::Float)));
}

#[test]
fn blur_kernel_sums_to_one_and_keeps_constants() {
    let _generator = common::generator();
    for sigma in [0.3, 0.5, 1.0, 1.2, 2.5] {
        let k = noise::gaussian_kernel(sigma, 27);
        let r = (3.0 * sigma).ceil() as usize;
        assert_eq!(k.len(), 2 * r + 1, "sigma {sigma}");
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((0..k.len()).all(|i| k[i] == k[k.len() - 1 - i] && k[i] > 0.0));
        assert!(k[r] > k[r - 1]);
    }
    assert_eq!(noise::gaussian_kernel(0.0, 27), vec![1.0]);
    assert_eq!(noise::gaussian_kernel(5.0, 4).len(), 9);

    // A constant image stays constant (reflection padding: borders too).
    let flat = Tensor::full([2, 1, 28, 28], 0.37, CPU);
    assert!(max_abs_diff(&noise::blur_with_sigma(&flat, 1.0), &flat) < 1e-6);
    // A single bright pixel spreads into the outer product of the kernel, summing to 1.
    let k = noise::gaussian_kernel(1.0, 27);
    let delta = Tensor::zeros([1, 1, 28, 28], CPU);
    let _ = delta.narrow(2, 14, 1).narrow(3, 10, 1).fill_(1.0);
    let x = leaf(&delta);
    let out = noise::blur_with_sigma(&x, 1.0);
    assert!((f(&out.sum(Kind::Double)) - 1.0).abs() < 1e-6);
    let kt = Tensor::from_slice(&k).to_kind(Kind::Float);
    let expected = kt.view([7, 1]) * kt.view([1, 7]);
    let window = out.view([28, 28]).narrow(0, 11, 7).narrow(1, 7, 7);
    assert!(max_abs_diff(&window, &expected) < 1e-7);
    // Pixels more than the radius (3) from the border, which the reflection padding does not
    // copy, pass a gradient of the kernel's sum: 1.
    let grad = grad_of_sum(&out, &x)
        .view([28, 28])
        .narrow(0, 4, 20)
        .narrow(1, 4, 20);
    assert!(max_abs_diff(&grad, &grad.ones_like()) < 1e-6);
    // Per-batch sigma drawn in range: stronger blur, lower peak.
    let peak = |sigma: [f64; 2]| f(&noise::blur(&delta, sigma).max());
    assert!(peak([0.5, 0.5]) > peak([0.8, 1.2]) && peak([0.8, 1.2]) > peak([1.5, 1.5]));
}

#[test]
fn brightness_and_contrast_move_each_image_within_the_range() {
    let _generator = common::generator();
    let zeros = leaf(&Tensor::zeros([128, 1, 28, 28], CPU));
    let out = noise::brightness(&zeros, [-0.06, 0.06]);
    let per_image = out.view([128, -1]);
    let first = per_image.narrow(1, 0, 1);
    assert!(
        per_image.eq_tensor(&first).all().int64_value(&[]) == 1,
        "one offset per image"
    );
    let (lo, hi) = (f(&first.min()), f(&first.max()));
    assert!(
        (-0.06..-0.04).contains(&lo) && (0.04..=0.06).contains(&hi),
        "{lo}..{hi}"
    );
    assert!(grad_of_sum(&out, &zeros).equal(&zeros.ones_like()));

    let x = images(64);
    let w = leaf(&x);
    let out = noise::contrast(&w, [0.5, 0.5]);
    let mean = |t: &Tensor| t.view([64, -1]).mean_dim(1, false, Kind::Float);
    let std = |t: &Tensor| t.view([64, -1]).std_dim(1, true, false);
    assert!(max_abs_diff(&mean(&out), &mean(&x)) < 1e-6);
    assert!(max_abs_diff(&std(&out), &(std(&x) * 0.5)) < 1e-5);
    let grad = grad_of_sum(&out, &w);
    assert!(max_abs_diff(&grad, &grad.ones_like()) < 1e-5);
    // Per-image factors differ.
    let ratio = std(&noise::contrast(&x, [0.7, 1.3])) / std(&x);
    assert!(f(&ratio.min()) < 0.8 && f(&ratio.max()) > 1.2, "{ratio}");
}

/// 28x28 images that are 0 but for a 1 at (y, x).
fn dot(n: i64, y: i64, x: i64) -> Tensor {
    let t = Tensor::zeros([n, 1, 28, 28], CPU);
    let _ = t.narrow(2, y, 1).narrow(3, x, 1).fill_(1.0);
    t
}

/// The (row, column) of each image's maximum.
fn argmax_yx(t: &Tensor) -> Vec<(i64, i64)> {
    let n = t.size()[0];
    let flat = t.view([n, -1]).argmax(1, false);
    (0..n)
        .map(|i| {
            let k = flat.int64_value(&[i]);
            (k / 28, k % 28)
        })
        .collect()
}

#[test]
fn shift_moves_pixels_by_whole_pixels_with_zero_fill() {
    let _generator = common::generator();
    let long = |v: &[i64]| Tensor::from_slice(v);
    let d = dot(3, 10, 10);
    let out = noise::shift_by(&d, &long(&[2, -3, 0]), &long(&[-1, 4, 0]));
    assert_eq!(argmax_yx(&out), vec![(12, 9), (7, 14), (10, 10)]);
    assert!(out.sum(Kind::Float).double_value(&[]) == 3.0);
    // Shifted out of the image: nothing left.
    let edge = noise::shift_by(&dot(1, 27, 0), &long(&[1]), &long(&[0]));
    assert!(edge.eq(0.0).all().int64_value(&[]) == 1);
    // Rows shifted in are zeros; pixels shifted out get no gradient.
    let x = leaf(&(images(1) + 0.5));
    let out = noise::shift_by(&x, &long(&[3]), &long(&[0]));
    assert!(out.narrow(2, 0, 3).eq(0.0).all().int64_value(&[]) == 1);
    assert!(out.narrow(2, 3, 25).equal(&x.detach().narrow(2, 0, 25)));
    let grad = grad_of_sum(&out, &x);
    assert!(grad.narrow(2, 0, 25).eq(1.0).all().int64_value(&[]) == 1);
    assert!(grad.narrow(2, 25, 3).eq(0.0).all().int64_value(&[]) == 1);
    // Random shifts: every (dy, dx) in -2..=2 occurs, nothing beyond.
    let moved = argmax_yx(&noise::shift(&dot(600, 10, 10), 2));
    let mut seen = std::collections::HashSet::new();
    for (y, x) in moved {
        let (dy, dx) = (y - 10, x - 10);
        assert!(dy.abs() <= 2 && dx.abs() <= 2, "shift ({dy}, {dx})");
        seen.insert((dy, dx));
    }
    assert_eq!(seen.len(), 25);
}

#[test]
fn crop_resize_is_a_crop_resized_back_bilinearly() {
    let _generator = common::generator();
    let x = images(2);
    let long = |v: &[i64]| Tensor::from_slice(v);
    let out = noise::crop_resize_window(
        &x,
        &long(&[3, 0]),
        &long(&[5, 0]),
        &long(&[20, 21]),
        &long(&[20, 21]),
    );
    for (i, (top, left, side)) in [(3, 5, 20), (0, 0, 21)].into_iter().enumerate() {
        let crop = x
            .narrow(0, i as i64, 1)
            .narrow(2, top, side)
            .narrow(3, left, side);
        let resized = crop.upsample_bilinear2d([28, 28], false, None, None);
        // The last row and column sample just past the crop (the image goes on there) where
        // upsample_bilinear2d clamps to the crop's edge; the first ones do too unless the crop
        // touches the image's border.
        let inner = |t: &Tensor| t.narrow(2, 1, 26).narrow(3, 1, 26);
        let got = out.narrow(0, i as i64, 1);
        assert!(
            max_abs_diff(&inner(&got), &inner(&resized)) < 1e-5,
            "window {i}"
        );
        if top == 0 {
            let first = |t: &Tensor| t.narrow(2, 0, 27).narrow(3, 0, 27);
            assert!(max_abs_diff(&first(&got), &first(&resized)) < 1e-5);
        }
    }
    // Random windows: zoomed in (a 0.5 crop of a dot spreads it over 4x4 pixels) and in
    // different places.
    let big = noise::crop_resize(&dot(64, 14, 14), [0.5, 0.5]);
    let spread = big
        .gt(0.0)
        .sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Int64);
    assert!(
        f(&spread.max()) >= 9.0,
        "a zoomed dot covers 3x3 or more: {spread}"
    );
    let places: std::collections::HashSet<_> = argmax_yx(&big).into_iter().collect();
    assert!(places.len() > 20, "windows in {} places only", places.len());
}

#[test]
fn rotation_keeps_a_centred_disc_and_turns_by_the_angle() {
    let _generator = common::generator();
    // A disc of radius 8 around the image's centre (13.5, 13.5).
    let c = Tensor::arange(28, CPU) - 13.5;
    let r2 = c.view([28, 1]).square() + c.view([1, 28]).square();
    let disc = r2
        .le(64.0)
        .to_kind(Kind::Float)
        .view([1, 1, 28, 28])
        .repeat([64, 1, 1, 1]);
    let out = noise::rotation(&disc, 5.0);
    let inner = r2
        .lt(49.0)
        .view([1, 1, 28, 28])
        .expand([64, 1, 28, 28], false);
    let outer = r2
        .gt(90.0)
        .view([1, 1, 28, 28])
        .expand([64, 1, 28, 28], false);
    assert!(f(&out.masked_select(&inner).min()) > 0.999);
    assert!(f(&out.masked_select(&outer).max()) < 1e-6);
    // Per-image angles: the disc's rim differs between images.
    let rims = out.view([64, -1]);
    assert!(max_abs_diff(&rims, &rims.narrow(0, 0, 1)) > 0.05);
    // A quarter turn of any image is rot90 (counter-clockwise on screen), to float rounding.
    let x = leaf(&images(2));
    let quarter = Tensor::from_slice(&[std::f64::consts::FRAC_PI_2, -std::f64::consts::FRAC_PI_2]);
    let out = noise::rotate_by(&x, &quarter);
    let xd = x.detach();
    assert!(max_abs_diff(&out.narrow(0, 0, 1), &xd.narrow(0, 0, 1).rot90(1, [2, 3])) < 1e-5);
    assert!(max_abs_diff(&out.narrow(0, 1, 1), &xd.narrow(0, 1, 1).rot90(-1, [2, 3])) < 1e-5);
    let grad = grad_of_sum(&out, &x);
    assert!(max_abs_diff(&grad, &grad.ones_like()) < 1e-4);
}

#[test]
fn jpeg_forward_is_the_codec_and_backward_the_identity() {
    let _generator = common::generator();
    let x = images(8);
    let w = leaf(&x);
    let out = noise::jpeg(&w, [75, 75]).unwrap();
    let expected = wmae::codec::jpeg::round_trip_tensor(&x, 75).unwrap();
    assert!(
        out.equal(&expected),
        "forward differs from the JPEG round trip"
    );
    assert!(max_abs_diff(&out, &x) > 1e-3);
    let upstream = Tensor::rand([8, 1, 28, 28], CPU);
    (&out * &upstream).sum(Kind::Float).backward();
    assert!(
        w.grad().equal(&upstream),
        "gradient is not the upstream gradient"
    );
    // The per-batch quality is drawn from the range.
    let out = noise::jpeg(&x, [60, 64]).unwrap();
    let matches: Vec<u8> = (55..=70)
        .filter(|q| out.equal(&wmae::codec::jpeg::round_trip_tensor(&x, *q).unwrap()))
        .collect();
    assert!(
        !matches.is_empty() && matches.iter().all(|q| (60..=64).contains(q)),
        "{matches:?}"
    );
    assert!(noise::jpeg(&x, [0, 50]).is_err());
}

#[test]
fn round_8bit_is_png_rounding_with_the_identity_gradient() {
    let _generator = common::generator();
    let config = NoiseConfig {
        round_8bit: true,
        ..NoiseConfig::default()
    };
    let noise = layers(&config);
    assert!(!noise.is_identity());
    let x = images(8) * 1.4 - 0.2;
    let w = leaf(&x);
    let out = noise.apply(&w, &x);
    assert!(out.equal(&quantize_8bit(&x)));
    let steps = &out * 255.0;
    assert!(steps.equal(&steps.round()));
    assert!(grad_of_sum(&out, &w).equal(&x.ones_like()));
}

#[test]
fn the_default_is_the_identity_and_draws_nothing() {
    let _generator = common::generator();
    let config = NoiseConfig::default();
    assert_eq!(config.layers, vec![Layer::Identity]);
    assert!(config.is_default() && config.is_identity() && !config.round_8bit);
    let noise = layers(&config);
    assert!(noise.is_identity());
    let x = images(4);
    tch::manual_seed(5);
    for _ in 0..50 {
        let (layer, out) = noise.apply_with_layer(&x, &x);
        assert_eq!(layer, Layer::Identity);
        assert!(out.equal(&x));
    }
    let after = Tensor::rand([4], CPU);
    tch::manual_seed(5);
    assert!(
        after.equal(&Tensor::rand([4], CPU)),
        "the identity consumed random numbers"
    );
    // A table that names only some keys keeps the others' defaults.
    let partial: NoiseConfig = toml::from_str("layers = [\"gaussian\"]").unwrap();
    assert_eq!(
        partial,
        NoiseConfig {
            layers: vec![Layer::Gaussian],
            ..NoiseConfig::default()
        }
    );
    assert!(!partial.is_identity());
    assert_eq!(toml::from_str::<NoiseConfig>("").unwrap(), config);
}

#[test]
fn layers_are_drawn_by_weight_and_reproducibly() {
    let _generator = common::generator();
    let config = NoiseConfig {
        layers: vec![Layer::Identity, Layer::Gaussian, Layer::Jpeg],
        weights: Some(vec![1.0, 3.0, 0.0]),
        ..NoiseConfig::default()
    };
    let noise = layers(&config);
    let draws: Vec<Layer> = (0..4000).map(|_| noise.draw()).collect();
    let count = |l: Layer| draws.iter().filter(|d| **d == l).count() as f64 / 4000.0;
    assert_eq!(count(Layer::Jpeg), 0.0);
    assert!(
        (count(Layer::Gaussian) - 0.75).abs() < 0.03,
        "{}",
        count(Layer::Gaussian)
    );
    // Equal weights when none are given; a seeded run draws the same layers and noise.
    let noise = layers(&strong());
    let x = images(8);
    let original = images(8);
    let run = || {
        tch::manual_seed(21);
        (0..36)
            .map(|_| noise.apply_with_layer(&x, &original))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    let names: std::collections::HashSet<Layer> = a.iter().map(|(l, _)| *l).collect();
    assert!(
        names.len() >= 8,
        "36 draws of 12 equal layers met only {names:?}"
    );
    for ((la, ta), (lb, tb)) in a.iter().zip(&b) {
        assert_eq!(la, lb);
        assert!(ta.equal(tb), "{la} differs between seeded runs");
    }
}

const FULL: &str = r#"
layers = ["identity", "gaussian", "dropout", "cropout", "salt_pepper", "blur", "brightness",
          "contrast", "shift", "crop_resize", "rotation", "jpeg", "median", "box_blur"]
weights = [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, 1, 1]
gaussian_sigma = [0.0, 0.04]
dropout_keep = [0.6, 1]
cropout_keep = [0.5, 1.0]
salt_pepper = [0.0, 0.02]
blur_sigma = [0.3, 1.2]
brightness = [-0.06, 0.06]
contrast = [0.7, 1.3]
shift_max = 3
crop_resize = [0.8, 1.0]
rotation_degrees = 5
jpeg_quality = [50, 95]
median_radius = [1, 2]
box_radius = [1, 1]
round_8bit = true
"#;

#[test]
fn config_parses_and_round_trips_through_toml() {
    let _generator = common::generator();
    let config: NoiseConfig = toml::from_str(FULL).unwrap();
    config.validate("noise").unwrap();
    assert_eq!(config.layers, Layer::ALL.to_vec());
    assert_eq!(config.weights.as_ref().unwrap()[11], 1.5);
    assert_eq!(config.dropout_keep, [0.6, 1.0]);
    assert_eq!((config.shift_max, config.rotation_degrees), (3, 5.0));
    assert_eq!(config.jpeg_quality, [50, 95]);
    assert_eq!((config.median_radius, config.box_radius), ([1, 2], [1, 1]));
    assert!(config.round_8bit);
    let text = toml::to_string(&config).unwrap();
    for layer in Layer::ALL {
        assert!(text.contains(&format!("\"{}\"", layer.name())), "{text}");
    }
    assert_eq!(toml::from_str::<NoiseConfig>(&text).unwrap(), config);
    // The default round-trips too (no weights key written).
    let text = toml::to_string(&NoiseConfig::default()).unwrap();
    assert!(!text.contains("weights"), "{text}");
    assert_eq!(
        toml::from_str::<NoiseConfig>(&text).unwrap(),
        NoiseConfig::default()
    );
    // Unknown keys and layers are refused, naming them.
    let err = toml::from_str::<NoiseConfig>("gausian_sigma = [0.0, 0.1]").unwrap_err();
    assert!(err.to_string().contains("gausian_sigma"), "{err}");
    let err = toml::from_str::<NoiseConfig>("layers = [\"gauss\"]").unwrap_err();
    assert!(err.to_string().contains("gauss"), "{err}");
}

#[test]
fn validation_errors_name_the_key_and_value() {
    let _generator = common::generator();
    let cases = [
        ("layers = []", "noise.layers = []"),
        (
            "layers = [\"blur\", \"blur\"]",
            "noise.layers = [\"blur\", \"blur\"]",
        ),
        (
            "layers = [\"identity\", \"blur\"]\nweights = [1.0]",
            "noise.weights = [1.0]",
        ),
        ("weights = [-1.0]", "noise.weights = [-1.0]"),
        ("weights = [0.0]", "noise.weights = [0.0]"),
        (
            "gaussian_sigma = [0.1, 0.0]",
            "noise.gaussian_sigma = [0.1, 0]",
        ),
        (
            "dropout_keep = [0.5, 1.5]",
            "noise.dropout_keep = [0.5, 1.5]",
        ),
        (
            "cropout_keep = [-0.1, 1.0]",
            "noise.cropout_keep = [-0.1, 1]",
        ),
        ("salt_pepper = [0.0, 2.0]", "noise.salt_pepper = [0, 2]"),
        ("blur_sigma = [0.5, 9.0]", "noise.blur_sigma = [0.5, 9]"),
        ("brightness = [-2.0, 0.0]", "noise.brightness = [-2, 0]"),
        ("contrast = [-1.0, 1.0]", "noise.contrast = [-1, 1]"),
        ("contrast = [1.0, nan]", "noise.contrast = [1, NaN]"),
        ("shift_max = -1", "noise.shift_max = -1"),
        ("crop_resize = [0.0, 1.0]", "noise.crop_resize = [0, 1]"),
        ("rotation_degrees = 200.0", "noise.rotation_degrees = 200"),
        ("jpeg_quality = [95, 40]", "noise.jpeg_quality = [95, 40]"),
        ("jpeg_quality = [0, 50]", "noise.jpeg_quality = [0, 50]"),
        ("jpeg_quality = [50, 101]", "noise.jpeg_quality = [50, 101]"),
    ];
    for (text, expected) in cases {
        let config: NoiseConfig = toml::from_str(text).unwrap();
        let err = config.validate("noise").unwrap_err().to_string();
        assert!(err.starts_with(&format!("{expected}: ")), "{text}: {err}");
        let err = NoiseLayers::new(&config).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{text}: {err}");
    }
    // The table's name is the caller's.
    let config: NoiseConfig = toml::from_str("shift_max = -2").unwrap();
    let err = config.validate("train.noise").unwrap_err().to_string();
    assert!(err.starts_with("train.noise.shift_max = -2"), "{err}");
}

/// The training median and box blur are the inference attacks `median-K` and `box-R`
/// (borders repeated): the median exactly (against imageproc's filter), the box blur up to the
/// attack's final rounding to 8 bits.
#[test]
fn median_and_box_blur_layers_match_the_attacks() {
    let _generator = common::generator();
    let x = (images(6) * 255.0).round() / 255.0;
    for radius in [1i64, 2] {
        let median = noise::median_with_radius(&x, radius);
        let attack = wmae::attack::parse(&format!("median-{}", 2 * radius + 1)).unwrap();
        let reference = wmae::attack::apply(&attack, &x, &x, 0).unwrap();
        assert!(
            max_abs_diff(&median, &reference) < 1e-6,
            "median radius {radius}"
        );
        let boxed = noise::box_blur_with_radius(&x, radius);
        let attack = wmae::attack::parse(&format!("box-{radius}")).unwrap();
        let reference = wmae::attack::apply(&attack, &x, &x, 0).unwrap();
        assert!(
            max_abs_diff(&boxed, &reference) <= 0.5 / 255.0 + 1e-6,
            "box radius {radius}"
        );
        // A box blur is linear: every pixel's weight sums to 1 over the outputs away from
        // the border, so the gradient of the sum is 1 in the interior.
        let w = leaf(&x);
        let grad = grad_of_sum(&noise::box_blur_with_radius(&w, radius), &w);
        let inner = grad.narrow(2, 4, 20).narrow(3, 4, 20);
        assert!(
            max_abs_diff(&inner, &inner.ones_like()) < 1e-5,
            "box gradient"
        );
        // The median passes each output's gradient to the one pixel that was the median.
        let w = leaf(&x);
        let grad = grad_of_sum(&noise::median_with_radius(&w, radius), &w);
        let total = f(&grad.sum(Kind::Double));
        assert!(
            (total - x.numel() as f64).abs() < 1e-6,
            "median gradient sum {total}"
        );
    }
    // Radius 0 is the identity.
    assert!(noise::median_with_radius(&x, 0).equal(&x));
    assert!(noise::box_blur_with_radius(&x, 0).equal(&x));
}
