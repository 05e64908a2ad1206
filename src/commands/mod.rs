//! One module per subcommand; each takes its parsed arguments and does the whole job.

pub mod attack;
pub mod bench;
pub mod cli;
pub mod data;
pub mod digits;
pub mod embed;
pub mod evaluate;
pub mod export;
pub mod extract;
pub mod photo;
pub mod score;
pub mod streaming;
pub mod train;

use anyhow::Result;

use crate::commands::cli::{Cli, Command};

/// Runs a parsed command line: sets the CPU threads, prepares the device backend, seeds the
/// random generators, then runs the subcommand.
pub fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    let threads = crate::runtime::device::set_threads(global.threads)?;
    crate::runtime::device::prepare_backend(global.device);
    crate::runtime::device::seed_everything(global.seed);
    if global.verbose > 0 {
        eprintln!(
            "wmae {}: libtorch from {}, {threads} CPU threads, seed {}, device choice {:?}",
            env!("CARGO_PKG_VERSION"),
            crate::runtime::device::LIBTORCH_LIB,
            global.seed,
            global.device
        );
    }
    match cli.command {
        Command::Data(cmd) => data::run(cmd, global),
        Command::Train(args) => train::run(&args, global),
        Command::Embed(args) => embed::run(&args, global),
        Command::Extract(args) => extract::run(&args, global),
        Command::Evaluate(args) => evaluate::run(&args, global),
        Command::Attack(args) => attack::run(&args, global),
        Command::Export(args) => export::run(&args, global),
        Command::Bench(args) => bench::run(&args, global),
        Command::Score(args) => score::run(&args),
    }
}
