//! `wmae data info` and `wmae data import-npm-digits`.

use std::time::Instant;

use anyhow::Result;
use tch::Kind;

use crate::commands::cli::{DataCommand, DataInfoArgs, GlobalArgs, ImportNpmDigitsArgs};
use crate::io::data::dataset::{Dataset, RawSplit};
use crate::io::data::mnist_json;

/// Runs a `wmae data` subcommand.
pub(crate) fn run(cmd: DataCommand, global: &GlobalArgs) -> Result<()> {
    match cmd {
        DataCommand::Info(args) => info(&args, global),
        DataCommand::ImportNpmDigits(args) => import(&args),
    }
}

fn info(args: &DataInfoArgs, global: &GlobalArgs) -> Result<()> {
    let device = global.device.resolve()?;
    let start = Instant::now();
    let dataset = Dataset::load(&args.data_dir)?;
    let loaded = start.elapsed();
    println!(
        "data set {} (loaded in {:.2} s)",
        dataset.dir.display(),
        loaded.as_secs_f64()
    );
    println!("device   {}", crate::runtime::device::describe(device));
    for (name, split) in [("train", &dataset.train), ("test", &dataset.test)] {
        print_split(name, split, device);
    }
    Ok(())
}

fn print_split(name: &str, split: &RawSplit, device: tch::Device) {
    let images = split.images_tensor(device);
    let labels = split.labels_tensor(device);
    let counts = Vec::<i64>::try_from(labels.bincount::<tch::Tensor>(None, 10)).unwrap_or_default();
    println!(
        "{name:<5}    {} images {:?}, pixel mean {:.4}, std {:.4}, min {:.1}, max {:.1}",
        split.len(),
        images.size(),
        images.mean(Kind::Float).double_value(&[]),
        images.std(true).double_value(&[]),
        images.min().double_value(&[]),
        images.max().double_value(&[]),
    );
    println!("         labels per class 0..9: {counts:?}");
}

fn import(args: &ImportNpmDigitsArgs) -> Result<()> {
    let written = mnist_json::convert_to_idx(&args.digits, &args.out)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
