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

/// The JPEG round trip of each image of a `(N,1,H,W)` tensor in [0,1] (rounded to 8 bits first,
/// as a file would be), as a float tensor in [0,1] on the input's device.
pub fn round_trip_tensor(images: &Tensor, quality: u8) -> Result<Tensor> {
    crate::data::images::map_8bit(images, |image| round_trip(image, quality))
}
