//! Checkpoints: the model's variables (Keras layer names), optionally the optimizer's
//! accumulators, and the metadata needed to rebuild the model (architecture, watermark layout,
//! head) and to continue training (epoch, best validation loss), all in ONE file:
//!
//! - `.ot` (tch's format): the metadata travels as JSON bytes in a uint8 tensor named
//!   `METADATA_TENSOR`;
//! - `.safetensors`: the metadata is JSON under the header's `__metadata__["wmae"]`.
//!
//! One file, written to a temporary file and renamed into place, means a reader sees the old
//! checkpoint or the new one, never weights of one epoch beside metadata of another, whenever the
//! writer is killed. The metadata carries a SHA-256 of the tensors, so a corrupted file is
//! refused instead of loaded. Everything read from a file is checked before it is used.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{nn::VarStore, Kind, Tensor};

use crate::learning::optim::Adadelta;
use crate::message::detect::{Calibration, Detector};
use crate::message::watermark::Layout;
use crate::model::{Architecture, Head, SEED_IMAGE_SIDE};

pub use crate::model::{NamedTensor, NamedTensors};

/// The model shipped in checkpoints/, used when no --checkpoint is given.
pub const DEFAULT_CHECKPOINT: &str = "checkpoints/default.ot";
/// The shipped photo model, the default for `--payload` and for photos that are not 28x28.
pub const DEFAULT_PHOTO_CHECKPOINT: &str = "checkpoints/photo.ot";

/// The metadata format this wmae writes and reads; a checkpoint naming another is refused.
pub const FORMAT: &str = "wmae-checkpoint-1";

/// Name of the `.ot` tensor that holds the metadata.
const METADATA_TENSOR: &str = "wmae.metadata";

/// The most epochs a checkpoint may claim.
const MAX_EPOCH: usize = 1_000_000_000;

/// Key of wmae's metadata (JSON) in a safetensors header.
const SAFETENSORS_META_KEY: &str = "wmae";

/// What a checkpoint carries beside its tensors: what rebuilds its model and continues its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The metadata format, [`FORMAT`].
    pub format: String,
    /// The model's architecture, by its name (`seed`, `seed-jnd`, ...).
    pub architecture: String,
    /// Where and how the watermark bits lie in the image.
    pub layout: Layout,
    /// The activation of the watermark head.
    pub head: Head,
    /// The model's parameter count, checked against the rebuilt model on loading.
    pub parameters: i64,
    /// Epochs completed when this checkpoint was written.
    pub epoch: usize,
    /// None for weights that were not trained by wmae (imported).
    pub best_validation_loss: Option<f64>,
    /// The run's resolved config, as TOML.
    pub config: String,
    /// SHA-256 (hex) of the file's tensors (see `tensors_sha256`); written by every wmae save,
    /// absent from files converted by other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors_sha256: Option<String>,
    /// The watermark detector's calibration on clean training images (see `crate::message::detect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

impl Metadata {
    /// Metadata of a seed model with `layout` and `head`, after `epoch` epochs.
    pub fn seed(layout: Layout, head: Head, parameters: i64, epoch: usize) -> Self {
        Self {
            format: FORMAT.to_string(),
            architecture: Architecture::Seed.name().to_string(),
            layout,
            head,
            parameters,
            epoch,
            best_validation_loss: None,
            config: String::new(),
            tensors_sha256: None,
            calibration: None,
        }
    }

    /// Checks everything a model is rebuilt from; `source` names the file in errors.
    pub fn validate(&self, source: &str) -> Result<()> {
        if self.format != FORMAT {
            bail!(
                "{source}: metadata format {:?}, this wmae reads {FORMAT:?}",
                self.format
            );
        }
        if Architecture::from_name(&self.architecture).is_none() {
            bail!(
                "{source}: architecture {:?} is unknown to this wmae (it knows \"seed\", \"seed-residual\" and \"seed-jnd\")",
                self.architecture
            );
        }
        self.layout.validate(&format!("{source}: layout"))?;
        let l = &self.layout;
        // Digits are 28x28; the photo layout works at a square working size.
        let square_photo = matches!(l, Layout::Tile { .. })
            && l.height() == l.width()
            && (16..=1024).contains(&l.height());
        if !square_photo && (l.height() != SEED_IMAGE_SIDE || l.width() != SEED_IMAGE_SIDE) {
            bail!(
                "{source}: layout height {} and width {}: the {} model works on \
                 {SEED_IMAGE_SIDE}x{SEED_IMAGE_SIDE} images (a tile layout on 16..=1024 square ones)",
                l.height(),
                l.width(),
                self.architecture
            );
        }
        if let Some(loss) = self.best_validation_loss {
            if !(loss.is_finite() && loss >= 0.0) {
                bail!("{source}: best_validation_loss {loss} is not a finite number >= 0");
            }
        }
        // Resuming counts on from the epoch: keep it far from any integer's end.
        if self.epoch > MAX_EPOCH {
            bail!(
                "{source}: epoch = {}: more than {MAX_EPOCH} epochs",
                self.epoch
            );
        }
        if let Some(c) = &self.calibration {
            // Agreements are shares of pixels: anything else would move the detection threshold
            // outside [0, 1] (never or always "watermarked").
            let share = |v: f64| (0.0..=1.0).contains(&v);
            if !(share(c.mean) && share(c.std) && share(c.max)) {
                bail!(
                    "{source}: calibration mean {}, std {}, max {}: each must lie in [0, 1]",
                    c.mean,
                    c.std,
                    c.max
                );
            }
        }
        Ok(())
    }
}

/// SHA-256 (hex) over the tensors in name order: for each, its name, shape and float32 values
/// (little-endian). The same tensors give the same digest in `.ot` and `.safetensors` files.
pub fn tensors_sha256(named: &[NamedTensor]) -> Result<String> {
    let mut order: Vec<&(String, Tensor)> = named.iter().collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = Sha256::new();
    for (name, t) in order {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        let shape = t.size();
        hash.update((shape.len() as u64).to_le_bytes());
        for d in &shape {
            hash.update(d.to_le_bytes());
        }
        let values = Vec::<f32>::try_from(
            t.to_device(tch::Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )
        .with_context(|| format!("tensor {name} to the host"))?;
        for v in values {
            hash.update(v.to_le_bytes());
        }
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Compact contiguous float32 copies on the CPU: a file is the same whatever layout the tensors
/// have in memory and whether they are views of a larger buffer (the optimizer's).
fn host_copies(named: &[NamedTensor]) -> NamedTensors {
    named
        .iter()
        .map(|(n, t)| {
            let mut copy = Tensor::empty(t.size(), (Kind::Float, tch::Device::Cpu));
            copy.copy_(t);
            (n.clone(), copy)
        })
        .collect()
}

/// `meta` with the digest of `named` filled in.
fn sealed(meta: &Metadata, named: &[NamedTensor]) -> Result<Metadata> {
    let mut meta = meta.clone();
    meta.tensors_sha256 = Some(tensors_sha256(named)?);
    Ok(meta)
}

/// The model's variables in name order.
pub fn model_tensors(vs: &VarStore) -> NamedTensors {
    let mut named: NamedTensors = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Writes the model (and the optimizer state when given) with its metadata to one `.ot` file.
pub fn save(
    path: &Path,
    vs: &VarStore,
    optimizer: Option<&Adadelta>,
    meta: &Metadata,
) -> Result<()> {
    let mut named = model_tensors(vs);
    if let Some(opt) = optimizer {
        named.extend(opt.state());
    }
    save_ot(path, &named, meta)
}

/// Writes tensors and metadata to one `.ot` file, atomically. The file is serialised in memory
/// first: libtorch aborts the process when its own file writer fails (a full disk), while a
/// failed write from here is an ordinary error that names the file and leaves no partial file.
pub fn save_ot(path: &Path, named: &[NamedTensor], meta: &Metadata) -> Result<()> {
    let mut named = host_copies(named);
    let meta = sealed(meta, &named)?;
    let json = serde_json::to_vec(&meta)?;
    named.push((METADATA_TENSOR.to_string(), Tensor::from_slice(&json)));
    let mut bytes = Vec::new();
    Tensor::save_multi_to_stream(&named, &mut bytes)
        .with_context(|| format!("cannot serialise {}", path.display()))?;
    crate::runtime::fsutil::write_atomically(path, |f| std::io::Write::write_all(f, &bytes))
}

/// Writes the model to a .safetensors file, with `meta` as JSON under the header's
/// `__metadata__["wmae"]` and the config hash under `["config_sha256"]`.
pub fn save_safetensors(path: &Path, named: &[NamedTensor], meta: &Metadata) -> Result<()> {
    let named = host_copies(named);
    let meta = sealed(meta, &named)?;
    let mut info = HashMap::new();
    info.insert(
        SAFETENSORS_META_KEY.to_string(),
        serde_json::to_string(&meta)?,
    );
    info.insert("config_sha256".to_string(), config_sha256(&meta.config));
    write_safetensors(path, &named, info)
}

/// A checkpoint file as read: its tensors (metadata removed) and its metadata, if it has any.
pub struct CheckpointFile {
    /// The named tensors, without the metadata tensor.
    pub tensors: NamedTensors,
    /// The wmae metadata; None for a file without (a PyTorch state dict, say).
    pub meta: Option<Metadata>,
}

/// Reads a checkpoint (`.ot` or `.safetensors`), checks its metadata and, when the metadata
/// carries one, the tensors' digest.
pub fn read(path: &Path) -> Result<CheckpointFile> {
    if !path.is_file() {
        bail!("checkpoint {} does not exist", path.display());
    }
    let (tensors, meta) = if is_safetensors(path) {
        load_safetensors(path)?
    } else {
        load_ot(path)?
    };
    if let Some(meta) = &meta {
        let source = path.display().to_string();
        meta.validate(&source)?;
        if let Some(want) = &meta.tensors_sha256 {
            let got = tensors_sha256(&tensors)?;
            if &got != want {
                bail!(
                    "{source}: the tensors do not match the checksum in the metadata (the file is \
                     corrupt or was changed after it was written)"
                );
            }
        }
    }
    Ok(CheckpointFile { tensors, meta })
}

/// Reads a checkpoint that must carry wmae metadata (one wmae wrote).
pub fn read_with_metadata(path: &Path) -> Result<(NamedTensors, Metadata)> {
    let file = read(path)?;
    match file.meta {
        Some(meta) => Ok((file.tensors, meta)),
        None => bail!(
            "{}: carries no wmae metadata (not written by this wmae; an .ot file of an older wmae \
             kept it in a .json beside it)",
            path.display()
        ),
    }
}

fn load_ot(path: &Path) -> Result<(NamedTensors, Option<Metadata>)> {
    let bytes =
        crate::runtime::fsutil::read_input_file(path, crate::runtime::fsutil::MAX_INPUT_BYTES)?;
    let mut named = Tensor::load_multi_from_stream(Cursor::new(bytes)).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable .ot checkpoint (truncated, corrupt or not a checkpoint: {})",
            path.display(),
            crate::runtime::torch_error::summary(&e)
        )
    })?;
    let meta = match named.iter().position(|(n, _)| n == METADATA_TENSOR) {
        Some(i) => {
            let (_, t) = named.remove(i);
            let json = Vec::<u8>::try_from(t.to_kind(Kind::Uint8).flatten(0, -1))
                .with_context(|| format!("{}: unreadable metadata tensor", path.display()))?;
            Some(parse_metadata(path, &json)?)
        }
        None => None,
    };
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((named, meta))
}

fn parse_metadata(path: &Path, json: &[u8]) -> Result<Metadata> {
    let bad = || format!("{}: not wmae checkpoint metadata", path.display());
    let mut value: serde_json::Value = serde_json::from_slice(json).with_context(bad)?;
    // Metadata written before spread layouts (and by scripts/keras_to_wmae.py) describes a block
    // without naming its kind.
    if let Some(layout) = value.get_mut("layout").and_then(|l| l.as_object_mut()) {
        layout
            .entry("kind")
            .or_insert_with(|| serde_json::Value::from("block"));
    }
    serde_json::from_value(value).with_context(bad)
}

/// Copies the model variables of `named` into `vs`; a missing, unexpected or misshapen variable
/// is an error that names it. Optimizer tensors are left for the optimizer.
pub fn load_model(path: &Path, vs: &mut VarStore, named: &[NamedTensor]) -> Result<()> {
    let vars = vs.variables();
    let (missing, unexpected) = unmatched(&vars, named);
    if !missing.is_empty() || !unexpected.is_empty() {
        bail!(
            "{}: does not match the wmae model: missing variables {:?}, unexpected variables {:?}",
            path.display(),
            missing,
            unexpected
        );
    }
    copy_shared(path, &vars, named)
}

/// `--init`: copies the variables of `named` that `vs` has too, and says which of the model's
/// start fresh and which of the file's go unused (another architecture started from this one,
/// e.g. a `seed-jnd-wide` from a `seed-jnd` checkpoint: same embedder, new extractor). A shared
/// name with another shape, or nothing shared, is an error.
pub fn load_shared(path: &Path, vs: &mut VarStore, named: &[NamedTensor]) -> Result<()> {
    let vars = vs.variables();
    if !named.iter().any(|(n, _)| vars.contains_key(n)) {
        bail!(
            "{}: shares no variable with the model to train",
            path.display()
        );
    }
    let (fresh, unused) = unmatched(&vars, named);
    copy_shared(path, &vars, named)?;
    if !fresh.is_empty() || !unused.is_empty() {
        println!(
            "note: --init {}: fresh variables {fresh:?}, unused variables {unused:?}",
            path.display()
        );
    }
    Ok(())
}

/// The model's variables `named` lacks (sorted), and the model variables of `named` the model
/// lacks (optimizer tensors aside).
fn unmatched<'a>(
    vars: &'a HashMap<String, Tensor>,
    named: &'a [NamedTensor],
) -> (Vec<&'a String>, Vec<&'a String>) {
    let mut missing: Vec<&String> = vars
        .keys()
        .filter(|k| !named.iter().any(|(n, _)| n == *k))
        .collect();
    missing.sort();
    let unexpected = named
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !vars.contains_key(*n) && !Adadelta::owns(n))
        .collect();
    (missing, unexpected)
}

/// Copies every tensor of `named` that names a variable of `vars` into it; another shape is an
/// error naming the variable.
fn copy_shared(path: &Path, vars: &HashMap<String, Tensor>, named: &[NamedTensor]) -> Result<()> {
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
pub fn resolve_default(path: &Path) -> PathBuf {
    let shipped = [DEFAULT_CHECKPOINT, DEFAULT_PHOTO_CHECKPOINT];
    if shipped.iter().any(|s| path == Path::new(s)) && !path.exists() {
        let project = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if project.exists() {
            return project;
        }
    }
    path.to_path_buf()
}

/// A model rebuilt from a checkpoint for inference: architecture from the metadata, weights
/// from the file.
pub struct Loaded {
    /// The variables holding the weights (frozen: no gradients).
    pub vs: VarStore,
    /// The rebuilt model, its weights in `vs`.
    pub model: crate::model::WatermarkAutoencoder,
    /// The checkpoint's metadata (or the one its description gave).
    pub meta: Metadata,
}

impl Loaded {
    /// Runs the model in `precision` from now on (bf16 only where the device computes it
    /// natively; see `crate::model::precision`).
    pub fn set_precision(&mut self, precision: crate::model::precision::Precision) -> Result<()> {
        precision.check(self.vs.device())?;
        if precision == crate::model::precision::Precision::Bf16 {
            self.vs.bfloat16();
        }
        Ok(())
    }

    /// The watermark detector of this model and layout.
    pub fn detector(&self) -> Detector {
        Detector::for_layout(&self.meta.layout, self.meta.calibration)
    }
}

/// Where the description of a checkpoint without wmae metadata lies: `FILE.toml` beside it.
pub fn description_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".toml");
    PathBuf::from(name)
}

/// Reads a checkpoint with the metadata that rebuilds its model: its own, or, for a file
/// without (a PyTorch state dict), the one its description beside it gives (the wmae config it
/// was trained with, `FILE.toml`). Without either it is refused: guessing the model and layout
/// would embed and read garbage.
pub fn read_described(path: &Path) -> Result<(NamedTensors, Metadata)> {
    let file = read(path)?;
    if let Some(meta) = file.meta {
        return Ok((file.tensors, meta));
    }
    let description = description_path(path);
    if !description.is_file() {
        bail!(
            "{}: carries no wmae metadata, so what model and watermark layout it holds is \
             unknown; a PyTorch state dict of the seed model loads once the wmae config it was \
             trained with lies beside it as {} (for the seed on the embedded digits: cp \
             configs/seed-embedded.toml {})",
            path.display(),
            description.display(),
            description.display()
        );
    }
    let meta = described_metadata(&description, &file.tensors)?;
    Ok((file.tensors, meta))
}

/// The metadata a wmae checkpoint trained with the config in `description` would carry.
fn described_metadata(description: &Path, tensors: &[NamedTensor]) -> Result<Metadata> {
    let config = crate::learning::config::Config::load(description)?;
    let parameters = tensors
        .iter()
        .filter(|(n, _)| !Adadelta::owns(n))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    let meta = Metadata {
        architecture: config.model.architecture.name().to_string(),
        config: config.to_toml()?,
        ..Metadata::seed(config.watermark.layout(), config.model.head, parameters, 0)
    };
    meta.validate(&description.display().to_string())?;
    Ok(meta)
}

/// Loads a checkpoint for inference on `device`: the model its metadata (or its description,
/// `FILE.toml`) describes, the file's weights in it, frozen. The shipped default paths also
/// resolve from the project folder.
pub fn load_for_inference(path: &Path, device: tch::Device) -> Result<Loaded> {
    let path = &resolve_default(path);
    let (tensors, meta) = read_described(path)?;
    let mut vs = VarStore::new(device);
    let architecture = Architecture::from_name(&meta.architecture).unwrap_or_default();
    let mut model = crate::model::WatermarkAutoencoder::build(&vs.root(), architecture, meta.head);
    if architecture.is_shaped() {
        let config = crate::learning::config::Config::parse(&meta.config)
            .with_context(|| format!("{}: the config in its metadata", path.display()))?;
        model.jnd_fraction = config.model.jnd_fraction;
        model.jnd_flat_weight = config.model.jnd_flat_weight;
    }
    load_model(path, &mut vs, &tensors)?;
    let parameters = crate::model::parameter_count(&vs);
    if meta.parameters != parameters {
        bail!(
            "{}: the metadata says {} parameters, the {} model has {parameters}",
            path.display(),
            meta.parameters,
            meta.architecture
        );
    }
    vs.freeze();
    Ok(Loaded { vs, model, meta })
}

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// SHA-256 (hex) of a run's config text, to tell exported models of different runs apart.
pub fn config_sha256(config: &str) -> String {
    Sha256::digest(config.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes tensors as float32 to a .safetensors file (atomically) with `info` as its metadata.
pub fn write_safetensors(
    path: &Path,
    named: &[NamedTensor],
    info: HashMap<String, String>,
) -> Result<()> {
    let host: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(name, t)| {
            let t = t
                .to_device(tch::Device::Cpu)
                .to_kind(Kind::Float)
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
    crate::runtime::fsutil::write_atomically(path, |f| std::io::Write::write_all(f, &bytes))
}

/// Reads a .safetensors file: its float32 tensors and wmae's metadata when the header has it.
pub fn load_safetensors(path: &Path) -> Result<(NamedTensors, Option<Metadata>)> {
    let bytes =
        crate::runtime::fsutil::read_input_file(path, crate::runtime::fsutil::MAX_INPUT_BYTES)?;
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
        let shape = view
            .shape()
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<std::result::Result<Vec<i64>, _>>()
            .with_context(|| {
                format!("{}: tensor {name} has an impossible shape", path.display())
            })?;
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
        Some(json) => Some(parse_metadata(path, json.as_bytes())?),
        None => None,
    };
    Ok((named, meta))
}
