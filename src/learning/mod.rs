//! What a training is made of: the config file that names it all (`config`), the losses
//! (`loss`), the Adadelta optimizer (`optim`), the noise layers between embedding and
//! extraction (`noise`) and the metrics of an evaluation pass (`metrics`). The loop that runs
//! them is `crate::train`.

pub mod config;
pub mod loss;
pub mod metrics;
pub mod noise;
pub mod optim;
