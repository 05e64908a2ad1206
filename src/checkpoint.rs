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

/// Tensors by name, as checkpoint files hold them.
pub type NamedTensors = Vec<(String, Tensor)>;

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
    /// None for weights that were not trained by wmae (imported).
    pub best_validation_loss: Option<f64>,
    /// The run's resolved config, as TOML.
    pub config: String,
}

impl Metadata {
    /// The seed architecture with its default watermark layout, for weights that come without
    /// metadata (a PyTorch state dict).
    pub fn seed_default() -> Self {
        Self {
            format: FORMAT.to_string(),
            architecture: "seed".to_string(),
            layout: Layout::default(),
            head: Head::Sigmoid,
            parameters: 21_491,
            epoch: 0,
            best_validation_loss: None,
            config: String::new(),
        }
    }
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
    // Compact contiguous copies: the file is the same whatever layout the tensors have in memory
    // and whether they are views of a larger buffer (the optimizer's).
    let contiguous: Vec<(&str, Tensor)> = named
        .iter()
        .map(|(n, t)| {
            let mut copy = Tensor::empty(t.size(), (t.kind(), t.device()));
            copy.copy_(t);
            (n.as_str(), copy)
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> = contiguous.iter().map(|(n, t)| (*n, t)).collect();
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
    if is_safetensors(path) {
        return Ok(load_safetensors(path)?.0);
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

/// The shipped model is found from any working folder: the default path, when it is not there
/// relative to the current folder, is taken relative to the project the binary was built from.
fn resolve_default(path: &Path) -> PathBuf {
    if path == Path::new(crate::cli::DEFAULT_CHECKPOINT) && !path.exists() {
        let project = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if project.exists() {
            return project;
        }
    }
    path.to_path_buf()
}

/// A model rebuilt from a checkpoint for inference: architecture from the metadata, weights
/// from the `.ot` file.
pub struct Loaded {
    pub vs: VarStore,
    pub model: crate::model::WatermarkAutoencoder,
    pub meta: Metadata,
}

pub fn load_for_inference(path: &Path, device: tch::Device) -> Result<Loaded> {
    let path = &resolve_default(path);
    let (named, meta) = if is_safetensors(path) {
        if !path.is_file() {
            bail!("checkpoint {} does not exist", path.display());
        }
        let (named, header_meta) = load_safetensors(path)?;
        let meta = match header_meta {
            Some(meta) => meta,
            None if metadata_path(path).is_file() => load_metadata(path)?,
            None => {
                eprintln!(
                    "note: {} carries no wmae metadata; assuming the seed model (4x4 bits at the \
                     top left of 28x28, sigmoid head)",
                    path.display()
                );
                Metadata::seed_default()
            }
        };
        (named, meta)
    } else {
        (load_tensors(path)?, load_metadata(path)?)
    };
    let mut vs = VarStore::new(device);
    let model = crate::model::WatermarkAutoencoder::new(&vs.root(), meta.head);
    load_model(path, &mut vs, &named)?;
    vs.freeze();
    Ok(Loaded { vs, model, meta })
}

/// Key of wmae's metadata (JSON) in a safetensors header.
const SAFETENSORS_META_KEY: &str = "wmae";

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// SHA-256 (hex) of a run's config text, to tell exported models of different runs apart.
pub fn config_sha256(config: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(config.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes the model to a .safetensors file, with `meta` as JSON under the header's
/// `__metadata__["wmae"]` and the config hash under `["config_sha256"]`.
pub fn save_safetensors(path: &Path, named: &[(String, Tensor)], meta: &Metadata) -> Result<()> {
    let mut info = std::collections::HashMap::new();
    info.insert(
        SAFETENSORS_META_KEY.to_string(),
        serde_json::to_string(meta)?,
    );
    info.insert("config_sha256".to_string(), config_sha256(&meta.config));
    write_safetensors(path, named, info)
}

/// Writes tensors as float32 to a .safetensors file (atomically) with `info` as its metadata.
pub fn write_safetensors(
    path: &Path,
    named: &[(String, Tensor)],
    info: std::collections::HashMap<String, String>,
) -> Result<()> {
    let host: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(name, t)| {
            let t = t
                .to_device(tch::Device::Cpu)
                .to_kind(tch::Kind::Float)
                .contiguous();
            let shape = t.size().iter().map(|&d| d as usize).collect();
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).context("tensor to host")?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name.clone(), shape, bytes))
        })
        .collect::<Result<_>>()?;
    let views = host
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, &Some(info))
        .map_err(|e| anyhow::anyhow!("cannot serialise {}: {e:?}", path.display()))?;
    crate::fsutil::write_atomically(path, |f| std::io::Write::write_all(f, &bytes))
}

/// Reads a .safetensors file: its float32 tensors and wmae's metadata when the header has it.
pub fn load_safetensors(path: &Path) -> Result<(NamedTensors, Option<Metadata>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file ({e:?})", path.display()))?;
    let mut named = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            bail!(
                "{}: tensor {name} is {:?}; wmae loads float32 weights",
                path.display(),
                view.dtype()
            );
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        named.push((name, Tensor::from_slice(&values).reshape(shape)));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: bad safetensors header ({e:?})", path.display()))?;
    let meta = match header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SAFETENSORS_META_KEY))
    {
        Some(json) => Some(
            serde_json::from_str(json)
                .with_context(|| format!("{}: bad wmae metadata in the header", path.display()))?,
        ),
        None => None,
    };
    Ok((named, meta))
}
