//! 8-bit grayscale images and `[0, 1]` float tensors, one into the other as an 8-bit file stores
//! them, and PNG files of them: what digit images, the JPEG round trip and the attacks share.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use image::{GrayImage, ImageFormat};
use tch::{Kind, Tensor};

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
    crate::runtime::fsutil::write_atomically(path, |f| std::io::Write::write_all(f, &encoded))
}

/// `image` encoded as PNG (`path` names it in an error).
pub fn png_bytes(path: &Path, image: &GrayImage) -> Result<Vec<u8>> {
    let mut encoded = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut encoded), ImageFormat::Png)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    Ok(encoded)
}
