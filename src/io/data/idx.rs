//! The IDX format of the MNIST family (<http://yann.lecun.com/exdb/mnist/>): a 4-byte magic
//! `0x00 0x00 DTYPE RANK`, RANK big-endian u32 dimensions, then the data, row-major. Files may be
//! gzip-compressed (detected by the gzip magic, not by the name).
//!
//! wmae reads unsigned-byte IDX files (dtype 0x08), as MNIST and Fashion-MNIST ship them, and
//! checks everything a corrupt file could get wrong before any tensor is built.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const DTYPE_U8: u8 = 0x08;

/// An unsigned-byte IDX array: its dimensions and its row-major data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each axis, the first being the number of items.
    pub dims: Vec<usize>,
    /// The values, row-major; as many as the dimensions' product.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// An array of `dims` holding `data`; refused when the data's length is not the dimensions'
    /// product.
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

    /// Whether the array holds no item.
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

/// The largest IDX data wmae reads: 1 GiB is 1.3 million 28x28 images, twenty times MNIST.
/// Larger dimensions are refused before anything is allocated or decompressed.
pub const MAX_DATA_BYTES: usize = 1 << 30;

/// Reads a whole IDX file (plain or gzip) and checks magic, dtype and that the dimensions match
/// the byte length. `expected_rank`, when given, must match the file's rank.
///
/// A gzip file is decompressed as a stream, header first: no more is decompressed than the
/// header's dimensions describe (plus one byte, to notice extra data), so a gzip bomb costs
/// nothing, and bytes after the end of the gzip stream are refused as in a plain file.
pub fn read(path: &Path, expected_rank: Option<usize>) -> Result<IdxArray> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let invalid = || format!("{}: not a valid IDX file", path.display());
    if !raw.starts_with(&GZIP_MAGIC) {
        return parse(&raw, expected_rank).with_context(invalid);
    }
    let mut decoder = GzDecoder::new(raw.as_slice());
    let array = read_stream(&mut decoder, expected_rank).map_err(|e| {
        match e.downcast::<std::io::Error>() {
            Ok(io) => anyhow::anyhow!(
                "{}: corrupt or truncated gzip stream ({io})",
                path.display()
            ),
            Err(e) => e.context(invalid()),
        }
    })?;
    let rest = decoder.into_inner().len();
    if rest > 0 {
        bail!(
            "{}: {rest} unexpected bytes after the end of the gzip stream",
            path.display()
        );
    }
    Ok(array)
}

/// Parses IDX bytes already in memory.
pub fn parse(bytes: &[u8], expected_rank: Option<usize>) -> Result<IdxArray> {
    let mut rest = bytes;
    read_stream(&mut rest, expected_rank).map_err(|e| match e.downcast::<std::io::Error>() {
        // A plain byte slice fails only by running out.
        Ok(_) => anyhow::anyhow!("truncated"),
        Err(e) => e,
    })
}

/// Reads one IDX array from `input`, which must end right after it. I/O errors of `input` come
/// back as `std::io::Error` (for the caller to word); format errors as messages.
fn read_stream(input: &mut impl Read, expected_rank: Option<usize>) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    let got = read_up_to(input, &mut magic)?;
    if got < 4 {
        bail!("too short for an IDX header ({got} bytes, at least 4 needed)");
    }
    if magic[0] != 0 || magic[1] != 0 {
        bail!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x}: an IDX file starts with 00 00",
            magic[0],
            magic[1],
            magic[2],
            magic[3]
        );
    }
    let dtype = magic[2];
    if dtype != DTYPE_U8 {
        bail!(
            "data type 0x{dtype:02x} ({}) is not supported: wmae reads unsigned-byte (0x08) IDX files",
            dtype_name(dtype)
        );
    }
    let rank = magic[3] as usize;
    if rank == 0 {
        bail!("rank 0: an IDX array needs at least one dimension");
    }
    if let Some(want) = expected_rank {
        if rank != want {
            bail!("wrong rank {rank}: expected a rank-{want} array");
        }
    }
    let header_len = 4 + 4 * rank;
    let mut dim_bytes = vec![0u8; 4 * rank];
    let got = read_up_to(input, &mut dim_bytes)?;
    if got < dim_bytes.len() {
        bail!(
            "truncated header: rank {rank} needs {header_len} header bytes, the file has {}",
            4 + got
        );
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_DATA_BYTES)
        .with_context(|| {
            format!(
                "dimensions {dims:?} describe more data than wmae reads (at most {MAX_DATA_BYTES} \
                 bytes): too large"
            )
        })?;
    let mut data = vec![0u8; expected];
    let got = read_up_to(input, &mut data)?;
    if got < expected {
        bail!(
            "truncated data: dimensions {dims:?} need {expected} bytes after the header, the file has {got}"
        );
    }
    // Counted up to a cap: the rest of a gzip bomb is never decompressed.
    const COUNTED: u64 = 1 << 20;
    let trailing = std::io::copy(&mut input.take(COUNTED), &mut std::io::sink())?;
    if trailing > 0 {
        let count = match trailing {
            COUNTED => format!("at least {COUNTED}"),
            n => n.to_string(),
        };
        bail!(
            "{count} unexpected trailing bytes after the {expected} bytes that dimensions {dims:?} describe"
        );
    }
    Ok(IdxArray { dims, data })
}

/// Fills `buf` as far as `input` goes; returns how many bytes were read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
    crate::runtime::fsutil::write_atomically(path, |file| {
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
