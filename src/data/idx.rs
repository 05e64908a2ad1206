//! The IDX format of the MNIST family (http://yann.lecun.com/exdb/mnist/): a 4-byte magic
//! `0x00 0x00 DTYPE RANK`, RANK big-endian u32 dimensions, then the data, row-major. Files may be
//! gzip-compressed (detected by the gzip magic, not by the name).
//!
//! wmae reads unsigned-byte IDX files (dtype 0x08), as MNIST and Fashion-MNIST ship them, and
//! checks everything a corrupt file could get wrong before any tensor is built.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const DTYPE_U8: u8 = 0x08;

/// An unsigned-byte IDX array: its dimensions and its row-major data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

impl IdxArray {
    pub fn new(dims: Vec<usize>, data: Vec<u8>) -> Result<Self> {
        let expected: usize = dims.iter().product();
        if expected != data.len() {
            bail!(
                "IDX dimensions {dims:?} hold {expected} values but {} were given",
                data.len()
            );
        }
        Ok(Self { dims, data })
    }

    /// Number of items along the first axis.
    pub fn len(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn dtype_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown",
    }
}

/// Reads a whole IDX file (plain or gzip) and checks magic, dtype and that the dimensions match
/// the byte length. `expected_rank`, when given, must match the file's rank.
pub fn read(path: &Path, expected_rank: Option<usize>) -> Result<IdxArray> {
    let bytes = read_maybe_gzip(path)?;
    parse(&bytes, expected_rank)
        .with_context(|| format!("{}: not a valid IDX file", path.display()))
}

fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| {
                format!(
                    "{}: corrupt or truncated gzip stream (the file starts like gzip but does not decompress)",
                    path.display()
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes already in memory.
pub fn parse(bytes: &[u8], expected_rank: Option<usize>) -> Result<IdxArray> {
    if bytes.len() < 4 {
        bail!(
            "too short for an IDX header ({} bytes, at least 4 needed)",
            bytes.len()
        );
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        bail!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x}: an IDX file starts with 00 00",
            bytes[0],
            bytes[1],
            bytes[2],
            bytes[3]
        );
    }
    let dtype = bytes[2];
    if dtype != DTYPE_U8 {
        bail!(
            "data type 0x{dtype:02x} ({}) is not supported: wmae reads unsigned-byte (0x08) IDX files",
            dtype_name(dtype)
        );
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        bail!("rank 0: an IDX array needs at least one dimension");
    }
    if let Some(want) = expected_rank {
        if rank != want {
            bail!("wrong rank {rank}: expected a rank-{want} array");
        }
    }
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        bail!(
            "truncated header: rank {rank} needs {header_len} header bytes, the file has {}",
            bytes.len()
        );
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("dimensions {dims:?} overflow"))?;
    let body = &bytes[header_len..];
    if body.len() < expected {
        bail!(
            "truncated data: dimensions {dims:?} need {expected} bytes after the header, the file has {}",
            body.len()
        );
    }
    if body.len() > expected {
        bail!(
            "{} unexpected trailing bytes after the {expected} bytes that dimensions {dims:?} describe",
            body.len() - expected
        );
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Serializes an unsigned-byte IDX array.
pub fn to_bytes(array: &IdxArray) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * array.dims.len() + array.data.len());
    out.extend_from_slice(&[0, 0, DTYPE_U8, array.dims.len() as u8]);
    for &d in &array.dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}

/// Writes an IDX file, gzip-compressed when the name ends in `.gz`, through a temporary file
/// renamed into place so a crash never leaves a half-written file.
pub fn write(path: &Path, array: &IdxArray) -> Result<()> {
    let bytes = to_bytes(array);
    let gzip = path.extension().is_some_and(|e| e == "gz");
    crate::fsutil::write_atomically(path, |file| {
        if gzip {
            let mut enc = GzEncoder::new(file, Compression::default());
            enc.write_all(&bytes)?;
            enc.finish()?;
        } else {
            file.write_all(&bytes)?;
        }
        Ok(())
    })
}
