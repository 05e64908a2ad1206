//! End-to-end training runs on a slice of the embedded digits: the run folder, reproducibility,
//! resume, TensorBoard files read by TensorBoard itself, and config errors.

mod common;

use std::path::Path;
use std::process::Command;

use common::{stderr, wmae};

fn train(config: &Path, out: &Path, extra: &[&str]) {
    let o = wmae(&common::train_args(config, out, extra));
    assert!(o.status.success(), "train failed: {}", stderr(&o));
}

/// The tensors of a checkpoint (its metadata apart), in name order.
fn tensors(path: &Path) -> wmae::io::checkpoint::NamedTensors {
    wmae::io::checkpoint::read(path).unwrap().tensors
}

fn metadata(path: &Path) -> wmae::io::checkpoint::Metadata {
    wmae::io::checkpoint::read_with_metadata(path).unwrap().1
}

#[test]
fn run_folder_holds_config_metrics_events_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 2);
    let run = tmp.path().join("run");
    train(&config, &run, &[]);
    for f in [
        "config.toml",
        "metrics.csv",
        "last.ot",
        "best.ot",
        "test_metrics.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(".tmp")),
        "temporary files left: {names:?}"
    );

    // The resolved config reloads; metrics.csv has a header and one row per epoch.
    wmae::learning::config::Config::load(&run.join("config.toml")).unwrap();
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(common::csv_column(&csv, "epoch"), [1.0, 2.0]);
    for column in ["lr", "train_loss", "val_bit_accuracy", "val_psnr"] {
        assert_eq!(common::csv_column(&csv, column).len(), 2, "{column}");
    }

    // Metadata rebuilds the model; best.ot holds exactly the 24 model tensors, last.ot adds
    // Adadelta's two accumulators per variable.
    let meta = metadata(&run.join("best.ot"));
    assert_eq!(meta.parameters, 21_491);
    assert_eq!(meta.layout, wmae::message::layout::Layout::default());
    assert_eq!(tensors(&run.join("best.ot")).len(), 24);
    assert_eq!(tensors(&run.join("last.ot")).len(), 72);
    assert_eq!(metadata(&run.join("last.ot")).epoch, 2);
}

#[test]
fn same_seed_gives_identical_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 2);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train(&config, &a, &[]);
    train(&config, &b, &[]);
    let csv_a = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    assert_eq!(
        csv_a,
        std::fs::read_to_string(b.join("metrics.csv")).unwrap()
    );
    // And the run learned something: validation loss fell.
    let val_loss = common::csv_column(&csv_a, "val_loss");
    assert!(val_loss[1] < val_loss[0], "{val_loss:?}");
}

#[test]
fn resume_ends_with_the_weights_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 3);
    let (whole, resumed) = (tmp.path().join("whole"), tmp.path().join("resumed"));
    train(&config, &whole, &[]);
    train(&config, &resumed, &["--stop-after", "1"]);
    assert_eq!(metadata(&resumed.join("last.ot")).epoch, 1);
    train(&config, &resumed, &["--resume"]);
    let (a, b) = (
        tensors(&whole.join("last.ot")),
        tensors(&resumed.join("last.ot")),
    );
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    assert_eq!(
        std::fs::read_to_string(whole.join("metrics.csv")).unwrap(),
        std::fs::read_to_string(resumed.join("metrics.csv")).unwrap()
    );
}

/// `--resume` continues the run it finds: under a changed config it stops and says how to go
/// on (the saved config, or a new folder), and leaves the run as it was; a longer epoch count
/// is the one change it takes.
#[test]
fn resume_under_a_changed_config_is_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 2);
    let run = tmp.path().join("run");
    train(&config, &run, &["--stop-after", "1"]);
    let before = std::fs::read(run.join("last.ot")).unwrap();
    let changed = tmp.path().join("changed.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &changed,
        text.replace("image_weight = 10.0", "image_weight = 20.0"),
    )
    .unwrap();
    let out = wmae(&common::train_args(&changed, &run, &["--resume"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    let saved = run.join("config.toml");
    for part in [
        "--resume",
        changed.to_str().unwrap(),
        saved.to_str().unwrap(),
        "--config",
        "new --out",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert_eq!(std::fs::read(run.join("last.ot")).unwrap(), before);
    // The saved config resumes it, with more epochs than first planned.
    train(&saved, &run, &["--resume", "--epochs", "3"]);
    assert_eq!(metadata(&run.join("last.ot")).epoch, 3);
}

#[test]
fn tensorboard_reads_the_event_files() {
    // scripts/setup-python installs TensorBoard's reader in the project's .venv.
    let python = common::python();
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 2);
    let run = tmp.path().join("run");
    // Stopped after epoch 1 and resumed at once (within the same second, most likely): the
    // resumed process writes a file of its own and epoch 1 stays.
    train(&config, &run, &["--stop-after", "1"]);
    train(&config, &run, &["--resume"]);
    let script = format!(
        "{}/scripts/check_tensorboard.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(&run)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("tensorboard ok: 21 scalar tags, 42 values"),
        "{text}"
    );
}

#[test]
fn config_errors_exit_non_zero_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 2);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("batch_size = 64", "batch_sise = 64");
    std::fs::write(&config, text).unwrap();
    let o = wmae(&[
        "--device",
        "cpu",
        "train",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("tiny.toml") && e.contains("unknown field `batch_sise`"),
        "{e}"
    );

    let o = wmae(&[
        "--device",
        "cpu",
        "train",
        "--config",
        common::tiny_config(tmp.path(), 2).to_str().unwrap(),
        "--lr",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("optimizer.lr = 0"), "{}", stderr(&o));

    // A batch larger than the data would train nothing.
    for batch in ["257", "18446744073709551615"] {
        let e = common::failure(&[
            "--device",
            "cpu",
            "train",
            "--config",
            common::tiny_config(tmp.path(), 2).to_str().unwrap(),
            "--out",
            tmp.path().join("big-batch").to_str().unwrap(),
            "--batch-size",
            batch,
        ]);
        assert!(
            e.contains(&format!("train.batch_size = {batch}")) && e.contains("256 training images"),
            "{e}"
        );
    }
}

#[test]
fn init_starts_from_trained_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 1);
    // The first shipped model: a block layout on the seed graph, as the tiny config trains.
    let shipped = format!("{}/checkpoints/stamp.ot", env!("CARGO_MANIFEST_DIR"));
    let run = tmp.path().join("finetune");
    train(&config, &run, &["--init", &shipped, "--lr", "0.01"]);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let bits = common::csv_column(&csv, "val_bit_accuracy")[0];
    // One tiny epoch from scratch reads about half the bits; from the shipped model, all of them.
    assert!(bits > 0.99, "validation bit accuracy after --init: {bits}");
}

/// A new extractor for a trained embedder: `seed-jnd-wide` started by `--init` from a model of
/// another graph takes the variables the two share (the encoder and decoder), names those that
/// start fresh and those left unused, and with `train.freeze_embedder` trains the extractor
/// alone: the embedder's weights come out bit for bit as they went in, and the checkpoint loads
/// for inference with its whole parameter count.
#[test]
fn a_frozen_embedder_keeps_its_weights_while_a_new_extractor_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = common::tiny_config(tmp.path(), 1);
    let text = std::fs::read_to_string(&tiny).unwrap().replace(
        "[train]",
        "[model]\narchitecture = \"seed-jnd-wide\"\n[train]\nfreeze_embedder = true",
    );
    let config = tmp.path().join("wide.toml");
    std::fs::write(&config, text).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/stamp.ot");
    let run = tmp.path().join("wide");
    let o = wmae(&common::train_args(
        &config,
        &run,
        &["--init", shipped.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = common::stdout(&o);
    assert!(
        out.contains("fresh variables [\"wide_out.bias\"")
            && out.contains("unused variables [\"conl1w.bias\""),
        "{out}"
    );
    assert!(out.contains("trained, the embedder frozen"), "{out}");

    let before = tensors(&shipped);
    let after = tensors(&run.join("best.ot"));
    let embedder = |name: &str| {
        [
            "convl1e",
            "convl2e",
            "convl3e",
            "reconstructed_I",
            "convl1d",
            "convl2d",
            "convl3d",
            "decoder_output",
        ]
        .iter()
        .any(|layer| name.starts_with(&format!("{layer}.")))
    };
    let mut compared = 0;
    for (name, t) in after.iter().filter(|(n, _)| embedder(n)) {
        let (_, old) = before.iter().find(|(n, _)| n == name).unwrap();
        assert!(t.equal(old), "{name} changed under a frozen embedder");
        compared += 1;
    }
    assert_eq!(
        compared, 16,
        "the encoder's and decoder's weights and biases"
    );
    assert!(after.iter().any(|(n, _)| n == "wide_w5.weight"));
    assert!(!after.iter().any(|(n, _)| n.starts_with("conl1w")));

    // Frozen without --init would train a reader for a random embedder: refused, naming both.
    let o = wmae(&common::train_args(
        &config,
        &tmp.path().join("no-init"),
        &[],
    ));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("freeze_embedder") && err.contains("--init"),
        "{err}"
    );

    let loaded =
        wmae::io::checkpoint::load_for_inference(&run.join("best.ot"), tch::Device::Cpu).unwrap();
    assert_eq!(loaded.meta.architecture, "seed-jnd-wide");
    let total: i64 = after.iter().map(|(_, t)| t.numel() as i64).sum();
    assert_eq!(loaded.meta.parameters, total);
}
