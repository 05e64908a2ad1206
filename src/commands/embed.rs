//! `wmae embed`: watermarks images with given or random bits and writes them as 8-bit PNG files
//! with a manifest of the bits, which `wmae extract --manifest` reads back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::checkpoint;
use crate::cli::{EmbedArgs, GlobalArgs};
use crate::data::images;
use crate::watermark::{self, Layout};

pub const MANIFEST_FORMAT: &str = "wmae-manifest-1";
pub const MANIFEST_NAME: &str = "manifest.json";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub checkpoint: PathBuf,
    pub layout: Layout,
    pub images: Vec<ManifestEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// The watermarked PNG, relative to the manifest's folder.
    pub file: String,
    /// The input it was made from.
    pub source: String,
    pub bits: String,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a wmae manifest", path.display()))?;
        if m.format != MANIFEST_FORMAT {
            bail!(
                "{}: format {:?}, expected {MANIFEST_FORMAT:?}",
                path.display(),
                m.format
            );
        }
        Ok(m)
    }
}

/// Output file names: the input's file stem, `-N` for the N-th image of an array file, made
/// unique when two inputs share a stem.
fn output_names(names: &[String]) -> Vec<String> {
    let mut used = HashSet::new();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (path, index) = match name.rsplit_once('#') {
                Some((p, k)) => (p, Some(k)),
                None => (name.as_str(), None),
            };
            let stem = Path::new(path)
                .file_stem()
                .map_or("image".into(), |s| s.to_string_lossy().into_owned());
            let mut out = match index {
                Some(k) => format!("{stem}-{k:0>5}.png"),
                None => format!("{stem}.png"),
            };
            if !used.insert(out.clone()) {
                out = format!("{stem}-{i}.png");
                used.insert(out.clone());
            }
            out
        })
        .collect()
}

pub fn run(args: &EmbedArgs, global: &GlobalArgs) -> Result<()> {
    let device = global.device.resolve()?;
    let loaded = checkpoint::load_for_inference(&args.checkpoint, device)?;
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
        None => Tensor::randint(2, [n, layout.bit_count()], (Kind::Float, tch::Device::Cpu)),
    };
    let watermarked = tch::no_grad(|| {
        let map = layout.map_from_bits(&bits.to_device(device));
        loaded
            .model
            .embed_t(&inputs.tensor().to_device(device), &map, false)
    });

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
        images::write_png(
            &scratch.path().join(file),
            &images::to_gray(&watermarked.get(i as i64)),
        )?;
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        checkpoint: args.checkpoint.clone(),
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
    crate::fsutil::write_atomically(&scratch.path().join(MANIFEST_NAME), |f| {
        std::io::Write::write_all(f, json.as_bytes())
    })?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for name in files.iter().map(String::as_str).chain([MANIFEST_NAME]) {
        let to = args.out.join(name);
        std::fs::rename(scratch.path().join(name), &to)
            .with_context(|| format!("cannot write {}", to.display()))?;
    }
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
