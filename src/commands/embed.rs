//! `wmae embed`: digits get given or random bits and are written as 8-bit PNG files with a
//! manifest of the bits, which `wmae extract --manifest` reads back (`super::digits`); photos
//! get a BCH-coded payload (`super::photo`).

use anyhow::Result;

use crate::commands::cli::{EmbedArgs, GlobalArgs};

/// Runs `wmae embed`: watermarks digit images or photos and writes them out.
pub(crate) fn run(args: &EmbedArgs, global: &GlobalArgs) -> Result<()> {
    if !(args.strength > 0.0 && args.strength <= 10.0) {
        anyhow::bail!("--strength {}: must lie in (0, 10]", args.strength);
    }
    if let Some(spec) = &args.payload {
        return super::photo::embed(args, global, spec);
    }
    if args.key.is_some() {
        anyhow::bail!("--key keys photo payloads (--payload); digit models carry plain bits");
    }
    if args.visibility.is_some() {
        anyhow::bail!(
            "--visibility chooses each photo's strength (with --payload); digit models embed at \
             --strength"
        );
    }
    if args.flat_weight.is_some() {
        anyhow::bail!(
            "--flat-weight shapes a photo model's change (with --payload); digit models have no \
             JND"
        );
    }
    let checkpoint = super::photo::embed_checkpoint(args);
    super::digits::embed(args, global, &checkpoint)
}
