//! Data sets: the IDX format, data set folders, the embedded MNIST digits, the photo data set,
//! digit image inputs, and the folder walk they all take.

pub mod dataset;
pub mod idx;
pub mod images;
pub mod mnist_json;
pub mod photos;
pub mod walk;
