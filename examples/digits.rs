//! Embed 16 bits into a test digit with the shipped digit model and read them back:
//! `cargo run --release --example digits` (after `scripts/fetch-data mnist`).
use wmae::codec::gray;
use wmae::io::data::dataset;
use wmae::watermarker::DigitWatermarker;

fn main() -> anyhow::Result<()> {
    let model = DigitWatermarker::open("checkpoints/default.ot".as_ref(), tch::Device::Cpu)?;
    let test = dataset::load_split("data/mnist".as_ref(), dataset::Split::Test)?;
    let digit = gray::to_gray(&test.images_tensor(tch::Device::Cpu).get(0));
    let bits: Vec<bool> = "1011010011100101".chars().map(|c| c == '1').collect();
    let marked = model.embed(&digit, &bits, 1.0)?;
    let reading = model.read(&marked)?;
    println!(
        "read {:?}, watermarked: {} (false-positive rate {:.1e})",
        reading.bits == bits,
        reading.watermarked,
        reading.false_positive_rate
    );
    anyhow::ensure!(
        reading.watermarked && reading.bits == bits,
        "the bits did not read back"
    );
    Ok(())
}
