//! Faults a tester injects: crafted and mutated checkpoints and arrays (seeded, bounded fuzzing
//! of the real binary under a 4 GiB memory limit), runs killed while they save, a disk that
//! fills up during a save, and two processes writing into one folder. wmae must answer each with
//! a clean error (exit status 1, no panic, no abort, no partial file) or with correct results.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use wmae::codec::gray;

use wmae::io::checkpoint::{self, Metadata};
use wmae::io::data::dataset::{load_split, Split};

use common::{gzip, idx_header, mutate, npy_header, Rng};

/// The first shipped model: a block layout, whose metadata has rows, cols, top and left.
fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/stamp.ot")
}

/// The shipped default: a spread layout.
fn spread_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/default.ot")
}

/// Runs wmae with `args` under a 4 GiB address-space limit (a runaway allocation fails instead of
/// taking the machine) and, when given, a file-size limit standing in for a full disk.
fn wmae_limited(args: &[&str], file_size_limit: Option<u64>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wmae"));
    cmd.args(args).env_remove("LD_LIBRARY_PATH");
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let address_space = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &address_space);
            if let Some(limit) = file_size_limit {
                let size = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &size);
                // A write past the limit then fails with EFBIG, as one on a full disk fails with
                // ENOSPC, instead of killing the process with SIGXFSZ.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    cmd.output().expect("cannot start the wmae binary")
}

/// The run must have ended by itself with status 0 or 1 and without a panic.
fn assert_clean(out: &Output, what: &str) {
    let err = common::stderr(out);
    assert!(
        matches!(out.status.code(), Some(0 | 1 | 3)),
        "{what}: ended with {:?} (signal {:?}): {err}",
        out.status.code(),
        out.status.signal()
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
}

/// One embedded test digit as a PNG file.
fn digit_png(dir: &Path) -> PathBuf {
    let split = load_split(&common::embedded_mnist(), Split::Test).unwrap();
    let path = dir.join("digit.png");
    gray::write_png(
        &path,
        &gray::to_gray(&split.images_tensor(tch::Device::Cpu).get(0)),
    )
    .unwrap();
    path
}

fn extract_with(checkpoint: &Path, input: &Path) -> Output {
    wmae_limited(
        &[
            "--device",
            "cpu",
            "--threads",
            "1",
            "extract",
            input.to_str().unwrap(),
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ],
        None,
    )
}

/// The shipped model as a .safetensors file with its metadata JSON edited by `edit`.
fn safetensors_with_metadata(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> PathBuf {
    let (named, meta) = checkpoint::read_with_metadata(&shipped()).unwrap();
    let mut json = serde_json::to_value(&meta).unwrap();
    edit(&mut json);
    let path = dir.join(name);
    let info = [("wmae".to_string(), json.to_string())]
        .into_iter()
        .collect();
    checkpoint::write_safetensors(&path, &named, info).unwrap();
    path
}

#[test]
fn crafted_metadata_is_refused_naming_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let input = digit_png(tmp.path());
    let big = i64::MAX;
    let cases: Vec<(&str, &str, serde_json::Value, &str)> = vec![
        ("layout", "rows", (-1).into(), "rows and cols"),
        ("layout", "rows", 0.into(), "rows and cols"),
        ("layout", "rows", 1000.into(), "does not fit"),
        ("layout", "top", (-1).into(), "does not fit"),
        ("layout", "top", 27.into(), "does not fit"),
        ("layout", "top", big.into(), "does not fit"),
        ("layout", "left", big.into(), "does not fit"),
        ("layout", "width", 1000.into(), "28x28"),
        ("layout", "height", 29.into(), "28x28"),
        ("", "architecture", "unet".into(), "architecture"),
        ("", "format", "wmae-checkpoint-9".into(), "format"),
        ("", "parameters", 5.into(), "parameters"),
        ("", "head", "step".into(), "metadata"),
        ("layout", "kind", "tiles".into(), "metadata"),
    ];
    for (i, (table, field, value, message)) in cases.into_iter().enumerate() {
        let edit = |json: &mut serde_json::Value| {
            let target = if table.is_empty() {
                &mut *json
            } else {
                &mut json[table]
            };
            target[field] = value.clone();
        };
        // The same lie in a safetensors header and inside an .ot file.
        let st = safetensors_with_metadata(tmp.path(), &format!("case{i}.safetensors"), edit);
        let mut meta =
            serde_json::to_value(checkpoint::read_with_metadata(&shipped()).unwrap().1).unwrap();
        edit(&mut meta);
        let ot = tmp.path().join(format!("case{i}.ot"));
        // (An unknown head cannot even be put into Metadata: the .safetensors case covers it.)
        if let Ok(meta) = serde_json::from_value::<Metadata>(meta) {
            let (named, _) = checkpoint::read_with_metadata(&shipped()).unwrap();
            checkpoint::save_ot(&ot, &named, &meta).unwrap();
        }
        for path in [&st, &ot].into_iter().filter(|p| p.exists()) {
            let out = extract_with(path, &input);
            assert_clean(&out, &format!("{table}.{field} = {value}"));
            let err = common::stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{table}.{field} = {value}: {err}"
            );
            assert!(
                err.contains(path.file_name().unwrap().to_str().unwrap()) && err.contains(message),
                "{table}.{field} = {value} in {}: {err}",
                path.display()
            );
        }
    }
}

/// The shipped photo model: a tile layout, and a config with a payload in its metadata.
fn photo_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/photo.ot")
}

/// `source` with its metadata JSON edited by `edit`, as `NAME.safetensors` and, when the edit
/// still makes a `Metadata`, as `NAME.ot`.
fn crafted_pair(
    dir: &Path,
    source: &Path,
    name: &str,
    edit: &dyn Fn(&mut serde_json::Value),
) -> Vec<PathBuf> {
    let (named, meta) = checkpoint::read_with_metadata(source).unwrap();
    let mut json = serde_json::to_value(&meta).unwrap();
    edit(&mut json);
    let st = dir.join(format!("{name}.safetensors"));
    let info = [("wmae".to_string(), json.to_string())]
        .into_iter()
        .collect();
    checkpoint::write_safetensors(&st, &named, info).unwrap();
    let mut paths = vec![st];
    if let Ok(meta) = serde_json::from_value::<Metadata>(json) {
        let ot = dir.join(format!("{name}.ot"));
        checkpoint::save_ot(&ot, &named, &meta).unwrap();
        paths.push(ot);
    }
    paths
}

/// Numbers at the ends of their types (and NaN, zero, negative ones) in every metadata field,
/// the layout's and the config's: each is a clean error naming the file and the field.
#[test]
fn extreme_numbers_in_metadata_are_refused_naming_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let digit = digit_png(tmp.path());
    let photo = tmp.path().join("photo.png");
    common::synthetic_photo(256, 192, 5).save(&photo).unwrap();
    let (max, min) = (i64::MAX, i64::MIN);
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let set = |table: &'static str, field: &'static str, value: serde_json::Value| -> Edit {
        Box::new(move |json: &mut serde_json::Value| {
            let target = if table.is_empty() {
                &mut *json
            } else {
                &mut json[table]
            };
            target[field] = value.clone();
        })
    };
    // A line of the config TOML kept in the metadata replaced (or added after `from`).
    let config = |from: &'static str, to: String| -> Edit {
        Box::new(move |json: &mut serde_json::Value| {
            let text = json["config"].as_str().unwrap().to_string();
            assert!(text.contains(from), "{from:?} not in the config");
            json["config"] = text.replacen(from, &to, 1).into();
        })
    };
    let cases: Vec<(PathBuf, Edit, String)> = vec![
        (
            spread_model(),
            set("layout", "bits", max.into()),
            format!("bits = {max}"),
        ),
        (
            spread_model(),
            set("layout", "bits", min.into()),
            format!("bits = {min}"),
        ),
        (
            spread_model(),
            set("layout", "cell", max.into()),
            format!("cell = {max}"),
        ),
        (
            spread_model(),
            set("layout", "cell", min.into()),
            format!("cell = {min}"),
        ),
        (
            spread_model(),
            set("layout", "search", max.into()),
            format!("search = {max}"),
        ),
        (
            spread_model(),
            set("layout", "search", min.into()),
            format!("search = {min}"),
        ),
        (
            spread_model(),
            set("layout", "height", max.into()),
            "height and width".into(),
        ),
        (
            spread_model(),
            set("layout", "width", min.into()),
            "height and width".into(),
        ),
        (
            spread_model(),
            set("layout", "width", 0.into()),
            "height and width".into(),
        ),
        (
            spread_model(),
            set("", "parameters", max.into()),
            "parameters".into(),
        ),
        (
            spread_model(),
            set("", "parameters", min.into()),
            "parameters".into(),
        ),
        (
            spread_model(),
            set("", "epoch", u64::MAX.into()),
            format!("epoch = {}", u64::MAX),
        ),
        (
            spread_model(),
            set("", "best_validation_loss", (-1e308).into()),
            "best_validation_loss".into(),
        ),
        (
            spread_model(),
            set("calibration", "mean", 1e300.into()),
            "calibration mean".into(),
        ),
        (
            spread_model(),
            set("calibration", "std", (-1.0).into()),
            "calibration mean".into(),
        ),
        (
            shipped(),
            set("layout", "rows", max.into()),
            "does not fit".into(),
        ),
        (
            shipped(),
            set("layout", "cols", max.into()),
            "does not fit".into(),
        ),
        (
            shipped(),
            set("layout", "rows", min.into()),
            "rows and cols".into(),
        ),
        (
            photo_model(),
            set("layout", "bits", max.into()),
            format!("bits = {max}"),
        ),
        (
            photo_model(),
            set("layout", "tile", max.into()),
            format!("tile = {max}"),
        ),
        (
            photo_model(),
            set("layout", "tile", min.into()),
            format!("tile = {min}"),
        ),
        (
            photo_model(),
            set("layout", "height", max.into()),
            "height and width".into(),
        ),
        (
            photo_model(),
            set("layout", "key", u64::MAX.into()),
            String::new(),
        ),
        (
            photo_model(),
            config("payload_bits = 64", "payload_bits = 7".into()),
            "watermark.payload_bits = 7".into(),
        ),
        (
            photo_model(),
            config("payload_bits = 64", format!("payload_bits = {max}")),
            format!("watermark.payload_bits = {max}"),
        ),
        (
            photo_model(),
            config("payload_bits = 64", "payload_bits = -8".into()),
            "payload_bits".into(),
        ),
        (
            photo_model(),
            config("\nsize = 128", "\nsize = 0".into()),
            "watermark.size = 0".into(),
        ),
        (
            photo_model(),
            config("\nsize = 128", format!("\nsize = {max}")),
            format!("watermark.size = {max}"),
        ),
        (
            photo_model(),
            config("\nsize = 128", format!("\nsize = {min}")),
            format!("watermark.size = {min}"),
        ),
        (
            photo_model(),
            config("photo_size = 256", format!("photo_size = {max}")),
            format!("watermark.photo_size = {max}"),
        ),
        (
            photo_model(),
            config("photo_size = 256", "photo_size = -1".into()),
            "watermark.photo_size = -1".into(),
        ),
        (
            photo_model(),
            config("\ntile = 16", format!("\ntile = {max}")),
            format!("tile = {max}"),
        ),
        (
            photo_model(),
            config("\nrows = 16", format!("\nrows = {max}")),
            "bits = ".into(),
        ),
        (
            photo_model(),
            config("jnd_fraction = 0.12", "jnd_fraction = nan".into()),
            "model.jnd_fraction = NaN".into(),
        ),
        (
            photo_model(),
            config("jnd_fraction = 0.12", "jnd_fraction = inf".into()),
            "model.jnd_fraction = inf".into(),
        ),
        (
            photo_model(),
            config(
                "jnd_fraction = 0.12",
                "jnd_fraction = 0.12\njnd_flat_weight = 0".into(),
            ),
            "model.jnd_flat_weight = 0".into(),
        ),
        (
            photo_model(),
            config("shift_max = 2", format!("shift_max = {max}")),
            format!("noise.shift_max = {max}"),
        ),
    ];
    for (i, (source, edit, message)) in cases.into_iter().enumerate() {
        let input = if source == photo_model() {
            &photo
        } else {
            &digit
        };
        for path in crafted_pair(tmp.path(), &source, &format!("extreme{i}"), &*edit) {
            let out = extract_with(&path, input);
            let what = format!("case {i} ({message}) in {}", path.display());
            assert_clean(&out, &what);
            let err = common::stderr(&out);
            if message.is_empty() {
                // Any key is a key: the model loads and reads.
                assert_eq!(out.status.code(), Some(0), "{what}: {err}");
                continue;
            }
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert!(
                err.contains(path.file_name().unwrap().to_str().unwrap()) && err.contains(&message),
                "{what}: {err}"
            );
        }
    }
}

/// A truncated or random `.ot` (or `.safetensors`) is one line naming the file, without
/// libtorch's C++ frame list.
#[test]
fn corrupt_checkpoints_are_one_clean_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = digit_png(tmp.path());
    let bytes = std::fs::read(spread_model()).unwrap();
    let mut rng = Rng(5);
    let random: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let st = tmp.path().join("whole.safetensors");
    let (named, meta) = checkpoint::read_with_metadata(&spread_model()).unwrap();
    checkpoint::save_safetensors(&st, &named, &meta).unwrap();
    let st_bytes = std::fs::read(&st).unwrap();
    for (name, content) in [
        ("truncated.ot", bytes[..bytes.len() / 3].to_vec()),
        ("random.ot", random.clone()),
        ("empty.ot", Vec::new()),
        (
            "truncated.safetensors",
            st_bytes[..st_bytes.len() / 3].to_vec(),
        ),
        ("random.safetensors", random),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).unwrap();
        let out = extract_with(&path, &input);
        assert_clean(&out, name);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(
            err.contains(name) && err.contains("not a") && !err.contains("frame #"),
            "{name}: {err}"
        );
        assert!(!err.contains("Exception raised"), "{name}: {err}");
    }
}

#[test]
fn crafted_spread_layouts_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = digit_png(tmp.path());
    let (named, meta) = checkpoint::read_with_metadata(&spread_model()).unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("bits", 1000.into(), "bits = 1000"),
        ("bits", 0.into(), "bits = 0"),
        ("cell", 0.into(), "cell = 0"),
        ("cell", 100.into(), "cell = 100"),
        ("search", 99.into(), "search = 99"),
        ("search", (-1).into(), "search = -1"),
        ("width", 1000.into(), "28x28"),
    ];
    for (i, (field, value, message)) in cases.into_iter().enumerate() {
        let mut json = serde_json::to_value(&meta).unwrap();
        json["layout"][field] = value.clone();
        let crafted: Metadata = serde_json::from_value(json).unwrap();
        let path = tmp.path().join(format!("spread{i}.ot"));
        checkpoint::save_ot(&path, &named, &crafted).unwrap();
        let out = extract_with(&path, &input);
        assert_clean(&out, &format!("layout.{field} = {value}"));
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{field} = {value}: {err}");
        assert!(
            err.contains(&format!("spread{i}.ot")) && err.contains(message),
            "{err}"
        );
    }
}

#[test]
fn mutated_checkpoints_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let input = digit_png(tmp.path());
    let st = tmp.path().join("model.safetensors");
    let (named, meta) = checkpoint::read_with_metadata(&shipped()).unwrap();
    checkpoint::save_safetensors(&st, &named, &meta).unwrap();
    let mut rng = Rng(9);
    let mut failed = 0;
    for (source, cases) in [(shipped(), 40), (st, 40)] {
        let bytes = std::fs::read(&source).unwrap();
        let ext = source.extension().unwrap().to_str().unwrap().to_string();
        for case in 0..cases {
            let path = tmp.path().join(format!("mutant{case}.{ext}"));
            std::fs::write(&path, mutate(&bytes, &mut rng)).unwrap();
            let out = extract_with(&path, &input);
            assert_clean(&out, &format!("{ext} mutant {case}"));
            failed += usize::from(out.status.code() == Some(1));
        }
    }
    // Nearly every mutation must be caught (a flipped bit in a zip timestamp is harmless).
    assert!(
        failed >= 70,
        "only {failed} of 80 mutated checkpoints were refused"
    );
}

#[test]
fn a_flipped_bit_in_the_weights_is_caught_by_the_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let input = digit_png(tmp.path());
    let mut bytes = std::fs::read(shipped()).unwrap();
    // The bytes of one weight, found in the file: .ot files store tensors uncompressed.
    let (named, _) = checkpoint::read_with_metadata(&shipped()).unwrap();
    let kernel = &named.iter().find(|(n, _)| n == "convl2w.weight").unwrap().1;
    let values = Vec::<f32>::try_from(kernel.flatten(0, -1)).unwrap();
    let needle: Vec<u8> = values[100..104]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("the weights lie in the file as float32 bytes");
    bytes[at + 1] ^= 0x04;
    let path = tmp.path().join("flipped.ot");
    std::fs::write(&path, bytes).unwrap();
    let out = extract_with(&path, &input);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("flipped.ot") && err.contains("checksum"),
        "{err}"
    );
}

/// `wmae extract INPUT` must fail cleanly; its message names the file and says `why`.
fn extract_fails(input: &Path, why: &str) {
    let err = common::input_failure(&["--device", "cpu", "extract", input.to_str().unwrap()]);
    let name = input.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name) && err.contains(why), "{err}");
}

#[test]
fn mutated_and_crafted_arrays_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = shipped();
    let run = |path: &Path| extract_with(&ck, path);

    // Crafted: a shape whose element count wraps, a gzip bomb, dimensions beyond the limit,
    // gzip with trailing garbage.
    let huge = tmp.path().join("huge.npy");
    std::fs::write(&huge, npy_header("(4611686018427387904, 28, 28)")).unwrap();
    extract_fails(&huge, "truncated data");

    let header = idx_header(3);
    let mut bomb_body = header.clone();
    bomb_body.resize(header.len() + 3 * 784 + (256 << 20), 0);
    let bomb = tmp.path().join("bomb-idx3-ubyte.gz");
    std::fs::write(&bomb, gzip(&bomb_body)).unwrap();
    extract_fails(&bomb, "unexpected trailing bytes");

    let large = tmp.path().join("large-idx3-ubyte.gz");
    std::fs::write(&large, gzip(&idx_header(0x7fff_ffff))).unwrap();
    extract_fails(&large, "too large");

    let mut good = header.clone();
    good.resize(header.len() + 3 * 784, 7);
    let mut garbage = gzip(&good);
    garbage.extend_from_slice(b"garbage");
    let trailing = tmp.path().join("trailing-idx3-ubyte.gz");
    std::fs::write(&trailing, &garbage).unwrap();
    extract_fails(&trailing, "after the end of the gzip stream");

    // Mutated: IDX (plain and gzip) and .npy versions of three digits.
    let mut npy = npy_header("(3, 28, 28)");
    npy.extend(std::iter::repeat_n(9u8, 3 * 784));
    let mut rng = Rng(21);
    for (name, bytes) in [
        ("a-idx3-ubyte", good.clone()),
        ("b-idx3-ubyte.gz", gzip(&good)),
        ("c.npy", npy),
    ] {
        for case in 0..16 {
            let path = tmp.path().join(format!("{case}-{name}"));
            std::fs::write(&path, mutate(&bytes, &mut rng)).unwrap();
            assert_clean(&run(&path), &format!("{name} mutant {case}"));
        }
    }
}

/// Epochs in the run's last.ot (0 when it has none yet).
fn saved_epochs(run: &Path) -> usize {
    let last = run.join("last.ot");
    if !last.exists() {
        return 0;
    }
    checkpoint::read_with_metadata(&last).map_or(0, |(_, meta)| meta.epoch)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn runs_killed_while_saving_resume_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 4);
    let whole = tmp.path().join("whole");
    let out = common::wmae(&common::train_args(&config, &whole, &[]));
    assert!(out.status.success(), "{}", common::stderr(&out));

    // Each attempt runs `train --resume` (which starts the run when there is no checkpoint yet)
    // and is killed up to 8 ms after its first epoch's summary line: inside or around the writes
    // of metrics.csv, the events, best.ot and last.ot that follow it.
    let killed = tmp.path().join("killed");
    let mut rng = Rng(33);
    let mut kills = 0;
    for attempt in 0..16 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wmae"))
            .args(common::train_args(&config, &killed, &["--resume"]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut finished = true;
        for line in lines.map_while(Result::ok) {
            if line.starts_with("epoch ") {
                std::thread::sleep(std::time::Duration::from_micros(rng.below(8_000) as u64));
                child.kill().unwrap();
                finished = false;
                kills += 1;
                break;
            }
        }
        let status = child.wait().unwrap();
        if finished {
            assert!(status.success(), "attempt {attempt} failed: {status:?}");
            break;
        }
        let rows = std::fs::read_to_string(killed.join("metrics.csv"))
            .map_or(0, |csv| common::csv_column(&csv, "epoch").len());
        eprintln!(
            "attempt {attempt}: killed with {} epochs in last.ot, {rows} in metrics.csv",
            saved_epochs(&killed)
        );
        // After any kill, what is on disk is consistent: last.ot (when there) reads back whole
        // and metrics.csv holds at least its epochs.
        if killed.join("last.ot").exists() {
            let (_, meta) = checkpoint::read_with_metadata(&killed.join("last.ot")).unwrap();
            let csv = std::fs::read_to_string(killed.join("metrics.csv")).unwrap();
            assert!(
                common::csv_column(&csv, "epoch").len() >= meta.epoch,
                "{csv}"
            );
        }
    }
    assert!(kills >= 3, "only {kills} kills landed");
    eprintln!("{kills} kills");
    if !killed.join("test_metrics.json").exists() {
        let out = common::wmae(&common::train_args(&config, &killed, &["--resume"]));
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    for file in ["metrics.csv", "test_metrics.json"] {
        let read = |dir: &Path| std::fs::read_to_string(dir.join(file)).unwrap();
        let (a, b) = (read(&whole), read(&killed));
        assert_eq!(
            a,
            b.replace("killed", "whole"),
            "{file} differs after {kills} kills"
        );
    }
    for file in ["last.ot", "best.ot"] {
        let a = checkpoint::read(&whole.join(file)).unwrap().tensors;
        let b = checkpoint::read(&killed.join(file)).unwrap().tensors;
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{file}: {na} differs after {kills} kills");
        }
    }
    let names = files_in(&killed);
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn a_full_disk_during_a_checkpoint_save_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::tiny_config(tmp.path(), 2);
    let run = tmp.path().join("run");
    // 200 KB: metrics.csv, the events and best.ot (94 KB) fit; last.ot with the optimizer's
    // accumulators (about 280 KB) does not.
    let out = wmae_limited(&common::train_args(&config, &run, &[]), Some(200_000));
    assert_clean(&out, "training on a full disk");
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("last.ot") && err.contains("too large"),
        "{err}"
    );
    let names = files_in(&run);
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    assert!(!names.contains(&"last.ot".to_string()), "{names:?}");
    // The checkpoint that was written is whole.
    checkpoint::read_with_metadata(&run.join("best.ot")).unwrap();
}

/// A photo embed whose writes fail part-way (a file-size limit standing in for a full disk)
/// leaves no part file beside the failed outputs; a 250-byte file name, whose part file must
/// still fit the 255-byte name limit, embeds.
#[test]
fn failed_photo_writes_leave_no_part_file_and_long_names_embed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let long = format!("{}.png", "l".repeat(246));
    assert_eq!(long.len(), 250);
    for (i, name) in ["short.png", long.as_str()].into_iter().enumerate() {
        common::synthetic_photo(256, 192, i as u32 + 1)
            .save(input.join(name))
            .unwrap();
    }
    let out = tmp.path().join("out");
    let args = [
        "--device",
        "cpu",
        "--threads",
        "1",
        "embed",
        input.to_str().unwrap(),
        "--payload",
        "text:part",
        "--no-score",
        "--out",
        out.to_str().unwrap(),
    ];
    // Outputs of these photos are tens of kilobytes: every write fails after 4 KiB.
    let full = wmae_limited(&args, Some(4096));
    let err = common::stderr(&full);
    assert_eq!(full.status.code(), Some(3), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("2 of 2 input(s) failed"), "{err}");
    assert_eq!(files_in(&out), Vec::<String>::new(), "{err}");

    let run = wmae_limited(&args, None);
    let err = common::stderr(&run);
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert_eq!(files_in(&out), vec![long.clone(), "short.png".to_string()]);
}

/// A PNG named .jpg: embedded, written as PNG under its own name, said in its record; its
/// output and a digit PNG named .jpg are read (formats come from the bytes, not the names).
#[test]
fn images_are_read_by_their_bytes_not_their_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let photo = input.join("p.jpg");
    common::synthetic_photo(256, 192, 3)
        .save_with_format(&photo, image::ImageFormat::Png)
        .unwrap();
    let out = tmp.path().join("out");
    let run = common::wmae(&[
        "--device",
        "cpu",
        "--threads",
        "1",
        "embed",
        photo.to_str().unwrap(),
        "--payload",
        "text:fmt",
        "--no-score",
        "--jsonl",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", common::stderr(&run));
    let record: serde_json::Value = serde_json::from_str(common::stdout(&run).trim()).unwrap();
    assert_eq!(
        record["format_mismatch"], "PNG data in a .jpg file",
        "{record}"
    );
    let written = std::fs::read(out.join("p.jpg")).unwrap();
    assert!(written.starts_with(b"\x89PNG"), "written as PNG");

    let read = |path: &Path, model: &str| {
        common::wmae(&[
            "--device",
            "cpu",
            "--threads",
            "1",
            "extract",
            "--model",
            model,
            path.to_str().unwrap(),
        ])
    };
    let run = read(&out.join("p.jpg"), "photo");
    let text = format!("{}{}", common::stdout(&run), common::stderr(&run));
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert!(
        text.contains("(text \"fmt\")") && text.contains("PNG data in a .jpg file"),
        "{text}"
    );

    let digit = digit_png(tmp.path());
    let renamed = tmp.path().join("digit.jpg");
    std::fs::rename(&digit, &renamed).unwrap();
    let run = read(&renamed, "digits");
    assert_eq!(run.status.code(), Some(0), "{}", common::stderr(&run));
    assert!(
        common::stdout(&run).contains("1 images"),
        "{}",
        common::stdout(&run)
    );
}

#[test]
fn a_folder_in_use_by_another_wmae_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = digit_png(tmp.path());
    let out_dir = tmp.path().join("out");
    let lock = wmae::runtime::fsutil::FolderLock::acquire(&out_dir).unwrap();
    let embed = [
        "--device",
        "cpu",
        "embed",
        input.to_str().unwrap(),
        "--random",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let err = common::failure(&embed);
    assert!(err.contains("in use by another wmae"), "{err}");
    let config = common::tiny_config(tmp.path(), 1);
    let err = common::failure(&common::train_args(&config, &out_dir, &[]));
    assert!(err.contains("in use by another wmae"), "{err}");
    assert!(files_in(&out_dir).is_empty(), "{:?}", files_in(&out_dir));
    drop(lock);
    let out = common::wmae(&embed);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

/// An `--input-list` naming a device, a FIFO and a folder: each is refused as not a regular file
/// before anything is read (reading /dev/zero whole took 2.2 GB; opening a FIFO blocks until a
/// writer comes), and the photo beside them is still marked.
#[test]
fn devices_fifos_and_folders_in_an_input_list_are_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let photo = tmp.path().join("photo.png");
    common::natural_photo(320, 240, 4).save(&photo).unwrap();
    let fifo = tmp.path().join("fifo.png");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain C call with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let list = tmp.path().join("list.txt");
    std::fs::write(
        &list,
        format!(
            "/dev/zero\n{}\n{}\n{}\n",
            fifo.display(),
            tmp.path().display(),
            photo.display()
        ),
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let start = std::time::Instant::now();
    let out = wmae_limited(
        &[
            "embed",
            "--input-list",
            list.to_str().unwrap(),
            "--payload",
            "text:x",
            "--no-score",
            "--out",
            out_dir.to_str().unwrap(),
            "--jsonl",
        ],
        None,
    );
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    let records: Vec<serde_json::Value> = common::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4, "{records:?}");
    for r in &records {
        let input = r["input"].as_str().unwrap();
        if input.ends_with("photo.png") {
            assert_eq!(r["status"], "ok", "{r}");
        } else {
            assert_eq!(r["status"], "failed", "{r}");
            let error = r["error"].as_str().unwrap();
            assert!(error.contains("not a regular file"), "{r}");
            assert!(r.get("output").is_none() || r["written"] != true, "{r}");
        }
    }
}
