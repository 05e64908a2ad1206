//! `wmae embed`: watermarks images with given or random bits and writes them as 8-bit PNG files
//! with a manifest of the bits, which `wmae extract --manifest` reads back.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tch::Tensor;

use crate::codec::gray;
use crate::commands::cli::{EmbedArgs, GlobalArgs};
use crate::io::checkpoint;
use crate::io::data::images;
use crate::io::manifest::{output_names, Manifest, ManifestEntry, MANIFEST_FORMAT, MANIFEST_NAME};
use crate::message::watermark;
use crate::watermarker::inference;

/// Runs `wmae embed`: watermarks digit images or photos and writes them out.
pub(crate) fn run(args: &EmbedArgs, global: &GlobalArgs) -> Result<()> {
    if !(args.strength > 0.0 && args.strength <= 10.0) {
        anyhow::bail!("--strength {}: must lie in (0, 10]", args.strength);
    }
    if let Some(spec) = &args.payload {
        return super::photo::embed(args, global, spec);
    }
    if args.key.is_some() {
        anyhow::bail!("--key keys photo payloads (--payload); digit models carry plain bits");
    }
    if args.visibility.is_some() {
        anyhow::bail!(
            "--visibility chooses each photo's strength (with --payload); digit models embed at \
             --strength"
        );
    }
    let checkpoint = super::photo::embed_checkpoint(args);
    if super::streaming::wants_streaming(&args.stream, args.skip_existing) {
        return super::digit_stream::embed(args, global, &checkpoint);
    }
    let device = global.device.resolve()?;
    let loaded = checkpoint::load_for_inference(&checkpoint, device)?;
    let layout = loaded.meta.layout;
    // Everything that can be wrong with the input is checked before anything is written.
    let fixed_bits = args
        .bits
        .as_deref()
        .map(|b| watermark::parse_bits(b, &layout))
        .transpose()?;
    let inputs = images::read_inputs(&args.inputs)?;
    let n = inputs.len() as i64;
    let bits = match fixed_bits {
        Some(b) => Tensor::from_slice(&b)
            .reshape([1, layout.bit_count()])
            .repeat([n, 1]),
        None => watermark::random_bits(&layout, n, tch::Device::Cpu),
    };
    let watermarked = inference::embed(
        &loaded.model,
        &layout,
        &inputs.tensor().to_device(device),
        &bits,
        args.strength,
    );

    // One writer per output folder: a second embed into it stops here instead of mixing its
    // files with this one's manifest.
    let _lock = crate::runtime::fsutil::FolderLock::acquire(&args.out)?;
    let files = output_names(&inputs.names);
    let bit_rows = Vec::<Vec<f32>>::try_from(&bits).context("bits to host")?;
    // Write into a scratch folder next to --out, then move the files in: an error part-way
    // leaves no partial output behind.
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".wmae-embed-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a scratch folder in {}", parent.display()))?;
    for (i, file) in files.iter().enumerate() {
        let path = scratch.path().join(file);
        let png = gray::png_bytes(&path, &gray::to_gray(&watermarked.get(i as i64)))?;
        crate::runtime::fsutil::write_into_scratch(&path, &png)?;
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        checkpoint: checkpoint.clone(),
        layout,
        images: files
            .iter()
            .zip(&inputs.names)
            .zip(&bit_rows)
            .map(|((file, source), bits)| ManifestEntry {
                file: file.clone(),
                source: source.clone(),
                bits: watermark::format_bits(bits),
            })
            .collect(),
    };
    let json = serde_json::to_string_pretty(&manifest)?;
    crate::runtime::fsutil::write_atomically(&scratch.path().join(MANIFEST_NAME), |f| {
        std::io::Write::write_all(f, json.as_bytes())
    })?;
    for name in files.iter().map(String::as_str).chain([MANIFEST_NAME]) {
        let to = args.out.join(name);
        std::fs::rename(scratch.path().join(name), &to)
            .with_context(|| format!("cannot write {}", to.display()))?;
    }
    // The files were synced when written; the moves into --out are made durable once, here.
    crate::runtime::fsutil::sync_dir(&args.out)?;
    println!(
        "embedded {} watermark(s) of {} bits ({}) into {} PNG file(s) in {}; bits in {}",
        n,
        layout.bit_count(),
        if args.random { "random" } else { "given" },
        files.len(),
        args.out.display(),
        args.out.join(MANIFEST_NAME).display()
    );
    Ok(())
}
