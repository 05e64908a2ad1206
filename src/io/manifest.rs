//! The manifest `wmae embed` writes beside its PNG files: which checkpoint and watermark layout
//! made them and the bits each file carries. `wmae extract --manifest` scores against it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::message::watermark::{self, Layout};

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

/// The entries of one or more manifests, found by an image's path below its folder argument
/// (the path its output was written at), else by that path less its extension (a copy saved as
/// .jpg), else by file name or file name less extension where only one entry has it (a name two
/// entries share does not say which bits are meant).
pub struct ManifestIndex {
    layout: Layout,
    files: Vec<PathBuf>,
    by_path: HashMap<PathBuf, String>,
    by_stem_path: HashMap<PathBuf, String>,
    by_name: HashMap<String, Option<String>>,
    by_stem: HashMap<String, Option<String>>,
}

impl ManifestIndex {
    /// Reads the manifests, refusing one whose layout is not `layout` or whose entry holds bad
    /// bits (naming the manifest and the entry).
    pub fn load(files: &[PathBuf], layout: &Layout) -> Result<Self> {
        let mut index = ManifestIndex {
            layout: *layout,
            files: files.to_vec(),
            by_path: HashMap::new(),
            by_stem_path: HashMap::new(),
            by_name: HashMap::new(),
            by_stem: HashMap::new(),
        };
        for path in files {
            let manifest = Manifest::load(path)?;
            if manifest.layout != *layout {
                bail!(
                    "{}: its watermark layout differs from the checkpoint's",
                    path.display()
                );
            }
            for e in manifest.images {
                watermark::parse_bits(&e.bits, layout)
                    .with_context(|| format!("{}: entry {}", path.display(), e.file))?;
                index.add(&e.file, &e.bits);
            }
        }
        Ok(index)
    }

    fn add(&mut self, file: &str, bits: &str) {
        let file = PathBuf::from(file);
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let stem = file.file_stem().map(|n| n.to_string_lossy().into_owned());
        self.by_stem_path
            .insert(file.with_extension(""), bits.to_string());
        self.by_path.insert(file, bits.to_string());
        for (map, key) in [(&mut self.by_name, name), (&mut self.by_stem, stem)] {
            if let Some(key) = key {
                map.entry(key)
                    .and_modify(|b| {
                        if b.as_deref() != Some(bits) {
                            *b = None
                        }
                    })
                    .or_insert_with(|| Some(bits.to_string()));
            }
        }
    }

    /// The bits listed for the image at `key` (its path below its folder argument).
    pub fn lookup(&self, key: &Path) -> Option<&str> {
        let name = key.file_name().map(|n| n.to_string_lossy().into_owned());
        let stem = key.file_stem().map(|n| n.to_string_lossy().into_owned());
        self.by_path
            .get(key)
            .or_else(|| self.by_stem_path.get(&key.with_extension("")))
            .or_else(|| name.and_then(|n| self.by_name.get(&n)?.as_ref()))
            .or_else(|| stem.and_then(|s| self.by_stem.get(&s)?.as_ref()))
            .map(String::as_str)
    }

    /// The layout every entry's bits are in.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The manifest files, comma-separated, for messages.
    pub fn describe(&self) -> String {
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str)]) -> ManifestIndex {
        let mut index = ManifestIndex {
            layout: Layout::Block {
                rows: 1,
                cols: 2,
                top: 0,
                left: 0,
                height: 28,
                width: 28,
            },
            files: vec![],
            by_path: HashMap::new(),
            by_stem_path: HashMap::new(),
            by_name: HashMap::new(),
            by_stem: HashMap::new(),
        };
        for (file, bits) in entries {
            index.add(file, bits);
        }
        index
    }

    #[test]
    fn finds_by_path_then_stem_then_unique_names() {
        let m = index(&[("a/x.png", "01"), ("b/c/x.png", "10"), ("b/y.png", "11")]);
        let find = |k: &str| m.lookup(Path::new(k));
        assert_eq!(find("a/x.png"), Some("01"));
        assert_eq!(find("b/c/x.png"), Some("10"));
        assert_eq!(find("b/c/x.jpg"), Some("10"), "a copy in another format");
        assert_eq!(find("y.png"), Some("11"), "a unique name given alone");
        assert_eq!(
            find("other/y.webp"),
            Some("11"),
            "a unique stem given alone"
        );
        assert_eq!(find("x.png"), None, "two entries are named x.png");
        assert_eq!(find("z.png"), None);
    }
}
