//! The run around the workers of a streaming `embed` or `extract`, for photo and digit models
//! alike: which shard to take, where the inputs come from, how each record is printed, the
//! summary and the exit status (`crate::stream` holds the runner itself).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::commands::cli::{GlobalArgs, StreamArgs};
use crate::stream::{self, Input, Inputs, Record, Status, Summary, Worker};

/// What the records of a run add up to beyond their status.
#[derive(Debug, Default)]
pub struct Tallies {
    /// Photos or images a watermark was found in (extract).
    pub found: usize,
    /// Outputs whose payload did not read back (embed).
    pub unverified: usize,
}

/// Lines printed for the images of a digit run, at most (without `--jsonl`).
const DIGIT_LINES: usize = 50;

/// What a run reads its inputs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Photos: image files, each written back in its own format.
    Photos,
    /// Digits: image files and arrays of them (IDX, `.npy`), written as PNG.
    Digits,
}

/// Runs `workers` over the inputs of `args` (writing under `out`, for embed), printing each
/// record (its JSON line with `--jsonl`, else its text) and the summary, and showing each
/// record to `observe`; an error when any input failed.
#[allow(clippy::too_many_arguments)]
pub fn stream_run<W: Worker>(
    args: &StreamArgs,
    positional: &[PathBuf],
    kind: InputKind,
    workers: Vec<W>,
    global: &GlobalArgs,
    out: Option<&Path>,
    mut observe: impl FnMut(&Record),
    totals: impl FnOnce(&Summary, &Tallies) -> String,
) -> Result<()> {
    let choice = stream::shard::choose(args.shard.as_deref(), args.shards, |k| {
        std::env::var(k).ok()
    })?;
    if let Some(c) = &choice {
        if global.verbose > 0 {
            eprintln!(
                "wmae: shard {} of {} (numbered from 0), from {}",
                c.shard.index, c.shard.count, c.source
            );
        }
    }
    let mut inputs = Inputs::new(positional, args.input_list.as_deref())?;
    if kind == InputKind::Digits {
        inputs = inputs.digit_arrays();
    }
    // A run that writes outputs: never two inputs to one output, never its own outputs as inputs.
    if let Some(out) = out {
        inputs = inputs.refuse_duplicate_keys().excluding(out);
        if kind == InputKind::Digits {
            inputs = inputs.png_keys();
        }
    }
    let n_workers = workers.len();
    let jsonl = args.jsonl;
    let stdout = std::io::stdout();
    let mut tallies = Tallies::default();
    // A line per photo, but not per digit of a 60,000-image array: the first ones, then the
    // summary (failures are always shown; --jsonl gives every image).
    let max_lines = match kind {
        InputKind::Photos => usize::MAX,
        InputKind::Digits => DIGIT_LINES,
    };
    let mut lines = 0usize;
    let summary = stream::run::run(
        inputs,
        choice.as_ref().map(|c| c.shard),
        workers,
        |record| {
            use std::io::Write;
            tallies.found += usize::from(record.fields.get("watermark") == Some(&true.into()));
            tallies.unverified += usize::from(record.fields.get("verified") == Some(&false.into()));
            observe(record);
            let mut out = stdout.lock();
            // A closed stdout ends the process through SIGPIPE (see main), so errors are moot here.
            let _ = if jsonl {
                writeln!(out, "{}", record.json())
            } else if record.status == Status::Failed {
                eprintln!("{}", record.text);
                Ok(())
            } else {
                lines += 1;
                if lines <= max_lines {
                    writeln!(out, "{}", record.text)
                } else {
                    Ok(())
                }
            };
            let _ = out.flush();
        },
    );
    if lines > max_lines {
        println!(
            "({} more image lines not shown; --jsonl gives one per image)",
            lines - max_lines
        );
    }
    let line = format!(
        "{}; {}",
        totals(&summary, &tallies),
        summary.describe(n_workers)
    );
    if jsonl {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    if summary.total() == 0 {
        // With more shards than inputs some shards are empty: done, not an error, or the
        // scheduler would retry them (and fail the job).
        if let Some(c) = &choice {
            eprintln!(
                "wmae: shard {} of {} holds none of the inputs; nothing to do",
                c.shard.index, c.shard.count
            );
            return Ok(());
        }
        bail!("no inputs: the list was empty");
    }
    if summary.failed > 0 {
        return Err(stream::SomeFailed {
            failed: summary.failed,
            total: summary.total(),
        }
        .into());
    }
    Ok(())
}

/// A file's bytes, timed as the record's "read" stage.
pub fn read_input(path: &Path, record: &mut Record) -> Result<Vec<u8>> {
    record.time("read", || {
        crate::runtime::fsutil::read_input_file(path, crate::runtime::fsutil::MAX_INPUT_BYTES)
    })
}

/// With `--skip-existing`: whether `out` is written already, in which case the record says it
/// was skipped, and a part file left beside it (debris of a killed rewrite) is removed.
pub fn skip_if_written(out: &Path, input: &Input, record: &mut Record) -> bool {
    if !out.exists() {
        return false;
    }
    crate::runtime::fsutil::remove_dead_part_files(out);
    record.status = Status::Skipped;
    record.text = format!(
        "{} -> {}: exists, skipped",
        input.path.display(),
        out.display()
    );
    true
}

/// Claims `--out`: shards of one run share it (they never write one file); two unsharded runs
/// may not.
pub fn lock_output(out: &Path, stream: &StreamArgs) -> Result<crate::runtime::fsutil::FolderLock> {
    let sharded = stream.shard.is_some()
        || stream.shards.is_some()
        || std::env::var_os("SLURM_ARRAY_TASK_ID").is_some();
    if sharded {
        crate::runtime::fsutil::FolderLock::acquire_shared(out)
    } else {
        crate::runtime::fsutil::FolderLock::acquire(out)
    }
}

/// One worker per CPU thread (`--threads`, default all cores), each with libtorch held to one
/// thread of its own, so images run side by side rather than each op being split.
pub fn worker_count() -> usize {
    tch::get_num_threads().max(1) as usize
}
