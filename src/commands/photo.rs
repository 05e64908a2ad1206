//! `wmae embed --payload` and `wmae extract` on photos: a payload in photos of any size, read
//! back with its corrected bit count and the detection decision (`crate::photo_watermark`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::binarize::Method;
use crate::cli::{
    EmbedArgs, ExtractArgs, GlobalArgs, DEFAULT_CHECKPOINT, DEFAULT_PHOTO_CHECKPOINT,
};
use crate::payload::Payload;
use crate::photo::Photo;
use crate::photo_watermark::{psnr, PhotoModel};

/// The checkpoint `embed` uses: the given one, or the shipped photo or digit model.
pub fn embed_checkpoint(args: &EmbedArgs) -> PathBuf {
    args.checkpoint.clone().unwrap_or_else(|| {
        PathBuf::from(if args.payload.is_some() {
            DEFAULT_PHOTO_CHECKPOINT
        } else {
            DEFAULT_CHECKPOINT
        })
    })
}

/// The checkpoint `extract` uses: the given one; else the photo model when the first input is an
/// image file that is not 28x28 (a photo), the digit model otherwise.
pub fn extract_checkpoint(args: &ExtractArgs) -> PathBuf {
    if let Some(c) = &args.checkpoint {
        return c.clone();
    }
    let first_photo = args
        .inputs
        .first()
        .and_then(|p| photo_files(std::slice::from_ref(p)).ok())
        .and_then(|files| files.into_iter().next())
        .and_then(|f| image::image_dimensions(f).ok());
    PathBuf::from(match first_photo {
        Some((w, h)) if (w, h) != (28, 28) => DEFAULT_PHOTO_CHECKPOINT,
        _ => DEFAULT_CHECKPOINT,
    })
}

/// Whether a checkpoint holds a photo model (a tile layout), from its metadata only.
pub fn is_photo_model(path: &Path) -> bool {
    crate::checkpoint::read_with_metadata(&crate::checkpoint::resolve_default(path))
        .map(|(_, meta)| matches!(meta.layout, crate::layout::Layout::Tile { .. }))
        .unwrap_or(false)
}

/// The photo files of `inputs`: files as given, folders searched recursively (sorted) for
/// .png, .jpg and .jpeg files, hidden entries skipped.
pub fn photo_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = crate::data::photos::files_under(input)?;
            if found.is_empty() {
                bail!("{}: no .png, .jpg or .jpeg files in it", input.display());
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// `wmae embed --payload`: every photo gets the payload and is written under `--out` with its
/// own file name, size, colour type and format.
pub fn embed(args: &EmbedArgs, global: &GlobalArgs, spec: &str) -> Result<()> {
    if !(1..=100).contains(&args.jpeg_quality) {
        bail!("--jpeg-quality {}: must lie in 1..=100", args.jpeg_quality);
    }
    let checkpoint = embed_checkpoint(args);
    let model = PhotoModel::load(&checkpoint, global.device.resolve()?)?;
    let payload = Payload::parse(spec, model.code().data_bits())?;
    let files = photo_files(&args.inputs)?;
    // Two inputs of one name would overwrite each other's output.
    let mut names: HashMap<std::ffi::OsString, &Path> = HashMap::new();
    for f in &files {
        let name = f.file_name().context("an input without a file name")?;
        if let Some(other) = names.insert(name.to_os_string(), f) {
            bail!(
                "{} and {} would both be written as {}",
                other.display(),
                f.display(),
                args.out.join(name).display()
            );
        }
    }
    let _lock = crate::fsutil::FolderLock::acquire(&args.out)?;
    for file in &files {
        let started = std::time::Instant::now();
        let photo = Photo::open(file)?;
        let marked = model.embed(&photo, &payload, args.strength)?;
        let out = args.out.join(file.file_name().expect("checked above"));
        marked.save(&out, args.jpeg_quality)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        println!(
            "{} -> {}: {}x{}, {ms:.0} ms, PSNR {:.2} dB against the original (before {} encoding)",
            file.display(),
            out.display(),
            photo.width(),
            photo.height(),
            psnr(&photo, &marked)?,
            match photo.format {
                crate::photo::PhotoFormat::Png => "PNG",
                crate::photo::PhotoFormat::Jpeg => "JPEG",
            }
        );
    }
    let code = model.code();
    println!(
        "embedded payload {} ({} data bits, BCH ({}, {}) correcting {} bits) into {} photo(s) in {}",
        payload.hex(),
        code.data_bits(),
        code.coded_bits(),
        code.data_bits(),
        code.t(),
        files.len(),
        args.out.display()
    );
    Ok(())
}

/// `wmae extract` on photos: the payload of each, or "no watermark".
pub fn extract(args: &ExtractArgs, global: &GlobalArgs, checkpoint: &Path) -> Result<()> {
    if args.inputs.is_empty() {
        bail!("a photo model reads photos: give the files or folders to read");
    }
    if args.expect.is_some() || args.manifest.is_some() || args.out.is_some() {
        bail!(
            "--expect, --manifest and --out are for the digit models; photos print their payload"
        );
    }
    let method = if args.otsu {
        Method::Otsu
    } else {
        Method::Threshold(args.threshold)
    };
    let model = PhotoModel::load(checkpoint, global.device.resolve()?)?;
    let files = photo_files(&args.inputs)?;
    let mut found = 0;
    for file in &files {
        let started = std::time::Instant::now();
        let photo = Photo::open(file)?;
        let r = model.read(&photo, method)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let fpr = r.reading.false_positive_rate;
        match &r.reading.payload {
            Some(p) => {
                found += 1;
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "file": file, "watermark": true, "payload": p.hex(),
                            "text": p.text(), "uuid": p.uuid(),
                            "corrected_bits": r.reading.corrected,
                            "scale": r.scale, "shift": r.shift, "mirrored": r.mirrored, "angle": r.angle,
                            "false_positive_rate": fpr, "ms": ms,
                        })
                    );
                } else {
                    let text = p
                        .text()
                        .map(|t| format!(" (text {t:?})"))
                        .unwrap_or_default();
                    println!(
                        "{}: payload {}{text}; {} of {} bits corrected, read at {:.0}% scale{}; \
                         watermark found (a clean photo reads as one with probability {fpr:.1e})",
                        file.display(),
                        p.hex(),
                        r.reading.corrected,
                        model.code().coded_bits(),
                        100.0 * r.scale.unwrap_or(1.0),
                        match (r.mirrored, r.angle) {
                            (true, _) => ", mirrored".to_string(),
                            (false, Some(a)) if a != 0.0 => format!(", turned back by {a} degrees"),
                            _ => String::new(),
                        }
                    );
                }
            }
            None if args.json => println!(
                "{}",
                serde_json::json!({"file": file, "watermark": false, "false_positive_rate": fpr, "ms": ms})
            ),
            None => println!(
                "{}: no watermark (no shift, scale or angle decodes within {} bit errors; a clean photo \
                 reads as watermarked with probability {fpr:.1e})",
                file.display(),
                model.code().t()
            ),
        }
    }
    if !args.json {
        println!("watermark found in {found} of {} photo(s)", files.len());
    }
    Ok(())
}
