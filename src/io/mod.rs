//! Files the project reads and writes besides images: checkpoints (`checkpoint`), the data sets
//! (`data`), digit manifests (`manifest`), run logs (`runlog`) and TensorBoard event files
//! (`tensorboard`).

pub mod checkpoint;
pub mod data;
pub mod manifest;
pub mod runlog;
pub mod tensorboard;
