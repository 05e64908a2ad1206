//! The binary as users run it: help, device errors, data errors, the rpath.

mod common;

use common::{stderr, stdout, wmae};

#[test]
fn help_lists_every_subcommand_and_global_option() {
    let out = wmae(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for word in [
        "train", "embed", "extract", "evaluate", "export", "bench", "data",
    ] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
    for opt in ["--device", "--threads", "--seed", "--verbose"] {
        assert!(text.contains(opt), "--help lacks {opt}: {text}");
    }
}

/// Runs without LD_LIBRARY_PATH (see common::wmae): libtorch is found through the rpath alone.
#[test]
fn data_info_runs_on_the_embedded_digits_through_the_rpath() {
    let dir = common::embedded_mnist();
    let out = wmae(&[
        "--device",
        "cpu",
        "--threads",
        "1",
        "data",
        "info",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("8000 images [8000, 1, 28, 28]"), "{text}");
    assert!(text.contains("2000 images [2000, 1, 28, 28]"), "{text}");
    assert!(text.contains("cpu (1 threads)"), "{text}");
}

#[test]
fn cuda_without_a_usable_gpu_fails_at_once_naming_the_fix() {
    if wmae::runtime::device::cuda_usable() {
        eprintln!("a GPU is usable here; the CPU-only failure path cannot be exercised");
        return;
    }
    let out = wmae(&["--device", "cuda", "data", "info"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--device cuda"), "{err}");
    assert!(
        err.contains("scripts/setup-libtorch cuda") || err.contains("sees no GPU"),
        "{err}"
    );
}

#[test]
fn auto_device_falls_back_to_cpu_without_a_gpu() {
    if wmae::runtime::device::cuda_usable() {
        return;
    }
    let dir = common::embedded_mnist();
    let out = wmae(&[
        "--device",
        "auto",
        "data",
        "info",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("device   cpu"));
}

#[test]
fn missing_data_folder_is_named() {
    let out = wmae(&[
        "--device",
        "cpu",
        "data",
        "info",
        "--data-dir",
        "/nonexistent/wmae-data",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/wmae-data") && err.contains("scripts/fetch-data"),
        "{err}"
    );
}

#[test]
fn bad_option_values_are_rejected() {
    let out = wmae(&["--device", "tpu", "data", "info"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("possible values: cpu, cuda, auto"));
    let out = wmae(&["--threads", "0", "data", "info"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--threads 0"));
}

#[test]
fn corrupt_data_file_gives_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(dir.path().join(name), b"garbage!").unwrap();
    }
    let out = wmae(&[
        "--device",
        "cpu",
        "data",
        "info",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("wrong magic number"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `wmae --device cpu bench --steps 1 --warmup 0 --repeats 1 --json OPTIONS`, parsed.
fn bench_json(options: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--device",
        "cpu",
        "bench",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--json",
    ];
    args.extend_from_slice(options);
    let out = wmae(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn bench_prints_figures_as_json() {
    let v = bench_json(&["--train-batch", "8", "--infer-batch", "8,16"]);
    let figures = v["figures"].as_array().unwrap();
    let kinds: Vec<(String, i64)> = figures
        .iter()
        .map(|f| {
            (
                f["what"].as_str().unwrap().to_string(),
                f["batch"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("train".into(), 8),
            ("infer".into(), 8),
            ("infer".into(), 16),
            ("embed+read".into(), 8),
            ("embed+read".into(), 16)
        ]
    );
    assert!(figures
        .iter()
        .all(|f| f["images_per_s"].as_f64().unwrap() > 0.0));
    // The CPU defaults, and the allocator setting the binary made at start.
    assert_eq!(v["kernel_layout"], "nhwc");
    assert_eq!(v["dropout_mask"], "packed-bits");
    assert_eq!(v["keeps_freed_memory"], true);
}

#[test]
fn bench_refuses_empty_batches() {
    for option in ["--train-batch", "--infer-batch"] {
        let err = common::failure(&["--device", "cpu", "bench", option, "0"]);
        assert!(err.contains("at least 1 (got 0)"), "{err}");
    }
}

#[test]
fn bench_reports_the_variant_it_measured() {
    let v = bench_json(&[
        "--train-batch",
        "4",
        "--infer-batch",
        "4",
        "--kernel-layout",
        "nchw",
        "--dropout-mask",
        "bernoulli",
    ]);
    assert_eq!(v["kernel_layout"], "nchw");
    assert_eq!(v["dropout_mask"], "bernoulli");
}

#[test]
fn export_refuses_an_unknown_extension() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.pt");
    let o = wmae(&["export", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("model.pt: the extension must be .ot or .safetensors"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// The 2,000 embedded test digits watermarked with random bits by the shipped model, as PNG
/// files in `dir/name` with their manifest.
fn marked_test_digits(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let out_dir = dir.join(name);
    let mnist = common::embedded_mnist().join("t10k-images-idx3-ubyte.gz");
    let out = wmae(&[
        "embed",
        "--random",
        "--out",
        out_dir.to_str().unwrap(),
        mnist.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    out_dir
}

/// Which shipped model `extract` reads with is a rule on the command line, never a guess from an
/// image's size: digit arrays and no input mean digits, image files mean photos, and
/// `--model` says it outright. A digit PNG read as a photo is refused with the way out named.
#[test]
fn extract_picks_its_model_by_the_rule_in_help() {
    let help = stdout(&wmae(&["extract", "--help"]));
    assert!(
        help.contains("--model <KIND>") && help.contains("digits"),
        "{help}"
    );
    let dir = tempfile::tempdir().unwrap();
    let marked = marked_test_digits(dir.path(), "marked");
    let digit = marked.join("t10k-images-idx3-ubyte-00000.png");
    let digit = digit.to_str().unwrap();
    // An image file without --model goes to the photo model, which names the way out.
    let out = wmae(&["extract", digit]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--model digits") && err.contains(digit),
        "{err}"
    );
    // --model digits reads it; so does the manifest (it scores digits).
    let out = wmae(&["extract", "--model", "digits", digit, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"watermark\":true"),
        "{}",
        stdout(&out)
    );
    let manifest = marked.join("manifest.json");
    let out = wmae(&["extract", digit, "--manifest", manifest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // --model and --checkpoint exclude each other.
    let out = wmae(&["extract", "--model", "photo", "--checkpoint", "x.ot", digit]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A folder is walked the same way by every command: a nested tree of digit PNGs embeds with
/// or without the streaming options (hidden folders left out in both), where the batch path
/// used to read only the top level and answer "no PNG or JPEG files".
#[test]
fn a_nested_folder_embeds_with_and_without_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let flat = marked_test_digits(dir.path(), "flat");
    let tree = dir.path().join("tree");
    for (i, sub) in ["a", "a/b", "c", ".hidden"].iter().enumerate() {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
        for k in 0..3 {
            let name = format!("t10k-images-idx3-ubyte-{:05}.png", 3 * i + k);
            std::fs::copy(flat.join(&name), tree.join(sub).join(&name)).unwrap();
        }
    }
    let tree = tree.to_str().unwrap();
    let batch = dir.path().join("batch");
    let out = wmae(&["embed", tree, "--random", "--out", batch.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("embedded 9 watermark(s)"),
        "{}",
        stdout(&out)
    );
    let streamed = dir.path().join("streamed");
    let out = wmae(&[
        "embed",
        tree,
        "--random",
        "--out",
        streamed.to_str().unwrap(),
        "--jsonl",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 9, "{}", stdout(&out));
}
