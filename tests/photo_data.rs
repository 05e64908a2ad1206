//! The photo training set (src/io/data/photos.rs): loading real PNG/JPEG files of every colour
//! type, luma, the downscale at load, patches (shape, range, determinism, flips), whole photos,
//! and errors that name the file at fault.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use tch::Tensor;
use wmae::io::data::photos::PhotoSet;

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

fn solid_rgb(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(c))
}

/// Luma rising from 0 at the left edge to 255 at the right edge.
fn ramp(w: u32, h: u32) -> GrayImage {
    GrayImage::from_fn(w, h, |x, _| Luma([(x * 255 / (w - 1)) as u8]))
}

/// A folder of five photos of every kind (and things to skip); returns it and the expected order.
fn mixed_folder() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, 128]))
        .save(p("a_gradient.png"))
        .unwrap();
    GrayImage::from_fn(40, 40, |x, y| {
        Luma([if (x / 5 + y / 5) % 2 == 0 { 0 } else { 255 }])
    })
    .save(p("b_checker.PNG"))
    .unwrap();
    RgbaImage::from_pixel(30, 20, Rgba([0, 255, 0, 100]))
        .save(p("c_green_rgba.png"))
        .unwrap();
    RgbImage::from_fn(50, 50, |x, y| Rgb([(x * 5) as u8, 90, (y * 5) as u8]))
        .save(p("d_photo.jpg"))
        .unwrap();
    std::fs::create_dir(p("e_sub")).unwrap();
    solid_rgb(16, 16, [255, 0, 0])
        .save(p("e_sub/red.png"))
        .unwrap();
    // Skipped: a hidden file, a hidden folder, a file that is not a photo.
    solid_rgb(16, 16, [1, 2, 3]).save(p(".hidden.png")).unwrap();
    std::fs::create_dir(p(".cache")).unwrap();
    solid_rgb(16, 16, [1, 2, 3])
        .save(p(".cache/thumb.png"))
        .unwrap();
    std::fs::write(p("notes.txt"), "not a photo").unwrap();
    let order = [
        "a_gradient.png",
        "b_checker.PNG",
        "c_green_rgba.png",
        "d_photo.jpg",
        "e_sub/red.png",
    ];
    let order = order.iter().map(|n| p(n)).collect();
    (dir, order)
}

fn one_photo(image: &GrayImage) -> (tempfile::TempDir, PhotoSet) {
    let dir = tempfile::tempdir().unwrap();
    image.save(dir.path().join("photo.png")).unwrap();
    let set = PhotoSet::load(dir.path(), 1024, 2).unwrap();
    (dir, set)
}

#[test]
fn loads_every_kind_recursively_in_path_order_skipping_hidden() {
    let (dir, order) = mixed_folder();
    let set = PhotoSet::load(dir.path(), 1024, 2).unwrap();
    assert_eq!(set.len(), 5);
    assert!(!set.is_empty());
    let paths: Vec<&Path> = set.paths().collect();
    assert_eq!(
        paths,
        order.iter().map(PathBuf::as_path).collect::<Vec<_>>()
    );
    let pixels = 64 * 48 + 40 * 40 + 30 * 20 + 50 * 50 + 16 * 16;
    assert_eq!(set.total_pixels(), pixels);
    assert_eq!(
        set.describe(),
        "5 photos, 0.0 megapixels at load (longer side <= 1024)"
    );
}

#[test]
fn luma_is_bt601_and_ignores_alpha() {
    let (dir, _) = mixed_folder();
    let set = PhotoSet::load(dir.path(), 1024, 1).unwrap();
    // Photo 2 is green (alpha ignored), photo 4 red; 20 and 16 keep each one uniform.
    for (index, side, luma) in [(2, 20, 0.587f32), (4, 16, 0.299)] {
        for x in values(&set.whole(side).unwrap().get(index)) {
            assert!(
                (x - luma).abs() <= 1.0 / 255.0,
                "photo {index}: {x} vs {luma}"
            );
        }
    }
    // The checkerboard is gray: 0 and 255 kept exactly.
    let checker = values(&set.whole(40).unwrap().get(1));
    assert_eq!(checker[0], 0.0);
    assert_eq!(checker[5], 1.0);
}

#[test]
fn max_side_bounds_the_longer_side_and_never_upscales() {
    let dir = tempfile::tempdir().unwrap();
    ramp(300, 120).save(dir.path().join("wide.png")).unwrap();
    ramp(50, 200).save(dir.path().join("tall.png")).unwrap();
    ramp(40, 30).save(dir.path().join("small.png")).unwrap();
    let set = PhotoSet::load(dir.path(), 100, 3).unwrap();
    // small 40x30 kept; tall 50x200 -> 25x100; wide 300x120 -> 100x40.
    assert_eq!(set.total_pixels(), 40 * 30 + 25 * 100 + 100 * 40);
    assert_eq!(
        set.describe(),
        "3 photos, 0.0 megapixels at load (longer side <= 100)"
    );
    // The downscaled ramp still runs from black to white.
    let wide = values(&set.whole(100).unwrap().get(2));
    assert!(
        wide[0] < 0.02 && wide[99] > 0.98,
        "{} {}",
        wide[0],
        wide[99]
    );
}

#[test]
fn patches_have_shape_range_and_depend_only_on_the_seed() {
    let (dir, _) = mixed_folder();
    let one = PhotoSet::load(dir.path(), 1024, 1).unwrap();
    let three = PhotoSet::load(dir.path(), 1024, 3).unwrap();
    let a = one.patches(23, 24, 7).unwrap();
    assert_eq!(a.size(), [23, 1, 24, 24]);
    assert_eq!(a.kind(), tch::Kind::Float);
    assert_eq!(a.device(), tch::Device::Cpu);
    let v = values(&a);
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    assert!(v.iter().any(|&x| x < 0.2) && v.iter().any(|&x| x > 0.8));
    assert!(a.equal(&one.patches(23, 24, 7).unwrap()));
    assert!(a.equal(&three.patches(23, 24, 7).unwrap()));
    assert!(!a.equal(&one.patches(23, 24, 8).unwrap()));
    assert_eq!(one.patches(0, 24, 7).unwrap().size(), [0, 1, 24, 24]);
    assert!(one.patches(4, 0, 7).is_err());
    assert!(one.whole(-3).is_err());
}

#[test]
fn every_photo_gives_patches_evenly() {
    // Five uniform photos of distinct luma: each patch tells which photo it came from.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5u8 {
        GrayImage::from_pixel(20 + i as u32, 30, Luma([i * 50]))
            .save(dir.path().join(format!("{i}.png")))
            .unwrap();
    }
    let set = PhotoSet::load(dir.path(), 1024, 2).unwrap();
    let mut firsts = Vec::new();
    for seed in 0..4 {
        let patches = set.patches(12, 8, seed).unwrap();
        let means = values(&patches.mean_dim(&[1i64, 2, 3][..], false, tch::Kind::Float));
        let photo: Vec<usize> = means
            .iter()
            .map(|m| (m * 255.0 / 50.0).round() as usize)
            .collect();
        let mut counts = [0; 5];
        photo.iter().for_each(|&p| counts[p] += 1);
        assert!(counts.iter().all(|&c| c == 2 || c == 3), "{counts:?}");
        // Every run of five patches is all five photos.
        let mut run = photo[..5].to_vec();
        run.sort();
        assert_eq!(run, [0, 1, 2, 3, 4]);
        firsts.push(photo[..5].to_vec());
    }
    firsts.dedup();
    assert!(firsts.len() > 1, "the photo order is shuffled per seed");
}

#[test]
fn patches_are_flipped_about_half_the_time() {
    let (_dir, set) = one_photo(&ramp(64, 64));
    let patches = set.patches(64, 16, 3).unwrap();
    let mut flipped = 0;
    for i in 0..64 {
        let p = values(&patches.get(i));
        let (left, right) = (p[16 * 8], p[16 * 8 + 15]);
        assert_ne!(left, right);
        flipped += (left > right) as usize;
    }
    assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
}

#[test]
fn patch_sizes_vary_between_a_quarter_and_all_of_the_photo() {
    // Across a 64 px ramp, a patch's left-to-right rise is its crop's share of the width.
    let (_dir, set) = one_photo(&ramp(64, 64));
    let patches = set.patches(200, 16, 11).unwrap();
    let spans: Vec<f32> = (0..200)
        .map(|i| {
            let p = values(&patches.get(i));
            (p[15] - p[0]).abs()
        })
        .collect();
    let (min, max) = spans
        .iter()
        .fold((f32::MAX, 0f32), |(a, b), &s| (a.min(s), b.max(s)));
    assert!(min > 0.15 && min < 0.35, "smallest crop span {min}");
    assert!(max > 0.85, "largest crop span {max}");
}

#[test]
fn whole_squashes_each_photo_to_the_working_size() {
    let image = GrayImage::from_fn(64, 32, |x, _| Luma([if x < 32 { 0 } else { 255 }]));
    let (_dir, set) = one_photo(&image);
    let whole = set.whole(8).unwrap();
    assert_eq!(whole.size(), [1, 1, 8, 8]);
    let v = values(&whole);
    for row in v.chunks(8) {
        let same = row.iter().zip(&v[..8]).all(|(a, b)| (a - b).abs() < 1e-6);
        assert!(same, "rows differ: {row:?} {:?}", &v[..8]);
        assert_eq!(row[0], 0.0);
        assert!(row[7] > 0.99999);
        assert!(row.windows(2).all(|w| w[0] <= w[1] + 1e-6), "{row:?}");
        // Mirror symmetric about the middle.
        for x in 0..8 {
            assert!((row[x] + row[7 - x] - 1.0).abs() < 1e-5, "{row:?}");
        }
    }
}

#[test]
fn resampling_matches_the_image_crate_triangle_filter() {
    let image = GrayImage::from_fn(97, 61, |x, y| {
        Luma([((x * 37 + y * 91 + x * y * 13) % 256) as u8])
    });
    // Downscale at load (97x61 -> 40x25) equals image's resize, rounded to 8 bits.
    let dir = tempfile::tempdir().unwrap();
    image.save(dir.path().join("noise.png")).unwrap();
    let set = PhotoSet::load(dir.path(), 40, 1).unwrap();
    let expect = image::imageops::resize(&image, 40, 25, image::imageops::FilterType::Triangle);
    let expect2 = image::imageops::resize(&expect, 13, 13, image::imageops::FilterType::Triangle);
    let got: Vec<u8> = values(&set.whole(13).unwrap())
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    assert_eq!(got, expect2.into_raw());
    // Upscaling too.
    let up = image::imageops::resize(&expect, 50, 50, image::imageops::FilterType::Triangle);
    let got: Vec<u8> = values(&set.whole(50).unwrap())
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    assert_eq!(got, up.into_raw());
}

#[test]
fn errors_name_the_folder_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join(".hidden")).unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(empty.join(".hidden/x.png"))
        .unwrap();
    let err = format!("{:#}", PhotoSet::load(&empty, 64, 2).err().unwrap());
    assert!(
        err.contains(&empty.display().to_string()) && err.contains("no PNG, JPEG, WebP or TIFF"),
        "{err}"
    );

    let missing = dir.path().join("missing");
    let err = format!("{:#}", PhotoSet::load(&missing, 64, 2).err().unwrap());
    assert!(err.contains("missing"), "{err}");

    let text = dir.path().join("text");
    std::fs::create_dir(&text).unwrap();
    solid_rgb(8, 8, [0, 0, 0]).save(text.join("a.png")).unwrap();
    std::fs::write(text.join("x.png"), "this is not a PNG file\n").unwrap();
    let err = format!("{:#}", PhotoSet::load(&text, 64, 2).err().unwrap());
    assert!(err.contains("x.png"), "{err}");

    let truncated = dir.path().join("truncated");
    std::fs::create_dir(&truncated).unwrap();
    let noise = RgbImage::from_fn(256, 256, |x, y| {
        let v = wmae::runtime::splitmix::splitmix64((y * 256 + x) as u64);
        Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut jpeg = Vec::new();
    noise
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(truncated.join("cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let err = format!("{:#}", PhotoSet::load(&truncated, 64, 2).err().unwrap());
    assert!(err.contains("cut.jpg"), "{err}");

    let png = dir.path().join("png");
    std::fs::create_dir(&png).unwrap();
    let mut bytes = Vec::new();
    noise
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    std::fs::write(png.join("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    let err = format!("{:#}", PhotoSet::load(&png, 64, 2).err().unwrap());
    assert!(err.contains("cut.png"), "{err}");

    let (dir, _) = mixed_folder();
    assert!(PhotoSet::load(dir.path(), 0, 2).is_err());
}

#[test]
fn a_jpeg_with_bytes_after_its_end_marker_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut jpeg = Vec::new();
    ramp(64, 64)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    jpeg.extend_from_slice(b"\0\0trailing data of some camera");
    std::fs::write(dir.path().join("tail.jpg"), &jpeg).unwrap();
    let set = PhotoSet::load(dir.path(), 1024, 1).unwrap();
    assert_eq!(set.total_pixels(), 64 * 64);
}

#[test]
fn real_training_photos() {
    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/photos/train");
    if !train.is_dir() {
        println!(
            "skipped: {} is absent (scripts/fetch-data photos)",
            train.display()
        );
        return;
    }
    let start = Instant::now();
    let set = PhotoSet::load(&train, 1024, 2).unwrap();
    let load = start.elapsed();
    assert_eq!(set.len(), 76, "{}", set.describe());
    let start = Instant::now();
    let patches = set.patches(256, 128, 1).unwrap();
    let cut = start.elapsed();
    assert_eq!(patches.size(), [256, 1, 128, 128]);
    let whole = set.whole(128).unwrap();
    assert_eq!(whole.size(), [76, 1, 128, 128]);
    let mean = whole.mean(tch::Kind::Float).double_value(&[]);
    assert!(mean > 0.1 && mean < 0.9, "mean luma {mean}");
    println!(
        "{}: loaded in {load:.2?} (2 threads), 256 patches of 128 px in {cut:.2?}",
        set.describe()
    );
}

/// `cargo test --release --test photo_data -- --ignored --nocapture`: timings and peak memory
/// (process-wide, so run it alone) on the real photos.
#[test]
#[ignore]
fn time_real_training_photos() {
    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/photos/train");
    let peak = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .unwrap_or("");
        line.split_whitespace().nth(1).unwrap_or("?").to_string() + " kB"
    };
    for threads in [2, 1] {
        let start = Instant::now();
        let set = PhotoSet::load(&train, 1024, threads).unwrap();
        let load = start.elapsed();
        println!(
            "{threads} threads: {} in {load:.2?}; peak {}",
            set.describe(),
            peak()
        );
        let start = Instant::now();
        let patches = set.patches(4096, 128, 1).unwrap();
        let cut = start.elapsed();
        assert_eq!(patches.size(), [4096, 1, 128, 128]);
        let start = Instant::now();
        let whole = set.whole(128).unwrap();
        let squash = start.elapsed();
        assert_eq!(whole.size(), [76, 1, 128, 128]);
        println!(
            "{threads} threads: 4096 patches of 128 px in {cut:.2?}, whole in {squash:.2?}; peak {}",
            peak()
        );
    }
}
