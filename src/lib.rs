//! wmae: a watermark autoencoder on libtorch. An encoder CNN, a binary watermark map added to its
//! output, a decoder CNN giving the watermarked image and an extractor CNN recovering the map.
//!
//! The folders are layers, each using only those listed before it:
//! `runtime` (device, files written whole, hashing), `message` (bits, layouts, payloads, BCH,
//! keys, detection), `model` (the networks, perceptual shaping, precision), `codec` (image files
//! and resampling), `learning` (config, losses, optimizer, noise layers, metrics), `io`
//! (checkpoints, data sets, manifests, logs), `watermarker` (the library's front door: digit and
//! photo models that embed and read), `stream` (many files through worker threads), `train`
//! (the training loop), `attack` (edits applied to marked images) and `commands` (the command
//! line).

#![warn(missing_docs)]

pub mod attack;
pub mod codec;
pub mod commands;
pub mod io;
pub mod learning;
pub mod message;
pub mod model;
pub mod runtime;
pub mod stream;
pub mod train;
pub mod watermarker;
