//! Data sets: the IDX format, data set folders and the embedded MNIST digits.

pub mod dataset;
pub mod idx;
pub mod images;
pub mod mnist_json;
pub mod photos;
