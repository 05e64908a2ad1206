//! Losses and metrics against hand-computed values.

use tch::{Device, Kind, Tensor};
use wmae::learning::loss::{mean_loss, weighted_mean_loss, LossKind, Losses};
use wmae::learning::metrics::{psnr_per_image, Accumulator};
use wmae::message::watermark::Layout;
use wmae::model::Output;

fn t(v: &[f32]) -> Tensor {
    Tensor::from_slice(v)
}

fn scalar(x: &Tensor) -> f64 {
    x.double_value(&[])
}

/// A 1x2 bit block on the top row of a 2x2 map.
fn one_by_two_on_2x2() -> Layout {
    Layout::Block {
        rows: 1,
        cols: 2,
        top: 0,
        left: 0,
        height: 2,
        width: 2,
    }
}

#[test]
fn mse_by_hand() {
    let got = scalar(&mean_loss(
        LossKind::Mse,
        &t(&[0.0, 0.5, 1.0, 0.25]),
        &t(&[1.0, 0.5, 0.0, 0.75]),
    ));
    assert!((got - (1.0 + 0.0 + 1.0 + 0.25) / 4.0).abs() < 1e-7);
}

#[test]
fn bce_by_hand_with_keras_clipping() {
    let p = [0.9f32, 0.2, 0.0, 1.0];
    let y = [1.0f32, 0.0, 1.0, 0.0];
    // Keras clips p to [1e-7, 1 - 1e-7] (in float32) before the logarithms.
    let hi = 1.0f32 - 1e-7;
    let clipped_one = (1.0f32 - hi) as f64;
    let want = -((0.9f64).ln() + (0.8f64).ln() + (1e-7f32 as f64).ln() + clipped_one.ln()) / 4.0;
    let got = scalar(&mean_loss(LossKind::Bce, &t(&p), &t(&y)));
    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    // Perfect answers cost almost nothing; a sure wrong answer costs -ln(1e-7) = 16.1.
    assert!(scalar(&mean_loss(LossKind::Bce, &t(&[1.0, 0.0]), &t(&[1.0, 0.0]))) < 1e-6);
}

#[test]
fn masked_loss_only_counts_the_block() {
    let layout = one_by_two_on_2x2();
    let mask = layout.carrier_mask(Kind::Float, Device::Cpu);
    let pred = t(&[1.0, 0.0, 0.3, 0.3]).reshape([1, 1, 2, 2]);
    let target = t(&[1.0, 1.0, 0.0, 0.0]).reshape([1, 1, 2, 2]);
    let got = scalar(&weighted_mean_loss(LossKind::Mse, &pred, &target, &mask));
    assert!((got - 0.5).abs() < 1e-7, "{got}"); // (0 + 1) / 2, the bottom row ignored

    // Block weight 3 on the map: (3*0 + 3*1 + 0.09 + 0.09) / (3 + 3 + 1 + 1).
    let weights = &mask * 2.0 + 1.0;
    let got = scalar(&weighted_mean_loss(LossKind::Mse, &pred, &target, &weights));
    assert!((got - 3.18 / 8.0).abs() < 1e-6, "{got}");
}

#[test]
fn psnr_by_hand() {
    let original = Tensor::zeros([2, 1, 2, 2], (Kind::Float, Device::Cpu));
    let image = t(&[0.1, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0]).reshape([2, 1, 2, 2]);
    let p = Vec::<f32>::try_from(psnr_per_image(&image, &original)).unwrap();
    assert!((p[0] - 20.0).abs() < 1e-4, "MSE 0.01 is 20 dB: {}", p[0]);
    assert_eq!(p[1], 100.0, "identical images are capped");
}

#[test]
fn binarized_watermark_metrics_by_hand() {
    // 2x2 maps, a 1x2 block on top. Image 1: bits 1,0 read as 1,0 (exact), background right.
    // Image 2: bits 1,1 read as 1,0, one background pixel wrongly 1.
    let layout = one_by_two_on_2x2();
    let truth = t(&[1.0, 0.0, 1.0, 1.0]).reshape([2, 2]);
    let pred = t(&[0.9, 0.2, 0.1, 0.4, 0.7, 0.5, 0.6, 0.0]).reshape([2, 1, 2, 2]);
    let image = Tensor::zeros([2, 1, 2, 2], (Kind::Float, Device::Cpu));
    let zero = || Tensor::from(0.0f32);
    let out = Output {
        watermarked: image.shallow_clone(),
        watermark_map: pred,
    };
    let losses = Losses {
        total: zero(),
        image: zero(),
        watermark: zero(),
    };
    let mut acc = Accumulator::new(layout);
    acc.add(&image, &truth, &out, &losses);
    let s = acc.summary();
    assert_eq!(s.images, 2);
    assert!((s.bit_accuracy - 0.75).abs() < 1e-9); // 3 of 4 bits
    assert!((s.exact_rate - 0.5).abs() < 1e-9);
    assert!((s.pixel_accuracy - 0.75).abs() < 1e-9); // 6 of 8 pixels
                                                     // Dice: predicted ones {0, 4, 6}, true ones {0, 4, 5}: 2*2 / (3 + 3).
    assert!((s.dice - 4.0 / 6.0).abs() < 1e-6);
    // Map MAE: mean |pred - truth| over 8 pixels.
    let mae = (0.1 + 0.2 + 0.1 + 0.4 + 0.3 + 0.5 + 0.6 + 0.0) / 8.0;
    assert!((s.watermark_mae - mae).abs() < 1e-6);
}
