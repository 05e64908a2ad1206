//! wmae against an independent PyTorch implementation of the seed model
//! (scripts/reference_model.py, on the torch 2.13.0 that scripts/setup-python installs):
//! exported weights give the same outputs in PyTorch, and a PyTorch state dict gives the same
//! outputs in wmae, to 1e-5.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use tch::{Device, Kind, Tensor};
use wmae::checkpoint;
use wmae::watermark::Layout;

fn python() -> String {
    let python = std::env::var("WMAE_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: run scripts/setup-python (scripts/test does)"
    );
    python
}

fn reference(args: &[&str]) -> String {
    let script = format!("{}/scripts/reference_model.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "reference_model.py {args:?} failed:\n{text}"
    );
    text
}

/// The tensor called `name` in a safetensors file's list.
fn named(io: &checkpoint::NamedTensors, name: &str) -> Tensor {
    io.iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
        .shallow_clone()
}

/// Runs `model` (a checkpoint file) in wmae on the reference's inputs in `io` and checks both
/// heads against the reference's outputs, to 1e-5.
fn assert_wmae_matches_reference(model: &Path, io: &checkpoint::NamedTensors, label: &str) {
    let loaded = checkpoint::load_for_inference(model, Device::Cpu).unwrap();
    assert_eq!(loaded.meta.parameters, 21_491);
    let out = tch::no_grad(|| {
        loaded
            .model
            .forward_t(&named(io, "image"), &named(io, "watermark_map"), false)
    });
    for (name, ours) in [
        ("watermarked", out.watermarked),
        ("extracted", out.watermark_map),
    ] {
        let diff = (ours - named(io, name)).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-5,
            "{label} {name}: wmae and the reference differ by {diff}"
        );
    }
}

#[test]
fn exported_weights_give_the_same_outputs_in_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let model_path = tmp.path().join("model.safetensors");
    let o = common::wmae(&[
        "export",
        "--checkpoint",
        &format!("{}/checkpoints/default.ot", env!("CARGO_MANIFEST_DIR")),
        "--out",
        model_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    let loaded = checkpoint::load_for_inference(&model_path, Device::Cpu).unwrap();
    tch::manual_seed(5);
    let image = Tensor::rand([6, 1, 28, 28], (Kind::Float, Device::Cpu));
    let bits = Tensor::randint(2, [6, 16], (Kind::Float, Device::Cpu));
    let map = Layout::default().map_from_bits(&bits);
    let out = tch::no_grad(|| loaded.model.forward_t(&image, &map, false));
    let io = [
        ("image".to_string(), image),
        ("watermark_map".to_string(), map),
        ("watermarked".to_string(), out.watermarked),
        ("extracted".to_string(), out.watermark_map),
    ];
    let io_path = tmp.path().join("io.safetensors");
    checkpoint::write_safetensors(&io_path, &io, HashMap::new()).unwrap();
    let text = reference(&[
        "compare",
        model_path.to_str().unwrap(),
        io_path.to_str().unwrap(),
    ]);
    assert!(text.contains("interop ok"), "{text}");
}

#[test]
fn a_pytorch_state_dict_loads_into_wmae_and_gives_its_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let model_path = tmp.path().join("torch.safetensors");
    let io_path = tmp.path().join("io.safetensors");
    reference(&[
        "make",
        model_path.to_str().unwrap(),
        io_path.to_str().unwrap(),
        "7",
    ]);
    let (io, _) = checkpoint::load_safetensors(&io_path).unwrap();
    assert_wmae_matches_reference(&model_path, &io, "PyTorch state dict");
}

#[test]
fn keras_weights_convert_with_the_kernel_layout_transposed() {
    let tmp = tempfile::tempdir().unwrap();
    let torch_path = tmp.path().join("torch.safetensors");
    let io_path = tmp.path().join("io.safetensors");
    reference(&[
        "make",
        torch_path.to_str().unwrap(),
        io_path.to_str().unwrap(),
        "3",
    ]);
    let (io, _) = checkpoint::load_safetensors(&io_path).unwrap();
    let dir = env!("CARGO_MANIFEST_DIR");
    for layout in ["keras2", "keras3"] {
        let h5 = tmp.path().join(format!("{layout}.h5"));
        let converted = tmp.path().join(format!("{layout}.safetensors"));
        let run = |args: &[&str]| {
            let out = Command::new(python()).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            &format!("{dir}/tests/fixtures/write_keras_h5.py"),
            torch_path.to_str().unwrap(),
            h5.to_str().unwrap(),
            layout,
        ]);
        run(&[
            &format!("{dir}/scripts/keras_to_wmae.py"),
            h5.to_str().unwrap(),
            converted.to_str().unwrap(),
        ]);
        assert_wmae_matches_reference(&converted, &io, layout);
    }
}
