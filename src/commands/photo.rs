//! `wmae embed --payload` and `wmae extract` on photos: a payload in photos of any size, read
//! back with its corrected bit count and the detection decision (`crate::watermarker::photo`).
//! Both stream their inputs through worker threads (`crate::stream`): one record per photo, a
//! failed photo reported and counted without stopping the run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::codec::photo::Photo;
use crate::commands::cli::{
    EmbedArgs, ExtractArgs, GlobalArgs, ModelKind, DEFAULT_CHECKPOINT, DEFAULT_PHOTO_CHECKPOINT,
};
use crate::message::binarize::Method;
use crate::message::key::Key;
use crate::message::payload::Payload;
use crate::model::precision::Precision;
use crate::stream::{Input, Record, Worker};
use crate::watermarker::photo::{psnr_from_mse, Change, PhotoModel, Search, Votes};
use crate::watermarker::visibility;

use super::streaming::{
    lock_output, read_input, skip_if_written, stream_run, worker_count, InputKind,
};

/// The checkpoint `embed` uses: the given one, or the shipped photo or digit model.
pub fn embed_checkpoint(args: &EmbedArgs) -> PathBuf {
    args.checkpoint.clone().unwrap_or_else(|| {
        PathBuf::from(if args.payload.is_some() {
            DEFAULT_PHOTO_CHECKPOINT
        } else {
            DEFAULT_CHECKPOINT
        })
    })
}

/// The checkpoint `extract` uses: the given one; else the shipped model `--model` names; else
/// the digit model when there is no input, every input is a digit array file (IDX or `.npy`,
/// named as such, not an image) or the bits to expect are given; the photo model otherwise. No
/// image is opened to decide.
pub fn extract_checkpoint(args: &ExtractArgs) -> PathBuf {
    if let Some(c) = &args.checkpoint {
        return c.clone();
    }
    let kind = args.model.unwrap_or_else(|| {
        let arrays = !args.inputs.is_empty()
            && args
                .inputs
                .iter()
                .all(|p| p.is_file() && !crate::io::data::walk::is_image_file(p));
        let digits = args.stream.input_list.is_none()
            && (args.inputs.is_empty()
                || arrays
                || args.expect.is_some()
                || !args.manifest.is_empty());
        if digits {
            ModelKind::Digits
        } else {
            ModelKind::Photo
        }
    });
    PathBuf::from(match kind {
        ModelKind::Digits => DEFAULT_CHECKPOINT,
        ModelKind::Photo => DEFAULT_PHOTO_CHECKPOINT,
    })
}

/// Whether a checkpoint holds a photo model (a tile layout), from its metadata only.
pub fn is_photo_model(path: &Path) -> bool {
    crate::io::checkpoint::read_described(&crate::io::checkpoint::resolve_default(path))
        .map(|(_, meta)| matches!(meta.layout, crate::message::layout::Layout::Tile { .. }))
        .unwrap_or(false)
}

/// Loads one model per worker (each thread owns its tensors; a failure stops the run before it
/// starts).
fn load_models(
    checkpoint: &Path,
    global: &GlobalArgs,
    precision: Precision,
    key: Option<&Path>,
) -> Result<Vec<PhotoModel>> {
    let device = global.device.resolve()?;
    let key = Key::resolve(key)?;
    let n = worker_count();
    (0..n)
        .map(|_| Ok(PhotoModel::load(checkpoint, device, precision)?.with_key(key.clone())))
        .collect()
}

/// Embeds one payload into photo after photo.
struct EmbedWorker {
    model: PhotoModel,
    payload: Payload,
    /// The payload's watermark map, made once.
    map: tch::Tensor,
    out: PathBuf,
    jpeg_quality: u8,
    strength: f64,
    skip_existing: bool,
    verify: bool,
    keep_unread: bool,
    score: bool,
    /// `--visibility`: the SSIMULACRA2 floor each photo's strength is searched for.
    visibility: Option<f64>,
}

/// A photo file read and decoded, timed as the record's "read" and "decode" stages. Its format
/// comes from its bytes; when the name's extension says otherwise, the record says so
/// (`format_mismatch`) and the second value is a note for its line.
fn read_photo(path: &Path, record: &mut Record) -> Result<(Photo, String)> {
    let bytes = read_input(path, record)?;
    let photo = record.time("decode", || Photo::decode(path, &bytes))?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let format = photo.format.name();
    let note = match photo.format.matches_extension(&ext) {
        Some(false) => {
            let what = format!("{format} data in a .{ext} file");
            record.set("format_mismatch", what.clone());
            format!("; {what} (read and written as {format})")
        }
        _ => String::new(),
    };
    Ok((photo, note))
}

/// The factors of --strength an output is embedded at, in turn, until it reads back (see
/// `--no-verify`).
const VERIFY_FACTORS: [f64; 5] = [1.0, 1.25, 1.5, 1.75, 2.0];

/// The factors of --strength `--visibility` searches between: a faint photo is not made fainter
/// than a quarter, nor a busy one stronger than 4 times, what the user asked for.
const VISIBILITY_FACTORS: (f64, f64) = (0.25, 4.0);

/// Scored tries `--visibility` makes a photo at most, and the bracket (ratio of strengths) at
/// which it stops sooner: the score falls about linearly with the strength, so 3 to 4 tries
/// usually land within 5% of the strength where it crosses the floor.
const VISIBILITY_TRIES: usize = 6;
const VISIBILITY_BRACKET: f64 = 1.05;

/// A strength `--visibility` tried, and the worst-window SSIMULACRA2 it scored.
type Try = (f64, f64);

/// Rounded so a record says 0.45, not 0.44999999999999996.
fn round_strength(s: f64) -> f64 {
    (s * 1e6).round() / 1e6
}

impl EmbedWorker {
    /// The worst-window SSIMULACRA2 of `photo` marked at `strength` and written to `out`'s format.
    fn score_at(
        &self,
        photo: &Photo,
        change: &Change,
        strength: f64,
        out: &Path,
        record: &mut Record,
    ) -> Result<f64> {
        let (marked, _) = record.time("apply", || change.apply(photo, strength))?;
        let file = record.time("encode", || marked.encode_file(self.jpeg_quality, out))?;
        drop(marked);
        let written = record.time("decode", || Photo::decode(out, &file))?;
        Ok(record
            .time("score", || visibility::score(photo, &written))?
            .worst)
    }

    /// The strongest strength, between the [`VISIBILITY_FACTORS`] of --strength, whose written
    /// file scores at least `floor`. From --strength the search doubles or halves until the floor
    /// is bracketed, then puts the next try where the line through the bracket's two scores
    /// crosses the floor (kept inside the bracket's middle 80%, so each try narrows it). A photo
    /// under the floor even at the lowest factor gets the lowest.
    fn strength_for_visibility(
        &self,
        floor: f64,
        photo: &Photo,
        change: &Change,
        out: &Path,
        record: &mut Record,
    ) -> Result<f64> {
        let (lowest, highest) = (
            self.strength * VISIBILITY_FACTORS.0,
            self.strength * VISIBILITY_FACTORS.1,
        );
        // (strength, score) of the strongest try that keeps the floor and of the faintest above it
        // that does not.
        let (mut good, mut bad): (Option<Try>, Option<Try>) = (None, None);
        let mut next = self.strength;
        for _ in 0..VISIBILITY_TRIES {
            let s = round_strength(next);
            let score = self.score_at(photo, change, s, out, record)?;
            if score >= floor {
                good = Some((s, score));
            } else {
                bad = Some((s, score));
            }
            next = match (good, bad) {
                (Some((g, _)), None) if g >= highest => break,
                (Some((g, _)), None) => (2.0 * g).min(highest),
                (None, Some((b, _))) if b <= lowest => break,
                (None, Some((b, _))) => (b / 2.0).max(lowest),
                (Some((g, sg)), Some((b, sb))) => {
                    if b / g <= VISIBILITY_BRACKET {
                        break;
                    }
                    let t = ((sg - floor) / (sg - sb)).clamp(0.1, 0.9);
                    g + t * (b - g)
                }
                // Every try lands in one of the two; nothing is left to search otherwise.
                (None, None) => break,
            };
        }
        Ok(good.map_or(round_strength(lowest), |(g, _)| g))
    }
}

impl Worker for EmbedWorker {
    fn process(&mut self, input: &Input, record: &mut Record) -> Result<()> {
        let out = &self.out.join(&input.key);
        record.set_path("output", out);
        if self.skip_existing && skip_if_written(out, input, record) {
            return Ok(());
        }
        let path = &input.path;
        let (photo, format_note) = read_photo(path, record)?;
        record.set("width", photo.width());
        record.set("height", photo.height());
        let change = record.time("model", || self.model.change_for_map(&photo, &self.map))?;
        if matches!(change, Change::Shaped { .. }) {
            record.set("flat_weight", self.model.flat_weight());
        }
        let base = match self.visibility {
            Some(floor) => {
                let s = self.strength_for_visibility(floor, &photo, &change, out, record)?;
                record.set("visibility_strength", s);
                s
            }
            None => self.strength,
        };
        let factors: &[f64] = if self.verify { &VERIFY_FACTORS } else { &[1.0] };
        let t = self.model.code().t();
        let (mut file, mut psnr, mut strength) = (Vec::new(), 0.0, 0.0);
        let (mut read_back, mut written) = (None, None);
        for &factor in factors {
            strength = round_strength(base * factor);
            // The last try's decoded file and bytes go before this one is made: a worker holds
            // the original and one other copy at a time (a 100-megapixel photo is 300 MB a copy).
            written = None;
            drop(std::mem::take(&mut file));
            let (marked, mse) = record.time("apply", || change.apply(&photo, strength))?;
            psnr = psnr_from_mse(mse);
            file = record.time("encode", || marked.encode_file(self.jpeg_quality, out))?;
            // Freed before the check decodes the file again: a 100-megapixel photo is 300 MB a
            // copy, and a worker then holds the original and one other, not three.
            drop(marked);
            if !self.verify {
                break;
            }
            // The file as written, decoded again and read where it was embedded.
            let (corrected, decoded) = record.time("verify", || -> Result<_> {
                let decoded = Photo::decode(out, &file)?;
                let reading = self
                    .model
                    .read_as_embedded(&decoded, Method::Threshold(0.5))?;
                let corrected = reading
                    .filter(|r| r.reading.payload.as_ref() == Some(&self.payload))
                    .map(|r| r.reading.corrected);
                Ok((corrected, decoded))
            })?;
            (read_back, written) = (corrected, Some(decoded));
            if read_back.is_some_and(|c| 2 * c <= t) {
                break;
            }
        }
        record.set("payload", self.payload.hex());
        // JSON has no infinity: an unchanged photo (all-zero change) reports null.
        record.set(
            "psnr",
            psnr.is_finite().then_some((psnr * 1e4).round() / 1e4),
        );
        record.set("strength", strength);
        if self.verify {
            record.set("verified", read_back.is_some());
            record.set("corrected_bits", read_back);
        }
        if self.verify && read_back.is_none() && !self.keep_unread {
            bail!(
                "{}: its payload does not read back even at strength {strength} (PSNR {psnr:.2} \
                 dB); nothing written (--keep-unread writes it anyway)",
                path.display()
            );
        }
        let visibility = if self.score {
            let written = match written.take() {
                Some(w) => w,
                None => record.time("decode", || Photo::decode(out, &file))?,
            };
            let v = record.time("score", || visibility::score(&photo, &written))?;
            record.set("ssimulacra2", (v.worst * 100.0).round() / 100.0);
            record.set("ssimulacra2_centre", (v.centre * 100.0).round() / 100.0);
            record.set("ssimulacra2_flattest", (v.flattest * 100.0).round() / 100.0);
            if let Some(floor) = self.visibility {
                record.set("visibility_kept", v.worst >= floor);
            }
            Some(v)
        } else {
            None
        };
        drop(written);
        record.time("write", || {
            crate::runtime::fsutil::write_through_part_file(out, &file)
        })?;
        record.set("written", true);
        record.set("format", photo.format.name());
        record.set("bit_depth", photo.pixels.bit_depth());
        if !photo.conversions.is_empty() {
            record.set("conversions", photo.conversions.clone());
        }
        let check = if self.verify {
            match read_back {
                Some(c) if strength == base => {
                    format!("; reads back ({c} bits corrected)")
                }
                Some(c) => {
                    format!("; strength raised to {strength} to read back ({c} bits corrected)")
                }
                None => {
                    format!("; WARNING: its payload does not read back even at strength {strength} (kept: --keep-unread)")
                }
            }
        } else {
            String::new()
        };
        let score = visibility
            .map(|v| format!(", SSIMULACRA2 {:.1} (worst 512-px window)", v.worst))
            .unwrap_or_default();
        let chosen = match (self.visibility, visibility) {
            (Some(floor), Some(v)) if v.worst >= floor => {
                format!("; strength {base} chosen to keep it >= {floor}")
            }
            (Some(floor), _) => format!(
                "; strength {base} chosen, but under {floor} at the strength it reads back at"
            ),
            (None, _) => String::new(),
        };
        let depth = if photo.pixels.bit_depth() == 16 {
            "; 16 bits kept"
        } else {
            ""
        };
        let conversions: String = photo.conversions.iter().map(|c| format!("; {c}")).collect();
        record.text = format!(
            "{} -> {}: {}x{}, {:.0} ms, PSNR {psnr:.2} dB against the original (before {} \
             encoding){score}{chosen}{check}{depth}{conversions}{format_note}",
            path.display(),
            out.display(),
            photo.width(),
            photo.height(),
            record.ms(),
            photo.format.name()
        );
        Ok(())
    }
}

/// `wmae embed --payload`: every photo gets the payload and is written under `--out` (a file
/// argument by its name, a folder's files by their path below it, a listed file by its path)
/// with its own size, colour type and format.
pub fn embed(args: &EmbedArgs, global: &GlobalArgs, spec: &str) -> Result<()> {
    if !(1..=100).contains(&args.jpeg_quality) {
        bail!("--jpeg-quality {}: must lie in 1..=100", args.jpeg_quality);
    }
    if let Some(v) = args.visibility.filter(|v| !(*v > 0.0 && *v < 100.0)) {
        bail!("--visibility {v}: a SSIMULACRA2 score must lie in (0, 100); 85 is near invisible");
    }
    if let Some(w) = args.flat_weight {
        crate::learning::config::check_flat_weight(w, "--flat-weight")?;
    }
    let checkpoint = embed_checkpoint(args);
    let models = load_models(
        &checkpoint,
        global,
        args.stream.precision,
        args.key.as_deref(),
    )?;
    if args.flat_weight.is_some() && !models[0].is_shaped() {
        bail!(
            "--flat-weight: {} is not a perceptually shaped model (its change is not scaled by a \
             JND); it takes --strength alone",
            checkpoint.display()
        );
    }
    let payload = Payload::parse(spec, models[0].code().data_bits())?;
    let code = models[0].code().clone();
    let _lock = lock_output(&args.out, &args.stream)?;
    let workers = models
        .into_iter()
        .map(|model| -> Result<EmbedWorker> {
            Ok(EmbedWorker {
                map: model.watermark_map(&payload)?,
                // The read-back check counts one vote a pixel, whatever `extract` is told: with
                // weighted votes it would pass at lower strengths, and a photo would be embedded
                // more weakly than `extract --votes counted` needs.
                model: model
                    .with_votes(Votes::Counted)
                    .with_flat_weight(args.flat_weight),
                payload: payload.clone(),
                out: args.out.clone(),
                jpeg_quality: args.jpeg_quality,
                strength: args.strength,
                skip_existing: args.skip_existing,
                verify: !args.no_verify,
                keep_unread: args.keep_unread,
                score: !args.no_score,
                visibility: args.visibility,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    stream_run(
        &args.stream,
        &args.inputs,
        InputKind::Photos,
        workers,
        global,
        Some(&args.out),
        |_| {},
        |s, tallies| {
            format!(
            "embedded payload {} ({} data bits, BCH ({}, {}) correcting {} bits) into {} photo(s) \
             in {}{}",
            payload.hex(),
            code.data_bits(),
            code.coded_bits(),
            code.data_bits(),
            code.t(),
            s.ok,
            args.out.display(),
            match tallies.unverified {
                0 => String::new(),
                n => format!("; WARNING: in {n} of them the payload does not read back"),
            }
        )
        },
    )
}

/// Reads the payload of photo after photo.
struct ExtractWorker {
    model: PhotoModel,
    method: Method,
    search: Search,
}

impl Worker for ExtractWorker {
    fn process(&mut self, input: &Input, record: &mut Record) -> Result<()> {
        let path = &input.path;
        let (photo, format_note) = read_photo(path, record)?;
        let r = record.time("search", || {
            self.model.read_with(&photo, self.method, self.search)
        })?;
        let fpr = r.reading.false_positive_rate;
        let code = self.model.code();
        record.set("watermark", r.reading.payload.is_some());
        record.set("false_positive_rate", fpr);
        let Some(p) = &r.reading.payload else {
            let looked = match self.search {
                Search::Full => "no shift, scale or angle",
                Search::Quick => "no shift of the whole, upright photo (--search quick)",
            };
            record.text = format!(
                "{}: no watermark ({looked} decodes within {} bit errors; a clean photo reads as \
                 watermarked with probability {fpr:.1e}){format_note}",
                path.display(),
                code.t()
            );
            return Ok(());
        };
        record.set("payload", p.hex());
        record.set("text", p.text());
        record.set("uuid", p.uuid());
        record.set("corrected_bits", r.reading.corrected);
        record.set("scale", r.scale);
        record.set("shift", r.shift.map(|(y, x)| vec![y, x]));
        record.set("mirrored", r.mirrored);
        record.set("angle", r.angle);
        let text = p
            .text()
            .map(|t| format!(" (text {t:?})"))
            .unwrap_or_default();
        record.text = format!(
            "{}: payload {}{text}; {} of {} bits corrected, read at {:.0}% scale{}; watermark \
             found (a clean photo reads as one with probability {fpr:.1e}){format_note}",
            path.display(),
            p.hex(),
            r.reading.corrected,
            code.coded_bits(),
            100.0 * r.scale.unwrap_or(1.0),
            match (r.mirrored, r.angle) {
                (true, _) => ", mirrored".to_string(),
                (false, Some(a)) if a != 0.0 => format!(", turned back by {a} degrees"),
                _ => String::new(),
            }
        );
        Ok(())
    }
}

/// `wmae extract` on photos: the payload of each, or "no watermark".
pub fn extract(args: &ExtractArgs, global: &GlobalArgs, checkpoint: &Path) -> Result<()> {
    if args.inputs.is_empty() && args.stream.input_list.is_none() {
        bail!("a photo model reads photos: give the files or folders to read");
    }
    if args.expect.is_some() || !args.manifest.is_empty() || args.out.is_some() {
        bail!(
            "--expect, --manifest and --out are for the digit models; photos print their payload"
        );
    }
    let method = if args.otsu {
        Method::Otsu
    } else {
        Method::Threshold(args.threshold)
    };
    let workers = load_models(
        checkpoint,
        global,
        args.stream.precision,
        args.key.as_deref(),
    )?
    .into_iter()
    .map(|model| ExtractWorker {
        model: model.with_votes(args.votes),
        method,
        search: args.search,
    })
    .collect();
    let mut stream_args = args.stream.clone();
    stream_args.jsonl |= args.json;
    stream_run(
        &stream_args,
        &args.inputs,
        InputKind::Photos,
        workers,
        global,
        None,
        |_| {},
        |s, tallies| format!("watermark found in {} of {} photo(s)", tallies.found, s.ok),
    )
}
