//! `wmae score ORIGINAL MARKED`: how visible a change is, by the eye-model score `embed` reports
//! (`crate::watermarker::visibility`), for any pair of photos: another tool's output, an attack's, an edit's.

use anyhow::Result;

use crate::codec::photo::Photo;
use crate::commands::cli::ScoreArgs;
use crate::watermarker::photo::psnr;
use crate::watermarker::visibility;

/// Runs `wmae score`: how visible the change from an original photo to a marked one is.
pub(crate) fn run(args: &ScoreArgs) -> Result<()> {
    let original = Photo::open(&args.original)?;
    let marked = Photo::open(&args.marked)?;
    let psnr = psnr(&original, &marked)?;
    let v = visibility::score(&original, &marked)?;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    if args.json {
        let line = serde_json::json!({
            "original": args.original.display().to_string(),
            "marked": args.marked.display().to_string(),
            "ssimulacra2": round(v.worst),
            "ssimulacra2_centre": round(v.centre),
            "ssimulacra2_flattest": round(v.flattest),
            "flattest_window": [v.flattest_at.0, v.flattest_at.1, v.window.0, v.window.1],
            "psnr": psnr.is_finite().then_some(round(psnr)),
        });
        println!("{line}");
    } else {
        println!(
            "{}: SSIMULACRA2 {:.2} (centre {:.2}, flattest {:.2} at x {} y {}, {}x{} windows), \
             PSNR {psnr:.2} dB against {}",
            args.marked.display(),
            v.worst,
            v.centre,
            v.flattest,
            v.flattest_at.0,
            v.flattest_at.1,
            v.window.0,
            v.window.1,
            args.original.display()
        );
    }
    Ok(())
}
