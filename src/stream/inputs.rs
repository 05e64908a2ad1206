//! The inputs of a streaming run, one at a time: files as given, folders walked recursively in
//! sorted order, and paths read line by line from `--input-list` (a file, or `-` for stdin).
//! Nothing is collected up front, so a list of a million paths costs no more memory than one.
//!
//! Each input gets a key: the path its output takes under `--out`, which is also what sharding
//! hashes. A file argument's key is its file name; a file found in a folder argument keeps its
//! path below that folder; a list line keeps its own path, less any root or `.` parts (a line
//! with `..` is refused, since its output would land outside `--out`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

/// One input: the file to read and its key (its output path relative to `--out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The file to read.
    pub path: PathBuf,
    /// Its output path relative to `--out`, also what sharding hashes.
    pub key: PathBuf,
    /// Which image of an array file (IDX or `.npy`) this input is; None for an image file.
    pub item: Option<usize>,
}

impl Input {
    /// The input as records name it: its path, with `#K` for the K-th image of an array file.
    pub fn name(&self) -> PathBuf {
        match self.item {
            None => self.path.clone(),
            Some(k) => {
                let mut name = self.path.clone().into_os_string();
                name.push(format!("#{k}"));
                PathBuf::from(name)
            }
        }
    }
}

/// An input that could not even be named: an unreadable folder, a bad list line. It becomes a
/// failed record, not the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The path at fault: an input, a list line's path, the list file or a folder.
    pub path: PathBuf,
    /// What went wrong, in words.
    pub message: String,
}

/// What [`Inputs`] yields: an input, or why one could not be named.
pub type Item = std::result::Result<Input, InputError>;

/// The inputs of a run, in order: the positional arguments, then the list's lines.
pub struct Inputs {
    arguments: VecDeque<PathBuf>,
    walk: Option<Walk>,
    list: Option<(PathBuf, Box<dyn BufRead + Send>)>,
    line: usize,
    /// A folder the walks leave out (the output folder, when it lies inside an input folder).
    exclude: Option<PathBuf>,
    /// Hashes of the keys given so far, kept only when several sources could give one key twice
    /// (8 bytes an input: the one cost that grows with the number of inputs).
    seen: Option<std::collections::HashSet<u64>>,
    /// The extension every output takes (digits are written as PNG whatever they were read
    /// from), so keys are the outputs' paths.
    extension: Option<&'static str>,
    /// Whether a file that is not an image (by its name) is an array of digits, one input per
    /// image; and the array being expanded: its input, the next image and the count.
    arrays: bool,
    expanding: Option<(Input, usize, usize)>,
}

impl Inputs {
    /// Opens the list now (an unreadable list stops the run before it starts); folders are read
    /// as the walk reaches them.
    pub fn new(arguments: &[PathBuf], list: Option<&Path>) -> Result<Inputs> {
        let list = match list {
            None => None,
            Some(p) if p == Path::new("-") => Some((
                PathBuf::from("<stdin>"),
                Box::new(BufReader::new(std::io::stdin())) as Box<dyn BufRead + Send>,
            )),
            Some(p) => {
                let file = File::open(p)
                    .with_context(|| format!("--input-list {}: cannot open it", p.display()))?;
                Some((p.to_path_buf(), Box::new(BufReader::new(file)) as _))
            }
        };
        Ok(Inputs {
            arguments: arguments.iter().cloned().collect(),
            walk: None,
            list,
            line: 0,
            exclude: None,
            seen: None,
            extension: None,
            arrays: false,
            expanding: None,
        })
    }

    /// For digit models: a file argument or list line that is not an image file by its name is
    /// read as an array of 28x28 digits (IDX, plain or gzipped, or `.npy`), one input per image,
    /// keyed `STEM-00012.png` (its 13th image).
    pub fn digit_arrays(mut self) -> Inputs {
        self.arrays = true;
        self
    }

    /// Leaves `dir` out of the folder walks: `embed photos/ --out photos/marked/` must not read
    /// back its own outputs as they appear (and write outputs of outputs).
    pub fn excluding(mut self, dir: &Path) -> Inputs {
        self.exclude = std::fs::canonicalize(dir).ok();
        self
    }

    /// Turns a key met a second time into an error instead of a second input, when there is
    /// more than one source (two folders, or a folder and a list, can hold one relative path;
    /// each source alone cannot, but for a list naming one file twice).
    pub fn refuse_duplicate_keys(mut self) -> Inputs {
        if self.arguments.len() + usize::from(self.list.is_some()) > 1 {
            self.seen = Some(Default::default());
        }
        self
    }

    /// Every key takes the extension `.png` (digit outputs are PNG files whatever they were read
    /// from), and two inputs that would write one output (`a.jpg` and `a.png`) are refused.
    pub fn png_keys(mut self) -> Inputs {
        self.extension = Some("png");
        self.seen = Some(Default::default());
        self
    }

    fn check(&mut self, mut item: Item) -> Item {
        if let (Some(ext), Ok(input)) = (self.extension, &mut item) {
            input.key.set_extension(ext);
        }
        let (Some(seen), Ok(input)) = (&mut self.seen, &item) else {
            return item;
        };
        if seen.insert(super::shard::key_hash(&input.key)) {
            return item;
        }
        Err(InputError {
            message: format!(
                "{}: another input of this run is also written as {} under --out",
                input.path.display(),
                input.key.display()
            ),
            path: input.path.clone(),
        })
    }

    fn next_line(&mut self) -> Option<Item> {
        let (list_path, reader) = self.list.as_mut()?;
        loop {
            // Bytes, not text: a Unix path need not be UTF-8.
            let mut line = Vec::new();
            self.line += 1;
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => {
                    self.list = None;
                    return None;
                }
                Ok(_) => {
                    while matches!(line.last(), Some(b'\n' | b'\r')) {
                        line.pop();
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let path = PathBuf::from(std::ffi::OsString::from_vec(line));
                    return Some(match list_key(&path) {
                        Some(key) => Ok(Input {
                            path,
                            key,
                            item: None,
                        }),
                        None => Err(InputError {
                            message: format!(
                                "{} line {}: {}: a path with '..' (or no file name) cannot be \
                                 mirrored under --out",
                                list_path.display(),
                                self.line,
                                path.display()
                            ),
                            path,
                        }),
                    });
                }
                Err(e) => {
                    let message = format!("{} line {}: {e}", list_path.display(), self.line);
                    let path = list_path.clone();
                    self.list = None;
                    return Some(Err(InputError { path, message }));
                }
            }
        }
    }
}

impl Iterator for Inputs {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let item = match self.expanding.take() {
            Some((input, next, len)) => {
                if next + 1 < len {
                    self.expanding = Some((input.clone(), next + 1, len));
                }
                Ok(array_item(&input, next))
            }
            None => match self.next_unchecked()? {
                Ok(input) if self.arrays && !crate::io::data::walk::is_image_file(&input.path) => {
                    match crate::io::data::images::DigitArray::open(&input.path) {
                        Ok(array) if array.is_empty() => Err(InputError {
                            message: format!("{}: the array holds no image", input.path.display()),
                            path: input.path,
                        }),
                        Ok(array) => {
                            if array.len() > 1 {
                                self.expanding = Some((input.clone(), 1, array.len()));
                            }
                            Ok(array_item(&input, 0))
                        }
                        Err(e) => Err(InputError {
                            message: format!("{e:#}"),
                            path: input.path,
                        }),
                    }
                }
                other => other,
            },
        };
        Some(self.check(item))
    }
}

/// The `k`-th image of the array file `input`, keyed `STEM-0000k.png` beside the array's key.
fn array_item(input: &Input, k: usize) -> Input {
    let stem = input
        .key
        .file_stem()
        .map_or("image".into(), |s| s.to_string_lossy().into_owned());
    // A gzipped IDX file (train-images-idx3-ubyte.gz) is named after the array, not the ".gz".
    let stem = stem.strip_suffix(".gz").unwrap_or(&stem).to_string();
    Input {
        path: input.path.clone(),
        key: input.key.with_file_name(format!("{stem}-{k:05}.png")),
        item: Some(k),
    }
}

impl Inputs {
    fn next_unchecked(&mut self) -> Option<Item> {
        loop {
            if let Some(walk) = &mut self.walk {
                match walk.next() {
                    Some(item) => return Some(item),
                    None => self.walk = None,
                }
            }
            let Some(argument) = self.arguments.pop_front() else {
                return self.next_line();
            };
            if argument.is_dir() {
                self.walk = Some(Walk::new(argument, self.exclude.clone()));
                continue;
            }
            return Some(match argument.file_name() {
                Some(name) => Ok(Input {
                    key: PathBuf::from(name),
                    path: argument,
                    item: None,
                }),
                None => Err(InputError {
                    message: format!("{}: not a file or folder", argument.display()),
                    path: argument,
                }),
            });
        }
    }
}

/// A list line's key: its normal components (root, prefix and `.` dropped); none with `..`.
fn list_key(path: &Path) -> Option<PathBuf> {
    let mut key = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => key.push(part),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    (!key.as_os_str().is_empty()).then_some(key)
}

/// The image files under one folder argument, in the order of
/// [`walk_folder`](crate::io::data::walk::walk_folder). Lazy: only the folders on the current path
/// are held open.
struct Walk {
    root: PathBuf,
    entries: Box<dyn Iterator<Item = walkdir::Result<walkdir::DirEntry>> + Send>,
    found: usize,
    done: bool,
}

impl Walk {
    fn new(root: PathBuf, exclude: Option<PathBuf>) -> Walk {
        Walk {
            entries: Box::new(crate::io::data::walk::walk_folder(&root, exclude)),
            root,
            found: 0,
            done: false,
        }
    }
}

impl Iterator for Walk {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        for entry in self.entries.by_ref() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e.path().unwrap_or(&self.root).to_path_buf();
                    let message = format!(
                        "cannot list {}: {}",
                        path.display(),
                        e.io_error().map_or(e.to_string(), |io| io.to_string())
                    );
                    return Some(Err(InputError { path, message }));
                }
            };
            if entry.file_type().is_dir() || !crate::io::data::walk::is_image_file(entry.path()) {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(&self.root)
                .unwrap_or(entry.path())
                .to_path_buf();
            self.found += 1;
            return Some(Ok(Input {
                path: entry.into_path(),
                key: rel,
                item: None,
            }));
        }
        if self.found == 0 && !self.done {
            self.done = true;
            return Some(Err(InputError {
                path: self.root.clone(),
                message: format!(
                    "{}: no .png, .jpg or .jpeg files in it",
                    self.root.display()
                ),
            }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keys_stay_under_out() {
        assert_eq!(
            list_key(Path::new("/data/a/b.jpg")),
            Some(PathBuf::from("data/a/b.jpg"))
        );
        assert_eq!(
            list_key(Path::new("./a/./b.jpg")),
            Some(PathBuf::from("a/b.jpg"))
        );
        assert_eq!(list_key(Path::new("a/../b.jpg")), None);
        assert_eq!(list_key(Path::new("/")), None);
    }

    #[test]
    fn walks_folders_in_order_and_reads_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "b/2.png",
            "b/1.JPG",
            "a.jpg",
            "b/c/3.jpeg",
            ".hidden/4.png",
            "b/.5.png",
            "notes.txt",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::create_dir_all(root.join("empty")).unwrap();
        let list = root.join("list.txt");
        std::fs::write(&list, "x/y.png\n\n/abs/z.jpg\r\n../up.png\n").unwrap();
        let items: Vec<Item> = Inputs::new(
            &[root.to_path_buf(), root.join("empty"), root.join("a.jpg")],
            Some(&list),
        )
        .unwrap()
        .collect();
        let keys: Vec<String> = items
            .iter()
            .map(|i| match i {
                Ok(input) => input.key.display().to_string(),
                Err(e) => format!("error {}", e.path.display()),
            })
            .collect();
        let empty = format!("error {}", root.join("empty").display());
        assert_eq!(
            keys,
            [
                "a.jpg",
                "b/1.JPG",
                "b/2.png",
                "b/c/3.jpeg",
                &empty,
                "a.jpg",
                "x/y.png",
                "abs/z.jpg",
                "error ../up.png"
            ]
        );
        assert_eq!(items[1].as_ref().unwrap().path, root.join("b/1.JPG"));
        assert!(Inputs::new(&[], Some(&root.join("missing.txt"))).is_err());
    }
}
