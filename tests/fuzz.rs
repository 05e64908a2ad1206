//! A seeded mutation fuzzer over every kind of input wmae reads: photos (PNG 8/16-bit, gray,
//! RGBA, palette; JPEG baseline, progressive, CMYK, with EXIF orientation and an ICC profile;
//! WebP lossy and lossless; TIFF), digit images, IDX (plain and gzip), `.npy`, `.ot` and
//! `.safetensors` checkpoints (bytes, and the metadata inside: every field, every type, extreme
//! numbers), TOML configs, manifests, `--input-list` files (empty lines, NUL bytes, `..`,
//! absolute paths, non-UTF-8 names, devices, FIFOs, folders) and payload specs.
//!
//! Each case runs the real binary under a 4 GiB address-space limit and a time limit. It passes
//! when wmae succeeds or gives a clean error (exit 1, 2 or 3, no panic) within 60 s and 1.5 GiB
//! of resident memory. The cases are the same on every run (seeded); the kinds take turns until
//! the time budget is spent: `WMAE_FUZZ_SECONDS` (default 60, what `scripts/test` runs),
//! `scripts/fuzz SECONDS` for a longer run by hand. It prints a table of counts per kind.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{mutate, natural_photo, Rng};
use wmae::io::checkpoint;

/// Most resident memory a case may take.
const MAX_RSS_BYTES: u64 = 3 << 29;
/// Longest a case may run.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How one run ended.
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    max_rss: u64,
    seconds: f64,
    timed_out: bool,
}

/// Runs wmae with `args` under the limits, measuring its peak resident memory (`wait4`).
fn run(args: &[OsString]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wmae"));
    cmd.args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env("WMAE_NO_FSYNC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let start = Instant::now();
    // Reaped below by wait4, which std's wait cannot do: it gives no resource usage.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().expect("cannot start the wmae binary");
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let drain_out = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let drain_err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = err.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    let mut timed_out = false;
    loop {
        // SAFETY: waits for our own child, filling plain C structs.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break;
        }
        if start.elapsed() > TIMEOUT && !timed_out {
            timed_out = true;
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drain_out.join().unwrap();
    let stderr = drain_err.join().unwrap();
    let exited = libc::WIFEXITED(status);
    Outcome {
        code: exited.then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        stderr,
        max_rss: usage.ru_maxrss as u64 * 1024,
        seconds: start.elapsed().as_secs_f64(),
        timed_out,
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn p(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

/// Counts for one kind of input.
#[derive(Default)]
struct Tally {
    cases: usize,
    ok: usize,
    clean_errors: usize,
    failures: Vec<String>,
    max_rss: u64,
    max_seconds: f64,
}

impl Tally {
    fn add(&mut self, what: &str, outcome: &Outcome) {
        self.cases += 1;
        self.max_rss = self.max_rss.max(outcome.max_rss);
        self.max_seconds = self.max_seconds.max(outcome.seconds);
        let panicked = outcome.stderr.contains("panicked");
        let failure = match (outcome.code, outcome.signal) {
            _ if outcome.timed_out => Some(format!("ran past {TIMEOUT:?}")),
            _ if panicked => Some("panicked".to_string()),
            _ if outcome.max_rss > MAX_RSS_BYTES => {
                Some(format!("took {} MB", outcome.max_rss >> 20))
            }
            (Some(0), _) => None,
            (Some(1..=3), _) => None,
            (Some(code), _) => Some(format!("exit status {code}")),
            (None, signal) => Some(format!("killed by signal {signal:?}")),
        };
        match failure {
            Some(why) => {
                let tail: String = outcome
                    .stderr
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ");
                self.failures.push(format!("{what}: {why}: {tail}"));
            }
            None if outcome.code == Some(0) => self.ok += 1,
            None => self.clean_errors += 1,
        }
    }
}

/// What the fuzzer works on: the seed files, made once.
struct Corpus {
    dir: PathBuf,
    photos: Vec<PathBuf>,
    digit: PathBuf,
    arrays: Vec<PathBuf>,
    checkpoints: Vec<PathBuf>,
    metadata: serde_json::Value,
    configs: Vec<PathBuf>,
    manifest_dir: PathBuf,
}

/// Pillow writes the photo seeds it writes best: palette PNG, progressive, CMYK and EXIF/ICC
/// JPEGs, WebP and TIFF.
const PILLOW_SEEDS: &str = r#"
import sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
im = Image.open(src).convert("RGB")
im.convert("P", palette=Image.Palette.ADAPTIVE).save(f"{out}/palette.png")
im.save(f"{out}/progressive.jpg", quality=80, progressive=True)
im.convert("CMYK").save(f"{out}/cmyk.jpg", quality=80)
exif = Image.Exif()
exif[0x0112] = 6
im.save(f"{out}/turned.jpg", quality=80, exif=exif.tobytes(), icc_profile=b"\0" * 132)
im.save(f"{out}/lossy.webp", quality=80)
im.convert("RGBA").save(f"{out}/lossless.webp", lossless=True)
im.save(f"{out}/lzw.tif", compression="tiff_lzw")
"#;

fn corpus(dir: &Path) -> Corpus {
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds).unwrap();
    // Photos: small, so a case costs little more than starting the process.
    let rgb = natural_photo(144, 96, 5);
    let png = seeds.join("rgb.png");
    rgb.save(&png).unwrap();
    let gray16 = seeds.join("gray16.png");
    image::DynamicImage::ImageRgb8(rgb.clone())
        .into_luma16()
        .save(&gray16)
        .unwrap();
    let rgba = seeds.join("rgba.png");
    image::DynamicImage::ImageRgb8(rgb.clone())
        .into_rgba8()
        .save(&rgba)
        .unwrap();
    let jpeg = seeds.join("baseline.jpg");
    image::DynamicImage::ImageRgb8(rgb)
        .save_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    common::run_python(PILLOW_SEEDS, &[&png, &seeds]);
    let mut photos = vec![png, gray16, rgba, jpeg];
    for name in [
        "palette.png",
        "progressive.jpg",
        "cmyk.jpg",
        "turned.jpg",
        "lossy.webp",
        "lossless.webp",
        "lzw.tif",
    ] {
        photos.push(seeds.join(name));
    }

    // Digits: one test digit as PNG, IDX (plain, gzip) and .npy.
    let split = wmae::io::data::dataset::load_split(
        &common::embedded_mnist(),
        wmae::io::data::dataset::Split::Test,
    )
    .unwrap();
    let images = split.images_tensor(tch::Device::Cpu);
    let digit = seeds.join("digit.png");
    wmae::codec::gray::write_png(&digit, &wmae::codec::gray::to_gray(&images.get(0))).unwrap();
    let three: Vec<u8> = Vec::<f32>::try_from(images.narrow(0, 0, 3).flatten(0, -1))
        .unwrap()
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    let mut idx = common::idx_header(3);
    idx.extend_from_slice(&three);
    let idx_path = seeds.join("three-idx3-ubyte");
    std::fs::write(&idx_path, &idx).unwrap();
    let gz_path = seeds.join("three-idx3-ubyte.gz");
    std::fs::write(&gz_path, common::gzip(&idx)).unwrap();
    let mut npy = common::npy_header("(3, 28, 28)");
    npy.extend_from_slice(&three);
    let npy_path = seeds.join("three.npy");
    std::fs::write(&npy_path, npy).unwrap();

    // Checkpoints: the small shipped stamp model, as .ot and .safetensors.
    let stamp = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/stamp.ot");
    let (named, meta) = checkpoint::read_with_metadata(&stamp).unwrap();
    let st = seeds.join("stamp.safetensors");
    checkpoint::save_safetensors(&st, &named, &meta).unwrap();
    let metadata = serde_json::to_value(&meta).unwrap();

    // Configs: the ones that train on the embedded digits.
    let configs_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let configs = vec![
        configs_dir.join("seed-embedded.toml"),
        configs_dir.join("default.toml"),
    ];

    // A manifest: three digits embedded with the stamp model.
    let manifest_dir = dir.join("embedded");
    let out = Command::new(env!("CARGO_BIN_EXE_wmae"))
        .args(["embed", idx_path.to_str().unwrap(), "--random", "--out"])
        .arg(&manifest_dir)
        .arg("--checkpoint")
        .arg(&stamp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    Corpus {
        dir: dir.to_path_buf(),
        photos,
        digit,
        arrays: vec![idx_path, gz_path, npy_path],
        checkpoints: vec![stamp, st],
        metadata,
        configs,
        manifest_dir,
    }
}

/// A JSON value's leaves, by path, so one can be replaced.
fn leaves(value: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                at.push(k.clone());
                leaves(v, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(i.to_string());
                leaves(v, at, out);
                at.pop();
            }
        }
        _ => out.push(at.clone()),
    }
    if !at.is_empty() {
        out.push(at.clone());
    }
}

/// Replaces one field of `value` (a leaf or a whole object or array), drawn at random, by `odd`.
fn replace_one_field(value: &mut serde_json::Value, odd: serde_json::Value, rng: &mut Rng) {
    let mut all = Vec::new();
    leaves(value, &mut Vec::new(), &mut all);
    let at = &all[rng.below(all.len())];
    let mut slot = value;
    for key in at {
        slot = match slot {
            serde_json::Value::Object(m) => m.get_mut(key).unwrap(),
            serde_json::Value::Array(a) => &mut a[key.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    *slot = odd;
}

/// A value of another type or an extreme number, for a metadata field or a config key.
fn odd_json(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.below(12) {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1e308),
        5 => json!(-1e-308),
        6 => json!("x"),
        7 => json!(null),
        8 => json!([]),
        9 => json!({}),
        10 => json!(true),
        _ => json!(9_007_199_254_740_993u64),
    }
}

fn odd_toml(rng: &mut Rng) -> &'static str {
    [
        "-1",
        "0",
        "18446744073709551615",
        "-9223372036854775808",
        "1e308",
        "nan",
        "inf",
        "\"x\"",
        "[]",
        "{}",
        "true",
        "100000000",
        "0.0000001",
        "\"\u{0}\"",
    ][rng.below(14)]
}

/// A payload spec: well-formed or not, of any length, sometimes not UTF-8.
fn payload_spec(rng: &mut Rng) -> OsString {
    let hex: String = (0..rng.below(40))
        .map(|_| b"0123456789abcdefXg"[rng.below(18)] as char)
        .collect();
    let text: Vec<u8> = (0..rng.below(20)).map(|_| rng.next() as u8).collect();
    let mut spec = match rng.below(6) {
        0 => format!("hex:{hex}").into_bytes(),
        1 => format!("0x{hex}").into_bytes(),
        2 => [b"text:".as_slice(), &text].concat(),
        3 => format!("uuid:{hex}").into_bytes(),
        4 => text,
        _ => "text:fuzz".into(),
    };
    // NUL cannot be in an argument.
    spec.retain(|&b| b != 0);
    OsString::from_vec(spec)
}

/// An `--input-list` file from a pool of awkward lines.
fn input_list(rng: &mut Rng, corpus: &Corpus, case: usize) -> PathBuf {
    let weird = corpus.dir.join("weird");
    std::fs::create_dir_all(&weird).unwrap();
    let odd_name = weird.join(OsString::from_vec(b"odd-\xff\xfe.png".to_vec()));
    if !odd_name.exists() {
        std::fs::copy(&corpus.photos[0], &odd_name).unwrap();
    }
    let fifo = weird.join("fifo.png");
    if !fifo.exists() {
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a plain C call with a valid path.
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    }
    let photo = corpus.photos[rng.below(corpus.photos.len())].clone();
    let pool: Vec<Vec<u8>> = vec![
        photo.as_os_str().as_encoded_bytes().to_vec(),
        Vec::new(),
        b"\0".to_vec(),
        b"../../etc/passwd".to_vec(),
        b"/nonexistent/photo.png".to_vec(),
        b"/dev/zero".to_vec(),
        b"/dev/null".to_vec(),
        fifo.as_os_str().as_encoded_bytes().to_vec(),
        weird.as_os_str().as_encoded_bytes().to_vec(),
        odd_name.as_os_str().as_encoded_bytes().to_vec(),
        b"   ".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"./relative.png".to_vec(),
    ];
    let mut text = Vec::new();
    for _ in 0..1 + rng.below(6) {
        text.extend_from_slice(&pool[rng.below(pool.len())]);
        text.push(if rng.below(5) == 0 { b'\r' } else { b'\n' });
    }
    if rng.below(3) == 0 {
        text = mutate(&text, rng);
    }
    let path = corpus.dir.join(format!("list{case}.txt"));
    std::fs::write(&path, text).unwrap();
    path
}

/// One case of `kind`: the file it made and the command that reads it. A `pristine` case uses the
/// seed as it is, and must succeed: the commands themselves are right, so the mutants' errors
/// are about the mutations.
fn case(kind: &str, rng: &mut Rng, corpus: &Corpus, n: usize, pristine: bool) -> Vec<OsString> {
    let mutate = |bytes: &[u8], rng: &mut Rng| {
        if pristine {
            bytes.to_vec()
        } else {
            mutate(bytes, rng)
        }
    };
    let dir = &corpus.dir;
    let out = dir.join(format!("out{n}"));
    let quiet = ["--device", "cpu", "--threads", "1"];
    let mut args = os(&quiet);
    match kind {
        "photo" => {
            let seed = &corpus.photos[rng.below(corpus.photos.len())];
            let ext = seed.extension().unwrap().to_str().unwrap();
            let path = dir.join(format!("m{n}.{ext}"));
            std::fs::write(&path, mutate(&std::fs::read(seed).unwrap(), rng)).unwrap();
            if rng.below(3) == 0 {
                args.extend(os(&[
                    "embed",
                    "--payload",
                    "text:fuzz",
                    "--no-score",
                    "--out",
                ]));
                args.push(p(&out));
            } else {
                args.extend(os(&["extract", "--search", "quick", "--json"]));
            }
            args.push(p(&path));
        }
        "digit-array" => {
            let seed = if rng.below(4) == 0 {
                &corpus.digit
            } else {
                &corpus.arrays[rng.below(corpus.arrays.len())]
            };
            let name = seed.file_name().unwrap().to_str().unwrap();
            let path = dir.join(format!("m{n}-{name}"));
            std::fs::write(&path, mutate(&std::fs::read(seed).unwrap(), rng)).unwrap();
            args.extend(os(&["extract", "--checkpoint"]));
            args.push(p(&corpus.checkpoints[0]));
            args.push(p(&path));
        }
        "checkpoint" => {
            let (path, bytes) = if pristine || rng.below(2) == 0 {
                let seed = &corpus.checkpoints[rng.below(2)];
                let ext = seed.extension().unwrap().to_str().unwrap();
                let bytes = mutate(&std::fs::read(seed).unwrap(), rng);
                (dir.join(format!("m{n}.{ext}")), bytes)
            } else {
                // The metadata inside: one field of another type or an extreme value.
                let mut meta = corpus.metadata.clone();
                let odd = odd_json(rng);
                replace_one_field(&mut meta, odd, rng);
                let (named, _) = checkpoint::read_with_metadata(&corpus.checkpoints[0]).unwrap();
                let path = dir.join(format!("meta{n}.safetensors"));
                let info = [("wmae".to_string(), meta.to_string())]
                    .into_iter()
                    .collect();
                checkpoint::write_safetensors(&path, &named, info).unwrap();
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            };
            std::fs::write(&path, bytes).unwrap();
            args.extend(os(&["extract", "--checkpoint"]));
            args.push(p(&path));
            args.push(p(&corpus.digit));
        }
        "config" => {
            let seed = std::fs::read(&corpus.configs[rng.below(corpus.configs.len())]).unwrap();
            let text = if pristine || rng.below(2) == 0 {
                mutate(&seed, rng)
            } else {
                // One value replaced by another type or an extreme number.
                let text = String::from_utf8(seed).unwrap();
                let lines: Vec<&str> = text.lines().collect();
                let settable: Vec<usize> = (0..lines.len())
                    .filter(|&i| {
                        lines[i].contains(" = ") && !lines[i].trim_start().starts_with('#')
                    })
                    .collect();
                let i = settable[rng.below(settable.len())];
                let key = lines[i].split(" = ").next().unwrap();
                let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                edited[i] = format!("{key} = {}", odd_toml(rng));
                edited.join("\n").into_bytes()
            };
            let path = dir.join(format!("m{n}.toml"));
            std::fs::write(&path, text).unwrap();
            args.extend(os(&["train", "--quiet", "--stop-after", "0", "--config"]));
            args.push(p(&path));
            args.push("--out".into());
            args.push(p(&out));
        }
        "manifest" => {
            let seed = std::fs::read(corpus.manifest_dir.join("manifest.json")).unwrap();
            let path = dir.join(format!("m{n}-manifest.json"));
            let bytes = if pristine || rng.below(2) == 0 {
                mutate(&seed, rng)
            } else {
                // One field of another type, an extreme number or an odd path (`..`, absolute,
                // empty, a folder, NUL, a device).
                let mut manifest: serde_json::Value = serde_json::from_slice(&seed).unwrap();
                let odd = if rng.below(2) == 0 {
                    odd_json(rng)
                } else {
                    serde_json::json!(
                        [
                            "../../etc/passwd",
                            "/dev/zero",
                            "",
                            ".",
                            "a\u{0}b",
                            "/",
                            "x/../../y.png"
                        ][rng.below(7)]
                    )
                };
                replace_one_field(&mut manifest, odd, rng);
                manifest.to_string().into_bytes()
            };
            std::fs::write(&path, bytes).unwrap();
            args.extend(os(&["extract", "--checkpoint"]));
            args.push(p(&corpus.checkpoints[0]));
            args.push(p(&corpus.manifest_dir));
            args.push("--manifest".into());
            args.push(p(&path));
        }
        "input-list" => {
            let list = if pristine {
                let path = dir.join(format!("list{n}.txt"));
                std::fs::write(&path, corpus.photos[0].as_os_str().as_encoded_bytes()).unwrap();
                path
            } else {
                input_list(rng, corpus, n)
            };
            if rng.below(2) == 0 {
                args.extend(os(&[
                    "embed",
                    "--payload",
                    "text:fuzz",
                    "--no-score",
                    "--out",
                ]));
                args.push(p(&out));
            } else {
                args.extend(os(&["extract", "--search", "quick", "--jsonl"]));
            }
            args.push("--input-list".into());
            args.push(p(&list));
        }
        "payload" => {
            args.extend(os(&["embed", "--no-score", "--no-verify", "--out"]));
            args.push(p(&out));
            args.push("--payload".into());
            args.push(if pristine {
                "text:fuzz".into()
            } else {
                payload_spec(rng)
            });
            args.push(p(&corpus.photos[0]));
        }
        other => unreachable!("{other}"),
    }
    args
}

#[test]
fn every_input_kind_fuzzed_fails_cleanly() {
    let budget: f64 = std::env::var("WMAE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    let tmp = tempfile::tempdir().unwrap();
    let corpus = corpus(tmp.path());
    let kinds = [
        "photo",
        "digit-array",
        "checkpoint",
        "config",
        "manifest",
        "input-list",
        "payload",
    ];
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut rng = Rng(2026);
    let start = Instant::now();
    let mut n = 0;
    while n < kinds.len() || start.elapsed().as_secs_f64() < budget {
        let kind = kinds[n % kinds.len()];
        // Each kind's first case is its seed unmutated.
        let pristine = n < kinds.len();
        let args = case(kind, &mut rng, &corpus, n, pristine);
        let outcome = run(&args);
        let what = format!("case {n} ({kind}): wmae {args:?}");
        assert!(
            !pristine || outcome.code == Some(0),
            "{what}: the unmutated seed must succeed: {}",
            outcome.stderr
        );
        tallies.entry(kind).or_default().add(&what, &outcome);
        n += 1;
    }
    println!(
        "fuzzed {n} cases in {:.0} s (budget {budget} s; seed 2026)",
        start.elapsed().as_secs_f64()
    );
    println!(
        "| input kind | cases | successes | clean errors | failures | peak RSS MB | slowest s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for (kind, t) in &tallies {
        println!(
            "| {kind} | {} | {} | {} | {} | {} | {:.1} |",
            t.cases,
            t.ok,
            t.clean_errors,
            t.failures.len(),
            t.max_rss >> 20,
            t.max_seconds
        );
        failures.extend(t.failures.iter().cloned());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
