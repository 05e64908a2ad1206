//! `wmae train`: resolves the config (file, or the run folder's on --resume, plus CLI
//! overrides) and runs the training loop.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::commands::cli::{GlobalArgs, TrainArgs};
use crate::learning::config::{Config, Overrides};
use crate::train::{self, RunOptions};

/// Runs `wmae train`: resolves the config (the file, or the run folder's on --resume, with the
/// command-line overrides) and runs the training loop.
pub(crate) fn run(args: &TrainArgs, global: &GlobalArgs) -> Result<()> {
    let overrides = Overrides {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        data_dir: args.data_dir.clone(),
        name: args.name.clone(),
        watermark_mode: args.watermark,
        head: args.head,
    };
    let mut config = Config::load(&args.config)?;
    config.apply(&overrides)?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
    // A run killed before its first checkpoint has nothing to continue: it starts (so a
    // scheduler can always requeue the same `--resume` command).
    let resume = args.resume && dir.join("last.ot").exists();
    if args.resume && !resume {
        println!(
            "note: {} holds no checkpoint yet; starting the run",
            dir.join("last.ot").display()
        );
    }
    if resume {
        // The run's own config wins, so a resumed run is the run it continues; only the epoch
        // count may be extended.
        let saved_path = dir.join("config.toml");
        let saved = Config::load(&saved_path)?;
        // Resuming under another config would silently train the saved one: say so instead.
        // Only the epoch count may differ.
        let mut given = config.clone();
        given.train.epochs = saved.train.epochs;
        if given != saved {
            bail!(
                "--resume: {} (with the options given) differs from the config {} was started \
                 with, {}; resume with `--config {}` to continue that run, or give a new --out \
                 (or --name) to start another",
                args.config.display(),
                dir.display(),
                saved_path.display(),
                saved_path.display()
            );
        }
        config = saved;
        config.apply(&Overrides {
            epochs: args.epochs,
            ..Overrides::default()
        })?;
    }
    let device = global.device.resolve()?;
    let opts = RunOptions {
        dir,
        device,
        seed: global.seed,
        resume,
        stop_after: args.stop_after,
        init: args.init.clone(),
        quiet: args.quiet,
    };
    train::run(config, &opts)?;
    Ok(())
}
