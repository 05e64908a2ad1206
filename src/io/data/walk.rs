//! The one walk every command takes of a folder (`walkdir`), and the image files it finds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Whether a file name says PNG, JPEG, WebP or TIFF (by extension, any case).
pub fn is_image_file(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg" | "webp" | "tif" | "tiff")
    )
}

/// The walk every command takes of a folder (`walkdir`): depth first, siblings sorted by name,
/// entries whose names start with '.' left out (the folder itself aside), links to folders not
/// followed (a link loop cannot hang it), and the folder `exclude` (canonical path) not entered.
/// It yields folders and files alike; callers keep the image files.
pub fn walk_folder(
    root: &Path,
    exclude: Option<PathBuf>,
) -> impl Iterator<Item = walkdir::Result<walkdir::DirEntry>> + Send {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(move |e| {
            if e.depth() == 0 {
                return true;
            }
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            let excluded = e.file_type().is_dir()
                && exclude.is_some()
                && std::fs::canonicalize(e.path()).ok() == exclude;
            !hidden && !excluded
        })
}

/// The PNG, JPEG, WebP and TIFF files under `dir`, recursively
/// ([`walk_folder`]), sorted by path.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walk_folder(dir, None) {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        if !entry.file_type().is_dir() && is_image_file(path) && path.is_file() {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}
