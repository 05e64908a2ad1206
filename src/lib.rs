//! wmae: a watermark autoencoder on libtorch. An encoder CNN, a binary watermark map added to its
//! output, a decoder CNN giving the watermarked image and an extractor CNN recovering the map.

pub mod cli;
pub mod commands;
pub mod data;
pub mod device;
pub mod fsutil;
