//! WebP beyond what the `image` crate does: which kind of bitstream a file holds (a lossy photo is
//! written back lossy, a lossless one lossless, an animation is refused), and lossy encoding with
//! the photo's ICC profile and EXIF block through libwebp's own encoder and muxer
//! (`libwebp-sys`, built from libwebp's source). Decoding, and lossless encoding, are the `image`
//! crate's.

use anyhow::{bail, Result};
use libwebp_sys as ffi;

/// What a WebP file's RIFF container holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebpKind {
    /// A VP8 (lossy) image, possibly with a lossless alpha plane.
    Lossy,
    /// A VP8L (lossless) image.
    Lossless,
}

/// The kind of a WebP file's bytes, from its chunks: `VP8 ` or `VP8L` first, or inside an
/// extended (`VP8X`) container. An animation is refused: wmae marks still photos.
pub fn kind(bytes: &[u8]) -> Result<WebpKind> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        bail!("not a WebP file (no RIFF/WEBP header)");
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let fourcc = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        match fourcc {
            b"VP8 " => return Ok(WebpKind::Lossy),
            b"VP8L" => return Ok(WebpKind::Lossless),
            b"ANIM" | b"ANMF" => bail!("an animated WebP; wmae marks still images only"),
            b"VP8X" if bytes.len() > at + 8 && bytes[at + 8] & 0x02 != 0 => {
                bail!("an animated WebP; wmae marks still images only")
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = at.saturating_add(8).saturating_add(size + (size & 1));
    }
    bail!("a WebP file without an image chunk (VP8 or VP8L)")
}

/// Lossy WebP of 8-bit RGB (`channels` 3) or RGBA (4) pixels at `quality` (1..=100, libwebp's
/// scale, as `cwebp -q`), with `icc` and `exif` in their chunks when given.
pub fn encode_lossy(
    raw: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    quality: u8,
    icc: Option<&[u8]>,
    exif: Option<&[u8]>,
) -> Result<Vec<u8>> {
    // libwebp's limit, WEBP_MAX_DIMENSION.
    if width > 16383 || height > 16383 {
        bail!("{width}x{height} pixels: a WebP holds at most 16383 a side");
    }
    if raw.len() != width as usize * height as usize * channels {
        bail!(
            "{} bytes for {width}x{height}x{channels} samples",
            raw.len()
        );
    }
    let (w, h, stride) = (
        width as i32,
        height as i32,
        (width as usize * channels) as i32,
    );
    let mut out: *mut u8 = std::ptr::null_mut();
    // SAFETY: `raw` holds `height` rows of `stride` bytes (checked above); libwebp allocates
    // `out`, which `Owned` frees.
    let size = unsafe {
        match channels {
            3 => ffi::WebPEncodeRGB(raw.as_ptr(), w, h, stride, f32::from(quality), &mut out),
            4 => ffi::WebPEncodeRGBA(raw.as_ptr(), w, h, stride, f32::from(quality), &mut out),
            _ => bail!("WebP holds RGB or RGBA, not {channels} channels"),
        }
    };
    let encoded = Owned(out);
    if size == 0 || out.is_null() {
        bail!("libwebp could not encode {width}x{height} pixels");
    }
    // SAFETY: libwebp wrote `size` bytes at `out`.
    let bitstream = unsafe { std::slice::from_raw_parts(out, size) };
    if icc.is_none() && exif.is_none() {
        return Ok(bitstream.to_vec());
    }
    let assembled = with_metadata(bitstream, icc, exif)?;
    drop(encoded);
    Ok(assembled)
}

/// `bitstream` (a whole WebP file) with ICCP and EXIF chunks, through libwebp's muxer (which
/// writes the extended header and its flags).
fn with_metadata(bitstream: &[u8], icc: Option<&[u8]>, exif: Option<&[u8]>) -> Result<Vec<u8>> {
    let data = |b: &[u8]| ffi::WebPData {
        bytes: b.as_ptr(),
        size: b.len(),
    };
    // SAFETY: every WebPData points at a live slice for the call; the muxer copies what it keeps
    // (copy_data = 1), and `Mux` deletes it; the assembled bytes are libwebp's until freed.
    unsafe {
        let mux = Mux(ffi::WebPMuxCreateInternal(
            &data(bitstream),
            1,
            ffi::WEBP_MUX_ABI_VERSION as i32,
        ));
        if mux.0.is_null() {
            bail!("libwebp's muxer could not read its own encoder's output");
        }
        for (fourcc, chunk) in [(c"ICCP", icc), (c"EXIF", exif)] {
            if let Some(chunk) = chunk {
                let status = ffi::WebPMuxSetChunk(mux.0, fourcc.as_ptr(), &data(chunk), 1);
                if status != ffi::WebPMuxError::WEBP_MUX_OK {
                    bail!("libwebp's muxer refused the {fourcc:?} chunk ({status:?})");
                }
            }
        }
        let mut assembled = ffi::WebPData {
            bytes: std::ptr::null(),
            size: 0,
        };
        let status = ffi::WebPMuxAssemble(mux.0, &mut assembled);
        let owned = Owned(assembled.bytes as *mut u8);
        if status != ffi::WebPMuxError::WEBP_MUX_OK || assembled.bytes.is_null() {
            bail!("libwebp's muxer could not assemble the file ({status:?})");
        }
        let bytes = std::slice::from_raw_parts(assembled.bytes, assembled.size).to_vec();
        drop(owned);
        Ok(bytes)
    }
}

/// Memory libwebp allocated, freed with its own allocator.
struct Owned(*mut u8);

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from libwebp and is freed once.
            unsafe { ffi::WebPFree(self.0.cast()) }
        }
    }
}

/// A libwebp muxer, deleted on drop.
struct Mux(*mut ffi::WebPMux);

impl Drop for Mux {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by WebPMuxCreateInternal and deleted once.
            unsafe { ffi::WebPMuxDelete(self.0) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(fourcc: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut c = fourcc.to_vec();
        c.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        c.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut f = b"RIFF".to_vec();
        f.extend_from_slice(&(body.len() as u32 + 4).to_le_bytes());
        f.extend_from_slice(b"WEBP");
        f.extend(body);
        f
    }

    #[test]
    fn the_kind_comes_from_the_first_image_chunk() {
        assert_eq!(
            kind(&riff(&[chunk(b"VP8 ", &[0; 10])])).unwrap(),
            WebpKind::Lossy
        );
        assert_eq!(
            kind(&riff(&[chunk(b"VP8L", &[0; 5])])).unwrap(),
            WebpKind::Lossless
        );
        // Extended: VP8X, an odd-sized ICCP (padded), then the image.
        let extended = riff(&[
            chunk(b"VP8X", &[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            chunk(b"ICCP", &[1, 2, 3]),
            chunk(b"VP8L", &[0; 4]),
        ]);
        assert_eq!(kind(&extended).unwrap(), WebpKind::Lossless);
        let animated = riff(&[chunk(b"VP8X", &[0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0])]);
        assert!(kind(&animated)
            .unwrap_err()
            .to_string()
            .contains("animated"));
        assert!(kind(&riff(&[chunk(b"EXIF", &[0; 3])])).is_err());
        assert!(kind(b"RIFF\0\0\0\0WAVE").is_err());
        // A chunk size that runs past the end is not followed into a panic.
        let mut huge = riff(&[chunk(b"ICCP", &[0; 2])]);
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(kind(&huge).is_err());
    }

    #[test]
    fn lossy_output_keeps_its_metadata_and_decodes() {
        let (w, h) = (40u32, 24u32);
        let raw: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let icc = vec![7u8; 33];
        let exif = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00".to_vec();
        let bytes = encode_lossy(&raw, w, h, 3, 90, Some(&icc), Some(&exif)).unwrap();
        assert_eq!(kind(&bytes).unwrap(), WebpKind::Lossy);
        let mut decoder =
            image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
        use image::ImageDecoder;
        assert_eq!(decoder.dimensions(), (w, h));
        assert_eq!(decoder.icc_profile().unwrap(), Some(icc));
        assert_eq!(decoder.exif_metadata().unwrap(), Some(exif));
        assert!(encode_lossy(&raw, w, h + 1, 3, 90, None, None).is_err());
    }
}
