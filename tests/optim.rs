//! Adadelta against values computed independently: by hand for the first step, and by a plain
//! f64 scalar implementation of Zeiler's update for several steps.

mod common;

use tch::{nn, Device, Kind, Tensor};
use wmae::io::checkpoint::NamedTensors;
use wmae::learning::optim::{Adadelta, AdadeltaConfig};

/// A VarStore with one parameter vector and the loss sum(c * p^2) (gradient 2 c p).
fn setup(p0: &[f32]) -> (nn::VarStore, Tensor) {
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root().var_copy("p", &Tensor::from_slice(p0));
    (vs, p)
}

const C: [f64; 3] = [1.0, 2.0, 0.5];

fn loss(p: &Tensor) -> Tensor {
    (Tensor::from_slice(&C.map(|c| c as f32)) * p.square()).sum(Kind::Float)
}

/// Zeiler's Adadelta on scalars, in f64.
fn reference(p0: [f64; 3], cfg: AdadeltaConfig, steps: usize) -> [f64; 3] {
    let (mut p, mut acc_g, mut acc_d) = (p0, [0.0; 3], [0.0; 3]);
    for _ in 0..steps {
        for i in 0..3 {
            let g = 2.0 * C[i] * p[i];
            acc_g[i] = cfg.rho * acc_g[i] + (1.0 - cfg.rho) * g * g;
            let delta = g * (acc_d[i] + cfg.eps).sqrt() / (acc_g[i] + cfg.eps).sqrt();
            p[i] -= cfg.lr * delta;
            acc_d[i] = cfg.rho * acc_d[i] + (1.0 - cfg.rho) * delta * delta;
        }
    }
    p
}

fn run(cfg: AdadeltaConfig, steps: usize) -> Vec<f32> {
    let (vs, p) = setup(&[0.5, -1.2, 3.0]);
    let mut opt = Adadelta::new(&vs, cfg);
    for _ in 0..steps {
        opt.zero_grad();
        loss(&p).backward();
        opt.step();
    }
    Vec::<f32>::try_from(p.detach()).unwrap()
}

#[test]
fn first_step_by_hand() {
    let _generator = common::generator();
    // p = 0.5, c = 1: g = 1; acc_g = 0.05; delta = sqrt(1e-7) / sqrt(0.05 + 1e-7) = 0.00141421...
    let p = run(AdadeltaConfig::default(), 1);
    assert!(
        (p[0] as f64 - (0.5 - 0.001_414_212_1)).abs() < 1e-7,
        "{}",
        p[0]
    );
    // Every coordinate moves by about sqrt(eps / (1 - rho)) = 0.0014142 against its gradient.
    assert!(
        (p[1] as f64 - (-1.2 + 0.001_414_213)).abs() < 1e-6,
        "{}",
        p[1]
    );
}

#[test]
fn many_steps_match_the_scalar_reference() {
    let _generator = common::generator();
    for cfg in [
        AdadeltaConfig::default(),
        AdadeltaConfig {
            lr: 0.5,
            rho: 0.9,
            eps: 1e-6,
        },
    ] {
        let got = run(cfg, 25);
        let want = reference([0.5, -1.2, 3.0], cfg, 25);
        for i in 0..3 {
            assert!(
                (got[i] as f64 - want[i]).abs() < 1e-5,
                "{cfg:?} coord {i}: {} vs {}",
                got[i],
                want[i]
            );
        }
        // And it did move: 25 steps of ~1e-3 each at least.
        assert!((got[2] as f64 - 3.0).abs() > 0.01);
    }
}

#[test]
fn state_round_trip_continues_identically() {
    let _generator = common::generator();
    let cfg = AdadeltaConfig::default();
    let (vs, p) = setup(&[0.5, -1.2, 3.0]);
    let mut opt = Adadelta::new(&vs, cfg);
    for _ in 0..5 {
        opt.zero_grad();
        loss(&p).backward();
        opt.step();
    }
    let state: NamedTensors = opt
        .state()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    let (vs2, p2) = setup(&Vec::<f32>::try_from(p.detach()).unwrap());
    let mut opt2 = Adadelta::new(&vs2, cfg);
    opt2.load_state(&state).unwrap();
    for (o, q) in [(&mut opt, &p), (&mut opt2, &p2)] {
        for _ in 0..5 {
            o.zero_grad();
            loss(q).backward();
            o.step();
        }
    }
    assert!(p.equal(&p2));
    let err = format!("{:#}", opt2.load_state(&state[1..]).unwrap_err());
    assert!(err.contains("adadelta.acc_grad.p is missing"), "{err}");
}

#[test]
fn bad_hyperparameters_name_the_key() {
    let _generator = common::generator();
    let err = AdadeltaConfig {
        rho: 1.5,
        ..Default::default()
    }
    .validate("optimizer")
    .unwrap_err();
    assert!(err.to_string().contains("optimizer.rho = 1.5"));
    let err = AdadeltaConfig {
        lr: -1.0,
        ..Default::default()
    }
    .validate("optimizer")
    .unwrap_err();
    assert!(err.to_string().contains("optimizer.lr = -1"));
}

/// The seed model's 24 variables (NHWC kernels on the CPU) stepped by the flat-buffer optimizer
/// and, independently, variable by variable with Zeiler's update: the same values after 3 steps,
/// the layout kept, and the model itself sees the updates.
#[test]
fn flat_buffer_update_equals_the_per_variable_update_on_the_seed_model() {
    let _generator = common::generator();
    use wmae::model::{Head, WatermarkAutoencoder};
    let build = || {
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = WatermarkAutoencoder::new(&vs.root(), Head::Sigmoid);
        (vs, model)
    };
    let (vs_a, model_a) = build();
    let (vs_b, model_b) = build();
    let image = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let map = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let loss_of = |m: &WatermarkAutoencoder| {
        let out = m.forward_t(&image, &map, false);
        (out.watermarked - &image).square().mean(Kind::Float)
            + (out.watermark_map - &map).square().mean(Kind::Float)
    };
    let before = loss_of(&model_a).double_value(&[]);
    let cfg = AdadeltaConfig::default();
    let mut opt = Adadelta::new(&vs_a, cfg);
    let mut vars_b = vs_b.variables();
    let mut acc: std::collections::HashMap<String, (Tensor, Tensor)> = vars_b
        .iter()
        .map(|(n, v)| (n.clone(), (v.zeros_like(), v.zeros_like())))
        .collect();
    for _ in 0..3 {
        opt.zero_grad();
        loss_of(&model_a).backward();
        opt.step();

        for v in vars_b.values_mut() {
            v.zero_grad();
        }
        loss_of(&model_b).backward();
        tch::no_grad(|| {
            for (name, v) in vars_b.iter_mut() {
                let g = v.grad();
                let (acc_g, acc_d) = acc.get_mut(name).unwrap();
                *acc_g = &*acc_g * cfg.rho + g.square() * (1.0 - cfg.rho);
                let delta = (&*acc_d + cfg.eps).sqrt() / (&*acc_g + cfg.eps).sqrt() * &g;
                *v -= &delta * cfg.lr;
                *acc_d = &*acc_d * cfg.rho + delta.square() * (1.0 - cfg.rho);
            }
        });
    }
    let vars_a = vs_a.variables();
    assert_eq!(vars_a.len(), 24);
    for (name, a) in &vars_a {
        let b = &vars_b[name];
        assert_eq!(a.stride(), b.stride(), "{name} keeps its layout");
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(
            diff < 1e-6,
            "{name}: flat and per-variable differ by {diff}"
        );
    }
    let after = loss_of(&model_a).double_value(&[]);
    assert!(after < before, "the model trains: loss {before} -> {after}");
}
