//! Streaming `embed` and `extract` over many photos with the shipped photo model: every input
//! gets one JSON line, bad files are reported and counted without stopping the run, a run killed
//! with SIGKILL and resumed with --skip-existing ends with the outputs of an uninterrupted run,
//! shards cover the inputs exactly once, and bf16 keeps the bits where the CPU has bf16 units.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{stderr, stdout, synthetic_photo, wmae};
use serde_json::Value;

/// The photo model these tests stream with: the residual one, which marks photos this small (160
/// px) robustly enough for JPEG; the shipped, perceptually shaped model's change is too faint to
/// survive JPEG at that size (such photos fail with exit 3, as `embed` promises), and these
/// tests are about streaming, not about a model's reach (tests/photo_sync.rs is).
const RESIDUAL: &str = "checkpoints/photo-residual.ot";

/// `n` small photos in `dir`, some in a subfolder, PNG and JPEG.
fn photos(dir: &Path, n: u32) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    (0..n)
        .map(|i| {
            let name = match i % 3 {
                0 => format!("p{i:03}.png"),
                1 => format!("p{i:03}.jpg"),
                _ => format!("sub/p{i:03}.jpg"),
            };
            let path = dir.join(name);
            synthetic_photo(160 + 8 * (i % 5), 120 + 4 * (i % 7), i + 1)
                .save(&path)
                .unwrap();
            path
        })
        .collect()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Every file under `dir` (relative path -> bytes), hidden ones included.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn embed_args<'a>(input: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "embed",
        "--checkpoint",
        RESIDUAL,
        input,
        "--payload",
        "text:stream",
        "--out",
        out,
        "--jsonl",
    ]
}

#[test]
fn bad_files_are_reported_and_counted_and_the_rest_are_done() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let good = photos(&input, 4);
    std::fs::write(input.join("text.png"), b"not an image at all").unwrap();
    let jpeg = std::fs::read(
        good.iter()
            .find(|p| p.extension().unwrap() == "jpg")
            .unwrap(),
    )
    .unwrap();
    std::fs::write(input.join("cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    synthetic_photo(40, 300, 9)
        .save(input.join("thin.png"))
        .unwrap();
    let out = dir.path().join("out");
    let run = wmae(&embed_args(input.to_str().unwrap(), out.to_str().unwrap()));
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(3), "done with failures: {err}");
    let records = lines(&stdout(&run));
    assert_eq!(records.len(), 7, "one line per input");
    let failed: BTreeMap<String, String> = records
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| {
            (
                r["input"].as_str().unwrap().to_string(),
                r["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for (name, why) in [
        ("text.png", "not a PNG, JPEG, WebP or TIFF"),
        ("cut.jpg", "truncated JPEG"),
        ("thin.png", "at least 64 pixels"),
    ] {
        let (_, error) = failed
            .iter()
            .find(|(input, _)| input.ends_with(name))
            .unwrap();
        assert!(
            error.contains(name) && error.contains(why),
            "{name}: {error}"
        );
    }
    for r in records.iter().filter(|r| r["status"] == "ok") {
        let output = Path::new(r["output"].as_str().unwrap());
        assert!(output.is_file(), "{r}");
        assert!(r["psnr"].as_f64().unwrap() > 30.0, "{r}");
        let stages = r["stages"].as_object().unwrap();
        for stage in ["read", "decode", "model", "apply", "encode", "write"] {
            assert!(stages[stage].as_f64().unwrap() >= 0.0, "{r}");
        }
    }
    assert!(
        out.join("sub/p002.jpg").is_file(),
        "a folder's files keep their path"
    );
    assert!(err.contains("4 ok, 0 skipped, 3 failed of 7"), "{err}");
    assert!(
        tree(&out)
            .keys()
            .all(|k| !k.to_string_lossy().contains(".part")),
        "no part file left"
    );

    // Nothing to read at all: the run cannot start (1), unlike a run with failures (3).
    let run = wmae(&[
        "embed",
        "--checkpoint",
        RESIDUAL,
        "--input-list",
        dir.path().join("missing.txt").to_str().unwrap(),
        "--payload",
        "text:x",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("missing.txt"), "{}", stderr(&run));
}

#[test]
fn a_killed_run_resumed_with_skip_existing_ends_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    photos(&input, 60);
    let (whole, resumed) = (dir.path().join("whole"), dir.path().join("resumed"));
    let run = wmae(&[
        "--threads",
        "2",
        "embed",
        "--checkpoint",
        RESIDUAL,
        input.to_str().unwrap(),
        "--payload",
        "text:stream",
        "--out",
        whole.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let expected = tree(&whole);
    assert_eq!(expected.len(), 60);

    // Killed with SIGKILL once some outputs exist (at worst before any, or after all of them:
    // resuming has to end the same either way).
    let mut child = Command::new(env!("CARGO_BIN_EXE_wmae"))
        .args([
            "--threads",
            "1",
            "embed",
            "--checkpoint",
            RESIDUAL,
            input.to_str().unwrap(),
            "--payload",
            "text:stream",
            "--out",
            resumed.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < 60 {
        let done = std::fs::read_dir(&resumed).map(|d| d.count()).unwrap_or(0);
        if done >= 10 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = tree(&resumed);
    let finished = partial
        .keys()
        .filter(|k| !k.to_string_lossy().contains(".part"))
        .count();
    eprintln!(
        "killed with {finished} of 60 outputs written ({} files)",
        partial.len()
    );
    assert!(finished < 60, "killed before the end");
    for (name, bytes) in &partial {
        if !name.to_string_lossy().contains(".part") {
            assert_eq!(
                Some(bytes),
                expected.get(name),
                "{name:?}: an output is whole or absent"
            );
        }
    }

    // What a kill during a write leaves: a part file of a process that is gone, beside an output
    // not written yet and beside one a killed rewrite had finished.
    let pending = expected.keys().find(|k| !partial.contains_key(*k)).unwrap();
    let done = expected.keys().find(|k| partial.contains_key(*k)).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let gone = wmae::runtime::fsutil::Writer::on_this_host(gone.id());
    for name in [pending, done] {
        let part = wmae::runtime::fsutil::part_file_of(&resumed.join(name), &gone);
        std::fs::create_dir_all(part.parent().unwrap()).unwrap();
        std::fs::write(part, b"half a JPEG").unwrap();
    }

    let run = wmae(&[
        "--threads",
        "2",
        "embed",
        "--checkpoint",
        RESIDUAL,
        input.to_str().unwrap(),
        "--payload",
        "text:stream",
        "--out",
        resumed.to_str().unwrap(),
        "--skip-existing",
        "--jsonl",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let records = lines(&stdout(&run));
    let skipped = records.iter().filter(|r| r["status"] == "skipped").count();
    for r in records.iter().filter(|r| r["status"] == "skipped") {
        let ms = r["ms"].as_f64().unwrap();
        assert!(ms == 0.0 && ms.is_sign_positive(), "{r}");
    }
    assert_eq!(
        skipped, finished,
        "the finished outputs are skipped, not redone"
    );
    assert_eq!(
        tree(&resumed),
        expected,
        "same files, same bytes, no part file"
    );
}

#[test]
fn shards_cover_every_input_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let all = photos(&input, 24);
    // The inputs as a list, read from standard input, in another order than the folder walk.
    let list: String = all
        .iter()
        .rev()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    let expected: BTreeSet<String> = all.iter().map(|p| p.display().to_string()).collect();
    let shard_inputs = |extra: &[&str], env: &[(&str, &str)]| -> Vec<String> {
        let out = dir.path().join("out");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wmae"))
            .args([
                "embed",
                "--checkpoint",
                RESIDUAL,
                "--input-list",
                "-",
                "--payload",
                "text:s",
                "--out",
                out.to_str().unwrap(),
                "--jsonl",
                "--skip-existing",
            ])
            .args(extra)
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(list.as_bytes())
            .unwrap();
        let run = child.wait_with_output().unwrap();
        assert!(run.status.success(), "{extra:?} {env:?}: {}", stderr(&run));
        lines(&stdout(&run))
            .iter()
            .map(|r| r["input"].as_str().unwrap().to_string())
            .collect()
    };
    let check = |shards: Vec<Vec<String>>| {
        let mut seen = BTreeSet::new();
        for shard in &shards {
            for input in shard {
                assert!(seen.insert(input.clone()), "{input} in two shards");
            }
        }
        assert_eq!(seen, expected);
        assert!(
            shards.iter().filter(|s| !s.is_empty()).count() > 1,
            "the work is split"
        );
    };
    check(
        (0..3)
            .map(|i| shard_inputs(&["--shard", &format!("{i}/3")], &[]))
            .collect(),
    );
    // A Slurm array --array=1-4 (ids from 1), and a Kubernetes Indexed Job of 4 completions,
    // split the same way as --shard I/4.
    let slurm: Vec<Vec<String>> = (1..=4)
        .map(|id| {
            let id = id.to_string();
            shard_inputs(
                &[],
                &[
                    ("SLURM_ARRAY_TASK_ID", &id),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                    ("SLURM_ARRAY_TASK_MIN", "1"),
                ],
            )
        })
        .collect();
    let k8s: Vec<Vec<String>> = (0..4)
        .map(|i| {
            shard_inputs(
                &["--shards", "4"],
                &[("JOB_COMPLETION_INDEX", &i.to_string())],
            )
        })
        .collect();
    let flag: Vec<Vec<String>> = (0..4)
        .map(|i| shard_inputs(&["--shard", &format!("{i}/4")], &[]))
        .collect();
    let sorted = |v: &Vec<Vec<String>>| {
        v.iter()
            .map(|s| s.iter().cloned().collect::<BTreeSet<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(sorted(&slurm), sorted(&flag));
    assert_eq!(sorted(&k8s), sorted(&flag));
    check(flag);
    // More shards than inputs: the empty ones succeed with nothing to do.
    for i in 0..64 {
        shard_inputs(&["--shard", &format!("{i}/64")], &[]);
    }
}

#[test]
fn bf16_keeps_the_payload_where_the_cpu_has_bf16_units() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    photos(&input, 6);
    let has_bf16 = wmae::model::precision::has_bf16_units(&wmae::model::precision::cpu_flags());
    let embed = |precision: &str| {
        let out = dir.path().join(precision);
        let run = wmae(&[
            "--device",
            "cpu",
            "embed",
            "--checkpoint",
            RESIDUAL,
            input.to_str().unwrap(),
            "--payload",
            "text:bf16",
            "--out",
            out.to_str().unwrap(),
            "--jsonl",
            "--precision",
            precision,
            // The model alone: read-back checks could raise one precision's strength and not
            // the other's on a borderline photo.
            "--no-verify",
        ]);
        (run, out)
    };
    let (run, fp32) = embed("fp32");
    assert!(run.status.success(), "{}", stderr(&run));
    let fp32_lines = lines(&stdout(&run));
    let (run, bf16) = embed("bf16");
    if !has_bf16 {
        assert_eq!(run.status.code(), Some(1));
        assert!(
            stderr(&run).contains("neither AVX512-BF16 nor AMX-BF16"),
            "{}",
            stderr(&run)
        );
        eprintln!("this CPU has no bf16 units: checked the refusal only");
        return;
    }
    assert!(run.status.success(), "{}", stderr(&run));
    let psnr = |lines: &[Value], input: &str| {
        lines.iter().find(|l| l["input"] == input).unwrap()["psnr"]
            .as_f64()
            .unwrap()
    };
    let bf16_lines = lines(&stdout(&run));
    for l in &fp32_lines {
        let input = l["input"].as_str().unwrap();
        let (a, b) = (psnr(&fp32_lines, input), psnr(&bf16_lines, input));
        assert!(
            (a - b).abs() < 0.1,
            "{input}: PSNR {a} in fp32, {b} in bf16"
        );
    }
    for (out, precision) in [(&fp32, "bf16"), (&bf16, "fp32"), (&bf16, "bf16")] {
        let run = wmae(&[
            "--device",
            "cpu",
            "extract",
            "--checkpoint",
            RESIDUAL,
            out.to_str().unwrap(),
            "--jsonl",
            "--precision",
            precision,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        for l in lines(&stdout(&run)) {
            assert_eq!(l["text"], "bf16", "{precision} reading {l}");
        }
    }
}

/// The streaming options work with a digit checkpoint too: each 28x28 image file gets bits drawn
/// from the seed and its name (so a resumed run gives the same ones), written as PNG, read back
/// exactly; clean digits read as unmarked; and a resumed run ends identical.
#[test]
fn digit_models_stream_too() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("digits");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let split = wmae::io::data::dataset::load_split(
        &common::embedded_mnist(),
        wmae::io::data::dataset::Split::Test,
    )
    .unwrap();
    let images = split.images_tensor(tch::Device::Cpu);
    for i in 0..24 {
        let name = if i % 3 == 0 {
            format!("sub/d{i:02}.png")
        } else {
            format!("d{i:02}.png")
        };
        wmae::codec::gray::to_gray(&images.get(i))
            .save(input.join(name))
            .unwrap();
    }
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let embed = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "embed",
            input.to_str().unwrap(),
            "--random",
            "--out",
            out.to_str().unwrap(),
            "--jsonl",
        ];
        args.extend_from_slice(extra);
        let run = wmae(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        lines(&stdout(&run))
    };
    let embedded = embed(&a, &[]);
    assert_eq!(embedded.len(), 24);
    let bits: BTreeMap<String, String> = embedded
        .iter()
        .map(|l| {
            (
                l["output"].as_str().unwrap().to_string(),
                l["bits"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(a.join("sub/d00.png").is_file());
    // Half of them first (shard 0 of 2), then the rest with --skip-existing: as one run.
    embed(&b, &["--shard", "0/2"]);
    assert!(b.join("manifest-shard-0-of-2.json").is_file());
    let resumed = embed(&b, &["--skip-existing"]);
    assert!(resumed.iter().any(|l| l["status"] == "skipped"));
    // The same files, and a manifest.json listing the skipped outputs' bits too.
    let mut resumed_tree = tree(&b);
    resumed_tree.remove(Path::new("manifest-shard-0-of-2.json"));
    assert_eq!(tree(&a), resumed_tree);

    // A folder of image files is read with the photo model unless --model says digits.
    let run = wmae(&[
        "extract",
        "--model",
        "digits",
        a.to_str().unwrap(),
        "--jsonl",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    for l in lines(&stdout(&run)) {
        assert_eq!(l["watermark"], true, "{l}");
        assert_eq!(
            l["bits"].as_str(),
            bits.get(l["input"].as_str().unwrap()).map(String::as_str),
            "{l}"
        );
    }
    let run = wmae(&[
        "extract",
        "--model",
        "digits",
        input.to_str().unwrap(),
        "--jsonl",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(lines(&stdout(&run)).iter().all(|l| l["watermark"] == false));
}

/// Each output is read back from the file as written before it counts as done: a photo whose
/// payload does not read with at most half the code's corrections is embedded again at a
/// higher strength (up to twice --strength), and the record says so; `--no-verify` writes at the
/// strength given.
#[test]
fn embed_reads_each_output_back_and_raises_the_strength_where_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    photos(&input, 8);
    let out = dir.path().join("out");
    let embed = |extra: &[&str]| {
        let mut args = embed_args(input.to_str().unwrap(), out.to_str().unwrap());
        args.extend_from_slice(&["--strength", "0.3"]);
        args.extend_from_slice(extra);
        let run = wmae(&args);
        (run.status.code(), lines(&stdout(&run)))
    };
    let (code, records) = embed(&[]);
    // A photo that does not read back even at twice the strength is a failure: counted (exit 3),
    // its record says nothing was written, and nothing (no part file either) is left.
    let failed: Vec<&Value> = records.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(
        code,
        Some(if failed.is_empty() { 0 } else { 3 }),
        "{records:?}"
    );
    for r in &failed {
        assert_eq!(r["written"], false, "{r}");
        assert_eq!(r["strength"], 0.6, "{r}");
        assert!(
            r["error"].as_str().unwrap().contains("does not read back"),
            "{r}"
        );
        assert!(!Path::new(r["output"].as_str().unwrap()).exists(), "{r}");
    }
    let allowed = [0.3, 0.375, 0.45, 0.525, 0.6];
    let mut raised = 0;
    for r in &records {
        let strength = r["strength"].as_f64().unwrap();
        assert!(allowed.contains(&strength), "{r}");
        raised += usize::from(strength > 0.3);
        if strength < 0.6 {
            // It stopped early: it read back within half of the 29 corrections.
            assert_eq!(r["verified"], true, "{r}");
            assert!(r["corrected_bits"].as_u64().unwrap() <= 14, "{r}");
        }
    }
    assert!(
        raised > 0,
        "a third of the trained strength needs raising somewhere"
    );
    let run = wmae(&[
        "extract",
        out.to_str().unwrap(),
        "--jsonl",
        "--checkpoint",
        RESIDUAL,
    ]);
    let read: BTreeMap<String, Value> = lines(&stdout(&run))
        .into_iter()
        .map(|l| (l["input"].as_str().unwrap().to_string(), l))
        .collect();
    for r in records.iter().filter(|r| r["verified"] == true) {
        let back = &read[r["output"].as_str().unwrap()];
        assert_eq!(back["text"], "stream", "{r} read as {back}");
    }
    assert!(!tree(&out)
        .keys()
        .any(|f| f.to_string_lossy().contains(".part")));

    std::fs::remove_dir_all(&out).unwrap();
    let (code, records) = embed(&["--no-verify"]);
    assert_eq!(code, Some(0));
    for r in records {
        assert_eq!(r["strength"], 0.3, "{r}");
        assert!(r.get("verified").is_none(), "{r}");
    }
}

/// An output folder inside the input folder is left out of the walk: the run never reads its
/// own outputs back as inputs (nor writes outputs of outputs), in one run or the next.
#[test]
fn an_output_folder_inside_the_inputs_is_not_walked() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    photos(&input, 5);
    let out = input.join("marked");
    for extra in [&[][..], &["--skip-existing"][..]] {
        let mut args = embed_args(input.to_str().unwrap(), out.to_str().unwrap());
        args.extend_from_slice(extra);
        let run = wmae(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        let records = lines(&stdout(&run));
        assert_eq!(records.len(), 5, "{records:?}");
        assert!(records
            .iter()
            .all(|r| !r["input"].as_str().unwrap().contains("marked")));
    }
    assert_eq!(tree(&out).len(), 5);
}

/// `extract --search quick` reads photos as they were embedded, not their mirror images (which
/// the full search reads), and says so in a false-positive rate 8 times lower: 2,048 words a
/// photo (256 shifts at 4 offsets at up to two sides) against the full search's 16,384 (the
/// whole photo upright and mirrored at up to two sides, and 3 lattice candidates upright and
/// mirrored, each at two estimates of its geometry).
#[test]
fn the_quick_search_reads_photos_as_embedded_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let originals = photos(&input, 2);
    let out = dir.path().join("out");
    let run = wmae(&embed_args(input.to_str().unwrap(), out.to_str().unwrap()));
    assert!(run.status.success(), "{}", stderr(&run));
    let marked = out.join(originals[0].file_name().unwrap());
    let mirror = dir.path().join("mirror.png");
    image::open(&marked).unwrap().fliph().save(&mirror).unwrap();
    let read = |file: &Path, search: &str| -> Value {
        let run = wmae(&[
            "extract",
            file.to_str().unwrap(),
            "--jsonl",
            "--search",
            search,
            "--checkpoint",
            RESIDUAL,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        lines(&stdout(&run)).remove(0)
    };
    let (quick, full) = (read(&marked, "quick"), read(&marked, "full"));
    assert_eq!(quick["text"], "stream", "{quick}");
    assert_eq!(full["text"], "stream", "{full}");
    let ratio = full["false_positive_rate"].as_f64().unwrap()
        / quick["false_positive_rate"].as_f64().unwrap();
    assert!((ratio - 8.0).abs() < 1e-9, "{ratio}");
    assert_eq!(read(&mirror, "quick")["watermark"], false);
    assert_eq!(read(&mirror, "full")["mirrored"], true);
}

/// A file name that is not UTF-8 (JSON text cannot hold it) round-trips through `--jsonl`: the
/// record's `input_hex` and `output_hex` give the exact bytes of both paths, and the output is
/// there under them; names that are UTF-8 get no `_hex` field.
#[test]
fn non_utf8_names_round_trip_through_jsonl_records() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let odd = inputs.join(std::ffi::OsString::from_vec(b"caf\xe9-\xff.png".to_vec()));
    common::natural_photo(320, 240, 8).save(&odd).unwrap();
    common::natural_photo(320, 240, 9)
        .save(inputs.join("plain.png"))
        .unwrap();
    let out_dir = dir.path().join("out");
    let out = wmae(&[
        "embed",
        inputs.to_str().unwrap(),
        "--payload",
        "text:name",
        "--no-score",
        "--out",
        out_dir.to_str().unwrap(),
        "--jsonl",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let from_hex = |h: &str| -> PathBuf {
        let bytes: Vec<u8> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect();
        PathBuf::from(std::ffi::OsString::from_vec(bytes))
    };
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    for r in &records {
        if r["input"].as_str().unwrap().ends_with("plain.png") {
            assert!(
                r.get("input_hex").is_none() && r.get("output_hex").is_none(),
                "{r}"
            );
            continue;
        }
        let input = from_hex(r["input_hex"].as_str().expect("input_hex"));
        assert_eq!(input.as_os_str().as_bytes(), odd.as_os_str().as_bytes());
        let output = from_hex(r["output_hex"].as_str().expect("output_hex"));
        assert!(output.is_file(), "{r}");
        let read = wmae(&["extract", output.to_str().unwrap_or_default()]);
        // The lossy text cannot name the file; the bytes can.
        assert!(!read.status.success());
        let read = Command::new(env!("CARGO_BIN_EXE_wmae"))
            .arg("extract")
            .arg(&output)
            .arg("--json")
            .output()
            .unwrap();
        assert!(read.status.success(), "{}", stderr(&read));
        let reading: Value = serde_json::from_str(stdout(&read).trim()).unwrap();
        assert_eq!(reading["text"], "name", "{reading}");
        assert!(reading["input_hex"].is_string(), "{reading}");
    }
}

/// One output, one writer: two runs of the same shard into one folder (a requeued task beside the
/// one still running), embedding different payloads. The first is paused (SIGSTOP) as soon as it
/// has a part file (or, if its writes are too quick to catch, between two outputs), the second
/// runs to the end, then the first goes on. Every output is then one run's whole file, as that
/// run alone writes it, and no part file is left.
#[test]
fn two_runs_of_one_shard_into_one_folder_never_mix_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    photos(&input, 12);
    let args = |payload: &'static str, out: &Path| -> Vec<String> {
        [
            "--threads",
            "1",
            "embed",
            "--checkpoint",
            RESIDUAL,
            input.to_str().unwrap(),
            "--payload",
            payload,
            "--out",
            out.to_str().unwrap(),
            "--shard",
            "0/1",
        ]
        .map(String::from)
        .to_vec()
    };
    // What each run writes alone.
    let alone = |payload: &'static str, name: &str| {
        let out = dir.path().join(name);
        let a: Vec<String> = args(payload, &out);
        let run = wmae(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(run.status.success(), "{}", stderr(&run));
        tree(&out)
    };
    let (only_first, only_second) = (alone("text:first", "a"), alone("text:second", "b"));
    assert_eq!(only_first.len(), 12);
    assert!(only_first.iter().all(|(k, v)| only_second[k] != *v));

    let shared = dir.path().join("shared");
    let mut first = Command::new(env!("CARGO_BIN_EXE_wmae"))
        .args(args("text:first", &shared))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id() as libc::pid_t;
    let started = std::time::Instant::now();
    let at_part_file = loop {
        let names: Vec<String> = std::fs::read_dir(&shared)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let at_part_file = names.iter().any(|n| n.ends_with(".part"));
        if at_part_file || names.len() > 1 || started.elapsed().as_secs() > 60 {
            break at_part_file;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    };
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let paused = tree(&shared);
    eprintln!(
        "first run paused {} ({} files)",
        if at_part_file {
            "with a part file open"
        } else {
            "between outputs"
        },
        paused.len()
    );
    let second: Vec<String> = args("text:second", &shared);
    let run = wmae(&second.iter().map(String::as_str).collect::<Vec<_>>());
    // SAFETY: as above; the child is stopped, not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(first.wait().unwrap().success());
    let end = tree(&shared);
    assert_eq!(
        end.keys().collect::<Vec<_>>(),
        only_first.keys().collect::<Vec<_>>(),
        "the same outputs and no part file"
    );
    for (name, bytes) in &end {
        assert!(
            *bytes == only_first[name] || *bytes == only_second[name],
            "{name:?} is neither run's whole output"
        );
    }
}
