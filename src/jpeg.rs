//! Real JPEG round trips of grayscale images through the `image` crate's baseline encoder and
//! decoder: what the attack suite applies and what the JPEG noise layer passes through its
//! straight-through estimator. A grayscale JPEG has no chroma, so no subsampling choice arises.

use anyhow::{bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::{GrayImage, ImageFormat};
use tch::{Kind, Tensor};

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

/// The JPEG round trip of each image of a `(N,1,H,W)` tensor in [0,1] (rounded to 8 bits first,
/// as a file would be), as a float tensor in [0,1] on the input's device.
pub fn round_trip_tensor(images: &Tensor, quality: u8) -> Result<Tensor> {
    let size = images.size();
    let (n, h, w) = (size[0], size[2], size[3]);
    let bytes = Vec::<u8>::try_from(
        (images.detach().clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )?;
    let per_image = (h * w) as usize;
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.chunks(per_image.max(1)) {
        let image = GrayImage::from_raw(w as u32, h as u32, chunk.to_vec())
            .context("image size matches its pixels")?;
        out.extend_from_slice(round_trip(&image, quality)?.as_raw());
    }
    Ok((Tensor::from_slice(&out)
        .reshape([n, 1, h, w])
        .to_kind(Kind::Float)
        / 255.0)
        .to_device(images.device()))
}
