//! Real JPEG round trips of grayscale images through the `image` crate's baseline encoder and
//! decoder: what the attack suite applies and what the JPEG noise layer passes through its
//! straight-through estimator. A grayscale JPEG has no chroma, so no subsampling choice arises.

use anyhow::{bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::{GrayImage, ImageFormat};
use tch::Tensor;

/// Encodes `image` as a JPEG of `quality` (1..=100) and decodes it again.
pub fn round_trip(image: &GrayImage, quality: u8) -> Result<GrayImage> {
    if !(1..=100).contains(&quality) {
        bail!("JPEG quality {quality}: must lie in 1..=100");
    }
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(image)
        .context("JPEG encoding")?;
    Ok(
        image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg)
            .context("JPEG decoding")?
            .to_luma8(),
    )
}

/// The JPEG round trip of each image of a `(N,1,H,W)` tensor in [0, 1] (rounded to 8 bits first,
/// as a file would be), as a float tensor in [0, 1] on the input's device.
pub fn round_trip_tensor(images: &Tensor, quality: u8) -> Result<Tensor> {
    crate::codec::gray::map_8bit(images, |image| round_trip(image, quality))
}

/// A JPEG's frame header: its SOFn marker and its number of components (1 gray, 3 YCbCr or RGB,
/// 4 CMYK or YCCK), found by walking the segments before the first scan; None without one.
pub fn frame_header(bytes: &[u8]) -> Option<(u8, u8)> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 3 < bytes.len() {
        if bytes[i] != 0xFF || bytes[i + 1] == 0xFF {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            // SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC); the component count follows the
            // length, precision, height and width.
            marker @ (0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) => {
                return bytes.get(i + 9).map(|&n| (marker, n))
            }
            0xDA | 0xD9 => return None,
            _ => {}
        }
        i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
    }
    None
}

/// Whether a JPEG is progressive (SOF2, SOF6, SOF10 or SOF14).
pub fn is_progressive(bytes: &[u8]) -> bool {
    matches!(frame_header(bytes), Some((0xC2 | 0xC6 | 0xCA | 0xCE, _)))
}

/// Whether a JPEG holds four components (CMYK or YCCK): decoded to RGB.
pub fn is_four_component(bytes: &[u8]) -> bool {
    matches!(frame_header(bytes), Some((_, 4)))
}

/// Whether a JPEG's bytes run to its end-of-image marker. The `image` crate's JPEG decoder
/// (zune-jpeg, not in strict mode) fills a cut-off scan with gray without an error, and a photo
/// with a gray band would be trained on; so the marker structure is walked here: segments by
/// their length (an EXIF thumbnail's own markers are inside one), entropy-coded data up to the
/// next marker that is not a stuffed 0xFF00 or a restart. Bytes after the end marker are fine.
pub fn is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF || bytes[i + 1] == 0xFF {
            // Junk or fill bytes between segments: decoders skip them, and so does this.
            i += 1;
            continue;
        }
        let marker = bytes[i + 1];
        i += 2;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(length) = bytes.get(i..i + 2) else {
            return false;
        };
        i += u16::from_be_bytes([length[0], length[1]]) as usize;
        if marker == 0xDA {
            while i + 1 < bytes.len()
                && (bytes[i] != 0xFF || matches!(bytes[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF))
            {
                i += 1;
            }
        }
    }
    false
}
