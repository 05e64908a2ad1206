//! Embed a text payload into a photo with the shipped photo model, save it as a JPEG and read it
//! back, raising the strength until it reads (as `wmae embed` does):
//! `cargo run --release --example photo -- IN.jpg OUT.jpg`.
use std::path::Path;

use wmae::codec::photo::Photo;
use wmae::message::binarize::Method;
use wmae::message::payload::Payload;
use wmae::watermarker::PhotoModel;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 3, "usage: photo IN OUT");
    let (input, output) = (Path::new(&args[1]), Path::new(&args[2]));
    let model = PhotoModel::load(
        "checkpoints/photo.ot".as_ref(),
        tch::Device::Cpu,
        Default::default(),
    )?;
    let payload = Payload::parse("text:hello", model.code().data_bits())?;
    let photo = Photo::open(input)?;
    for strength in [1.0, 1.25, 1.5, 1.75, 2.0] {
        model.embed(&photo, &payload, strength)?.save(output, 95)?;
        let reading = model
            .read(&Photo::open(output)?, Method::Threshold(0.5))?
            .reading;
        if reading.payload.as_ref() == Some(&payload) {
            println!(
                "{}: reads \"hello\" at strength {strength}",
                output.display()
            );
            return Ok(());
        }
    }
    anyhow::bail!("{}: the payload does not read back", output.display())
}
