//! The manifest `wmae embed` writes beside its PNG files: which checkpoint and watermark layout
//! made them and the bits each file carries. `wmae extract --manifest` scores against it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::message::watermark::Layout;

/// The manifest format this wmae writes and reads; a manifest naming another is refused.
pub const MANIFEST_FORMAT: &str = "wmae-manifest-1";
/// File name of the manifest in the output folder.
pub const MANIFEST_NAME: &str = "manifest.json";

/// What `wmae embed` made: the model, the watermark layout and the bits of each output file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format, [`MANIFEST_FORMAT`].
    pub format: String,
    /// The checkpoint the images were watermarked with.
    pub checkpoint: PathBuf,
    /// Where and how the bits lie in each image.
    pub layout: Layout,
    /// One entry per watermarked file, in input order.
    pub images: Vec<ManifestEntry>,
}

/// One watermarked file of a manifest and the bits it carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// The watermarked PNG, relative to the manifest's folder.
    pub file: String,
    /// The input it was made from.
    pub source: String,
    /// The embedded bits as a string of `0` and `1`, in the layout's order.
    pub bits: String,
}

impl Manifest {
    /// Reads a manifest file, refusing one of another format.
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

/// Output file names of embedded images: the input's file stem, `-N` for the N-th image of an
/// array file, made unique when two inputs share a stem.
pub fn output_names(names: &[String]) -> Vec<String> {
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
            // A stem shared with an earlier input gets the input's position, then a counter.
            let mut k = 0;
            while !used.insert(out.clone()) {
                out = match k {
                    0 => format!("{stem}-{i}.png"),
                    _ => format!("{stem}-{i}-{k}.png"),
                };
                k += 1;
            }
            out
        })
        .collect()
}
