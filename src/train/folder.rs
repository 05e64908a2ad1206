//! The run folder: locked for the run, its files, and where a run starts (fresh or resumed).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{RunOptions, Trainee};
use crate::io::checkpoint;
use crate::io::runlog::{csv_header, truncate_csv};
use crate::learning::optim::Adadelta;
use crate::runtime::fsutil::FolderLock;

/// The run folder, locked for the life of the run, and the paths of what it holds.
pub(super) struct RunFolder {
    dir: PathBuf,
    _lock: FolderLock,
}

impl RunFolder {
    /// Locks `dir` and removes temporary files a killed run left there.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        let lock = FolderLock::acquire(dir)?;
        crate::runtime::fsutil::remove_stale_temporaries(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(super) fn last(&self) -> PathBuf {
        self.path("last.ot")
    }

    pub(super) fn best(&self) -> PathBuf {
        self.path("best.ot")
    }

    pub(super) fn events(&self) -> PathBuf {
        self.path("tensorboard")
    }

    pub(super) fn write(&self, name: &str, text: &str) -> Result<()> {
        crate::runtime::fsutil::write_atomically(&self.path(name), |f| f.write_all(text.as_bytes()))
    }
}

/// Where a run stands: the next epoch to train, the best validation loss so far and the rows of
/// metrics.csv written so far.
pub(super) struct Progress {
    pub(super) next_epoch: usize,
    pub(super) best_loss: f64,
    pub(super) csv: String,
}

/// Restores a run from `last.ot` (weights, optimizer state, epoch), or starts one (from
/// `--init` weights when given), clearing an earlier run's events.
pub(super) fn start(
    folder: &RunFolder,
    opts: &RunOptions,
    trainee: &mut Trainee,
    optimizer: &mut Adadelta,
) -> Result<Progress> {
    let last = folder.last();
    if opts.resume {
        let (named, meta) = checkpoint::read_with_metadata(&last)?;
        let layout = trainee.layout();
        let model = &trainee.config.model;
        if meta.layout != layout
            || meta.head != model.head
            || meta.architecture != model.architecture.name()
        {
            bail!(
                "{}: its watermark layout, architecture or head differs from the run's config.toml",
                last.display()
            );
        }
        checkpoint::load_model(&last, &mut trainee.vs, &named)?;
        optimizer
            .load_state(&named)
            .with_context(|| format!("{}", last.display()))?;
        return Ok(Progress {
            next_epoch: meta.epoch,
            best_loss: meta.best_validation_loss.unwrap_or(f64::INFINITY),
            csv: truncate_csv(&folder.path("metrics.csv"), meta.epoch)?,
        });
    }
    if trainee.config.train.freeze_embedder && opts.init.is_none() {
        bail!(
            "train.freeze_embedder = true trains the extractor against a fixed embedder: give the \
             embedder's weights with --init CHECKPOINT (a frozen random embedder writes no \
             watermark)"
        );
    }
    if let Some(init) = &opts.init {
        let named = checkpoint::read(init)?.tensors;
        checkpoint::load_shared(init, &mut trainee.vs, &named)?;
    }
    if last.exists() {
        println!(
            "note: replacing the earlier run in {}",
            folder.dir.display()
        );
    }
    // A fresh run replaces whatever an earlier run (finished or killed) left; its event files
    // would otherwise be shown by TensorBoard as one run with two histories.
    let events = folder.events();
    if events.exists() {
        std::fs::remove_dir_all(&events)
            .with_context(|| format!("cannot clear {}", events.display()))?;
    }
    Ok(Progress {
        next_epoch: 0,
        best_loss: f64::INFINITY,
        csv: format!("{}\n", csv_header()),
    })
}
