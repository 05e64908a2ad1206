//! `wmae export`: the model's variables (no optimizer state) with their metadata, as `.ot` or as
//! `.safetensors` (metadata in its header).

use anyhow::{bail, Result};

use crate::commands::cli::{ExportArgs, GlobalArgs};
use crate::io::checkpoint;

/// Runs `wmae export`: writes a checkpoint's model as .ot or .safetensors.
pub(crate) fn run(args: &ExportArgs, _global: &GlobalArgs) -> Result<()> {
    let loaded = checkpoint::load_for_inference(&args.checkpoint, tch::Device::Cpu)?;
    let named = checkpoint::model_tensors(&loaded.vs);
    let extension = args.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension {
        "safetensors" => checkpoint::save_safetensors(&args.out, &named, &loaded.meta)?,
        "ot" => checkpoint::save_ot(&args.out, &named, &loaded.meta)?,
        _ => bail!(
            "--out {}: the extension must be .ot or .safetensors",
            args.out.display()
        ),
    }
    println!(
        "exported {} tensors ({} parameters, watermark {}, {:?} head, config sha256 {}) to {}",
        named.len(),
        loaded.meta.parameters,
        loaded.meta.layout.describe(),
        loaded.meta.head,
        &checkpoint::config_sha256(&loaded.meta.config)[..12],
        args.out.display()
    );
    Ok(())
}
