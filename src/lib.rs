//! wmae: a watermark autoencoder on libtorch. An encoder CNN, a binary watermark map added to its
//! output, a decoder CNN giving the watermarked image and an extractor CNN recovering the map.

pub mod alloc;
pub mod attack;
pub mod bch;
pub mod binarize;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod detect;
pub mod device;
pub mod fsutil;
pub mod inference;
pub mod jpeg;
pub mod layout;
pub mod loss;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod noise;
pub mod optim;
pub mod payload;
pub mod photo;
pub mod photo_watermark;
pub mod precision;
pub mod recovery;
pub mod resample;
pub mod runlog;
pub mod splitmix;
pub mod stream;
pub mod tensorboard;
pub mod train;
pub mod watermark;
