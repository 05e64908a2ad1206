//! wmae against an independent PyTorch implementation of the seed model
//! (scripts/reference_model.py, on the torch 2.13.0 that scripts/setup-python installs):
//! exported weights give the same outputs in PyTorch, and a PyTorch state dict gives the same
//! outputs in wmae, to 1e-5.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::{Device, Kind, Tensor};
use wmae::io::checkpoint;
use wmae::message::watermark::Layout;

use common::python;

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
        &format!("{}/checkpoints/stamp.ot", env!("CARGO_MANIFEST_DIR")),
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
    // What the state dict holds: the seed model, as trained by configs/seed-embedded.toml.
    std::fs::copy(
        project().join("configs/seed-embedded.toml"),
        checkpoint::description_path(&model_path),
    )
    .unwrap();
    let (io, _) = checkpoint::load_safetensors(&io_path).unwrap();
    assert_wmae_matches_reference(&model_path, &io, "PyTorch state dict");
}

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped model's weights passed through PyTorch's safetensors (which keeps no header
/// metadata) are refused, naming the file and the TOML that would say what it holds; with the
/// config it was trained with beside it, they embed and read back as the shipped model does.
#[test]
fn a_checkpoint_without_metadata_is_refused_until_its_config_lies_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let exported = tmp.path().join("d.safetensors");
    let plain = tmp.path().join("plain.safetensors");
    let o = common::wmae(&[
        "export",
        "--checkpoint",
        project().join("checkpoints/default.ot").to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = Command::new(python())
        .args([
            "-c",
            "import sys; from safetensors.numpy import load_file, save_file; \
             save_file(load_file(sys.argv[1]), sys.argv[2])",
            exported.to_str().unwrap(),
            plain.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let digits = common::embedded_mnist().join("t10k-images-idx3-ubyte.gz");
    let marked = tmp.path().join("marked");
    let embed = || {
        common::wmae(&[
            "--device",
            "cpu",
            "--threads",
            "1",
            "--seed",
            "3",
            "embed",
            digits.to_str().unwrap(),
            "--random",
            "--out",
            marked.to_str().unwrap(),
            "--checkpoint",
            plain.to_str().unwrap(),
        ])
    };
    let o = embed();
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("plain.safetensors: carries no wmae metadata")
            && err.contains("plain.safetensors.toml"),
        "{err}"
    );
    assert!(!marked.join("manifest.json").exists());

    std::fs::copy(
        project().join("configs/default-finetune.toml"),
        checkpoint::description_path(&plain),
    )
    .unwrap();
    let o = embed();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = common::wmae(&[
        "--device",
        "cpu",
        "--threads",
        "1",
        "extract",
        marked.to_str().unwrap(),
        "--manifest",
        marked.join("manifest.json").to_str().unwrap(),
        "--checkpoint",
        plain.to_str().unwrap(),
    ]);
    let text = common::stdout(&o);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        text.contains("watermark found in 2000 (100.00%)") && text.contains("bit accuracy 100.00%"),
        "{text}"
    );
}

/// A file in tests/fixtures/keras/: weights that real Keras 3.15.1 and tf_keras 2.21.0 wrote,
/// with Keras' own predictions (tests/fixtures/make_keras_fixtures.py made them; Keras itself
/// is not installed for the tests).
fn keras_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keras")
        .join(name)
}

/// Runs scripts/keras_to_wmae.py on `h5`, writing `out`.
fn keras_to_wmae(h5: &Path, out: &Path) -> Output {
    let script = format!("{}/scripts/keras_to_wmae.py", env!("CARGO_MANIFEST_DIR"));
    Command::new(python())
        .arg(script)
        .arg(h5)
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn keras_weights_convert_with_the_kernel_layout_transposed() {
    let tmp = tempfile::tempdir().unwrap();
    let (io, _) = checkpoint::load_safetensors(&keras_fixture("io.safetensors")).unwrap();
    // Each file Keras wrote, with the model whose `predict` outputs io.safetensors holds.
    for (file, model) in [
        ("seed.weights.h5", "keras3"), // Keras 3 save_weights: layers/conv2d ... conv2d_11
        ("seed_legacy.h5", "keras3"),  // Keras 3 legacy save: model_weights/<layer name>
        ("seed_tfkeras.h5", "tf_keras"), // tf_keras save_weights: <layer name>/<layer name>
    ] {
        let converted = tmp.path().join(format!("{file}.safetensors"));
        let out = keras_to_wmae(&keras_fixture(file), &converted);
        assert!(
            out.status.success(),
            "keras_to_wmae.py {file}: {}",
            common::stderr(&out)
        );
        let loaded = checkpoint::load_for_inference(&converted, Device::Cpu).unwrap();
        assert_eq!(loaded.meta.parameters, 21_491, "{file}");
        let wmae_out = tch::no_grad(|| {
            loaded
                .model
                .forward_t(&named(&io, "image"), &named(&io, "watermark_map"), false)
        });
        for (head, ours) in [
            ("watermarked", wmae_out.watermarked),
            ("extracted", wmae_out.watermark_map),
        ] {
            let keras = named(&io, &format!("{model}.{head}"));
            let diff = (ours - &keras).abs().max().double_value(&[]);
            // Keras and libtorch sum the convolutions in different orders (measured: at most
            // 1.5e-7 on these files).
            eprintln!("{file} {head}: wmae and Keras differ by at most {diff:e}");
            assert!(
                diff <= 1e-5,
                "{file} {head}: wmae and Keras' predict differ by {diff}"
            );
        }
    }
}

#[test]
fn keras_weights_of_another_model_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (file, expected) in [
        // The seed graph with convl2e 24 channels wide instead of 32.
        (
            "nonseed_24ch.weights.h5",
            &["layers/conv2d_1", "convl2e", "3x3x16x24", "3x3x16x32"][..],
        ),
        // Eleven 1-channel convolutions.
        (
            "nonseed_11conv.weights.h5",
            &["found 11 layers", "layers/conv2d_10", "the seed has 12"][..],
        ),
    ] {
        let h5 = keras_fixture(file);
        let converted = tmp.path().join(format!("{file}.safetensors"));
        let out = keras_to_wmae(&h5, &converted);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(!err.contains("Traceback"), "{file}: {err}");
        assert!(err.contains(h5.to_str().unwrap()), "{file}: {err}");
        for text in expected {
            assert!(err.contains(text), "{file}: {text:?} missing from: {err}");
        }
        assert!(!converted.exists(), "{file}: a refused file was converted");
    }
}
