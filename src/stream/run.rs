//! The streaming runner: inputs flow through a bounded queue to worker threads, each with its
//! own copy of the model, and their records flow back to the caller as they finish. At most
//! `2 x workers x batch` inputs (paths) wait in the queue and one batch is in each worker's hands
//! (one photo; up to 256 digits, see [`Worker::batch_size`]), so memory does not grow with the
//! number of inputs. A failing input becomes a failed record, a panic fails its batch; the run
//! goes on.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value};

use super::inputs::{Input, Item};
use super::shard::Shard;

/// What happened to one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok,
    /// Its output already existed (`--skip-existing`).
    Skipped,
    /// It failed; the record's `error` says why.
    Failed,
}

impl Status {
    /// The status as the JSON line gives it: `ok`, `skipped` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// The result for one input: its JSON line, and a line of text for people.
#[derive(Debug, Clone)]
pub struct Record {
    /// The input's path.
    pub input: PathBuf,
    /// What happened to it.
    pub status: Status,
    /// Why it failed (the error's whole chain); None unless failed.
    pub error: Option<String>,
    /// The job's own fields (output, payload, PSNR, ...), by name (a JSON object, keys sorted).
    pub fields: Map<String, Value>,
    /// Milliseconds spent in each stage, in order.
    pub stages: Vec<(&'static str, f64)>,
    /// The line of text for people.
    pub text: String,
}

impl Record {
    /// An empty record of `input`, status ok.
    pub fn new(input: PathBuf) -> Record {
        Record {
            input,
            status: Status::Ok,
            error: None,
            fields: Map::new(),
            stages: Vec::new(),
            text: String::new(),
        }
    }

    /// A record of `input` failed with `error`.
    pub fn failed(input: PathBuf, error: String) -> Record {
        let mut r = Record::new(input);
        r.fail(error);
        r
    }

    /// Marks the input failed; a record that named an output says it was not written.
    pub fn fail(&mut self, error: String) {
        if self.fields.contains_key("output") {
            self.fields.insert("written".into(), false.into());
        }
        self.text = format!("error: {error}");
        self.status = Status::Failed;
        self.error = Some(error);
    }

    /// Sets the job's field `key` to `value`, replacing any earlier value.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.fields.insert(key.to_string(), value.into());
    }

    /// Sets `key` to a path (see `path_fields`).
    pub fn set_path(&mut self, key: &str, path: &std::path::Path) {
        path_fields(&mut self.fields, key, path);
    }

    /// Runs `stage`, adding its time to the record under `name` (a stage run twice adds up).
    pub fn time<T>(&mut self, name: &'static str, stage: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = stage();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match self.stages.iter_mut().find(|s| s.0 == name) {
            Some(s) => s.1 += ms,
            None => self.stages.push((name, ms)),
        }
        out
    }

    /// Milliseconds spent in all stages together.
    pub fn ms(&self) -> f64 {
        // + 0.0: an empty f64 sum is -0.0, which would print as "-0.0" for a skipped input.
        self.stages.iter().map(|s| s.1).sum::<f64>() + 0.0
    }

    /// The JSON line: input, status, error, the job's fields, total ms and ms per stage.
    pub fn json(&self) -> Value {
        let mut line = Map::new();
        path_fields(&mut line, "input", &self.input);
        line.insert("status".into(), self.status.name().into());
        line.insert("error".into(), self.error.clone().into());
        line.extend(self.fields.clone());
        line.insert("ms".into(), round3(self.ms()).into());
        let stages: Map<String, Value> = self
            .stages
            .iter()
            .map(|&(name, ms)| (name.to_string(), round3(ms).into()))
            .collect();
        line.insert("stages".into(), stages.into());
        Value::Object(line)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// One worker: fills in an input's record (fields, stage times, text, a skipped status). An
/// error it returns fails that input, with the error's whole chain as the message. Each worker
/// runs on a thread of its own, with libtorch on that one thread: photos run side by side
/// rather than each operation being split.
pub trait Worker: Send {
    /// Processes one input, filling in its record; an error fails the input.
    fn process(&mut self, input: &Input, record: &mut Record) -> anyhow::Result<()>;

    /// How many inputs the worker takes at once, at most (default 1). More than one lets a model
    /// run them in one forward pass: for a 28x28 digit the per-call cost outweighs the
    /// arithmetic. A worker takes what is waiting in the queue, up to this many; it never waits
    /// for a batch to fill.
    fn batch_size(&self) -> usize {
        1
    }

    /// Processes several inputs, one record each, returning one result per input (an error
    /// fails that input). By default one [`Worker::process`] after another.
    fn process_batch(
        &mut self,
        inputs: &[Input],
        records: &mut [Record],
    ) -> Vec<anyhow::Result<()>> {
        inputs
            .iter()
            .zip(records.iter_mut())
            .map(|(input, record)| self.process(input, record))
            .collect()
    }
}

/// Counts and times of a whole run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Inputs done.
    pub ok: usize,
    /// Inputs skipped (their output already existed).
    pub skipped: usize,
    /// Inputs that failed.
    pub failed: usize,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Milliseconds per stage summed over the inputs, in the order stages first appeared.
    pub stages: Vec<(&'static str, f64)>,
}

impl Summary {
    /// Inputs in the run: done, skipped and failed.
    pub fn total(&self) -> usize {
        self.ok + self.skipped + self.failed
    }

    fn add(&mut self, record: &Record) {
        match record.status {
            Status::Ok => self.ok += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
        for &(name, ms) in &record.stages {
            match self.stages.iter_mut().find(|s| s.0 == name) {
                Some(s) => s.1 += ms,
                None => self.stages.push((name, ms)),
            }
        }
    }

    /// "12 ok, 1 skipped, 2 failed of 15 in 1.2 s (10.0 images/s); time per stage: read 1%, ..."
    pub fn describe(&self, workers: usize) -> String {
        let total_ms: f64 = self.stages.iter().map(|s| s.1).sum();
        let shares: Vec<String> = self
            .stages
            .iter()
            .map(|&(name, ms)| format!("{name} {:.0}%", 100.0 * ms / total_ms.max(1e-9)))
            .collect();
        format!(
            "{} ok, {} skipped, {} failed of {} in {:.2} s ({:.1} images/s on {workers} worker(s)){}",
            self.ok,
            self.skipped,
            self.failed,
            self.total(),
            self.seconds,
            self.ok as f64 / self.seconds.max(1e-9),
            if shares.is_empty() {
                String::new()
            } else {
                format!("; worker time per stage: {}", shares.join(", "))
            }
        )
    }
}

/// Runs `workers` over the inputs this `shard` owns, handing each record to `sink` (on the
/// calling thread) as it finishes; records come in the order they finish.
pub fn run<W: Worker>(
    inputs: impl Iterator<Item = Item> + Send,
    shard: Option<Shard>,
    workers: Vec<W>,
    mut sink: impl FnMut(&Record),
) -> Summary {
    let started = Instant::now();
    let batch = workers
        .iter()
        .map(|w| w.batch_size().max(1))
        .max()
        .unwrap_or(1);
    let queue = 2 * workers.len().max(1) * batch;
    // Bounded queues (crossbeam-channel: one job queue that every worker takes from): the
    // walker stays at most a few inputs ahead, and memory stays bounded however many inputs.
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Item>(queue);
    let (record_tx, record_rx) = crossbeam_channel::bounded::<Record>(queue);
    let mut summary = Summary::default();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for item in inputs {
                let key = match &item {
                    Ok(input) => &input.key,
                    // Shard errors by their path too: one shard reports each.
                    Err(e) => &e.path,
                };
                if shard.is_some_and(|s| !s.contains(key)) {
                    continue;
                }
                if job_tx.send(item).is_err() {
                    return;
                }
            }
        });
        for mut worker in workers {
            let (record_tx, job_rx) = (record_tx.clone(), job_rx.clone());
            scope.spawn(move || {
                tch::set_num_threads(1);
                let size = worker.batch_size().max(1);
                while let Ok(first) = job_rx.recv() {
                    // What is waiting, up to a batch: never a wait for more.
                    let items = std::iter::once(first)
                        .chain(std::iter::from_fn(|| job_rx.try_recv().ok()).take(size - 1));
                    let (mut inputs, mut records) = (Vec::new(), Vec::new());
                    for item in items {
                        match item {
                            Ok(input) => inputs.push(input),
                            Err(e) => records.push(Record::failed(e.path, e.message)),
                        }
                    }
                    if !inputs.is_empty() {
                        records.extend(process_guarded(&mut worker, &inputs));
                    }
                    for record in records {
                        if record_tx.send(record).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop((record_tx, job_rx));
        for record in record_rx {
            summary.add(&record);
            sink(&record);
        }
    });
    summary.seconds = started.elapsed().as_secs_f64();
    summary
}

/// The workers' records for `inputs`; an error becomes a failed record for its input, a panic
/// one for every input of the batch.
fn process_guarded<W: Worker>(worker: &mut W, inputs: &[Input]) -> Vec<Record> {
    let started = Instant::now();
    let mut records: Vec<Record> = inputs.iter().map(|i| Record::new(i.name())).collect();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        worker.process_batch(inputs, &mut records)
    })) {
        Ok(results) => {
            for (record, result) in records.iter_mut().zip(results) {
                if let Err(e) = result {
                    record.fail(crate::runtime::torch_error::without_cpp_backtrace(
                        &format!("{e:#}"),
                    ));
                }
            }
            records
        }
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            let ms = started.elapsed().as_secs_f64() * 1e3 / inputs.len() as f64;
            inputs
                .iter()
                .map(|input| {
                    let name = input.name();
                    let mut record = Record::failed(
                        name.clone(),
                        format!("{}: internal error: {why}", name.display()),
                    );
                    record.stages.push(("failed", ms));
                    record
                })
                .collect()
        }
    }
}

/// `key`: the path as text; a path that is not UTF-8 (JSON strings are) shows there with
/// replacement characters, and exactly, as its bytes in hex, under `KEY_hex`, so a record can
/// always find its file.
fn path_fields(fields: &mut Map<String, Value>, key: &str, path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    fields.insert(key.into(), path.display().to_string().into());
    if path.to_str().is_none() {
        let hex: String = path
            .as_os_str()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        fields.insert(format!("{key}_hex"), hex.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::inputs::InputError;

    /// Squares the number in the file name; fails on 7, panics on 9.
    struct Square;
    impl Worker for Square {
        fn process(&mut self, input: &Input, r: &mut Record) -> anyhow::Result<()> {
            let n: u64 = input.key.to_str().unwrap().parse().unwrap();
            match n {
                7 => anyhow::bail!("seven"),
                9 => panic!("nine"),
                _ => r.set("square", n * n),
            }
            Ok(())
        }
    }

    fn items(n: u64) -> Vec<Item> {
        (0..n)
            .map(|i| {
                Ok(Input {
                    path: PathBuf::from(format!("in/{i}")),
                    key: PathBuf::from(i.to_string()),
                    item: None,
                })
            })
            .chain([Err(InputError {
                path: PathBuf::from("bad"),
                message: "unreadable".into(),
            })])
            .collect()
    }

    #[test]
    fn every_input_gets_one_record_and_failures_do_not_stop_the_run() {
        let mut seen = Vec::new();
        let summary = run(
            items(200).into_iter(),
            None,
            vec![Square, Square, Square],
            |r| seen.push((r.input.clone(), r.status, r.json())),
        );
        assert_eq!((summary.ok, summary.failed, summary.skipped), (198, 3, 0));
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen.len(), 201);
        let line = |p: &str| {
            seen.iter()
                .find(|s| s.0.as_path() == std::path::Path::new(p))
                .unwrap()
        };
        assert_eq!(line("in/12").2["square"], 144);
        assert_eq!(line("in/7").2["error"], "seven");
        assert!(line("in/9").2["error"]
            .as_str()
            .unwrap()
            .contains("internal error: nine"));
        assert_eq!(line("bad").1, Status::Failed);
    }

    /// Takes up to 8 inputs at once and notes each batch's size; a batch holding input 9 panics.
    struct Batches(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);
    impl Worker for Batches {
        fn process(&mut self, _: &Input, _: &mut Record) -> anyhow::Result<()> {
            unreachable!("batches only")
        }
        fn batch_size(&self) -> usize {
            8
        }
        fn process_batch(
            &mut self,
            inputs: &[Input],
            records: &mut [Record],
        ) -> Vec<anyhow::Result<()>> {
            self.0.lock().unwrap().push(inputs.len());
            if inputs.iter().any(|i| i.key == std::path::Path::new("9")) {
                panic!("nine");
            }
            records.iter_mut().for_each(|r| r.set("batched", true));
            inputs.iter().map(|_| Ok(())).collect()
        }
    }

    #[test]
    fn batches_take_what_waits_and_a_panic_fails_only_its_batch() {
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut failed = Vec::new();
        let summary = run(
            items(200).into_iter(),
            None,
            vec![Batches(sizes.clone()), Batches(sizes.clone())],
            |r| {
                if r.status == Status::Failed {
                    failed.push(r.input.clone());
                }
            },
        );
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 200);
        assert!(sizes.iter().all(|&n| (1..=8).contains(&n)), "{sizes:?}");
        assert!(sizes.iter().any(|&n| n > 1), "{sizes:?}");
        // The bad list item and the batch that panicked (input 9 and its batch mates) failed.
        let batch_of_nine = failed.len() - 1;
        assert!((1..=8).contains(&batch_of_nine), "{failed:?}");
        assert!(failed.contains(&PathBuf::from("in/9")));
        assert_eq!(summary.ok, 200 - batch_of_nine);
    }

    #[test]
    fn shards_split_the_run() {
        let mut all = Vec::new();
        for i in 0..3 {
            let shard = Shard::new(i, 3).unwrap();
            run(items(100).into_iter(), Some(shard), vec![Square], |r| {
                all.push(r.input.clone())
            });
        }
        all.sort();
        let mut expected: Vec<PathBuf> =
            (0..100).map(|i| PathBuf::from(format!("in/{i}"))).collect();
        expected.push(PathBuf::from("bad"));
        expected.sort();
        assert_eq!(all, expected);
    }
}
