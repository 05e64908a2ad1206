//! Files are written to a temporary file in the target's folder and renamed into place, so a
//! crash or an error never leaves a half-written output behind.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};

/// Creates `path` through `fill`, atomically: the file appears complete or not at all.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        let mut writer = BufWriter::new(tmp.as_file());
        fill(&mut writer)
            .and_then(|_| std::io::Write::flush(&mut writer))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    publish_permissions(tmp.as_file())?;
    tmp.persist(path).with_context(|| {
        format!(
            "cannot move the finished file into place at {}",
            path.display()
        )
    })?;
    Ok(())
}

/// Temporary files are created private (0600); a finished output gets the usual 0644.
pub fn publish_permissions(file: &File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .context("cannot set the permissions of an output file")
}
