//! embed -> PNG files -> extract with the shipped checkpoint, the bare `extract` demo, evaluate,
//! and one clear error per kind of bad input, with no partial output left behind.

mod common;

use std::path::{Path, PathBuf};
use wmae::codec::gray;

use common::{failure, input_failure, stderr, stdout, wmae};
use wmae::io::data::dataset::{load_split, Split};

fn checkpoint() -> String {
    format!("{}/checkpoints/default.ot", env!("CARGO_MANIFEST_DIR"))
}

/// Writes the first `n` embedded test digits as 8-bit PNG files into `dir`.
fn digit_pngs(dir: &Path, n: i64) -> PathBuf {
    let split = load_split(&common::embedded_mnist(), Split::Test).unwrap();
    let images = split.images_tensor(tch::Device::Cpu);
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        gray::write_png(
            &dir.join(format!("digit{i:02}.png")),
            &gray::to_gray(&images.get(i)),
        )
        .unwrap();
    }
    dir.to_path_buf()
}

/// `wmae --device cpu SUBCOMMAND INPUT --checkpoint CHECKPOINT OPTIONS..`.
fn on_input<'a>(
    subcommand: &'a str,
    input: &'a Path,
    checkpoint: &'a str,
    options: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--device",
        "cpu",
        subcommand,
        input.to_str().unwrap(),
        "--checkpoint",
        checkpoint,
    ];
    args.extend_from_slice(options);
    args
}

fn run_ok(args: &[&str]) -> String {
    let out = wmae(args);
    assert!(
        out.status.success(),
        "wmae {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// The JSON lines `extract --json` prints: one per image, then the totals.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The exact-watermark rate of `extract --json` output.
fn exact_rate(text: &str) -> f64 {
    let lines = json_lines(text);
    lines.last().unwrap()["totals"]["scored"]["exact_rate"]
        .as_f64()
        .unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn embed_png_extract_round_trip_recovers_the_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = digit_pngs(&tmp.path().join("in"), 40);
    let marked = tmp.path().join("marked");
    let ck = checkpoint();
    let out = ["--random", "--seed", "3", "--out", marked.to_str().unwrap()];
    run_ok(&on_input("embed", &inputs, &ck, &out));
    let files = files_in(&marked);
    assert_eq!(files.len(), 41, "{files:?}");
    assert!(
        files.contains(&"manifest.json".to_string()) && files.contains(&"digit07.png".to_string())
    );
    // The PNG files are 8-bit grayscale 28x28 for any image reader.
    let png = image::open(marked.join("digit07.png")).unwrap();
    assert_eq!(
        (png.width(), png.height(), png.color()),
        (28, 28, image::ColorType::L8)
    );

    let manifest = marked.join("manifest.json");
    for method in [&[][..], &["--otsu"][..]] {
        let mut args = on_input(
            "extract",
            &marked,
            &ck,
            &["--json", "--manifest", manifest.to_str().unwrap()],
        );
        args.extend_from_slice(method);
        let lines = json_lines(&run_ok(&args));
        assert_eq!(lines.len(), 41);
        let totals = &lines[40]["totals"]["scored"];
        let acc = totals["bit_accuracy"].as_f64().unwrap();
        assert!(
            acc >= 0.99,
            "{method:?}: bit accuracy after the PNG round trip {acc}"
        );
        let zeros = totals["all_zeros_accuracy"].as_f64().unwrap();
        assert!(
            zeros > 0.3 && zeros < 0.7,
            "random bits are about half zeros: {zeros}"
        );
        // One record per image, in the order they finished: found by its input.
        let seven = lines
            .iter()
            .find(|l| {
                l["input"]
                    .as_str()
                    .is_some_and(|i| i.ends_with("digit07.png"))
            })
            .unwrap();
        assert_eq!(seven["bits"].as_str().unwrap().len(), 16);
        assert_eq!(seven["exact"], true, "{seven}");
    }
}

#[test]
fn fixed_bits_and_expect() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = digit_pngs(&tmp.path().join("in"), 5);
    let marked = tmp.path().join("marked");
    let bits = "1011001110001101";
    let ck = checkpoint();
    let out = ["--bits", bits, "--out", marked.to_str().unwrap()];
    run_ok(&on_input("embed", &inputs, &ck, &out));
    let maps = tmp.path().join("maps");
    let text = run_ok(&on_input(
        "extract",
        &marked,
        &ck,
        &["--json", "--expect", bits, "--out", maps.to_str().unwrap()],
    ));
    let lines = json_lines(&text);
    assert!(lines[..5].iter().all(|l| l["bits"] == bits), "{text}");
    assert_eq!(exact_rate(&text), 1.0, "{text}");
    // --out wrote each binarized map as a 0/255 PNG named after its input, close to the map of
    // the embedded bits in the checkpoint's layout.
    let map = image::open(tmp.path().join("maps/map-digit00.png"))
        .unwrap()
        .to_luma8();
    assert!(map.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    let (_, meta) = wmae::io::checkpoint::read_with_metadata(Path::new(&ck)).unwrap();
    let want = wmae::message::watermark::parse_bits(bits, &meta.layout).unwrap();
    let true_map = meta
        .layout
        .map_from_bits(&tch::Tensor::from_slice(&want).reshape([1, 16]));
    let true_map = Vec::<f32>::try_from(true_map.flatten(0, -1)).unwrap();
    let same = map
        .pixels()
        .zip(&true_map)
        .filter(|(p, &t)| (p.0[0] == 255) == (t == 1.0))
        .count();
    assert!(
        same as f64 >= 0.8 * true_map.len() as f64,
        "{same} of 784 pixels"
    );
}

#[test]
fn bare_extract_is_the_demo_on_the_embedded_test_set() {
    let ck = checkpoint();
    let dir = common::embedded_mnist();
    let args = [
        "--device",
        "cpu",
        "extract",
        "--otsu",
        "--checkpoint",
        &ck,
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    // The human summary says what was done and shows the all-zeros baseline beside the score.
    let text = run_ok(&args);
    assert!(text.contains("watermarked the 2000 test digits"), "{text}");
    assert!(text.contains("always answering 0 would score"), "{text}");
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let lines = json_lines(&run_ok(&json_args));
    let totals = &lines.last().unwrap()["totals"];
    assert_eq!(totals["images"], 2000);
    let acc = totals["scored"]["bit_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.99, "bit accuracy {acc}");
}

#[test]
fn evaluate_prints_the_table_and_writes_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.png");
    let ck = checkpoint();
    let dir = common::embedded_mnist();
    let text = run_ok(&[
        "--device",
        "cpu",
        "evaluate",
        "--json",
        "--checkpoint",
        &ck,
        "--data-dir",
        dir.to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
        "--samples",
        "3",
    ]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(row["quality"]["psnr"].as_f64().unwrap() > 20.0);
        assert!(row["quality"]["ssim"].as_f64().unwrap() > 0.5);
        assert_eq!(row["recovery"].as_array().unwrap().len(), 2);
    }
    assert!(rows[1]["roc_auc"].as_f64().unwrap() > 0.99);
    let png = image::open(&grid).unwrap();
    // 6 tiles of 28 + gaps of 2, scaled 4x.
    assert_eq!(
        (png.width(), png.height()),
        ((6 * 30 + 2) * 4, (3 * 30 + 2) * 4)
    );
}

/// A bad image fails alone, as a photo does: it is named, the run goes on and exits 3, the
/// other images are written and listed in the manifest, and no temporary file is left.
#[test]
fn wrong_image_size_fails_that_image_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = digit_pngs(&tmp.path().join("in"), 3);
    image::GrayImage::new(32, 32)
        .save(inputs.join("big.png"))
        .unwrap();
    let out_dir = tmp.path().join("marked");
    let out = ["--random", "--out", out_dir.to_str().unwrap()];
    let e = input_failure(&on_input("embed", &inputs, &checkpoint(), &out));
    assert!(
        e.contains("big.png") && e.contains("32x32") && e.contains("expects 28x28"),
        "{e}"
    );
    assert_eq!(
        files_in(&out_dir),
        ["digit00.png", "digit01.png", "digit02.png", "manifest.json"]
    );
    let manifest = wmae::io::manifest::Manifest::load(&out_dir.join("manifest.json")).unwrap();
    let listed: Vec<&str> = manifest.images.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(listed, ["digit00.png", "digit01.png", "digit02.png"]);
    for dir in [tmp.path(), out_dir.as_path()] {
        assert!(
            !files_in(dir).iter().any(|f| f.starts_with(".wmae")),
            "{:?}",
            files_in(dir)
        );
    }
}

#[test]
fn bad_bits_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = digit_pngs(&tmp.path().join("in"), 1);
    let out_dir = tmp.path().join("marked");
    for (bits, want) in [
        ("0101", "4 bits given"),
        ("01010101010101x1", "character 15 is 'x'"),
    ] {
        let out = ["--bits", bits, "--out", out_dir.to_str().unwrap()];
        let e = failure(&on_input("embed", &inputs, &checkpoint(), &out));
        assert!(e.contains(want), "{e}");
        assert!(!out_dir.exists());
    }
    let e = failure(&on_input(
        "extract",
        &inputs,
        &checkpoint(),
        &["--expect", "2"],
    ));
    assert!(e.contains("only 0 and 1 are allowed"), "{e}");
}

#[test]
fn unreadable_image_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken.png");
    std::fs::write(&bad, b"not a png at all").unwrap();
    let e = input_failure(&on_input("extract", &bad, &checkpoint(), &[]));
    assert!(
        e.contains("broken.png: not a readable PNG, JPEG, WebP or TIFF image"),
        "{e}"
    );
}

#[test]
fn missing_and_mismatched_checkpoints_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = digit_pngs(&tmp.path().join("in"), 1);
    let e = failure(&on_input("extract", &inputs, "/nonexistent/model.ot", &[]));
    assert!(e.contains("/nonexistent/model"), "{e}");

    // A checkpoint with one layer renamed and one dropped (metadata and checksum intact).
    let (mut named, meta) =
        wmae::io::checkpoint::read_with_metadata(Path::new(&checkpoint())).unwrap();
    named.retain(|(n, _)| n != "conl3w.bias");
    for (n, _) in named.iter_mut() {
        if n == "convl1e.weight" {
            *n = "conv1.weight".into();
        }
    }
    let bad = tmp.path().join("bad.ot");
    wmae::io::checkpoint::save_ot(&bad, &named, &meta).unwrap();
    let e = failure(&on_input("extract", &inputs, bad.to_str().unwrap(), &[]));
    assert!(
        e.contains("missing variables [\"conl3w.bias\", \"convl1e.weight\"]"),
        "{e}"
    );
    assert!(e.contains("unexpected variables [\"conv1.weight\"]"), "{e}");
}

/// An (n, 28, 28) array of `descr` ('<f4', '|u1') in NPY format 1.0, written by hand.
fn npy(descr: &str, n: usize, data: &[u8]) -> Vec<u8> {
    let header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({n}, 28, 28), }}");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let full = format!("{header}{}\n", " ".repeat(pad));
    bytes.extend_from_slice(&(full.len() as u16).to_le_bytes());
    bytes.extend_from_slice(full.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn npy_and_rgb_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let split = load_split(&common::embedded_mnist(), Split::Test).unwrap();
    // A float32 (3,28,28) .npy with the first three digits, written by hand in NPY format 1.0.
    let pixels: Vec<f32> = split.images.data[..3 * 784]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    let data: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    let bytes = npy("<f4", 3, &data);
    let npy = tmp.path().join("digits.npy");
    std::fs::write(&npy, bytes).unwrap();
    let marked = tmp.path().join("marked");
    let ck = checkpoint();
    let out = [
        "--bits",
        "1111000011110000",
        "--out",
        marked.to_str().unwrap(),
    ];
    run_ok(&on_input("embed", &npy, &ck, &out));
    assert_eq!(
        files_in(&marked),
        vec![
            "digits-00000.png",
            "digits-00001.png",
            "digits-00002.png",
            "manifest.json"
        ]
    );

    // An RGB copy of a watermarked digit reads as the same gray image.
    let gray = image::open(marked.join("digits-00001.png"))
        .unwrap()
        .to_luma8();
    let rgb = image::DynamicImage::ImageLuma8(gray).to_rgb8();
    let rgb_path = tmp.path().join("rgb.png");
    rgb.save(&rgb_path).unwrap();
    let text = run_ok(&on_input(
        "extract",
        &rgb_path,
        &checkpoint(),
        &["--json", "--expect", "1111000011110000"],
    ));
    assert_eq!(exact_rate(&text), 1.0, "{text}");

    // Floats outside [0,1] are refused, naming the file.
    let bad = tmp.path().join("bad.npy");
    let mut b = std::fs::read(&npy).unwrap();
    let n = b.len();
    b[n - 4..].copy_from_slice(&2.5f32.to_le_bytes());
    std::fs::write(&bad, b).unwrap();
    let e = input_failure(&on_input("extract", &bad, &checkpoint(), &[]));
    assert!(e.contains("bad.npy: value 2.5"), "{e}");
}

/// The issue that made digits one path: a nested folder of digit PNGs embeds as a tree (the
/// batch path said "no PNG or JPEG files"), its manifest lists each output at its path, and
/// extract scores every image against its own entry even where two folders hold one file name
/// with different bits.
#[test]
fn nested_folders_keep_their_paths_and_manifest_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    digit_pngs(&tree.join("a"), 4);
    digit_pngs(&tree.join("b/deeper"), 4);
    let marked = tmp.path().join("marked");
    let ck = checkpoint();
    run_ok(&on_input(
        "embed",
        &tree,
        &ck,
        &["--random", "--out", marked.to_str().unwrap()],
    ));
    let manifest = wmae::io::manifest::Manifest::load(&marked.join("manifest.json")).unwrap();
    let files: Vec<&str> = manifest.images.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files.len(), 8);
    assert!(files.contains(&"a/digit01.png") && files.contains(&"b/deeper/digit01.png"));
    let bits = |file: &str| {
        manifest
            .images
            .iter()
            .find(|e| e.file == file)
            .unwrap()
            .bits
            .clone()
    };
    // Random bits differ between the two digit01.png (the chance they agree is 2^-16).
    assert_ne!(bits("a/digit01.png"), bits("b/deeper/digit01.png"));
    let text = run_ok(&on_input(
        "extract",
        &marked,
        &ck,
        &[
            "--json",
            "--manifest",
            marked.join("manifest.json").to_str().unwrap(),
        ],
    ));
    assert_eq!(exact_rate(&text), 1.0, "{text}");
    // Given alone, a file is found by its name where only one entry has it, and refused where
    // two do (its name does not say which bits it should carry).
    let mut unique = marked.join("a/digit01.png");
    std::fs::rename(&unique, marked.join("a/only-here.png")).unwrap();
    let mut m = manifest;
    for e in m.images.iter_mut().filter(|e| e.file == "a/digit01.png") {
        e.file = "a/only-here.png".into();
    }
    let edited = tmp.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_string(&m).unwrap()).unwrap();
    unique = marked.join("a/only-here.png");
    let text = run_ok(&on_input(
        "extract",
        &unique,
        &ck,
        &["--json", "--manifest", edited.to_str().unwrap()],
    ));
    assert_eq!(exact_rate(&text), 1.0, "{text}");
    let shared = marked.join("b/deeper/digit02.png");
    std::fs::copy(&shared, tmp.path().join("digit02.png")).unwrap();
    let e = input_failure(&on_input(
        "extract",
        &tmp.path().join("digit02.png"),
        &ck,
        &["--manifest", edited.to_str().unwrap()],
    ));
    assert!(e.contains("digit02.png: not listed in the manifest"), "{e}");
}

/// Arrays stream image by image: two shards of one .npy write their own manifests, which
/// together score every image; an image and an array in one folder, and a .jpg and a .png of
/// one name, are kept apart or refused, never written over each other.
#[test]
fn array_shards_write_one_manifest_each() {
    let tmp = tempfile::tempdir().unwrap();
    let split = load_split(&common::embedded_mnist(), Split::Test).unwrap();
    let n = 10;
    let bytes = npy("|u1", n, &split.images.data[..n * 784]);
    let npy = tmp.path().join("ten.npy");
    std::fs::write(&npy, bytes).unwrap();
    let marked = tmp.path().join("marked");
    let ck = checkpoint();
    for shard in ["0/2", "1/2"] {
        run_ok(&on_input(
            "embed",
            &npy,
            &ck,
            &[
                "--random",
                "--shard",
                shard,
                "--out",
                marked.to_str().unwrap(),
            ],
        ));
    }
    let m0 = marked.join("manifest-shard-0-of-2.json");
    let m1 = marked.join("manifest-shard-1-of-2.json");
    let count = |m: &Path| wmae::io::manifest::Manifest::load(m).unwrap().images.len();
    assert_eq!(count(&m0) + count(&m1), n);
    assert!(!marked.join("manifest.json").exists());
    let text = run_ok(&on_input(
        "extract",
        &marked,
        &ck,
        &[
            "--json",
            "--manifest",
            m0.to_str().unwrap(),
            "--manifest",
            m1.to_str().unwrap(),
        ],
    ));
    assert_eq!(json_lines(&text).len(), n + 1);
    assert_eq!(exact_rate(&text), 1.0, "{text}");
    // The marked array images read back from the array itself, too (#K names each).
    let lines = json_lines(&run_ok(&on_input("extract", &npy, &ck, &["--json"])));
    assert!(lines[..n]
        .iter()
        .any(|l| l["input"].as_str().unwrap().ends_with("ten.npy#9")));

    // one.png and one.jpg would both be written as one.png: the second is refused.
    let clash = tmp.path().join("clash");
    digit_pngs(&clash, 1);
    std::fs::copy(clash.join("digit00.png"), clash.join("digit00.jpg")).unwrap();
    let out = tmp.path().join("clash-out");
    let e = input_failure(&on_input(
        "embed",
        &clash,
        &ck,
        &["--random", "--out", out.to_str().unwrap()],
    ));
    assert!(e.contains("also written as digit00.png"), "{e}");
    assert_eq!(files_in(&out), ["digit00.png", "manifest.json"]);
}

/// People get a line for each of the first 50 images and the summary, not 2,000 lines; every
/// image is in --jsonl.
#[test]
fn human_output_shows_the_first_images_and_the_summary() {
    let idx = common::embedded_mnist().join("t10k-images-idx3-ubyte.gz");
    let text = run_ok(&["--device", "cpu", "extract", idx.to_str().unwrap()]);
    let per_image = text
        .lines()
        .filter(|l| l.contains("t10k-images-idx3-ubyte.gz#"))
        .count();
    assert_eq!(per_image, 50, "{text}");
    assert!(text.contains("(1950 more image lines not shown"), "{text}");
    assert!(text.contains("watermark found in 0 (0.00%)"), "{text}");
    let jsonl = run_ok(&[
        "--device",
        "cpu",
        "extract",
        idx.to_str().unwrap(),
        "--jsonl",
    ]);
    assert_eq!(jsonl.lines().count(), 2000);
}
