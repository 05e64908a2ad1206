//! TensorBoard event files (the seed logged to TensorBoard): TFRecord framing of `Event`
//! protocol buffers holding scalar summaries. Only the few fields TensorBoard needs for scalars
//! are encoded, by hand, which avoids a protobuf code generator:
//!
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
//!           SessionLog session_log = 6; }
//! Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
//! SessionLog { SessionStatus status = 1; }   (START = 1)
//!
//! A resumed run writes a new file that begins with a SessionLog START at its first step:
//! TensorBoard then drops the events of that step and later ones that the interrupted process
//! had written, so a run resumed after a kill shows one history, not two.
//!
//! TFRecord: u64 length (LE), masked CRC-32C of the length, data, masked CRC-32C of the data.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// Writes one run's scalars to a TensorBoard event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field key: number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
    varint(field << 3 | wire, out);
}

fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut e);
    varint(step as u64, &mut e);
    body(&mut e);
    e
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates a new `events.out.tfevents.TIME.wmae.PID.K` in `dir` (TensorBoard finds files by
    /// that prefix) for steps from `first_step` on. An existing file is never opened again: a
    /// run resumed within the same second, or another process, gets a name of its own instead
    /// of truncating it.
    pub fn create(dir: &Path, first_step: i64) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stem = format!(
            "events.out.tfevents.{}.wmae.{}",
            now() as u64,
            std::process::id()
        );
        let (path, file) = (0..)
            .map(|k| dir.join(format!("{stem}.{k}")))
            .find_map(
                |path| match File::options().write(true).create_new(true).open(&path) {
                    Ok(file) => Some(Ok((path, file))),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    Err(e) => {
                        Some(Err(e).with_context(|| format!("cannot create {}", path.display())))
                    }
                },
            )
            .expect("an unbounded range of names ends with a fresh one")?;
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
        };
        let first = event(now(), 0, |e| bytes_field(3, b"brain.Event:2", e));
        writer.record(&first)?;
        if first_step > 1 {
            const START: u64 = 1;
            let restart = event(now(), first_step, |e| {
                let mut session_log = Vec::new();
                key(1, 0, &mut session_log);
                varint(START, &mut session_log);
                bytes_field(6, &session_log, e);
            });
            writer.record(&restart)?;
        }
        writer
            .out
            .flush()
            .with_context(|| format!("cannot write {}", writer.path.display()))?;
        Ok(writer)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut frame = Vec::with_capacity(data.len() + 16);
        frame.extend_from_slice(&len);
        frame.extend_from_slice(&masked_crc(&len).to_le_bytes());
        frame.extend_from_slice(data);
        frame.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.out
            .write_all(&frame)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Writes scalars `(tag, value)` at `step`, in one event, and flushes.
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> Result<()> {
        let data = event(now(), step, |e| {
            let mut summary = Vec::new();
            for (tag, v) in values {
                let mut value = Vec::new();
                bytes_field(1, tag.as_bytes(), &mut value);
                key(2, 5, &mut value);
                value.extend_from_slice(&(*v as f32).to_le_bytes());
                bytes_field(1, &value, &mut summary);
            }
            bytes_field(5, &summary, e);
        });
        self.record(&data)?;
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}
