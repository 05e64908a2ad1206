//! The seed model: Keras layer names, parameter count, Keras initialisation, shapes, dropout only
//! in training, and the hard head's exact 0/1 forward with the sigmoid's gradient.

mod common;

use tch::{nn, Device, Kind, Tensor};
use wmae::model::{
    dropout, parameter_count, set_kernel_layout, straight_through_binarize, DropoutMask, Head,
    KernelLayout, WatermarkAutoencoder,
};

fn build(head: Head) -> (nn::VarStore, WatermarkAutoencoder) {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = WatermarkAutoencoder::new(&vs.root(), head);
    (vs, model)
}

#[test]
fn variables_carry_the_keras_layer_names_and_count() {
    let _generator = common::generator();
    let (vs, _) = build(Head::Sigmoid);
    // Keras: 160 + 4,640 + 2,312 + 73 per image block, 160 + 4,640 + 2,312 + 9 for the extractor.
    assert_eq!(parameter_count(&vs), 21_491);
    let vars = vs.variables();
    let layers = [
        ("convl1e", [16, 1, 3, 3]),
        ("convl2e", [32, 16, 3, 3]),
        ("convl3e", [8, 32, 3, 3]),
        ("reconstructed_I", [1, 8, 3, 3]),
        ("convl1d", [16, 1, 3, 3]),
        ("convl2d", [32, 16, 3, 3]),
        ("convl3d", [8, 32, 3, 3]),
        ("decoder_output", [1, 8, 3, 3]),
        ("conl1w", [16, 1, 3, 3]),
        ("convl2w", [32, 16, 3, 3]),
        ("conl3w", [8, 32, 3, 3]),
        ("reconstructed_W", [1, 8, 1, 1]),
    ];
    assert_eq!(vars.len(), 2 * layers.len());
    for (name, shape) in layers {
        assert_eq!(
            vars[&format!("{name}.weight")].size(),
            shape.to_vec(),
            "{name}"
        );
        assert_eq!(
            vars[&format!("{name}.bias")].size(),
            vec![shape[0]],
            "{name}"
        );
    }
}

#[test]
fn initialisation_is_keras_glorot_uniform_with_zero_biases() {
    let _generator = common::generator();
    let (vs, _) = build(Head::Sigmoid);
    for (name, var) in vs.variables() {
        if name.ends_with(".bias") {
            assert_eq!(var.abs().max().double_value(&[]), 0.0, "{name}");
            continue;
        }
        let s = var.size();
        let (fan_in, fan_out) = ((s[1] * s[2] * s[3]) as f64, (s[0] * s[2] * s[3]) as f64);
        let limit = (6.0 / (fan_in + fan_out)).sqrt();
        assert!(var.abs().max().double_value(&[]) <= limit, "{name}");
        if var.numel() >= 1000 {
            // A uniform(-l, l) has standard deviation l / sqrt(3).
            let std = var.std(true).double_value(&[]);
            assert!(
                (std / (limit / 3f64.sqrt()) - 1.0).abs() < 0.1,
                "{name}: std {std}"
            );
        }
    }
}

#[test]
fn both_heads_have_the_image_shape_and_the_watermark_is_a_second_input() {
    let _generator = common::generator();
    let (_, model) = build(Head::Sigmoid);
    let image = Tensor::rand([5, 1, 28, 28], (Kind::Float, Device::Cpu));
    let zeros = Tensor::zeros([5, 1, 28, 28], (Kind::Float, Device::Cpu));
    let ones = zeros.ones_like();
    let a = model.forward_t(&image, &zeros, false);
    assert_eq!(a.watermarked.size(), vec![5, 1, 28, 28]);
    assert_eq!(a.watermark_map.size(), vec![5, 1, 28, 28]);
    let map_min = a.watermark_map.min().double_value(&[]);
    let map_max = a.watermark_map.max().double_value(&[]);
    assert!(
        map_min > 0.0 && map_max < 1.0,
        "sigmoid range: {map_min}..{map_max}"
    );
    // The decoder's input is encoder(image) + map, so a different map changes the output.
    let b = model.forward_t(&image, &ones, false);
    assert!(
        a.watermarked
            .ne_tensor(&b.watermarked)
            .any()
            .int64_value(&[])
            == 1
    );
}

#[test]
fn dropout_only_when_training() {
    let _generator = common::generator();
    let (_, model) = build(Head::Sigmoid);
    let image = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let map = image.zeros_like();
    let e1 = model.forward_t(&image, &map, false).watermark_map;
    let e2 = model.forward_t(&image, &map, false).watermark_map;
    assert!(e1.equal(&e2));
    let t1 = model.forward_t(&image, &map, true).watermark_map;
    let t2 = model.forward_t(&image, &map, true).watermark_map;
    assert!(!t1.equal(&t2));
}

#[test]
fn hard_head_outputs_exact_bits_with_the_sigmoid_gradient() {
    let _generator = common::generator();
    let (vs_soft, soft) = build(Head::Sigmoid);
    let (mut vs_hard, hard) = build(Head::Hard);
    vs_hard.copy(&vs_soft).unwrap();
    let image = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    let map = image.zeros_like();
    let out = hard.forward_t(&image, &map, false).watermark_map;
    let zeros_or_ones = out.eq(0.0).logical_or(&out.eq(1.0));
    assert!(
        zeros_or_ones.all().int64_value(&[]) == 1,
        "hard head must output exact 0/1"
    );
    let soft_out = soft.forward_t(&image, &map, false).watermark_map;
    assert!(out.equal(&soft_out.gt(0.5).to_kind(Kind::Float)));

    // Straight-through: the same upstream gradient reaches the weights in both models.
    let weights = Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    (out * &weights).sum(Kind::Float).backward();
    (soft_out * &weights).sum(Kind::Float).backward();
    let g_hard = vs_hard.variables()["convl1e.weight"].grad();
    let g_soft = vs_soft.variables()["convl1e.weight"].grad();
    assert!(g_hard.allclose(&g_soft, 1e-5, 1e-7, false));
    assert!(g_hard.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn straight_through_is_exact_at_the_edges() {
    let _generator = common::generator();
    let p = Tensor::from_slice(&[0.0f32, 0.2, 0.5, 0.5000001, 0.7, 0.999_999_9, 1.0]);
    let b = Vec::<f32>::try_from(straight_through_binarize(&p)).unwrap();
    assert_eq!(b, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
}

#[test]
fn cpu_kernels_are_channels_last_and_nchw_gives_the_same_outputs() {
    let _generator = common::generator();
    let (vs, model) = build(Head::Sigmoid);
    let w = &vs.variables()["convl2e.weight"];
    assert_eq!(w.size(), vec![32, 16, 3, 3]);
    assert_eq!(w.stride(), vec![144, 1, 48, 16], "NHWC strides on the CPU");
    let image = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let map = image.zeros_like();
    let nhwc = model.forward_t(&image, &map, false);
    set_kernel_layout(&vs, KernelLayout::Nchw);
    assert_eq!(
        vs.variables()["convl2e.weight"].stride(),
        vec![144, 9, 3, 1]
    );
    let nchw = model.forward_t(&image, &map, false);
    assert!(nhwc
        .watermarked
        .allclose(&nchw.watermarked, 1e-5, 1e-6, false));
    assert!(nhwc
        .watermark_map
        .allclose(&nchw.watermark_map, 1e-5, 1e-6, false));
}

fn dropped_share(out: &Tensor) -> f64 {
    out.eq(0.0)
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

#[test]
fn packed_dropout_is_bernoulli_with_keras_scaling() {
    let _generator = common::generator();
    tch::manual_seed(3);
    let ones = Tensor::ones([1_000_003], (Kind::Float, Device::Cpu));
    let out = dropout(&ones, DropoutMask::PackedBits, true);
    // 1,000,003 fair draws of p = 0.25: standard deviation 0.00043.
    let share = dropped_share(&out);
    assert!((share - 0.25).abs() < 0.002, "dropped share {share}");
    // Kept values are scaled by 1 / 0.75 exactly as Keras and libtorch do.
    let kept = out.masked_select(&out.ne(0.0));
    assert!(kept.allclose(&kept.full_like(4.0 / 3.0), 0.0, 1e-7, false));
    // Neighbours are independent (no shared bits between fields): both dropped 1/16 of the time.
    let dropped = out.eq(0.0).to_kind(Kind::Double);
    let both = (dropped.narrow(0, 0, 1_000_002) * dropped.narrow(0, 1, 1_000_002))
        .mean(Kind::Double)
        .double_value(&[]);
    assert!((both - 1.0 / 16.0).abs() < 0.002, "both dropped {both}");
    // Every field position (0..15 within a draw) drops at the same rate.
    let per_field = dropped
        .narrow(0, 0, 1_000_000 / 15 * 15)
        .view([-1, 15])
        .mean_dim(0, false, Kind::Double);
    assert!((per_field - 0.25).abs().max().double_value(&[]) < 0.01);
    // Same seed, same mask; eval mode is the identity.
    tch::manual_seed(3);
    assert!(dropout(&ones, DropoutMask::PackedBits, true).equal(&out));
    assert!(dropout(&ones, DropoutMask::PackedBits, false).equal(&ones));
}

#[test]
fn packed_dropout_gradient_is_the_scaled_mask() {
    let _generator = common::generator();
    let x = Tensor::rand([2, 8, 28, 28], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let out = dropout(&x, DropoutMask::PackedBits, true);
    out.sum(Kind::Float).backward();
    let expected = out.ne(0.0).to_kind(Kind::Float) * (4.0 / 3.0);
    assert!(x.grad().allclose(&expected, 0.0, 1e-7, false));
    assert!((dropped_share(&out) - 0.25).abs() < 0.02);
}
