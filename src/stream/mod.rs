//! Streaming `embed` and `extract` over many files: inputs named one at a time
//! ([`inputs`]), split between processes ([`shard`]), and run through worker threads with
//! bounded memory, one record per input ([`run`]).

pub mod inputs;
pub mod run;
pub mod shard;

pub use inputs::{Input, InputError, Inputs};
pub use run::{Record, Status, Summary, Worker};
pub use shard::{Shard, ShardChoice};

/// An error for a run that finished but failed on some inputs: `main` exits with
/// [`EXIT_SOME_FAILED`] for it.
#[derive(Debug)]
pub struct SomeFailed {
    /// Inputs that failed.
    pub failed: usize,
    /// Inputs in the run.
    pub total: usize,
}

impl std::fmt::Display for SomeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} input(s) failed (each has its own line saying why)",
            self.failed, self.total
        )
    }
}

impl std::error::Error for SomeFailed {}

/// Exit status of a run that went through all its inputs but failed on some. 1 means it could
/// not start (nothing was processed), 2 a usage error (clap's), 0 all done.
pub const EXIT_SOME_FAILED: i32 = 3;
