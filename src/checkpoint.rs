//! Checkpoints: the model's variables (Keras layer names) in tch's `.ot` format, optionally the
//! optimizer's accumulators, and beside them `NAME.json` with what is needed to rebuild the
//! model (watermark layout, head) and to continue training (epoch, best validation loss).
//! Both files are written to temporary files and renamed into place.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use crate::model::Head;
use crate::optim::Adadelta;
use crate::watermark::Layout;

pub const FORMAT: &str = "wmae-checkpoint-1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub format: String,
    pub architecture: String,
    pub layout: Layout,
    pub head: Head,
    pub parameters: i64,
    /// Epochs completed when this checkpoint was written.
    pub epoch: usize,
    pub best_validation_loss: f64,
    /// The run's resolved config, as TOML.
    pub config: String,
}

/// `run/best.ot` -> `run/best.json`.
pub fn metadata_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("json")
}

/// Saves tensors atomically to `path` (tch's .ot format).
fn save_tensors(path: &Path, named: &[(String, Tensor)]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .suffix(".ot.tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::save_multi(&refs, tmp.path())
        .with_context(|| format!("cannot write {}", path.display()))?;
    crate::fsutil::publish_permissions(tmp.as_file())?;
    tmp.persist(path).with_context(|| {
        format!(
            "cannot move the checkpoint into place at {}",
            path.display()
        )
    })?;
    Ok(())
}

/// Writes the model (and the optimizer state when given) to `path`, metadata beside it.
pub fn save(
    path: &Path,
    vs: &VarStore,
    optimizer: Option<&Adadelta>,
    meta: &Metadata,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(opt) = optimizer {
        named.extend(opt.state());
    }
    // Metadata first: a checkpoint file never exists without the metadata that explains it.
    let json = serde_json::to_string_pretty(meta)?;
    crate::fsutil::write_atomically(&metadata_path(path), |f| {
        std::io::Write::write_all(f, json.as_bytes())
    })?;
    save_tensors(path, &named)
}

pub fn load_metadata(checkpoint: &Path) -> Result<Metadata> {
    let path = metadata_path(checkpoint);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the checkpoint's metadata {}", path.display()))?;
    let meta: Metadata = serde_json::from_str(&text)
        .with_context(|| format!("{}: not wmae checkpoint metadata", path.display()))?;
    if meta.format != FORMAT {
        bail!(
            "{}: format {:?}, this wmae reads {FORMAT:?}",
            path.display(),
            meta.format
        );
    }
    meta.layout
        .validate(&format!("{}: layout", path.display()))?;
    Ok(meta)
}

/// All tensors of a checkpoint file, on the CPU.
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        bail!("checkpoint {} does not exist", path.display());
    }
    Tensor::load_multi(path)
        .with_context(|| format!("{}: not a readable .ot checkpoint", path.display()))
}

/// Copies the model variables of `named` into `vs`; a missing, unexpected or misshapen variable
/// is an error that names it. Optimizer tensors are left for the optimizer.
pub fn load_model(path: &Path, vs: &mut VarStore, named: &[(String, Tensor)]) -> Result<()> {
    let vars = vs.variables();
    let missing: Vec<&String> = vars
        .keys()
        .filter(|k| !named.iter().any(|(n, _)| n == *k))
        .collect();
    let unexpected: Vec<&String> = named
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !vars.contains_key(*n) && !Adadelta::owns(n))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut missing: Vec<_> = missing;
        missing.sort();
        bail!(
            "{}: does not match the wmae model: missing variables {:?}, unexpected variables {:?}",
            path.display(),
            missing,
            unexpected
        );
    }
    tch::no_grad(|| -> Result<()> {
        for (name, tensor) in named.iter().filter(|(n, _)| vars.contains_key(n)) {
            let var = &vars[name];
            if var.size() != tensor.size() {
                bail!(
                    "{}: variable {name} has shape {:?}, the model needs {:?}",
                    path.display(),
                    tensor.size(),
                    var.size()
                );
            }
            var.shallow_clone().copy_(tensor);
        }
        Ok(())
    })
}

/// A model rebuilt from a checkpoint for inference: architecture from the metadata, weights
/// from the `.ot` file.
pub struct Loaded {
    pub vs: VarStore,
    pub model: crate::model::WatermarkAutoencoder,
    pub meta: Metadata,
}

pub fn load_for_inference(path: &Path, device: tch::Device) -> Result<Loaded> {
    let meta = load_metadata(path)?;
    let named = load_tensors(path)?;
    let mut vs = VarStore::new(device);
    let model = crate::model::WatermarkAutoencoder::new(&vs.root(), meta.head);
    load_model(path, &mut vs, &named)?;
    vs.freeze();
    Ok(Loaded { vs, model, meta })
}
