//! Image files and pixels: photos decoded and encoded in their own formats (`photo`, with
//! `jpeg` and `webp` helpers), the antialiased resampling between a photo and the working size
//! (`resample`), and 8-bit grayscale images as tensors (`gray`).

pub mod gray;
pub mod jpeg;
pub mod photo;
pub mod resample;
pub mod webp;
