//! Images in and out of wmae: PNG/JPEG/WebP/TIFF files or folders of them, IDX files and `.npy` arrays
//! read into one `(N,1,28,28)` float tensor in [0, 1]; 8-bit grayscale PNG files written.
//!
//! Colour images are converted to grayscale with the `image` crate's luma conversion
//! (Rec. 709 weights: 0.2126 R + 0.7152 G + 0.0722 B).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::{GrayImage, ImageFormat};
use tch::{Kind, Tensor};

use super::dataset::IMAGE_SIDE;
use super::idx;

const SIDE: usize = IMAGE_SIDE;

/// Images read from the inputs, in order, each with a name that says where it came from.
pub struct Inputs {
    /// `file.png`, or `file.npy#12` for the 13th image of an array file.
    pub names: Vec<String>,
    /// 784 bytes per image (8-bit) or floats, see `pixels`.
    pixels: Vec<f32>,
}

impl Inputs {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The images as a `(N,1,28,28)` float tensor in [0, 1].
    pub fn tensor(&self) -> Tensor {
        Tensor::from_slice(&self.pixels).reshape([self.len() as i64, 1, SIDE as i64, SIDE as i64])
    }
}

/// Whether a file name says PNG, JPEG, WebP or TIFF (by extension, any case).
pub(crate) fn is_image_file(path: &Path) -> bool {
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
pub(crate) fn walk_folder(
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

/// Reads every input: image files, folders (the image files under them, recursively, sorted by
/// path, as `super::photos::files_under` walks them), IDX files
/// (rank 3, 28x28) and `.npy` arrays.
pub fn read_inputs(paths: &[PathBuf]) -> Result<Inputs> {
    let mut inputs = Inputs {
        names: Vec::new(),
        pixels: Vec::new(),
    };
    for path in paths {
        if path.is_dir() {
            // The same walk as a photo folder's and a stream's: recursive, sorted, '.' names and
            // links to folders left out.
            let files = super::photos::files_under(path)?;
            if files.is_empty() {
                bail!(
                    "{}: no PNG, JPEG, WebP or TIFF files under this folder",
                    path.display()
                );
            }
            for file in files {
                read_image_file(&file, &mut inputs)?;
            }
        } else if is_image_file(path) {
            read_image_file(path, &mut inputs)?;
        } else if path.extension().is_some_and(|e| e == "npy") {
            read_npy(path, &mut inputs)?;
        } else if path.exists() {
            let array = idx::read(path, Some(3))?;
            check_side(path, array.dims[1], array.dims[2])?;
            push_u8(&mut inputs, path, array.len(), &array.data);
        } else {
            bail!("input {} does not exist", path.display());
        }
    }
    if inputs.is_empty() {
        bail!("no input images");
    }
    Ok(inputs)
}

fn check_side(path: &Path, height: usize, width: usize) -> Result<()> {
    if height != SIDE || width != SIDE {
        bail!(
            "{}: image is {width}x{height} (width x height), the model expects {SIDE}x{SIDE}",
            path.display()
        );
    }
    Ok(())
}

fn push_u8(inputs: &mut Inputs, path: &Path, n: usize, bytes: &[u8]) {
    for i in 0..n {
        inputs.names.push(format!("{}#{i}", path.display()));
    }
    inputs
        .pixels
        .extend(bytes.iter().map(|&b| b as f32 / 255.0));
}

fn read_image_file(path: &Path, inputs: &mut Inputs) -> Result<()> {
    // The format from the bytes, not the extension: a PNG named .jpg reads.
    let image = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(image::ImageError::IoError)
        .and_then(|r| r.decode())
        .with_context(|| {
            format!(
                "{}: not a readable PNG, JPEG, WebP or TIFF image",
                path.display()
            )
        })?;
    check_side(path, image.height() as usize, image.width() as usize)?;
    let gray = image.to_luma8();
    inputs.names.push(path.display().to_string());
    inputs
        .pixels
        .extend(gray.as_raw().iter().map(|&b| b as f32 / 255.0));
    Ok(())
}

fn read_npy(path: &Path, inputs: &mut Inputs) -> Result<()> {
    let bytes = crate::fsutil::read_input_file(path, crate::fsutil::MAX_INPUT_BYTES)?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: not a valid .npy file", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let n = match shape.as_slice() {
        [n, h, w] | [n, 1, h, w] => {
            check_side(path, *h, *w)?;
            *n
        }
        _ => bail!(
            "{}: array shape {shape:?}, expected (N,28,28) or (N,1,28,28)",
            path.display()
        ),
    };
    if npy.order() != npyz::Order::C {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save it with C order",
            path.display()
        );
    }
    let descr = npy.dtype().descr();
    let dtype = descr.trim_matches('\'').trim_start_matches(['<', '|', '=']);
    // The header's shape is checked against the bytes present before anything is allocated: a
    // crafted shape such as (2^62, 28, 28) must not turn into a huge (or wrapped) allocation.
    let item_bytes: u64 = match dtype {
        "u1" => 1,
        "f4" => 4,
        "f8" => 8,
        _ => 0,
    };
    let needed = shape
        .iter()
        .try_fold(item_bytes, |acc, &d| acc.checked_mul(d as u64));
    if item_bytes > 0 && needed.is_none_or(|b| b > bytes.len() as u64) {
        bail!(
            "{}: truncated data: shape {shape:?} of {descr} needs {} bytes, the file has {}",
            path.display(),
            needed.map_or("more than 2^64".to_string(), |b| b.to_string()),
            bytes.len()
        );
    }
    let values: Vec<f32> = match dtype {
        "u1" => {
            let v: Vec<u8> = npy
                .into_vec()
                .with_context(|| format!("{}: truncated data", path.display()))?;
            push_u8(inputs, path, n, &v);
            return Ok(());
        }
        "f4" => npy
            .into_vec::<f32>()
            .with_context(|| format!("{}: truncated data", path.display()))?,
        "f8" => npy
            .into_vec::<f64>()
            .with_context(|| format!("{}: truncated data", path.display()))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        _ => bail!(
            "{}: dtype {descr} is not supported: use float32, float64 in [0,1] or uint8",
            path.display()
        ),
    };
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        bail!("{}: value {v} at flat index {i} is outside [0, 1] (float arrays must be scaled to [0,1])", path.display());
    }
    for i in 0..n {
        inputs.names.push(format!("{}#{i}", path.display()));
    }
    inputs.pixels.extend(values);
    Ok(())
}

/// An image in [0, 1] as an 8-bit image file stores it: clipped, rounded to k/255.
pub fn quantize_8bit(image: &Tensor) -> Tensor {
    (image.clamp(0.0, 1.0) * 255.0).round() / 255.0
}

/// A `(1,H,W)` or `(H,W)` tensor in [0, 1] as an 8-bit grayscale image (rounded).
pub fn to_gray(image: &Tensor) -> GrayImage {
    let size = image.size();
    let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
    let bytes = Vec::<u8>::try_from(
        (image.clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )
    .expect("a u8 tensor converts to Vec<u8>");
    GrayImage::from_raw(w as u32, h as u32, bytes).expect("size matches")
}

/// Each image of a `(N,1,H,W)` batch in [0, 1], rounded to 8 bits as a file stores it, through
/// `f` (an 8-bit image operation: a codec, a filter); the results as a float batch in [0, 1] on
/// the input's device.
pub fn map_8bit(images: &Tensor, f: impl Fn(&GrayImage) -> Result<GrayImage>) -> Result<Tensor> {
    let size = images.size();
    let (h, w) = (size[2], size[3]);
    let bytes = Vec::<u8>::try_from(
        (images.detach().clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )?;
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.chunks(((h * w) as usize).max(1)) {
        let image = GrayImage::from_raw(w as u32, h as u32, chunk.to_vec())
            .context("image size matches its pixels")?;
        out.extend_from_slice(f(&image)?.as_raw());
    }
    Ok((Tensor::from_slice(&out)
        .reshape(size.as_slice())
        .to_kind(Kind::Float)
        / 255.0)
        .to_device(images.device()))
}

/// PNG-encodes and writes an image atomically.
pub fn write_png(path: &Path, image: &GrayImage) -> Result<()> {
    let encoded = png_bytes(path, image)?;
    crate::fsutil::write_atomically(path, |f| std::io::Write::write_all(f, &encoded))
}

/// `image` encoded as PNG (`path` names it in an error).
pub fn png_bytes(path: &Path, image: &GrayImage) -> Result<Vec<u8>> {
    let mut encoded = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut encoded), ImageFormat::Png)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    Ok(encoded)
}
