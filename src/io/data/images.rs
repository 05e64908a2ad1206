//! Images in and out of wmae: PNG/JPEG/WebP/TIFF files or folders of them, IDX files and `.npy` arrays
//! read into one `(N,1,28,28)` float tensor in [0, 1]; 8-bit grayscale PNG files written.
//!
//! Colour images are converted to grayscale with the `image` crate's luma conversion
//! (Rec. 709 weights: 0.2126 R + 0.7152 G + 0.0722 B).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use tch::Tensor;

use super::dataset::IMAGE_SIDE;
use super::idx;
use super::walk::is_image_file;

const SIDE: usize = IMAGE_SIDE;

/// Images read from the inputs, in order, each with a name that says where it came from.
pub struct Inputs {
    /// `file.png`, or `file.npy#12` for the 13th image of an array file.
    pub names: Vec<String>,
    /// 784 bytes per image (8-bit) or floats, see `pixels`.
    pixels: Vec<f32>,
}

impl Inputs {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no image was read.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The images as a `(N,1,28,28)` float tensor in [0, 1].
    pub fn tensor(&self) -> Tensor {
        Tensor::from_slice(&self.pixels).reshape([self.len() as i64, 1, SIDE as i64, SIDE as i64])
    }
}

/// Reads every input: image files, folders (the image files under them, recursively, sorted by
/// path, as `super::walk::files_under` walks them), IDX files
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
            let files = super::walk::files_under(path)?;
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
        } else if path.exists() {
            let array = DigitArray::open(path)?;
            for i in 0..array.len() {
                inputs.names.push(format!("{}#{i}", path.display()));
            }
            match &array.pixels {
                ArrayPixels::U8(v) => inputs.pixels.extend(v.iter().map(|&b| b as f32 / 255.0)),
                ArrayPixels::F32(v) => inputs.pixels.extend_from_slice(v),
            }
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

/// The digits of one array file: an IDX file (rank 3, 28x28, plain or gzipped) or a `.npy`
/// array (N,28,28) or (N,1,28,28) of floats in [0, 1] or u8.
pub struct DigitArray {
    len: usize,
    pixels: ArrayPixels,
}

/// An array's pixels as stored: 8-bit, or floats in [0, 1].
enum ArrayPixels {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

impl DigitArray {
    /// Reads and checks an array file (its shape, type and values), naming it in every error.
    pub fn open(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "npy") {
            return read_npy(path);
        }
        let array = idx::read(path, Some(3))?;
        check_side(path, array.dims[1], array.dims[2])?;
        Ok(DigitArray {
            len: array.len(),
            pixels: ArrayPixels::U8(array.data),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array holds no image.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Image `i` as 8-bit grayscale (floats rounded to the nearest of 256 levels, as an 8-bit
    /// file would store them).
    pub fn image(&self, i: usize) -> Option<image::GrayImage> {
        let n = SIDE * SIDE;
        if i >= self.len {
            return None;
        }
        let pixels = match &self.pixels {
            ArrayPixels::U8(v) => v[i * n..(i + 1) * n].to_vec(),
            ArrayPixels::F32(v) => v[i * n..(i + 1) * n]
                .iter()
                .map(|&x| (x * 255.0).round() as u8)
                .collect(),
        };
        image::GrayImage::from_raw(SIDE as u32, SIDE as u32, pixels)
    }
}

fn read_npy(path: &Path) -> Result<DigitArray> {
    let bytes =
        crate::runtime::fsutil::read_input_file(path, crate::runtime::fsutil::MAX_INPUT_BYTES)?;
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
            return Ok(DigitArray {
                len: n,
                pixels: ArrayPixels::U8(v),
            });
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
    Ok(DigitArray {
        len: n,
        pixels: ArrayPixels::F32(values),
    })
}
