//! Files are written to a temporary file in the target's folder and renamed into place, so a
//! crash or an error never leaves a half-written output behind. The file is flushed to disk
//! before the rename and the folder after it: without that, a power cut soon after can leave an
//! empty or missing file under the final name (the rename reaches the disk before the data).
//! `WMAE_NO_FSYNC=1` skips both (scratch outputs that need not survive a power cut).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};

/// The largest input file wmae reads whole (photos, digit images, arrays, checkpoints): 512 MiB.
/// A photo within the pixel limits is far smaller; checked before reading, so a device or a
/// huge file cannot take the memory.
pub const MAX_INPUT_BYTES: u64 = 512 << 20;

/// A whole input file, after checking that it is a regular file (not a device, FIFO or socket,
/// which could block or never end) of at most `limit` bytes. Errors name the file.
pub fn read_input_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let name = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {name}"))?;
    if !meta.is_file() {
        anyhow::bail!("{name}: not a regular file (a folder, device, FIFO or socket)");
    }
    if meta.len() > limit {
        anyhow::bail!(
            "{name}: {} bytes; wmae reads input files of at most {limit} bytes",
            meta.len()
        );
    }
    let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // At most one byte past the limit: a file that grew since it was measured is caught.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    if bytes.len() as u64 > limit {
        anyhow::bail!("{name}: grew past {limit} bytes while being read");
    }
    Ok(bytes)
}

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
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        let mut writer = BufWriter::new(tmp.as_file());
        fill(&mut writer)
            .and_then(|_| std::io::Write::flush(&mut writer))
            .and_then(|_| sync_file(tmp.as_file()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    publish_permissions(tmp.as_file())?;
    tmp.persist(path).with_context(|| {
        format!(
            "cannot move the finished file into place at {}",
            path.display()
        )
    })?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` in a private scratch folder whose files are moved into their final
/// folder later: the data is flushed to disk, but no temporary name or folder flush is needed
/// (the scratch folder's own entries do not outlive the run; the folder the files are moved
/// into is flushed once, after the last move). Half the flushes of [`write_atomically`].
pub fn write_into_scratch(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|_| sync_file(&file))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Whether outputs are flushed to disk (see the module's notes).
fn durable() -> bool {
    static DURABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DURABLE.get_or_init(|| std::env::var_os("WMAE_NO_FSYNC").is_none_or(|v| v != "1"))
}

/// Calls to fsync made so far (the tests check that outputs are synced).
pub static SYNCS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Flushes a written file's data to disk.
pub fn sync_file(file: &File) -> std::io::Result<()> {
    if !durable() {
        return Ok(());
    }
    SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    file.sync_all()
}

/// Flushes a folder's entries to disk: what makes a rename into it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    if !durable() {
        return Ok(());
    }
    SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush folder {} to disk", dir.display()))
}

/// Writes `bytes` to `path` through this process's own sibling part file ([`part_file`]),
/// renamed into place once complete: a killed writer leaves at most its part file, never a
/// partial `path`; two runs writing one output (a requeued task beside the one still running)
/// each publish a whole file of their own, never one mixed from both. A failed write (a full
/// disk) removes its part file; part files of this output left by writers that died on this host
/// are removed first. Flushed to disk before and after the rename.
pub fn write_through_part_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_through_part_file_deferred(path, bytes, None)
}

/// [`write_through_part_file`], but the folder's flush is left to `pending` when given: a run
/// writing thousands of files into one folder flushes it once, at the end
/// ([`PendingFolders::flush`]), not after every file. Each file's data is still flushed before
/// its rename, so a power cut before the folder's flush loses whole files, never a part of one.
pub fn write_through_part_file_deferred(
    path: &Path,
    bytes: &[u8],
    pending: Option<&PendingFolders>,
) -> Result<()> {
    remove_dead_part_files(path);
    let mut part = PartWriter::create(path, &Writer::this())?;
    std::io::Write::write_all(&mut part.file, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    part.commit(pending)
}

/// Folders that received renamed files whose flush to disk is still due.
#[derive(Debug, Default)]
pub struct PendingFolders(std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>);

impl PendingFolders {
    fn add(&self, dir: &Path) {
        let mut dirs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !dirs.contains(dir) {
            dirs.insert(dir.to_path_buf());
        }
    }

    /// Flushes every folder noted so far, once each.
    pub fn flush(&self) -> Result<()> {
        let dirs = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        let mut dirs: Vec<_> = dirs.into_iter().collect();
        dirs.sort();
        dirs.iter().try_for_each(|d| sync_dir(d))
    }
}

/// Who writes a part file: the host and the process, so no two live writers share one.
#[derive(Debug, Clone)]
pub struct Writer {
    host: String,
    pid: u32,
}

impl Writer {
    /// This process on this host.
    pub fn this() -> Self {
        Self::on_this_host(std::process::id())
    }

    /// Process `pid` on this host.
    pub fn on_this_host(pid: u32) -> Self {
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let host = HOST.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| {
                    h.trim()
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .take(32)
                        .collect()
                })
                .unwrap_or_default()
        });
        Self {
            host: host.clone(),
            pid,
        }
    }
}

/// A part file being written: removed when dropped, on every error path, unless committed.
struct PartWriter {
    file: File,
    part: Option<std::path::PathBuf>,
    path: std::path::PathBuf,
}

impl PartWriter {
    fn create(path: &Path, writer: &Writer) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
        let part = part_file_of(path, writer);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&part)
            .with_context(|| format!("cannot create {}", part.display()))?;
        Ok(Self {
            file,
            part: Some(part),
            path: path.to_path_buf(),
        })
    }

    /// Flushes the part file, renames it into place and flushes the folder (or notes it in
    /// `pending`, to be flushed later).
    fn commit(mut self, pending: Option<&PendingFolders>) -> Result<()> {
        let path = self.path.clone();
        sync_file(&self.file).with_context(|| format!("cannot write {}", path.display()))?;
        let part = self.part.clone().expect("an uncommitted part file");
        std::fs::rename(&part, &path).with_context(|| {
            format!(
                "cannot move the finished file into place at {}",
                path.display()
            )
        })?;
        self.part = None;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match pending {
            Some(p) => {
                p.add(dir);
                Ok(())
            }
            None => sync_dir(dir),
        }
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        if let Some(part) = self.part.take() {
            let _ = std::fs::remove_file(part);
        }
    }
}

/// The part file this process writes `path` through ([`part_file_of`]).
pub fn part_file(path: &Path) -> std::path::PathBuf {
    part_file_of(path, &Writer::this())
}

/// The part file `writer` writes `path` through: `.wmae-<hash>-<pid>@<host>.part` beside it
/// (hidden, so folder scans skip it; in the same folder, so the rename is atomic). The hash (of
/// `path`'s name, not the name itself) keeps it short when the name is near the file system's
/// 255-byte limit; the writer in it keeps two live writers of one output apart.
pub fn part_file_of(path: &Path, writer: &Writer) -> std::path::PathBuf {
    path.with_file_name(format!(
        "{}{}-{}@{}.part",
        TEMP_PREFIX,
        name_hash(path),
        writer.pid,
        writer.host
    ))
}

fn name_hash(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let name = path.file_name().unwrap_or_default();
    let digest = Sha256::digest(name.as_encoded_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the part files whose writers are gone from `path`'s folder: processes on this host
/// that no longer run (a killed run's debris). Part files of live writers, and of other hosts
/// (whose processes cannot be seen from here), are left alone. A folder is scanned once per
/// process, on its first output: scanning it again for each of its thousands of outputs would
/// make a run's cost grow with the square of the folder's size.
pub fn remove_dead_part_files(path: &Path) {
    static SCANNED: std::sync::Mutex<Option<std::collections::HashSet<std::path::PathBuf>>> =
        std::sync::Mutex::new(None);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    {
        let mut scanned = SCANNED.lock().unwrap_or_else(|e| e.into_inner());
        if !scanned
            .get_or_insert_with(Default::default)
            .insert(dir.to_path_buf())
        {
            return;
        }
    }
    let suffix = format!("@{}.part", Writer::this().host);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // .wmae-<16 hex digits of the output's name>-<pid>@<host>.part
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|n| n.strip_suffix(&suffix))
            .and_then(|n| n.split_once('-'))
            .filter(|(hash, _)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Temporary files are created private (0600); a finished output gets the usual 0644.
pub fn publish_permissions(file: &File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .context("cannot set the permissions of an output file")
}

/// An exclusive claim on a folder for as long as it lives: two wmae processes never write into
/// one run or output folder at once. The lock is taken on the folder itself (flock on its file
/// descriptor), so no lock file is left among the outputs, and the kernel releases it when the
/// process ends, however it ends: a killed run never leaves a stale lock behind.
#[derive(Debug)]
pub struct FolderLock {
    _dir: File,
}

impl FolderLock {
    /// Creates `dir` if needed and locks it, or fails at once (no waiting) naming the folder.
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::take(dir, false)
    }

    /// A shared claim: any number of shared holders at once (the shards of one sharded run, which
    /// never write the same file), but not beside an exclusive one.
    pub fn acquire_shared(dir: &Path) -> Result<Self> {
        Self::take(dir, true)
    }

    fn take(dir: &Path, shared: bool) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
        let handle =
            File::open(dir).with_context(|| format!("cannot open folder {}", dir.display()))?;
        let taken = if shared {
            handle.try_lock_shared()
        } else {
            handle.try_lock()
        };
        match taken {
            Ok(()) => Ok(Self { _dir: handle }),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "{} is in use by another wmae process; wait for it to finish or choose another \
                 folder",
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock folder {}", dir.display()))
            }
        }
    }
}

/// Prefix of wmae's temporary files: the ones a killed process may leave behind.
pub const TEMP_PREFIX: &str = ".wmae-";

/// Removes temporary files a killed wmae left in `dir`. Call it only while holding the folder's
/// lock, so no running writer's file is taken away.
pub fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs writing one output at once (a requeued task beside the one still running): the
    /// first pauses half-way through its part file while the second writes the whole output;
    /// the first then finishes. The output is always one run's whole file (with one shared
    /// part file, the first run's second half landed in the second run's published file).
    #[test]
    fn two_writers_of_one_output_never_mix_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("photo.jpg");
        let (a, b) = (vec![b'a'; 1000], vec![b'b'; 1000]);
        let mut first = PartWriter::create(&out, &Writer::on_this_host(u32::MAX - 1)).unwrap();
        std::io::Write::write_all(&mut first.file, &a[..500]).unwrap();
        let mut second = PartWriter::create(&out, &Writer::on_this_host(u32::MAX - 2)).unwrap();
        std::io::Write::write_all(&mut second.file, &b).unwrap();
        second.commit(None).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b);
        std::io::Write::write_all(&mut first.file, &a[500..]).unwrap();
        first.commit(None).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), a);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// A dead writer's part file of an output goes before the output is written; a live
    /// writer's stays (it will rename it itself).
    #[test]
    fn only_dead_writers_part_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("photo.jpg");
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dead = part_file_of(&out, &Writer::on_this_host(gone.id()));
        let live = part_file_of(&out, &Writer::on_this_host(1));
        let other = dir.path().join(".wmae-other.part");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        write_through_part_file(&out, b"whole").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"whole");
        assert!(!dead.exists() && live.exists() && other.exists());
    }
    use std::sync::atomic::Ordering;

    /// Both writers flush the file and then its folder: at least two syncs each (other tests
    /// running at once may add theirs).
    #[test]
    fn outputs_are_flushed_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let before = SYNCS.load(Ordering::Relaxed);
        write_atomically(&dir.path().join("a.txt"), |f| {
            std::io::Write::write_all(f, b"a")
        })
        .unwrap();
        let after_atomic = SYNCS.load(Ordering::Relaxed);
        assert!(after_atomic >= before + 2, "{before} -> {after_atomic}");
        write_through_part_file(&dir.path().join("b.txt"), b"b").unwrap();
        let after_part = SYNCS.load(Ordering::Relaxed);
        assert!(
            after_part >= after_atomic + 2,
            "{after_atomic} -> {after_part}"
        );
        assert_eq!(std::fs::read(dir.path().join("b.txt")).unwrap(), b"b");
    }
}
