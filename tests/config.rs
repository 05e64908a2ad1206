//! Configs: the shipped presets parse, unknown keys and bad values are refused by name.

use std::path::Path;

use wmae::learning::config::Config;
use wmae::learning::loss::{LossKind, Region};
use wmae::message::watermark::Mode;

fn preset(name: &str) -> Config {
    Config::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name),
    )
    .unwrap()
}

fn err(text: &str) -> String {
    format!("{:#}", Config::parse(text).unwrap_err())
}

fn seed_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/seed.toml"))
        .unwrap()
}

#[test]
fn seed_preset_is_the_keras_program() {
    let c = preset("seed.toml");
    assert_eq!(c.watermark.mode, Mode::Fixed);
    assert_eq!(
        (c.loss.image, c.loss.watermark),
        (LossKind::Mse, LossKind::Mse)
    );
    assert_eq!((c.loss.image_weight, c.loss.watermark_weight), (1.0, 1.0));
    assert_eq!(c.loss.watermark_region, Region::Map);
    assert_eq!(
        (c.optimizer.lr, c.optimizer.rho, c.optimizer.eps),
        (1.0, 0.95, 1e-7)
    );
    assert_eq!((c.train.batch_size, c.train.epochs), (128, 100));
    assert_eq!(c.data.train_range, [10001, 60000]);
    assert_eq!(c.data.validation_range, [1, 10000]);
    let embedded = preset("seed-embedded.toml");
    assert_eq!(
        (embedded.loss, embedded.optimizer, embedded.train),
        (c.loss, c.optimizer, c.train)
    );
    // Every shipped preset parses and validates; the seed keeps its block, the default recipe
    // spreads its bits and trains through noise layers after its first stage.
    for name in [
        "stamp.toml",
        "stamp-finetune.toml",
        "default.toml",
        "default-robust.toml",
        "default-finetune.toml",
        "fashion.toml",
        "fashion-robust.toml",
        "fashion-finetune.toml",
    ] {
        let p = preset(name);
        if name.starts_with("stamp") {
            assert!(matches!(
                p.watermark.layout(),
                wmae::message::layout::Layout::Block { .. }
            ));
        } else {
            assert!(matches!(
                p.watermark.layout(),
                wmae::message::layout::Layout::Spread { .. }
            ));
        }
        assert_eq!(
            p.noise.is_default(),
            name == "default.toml" || name == "fashion.toml" || name.starts_with("stamp"),
            "{name}"
        );
    }
    assert!(matches!(
        c.watermark.layout(),
        wmae::message::layout::Layout::Block { .. }
    ));
}

#[test]
fn unknown_key_is_named() {
    let text = seed_text().replace("rho = 0.95", "rho = 0.95\nmomentum = 0.9");
    let e = err(&text);
    assert!(e.contains("unknown field `momentum`"), "{e}");
    assert!(e.contains("expected one of `lr`, `rho`, `eps`"), "{e}");
}

#[test]
fn bad_enum_value_lists_the_allowed_ones() {
    let e = err(&seed_text().replace("watermark = \"mse\"", "watermark = \"l1\""));
    assert!(
        e.contains("unknown variant `l1`, expected `mse` or `bce`"),
        "{e}"
    );
    assert!(
        e.contains("watermark = \"l1\""),
        "the offending line is shown: {e}"
    );
    let e = err(&seed_text().replace("mode = \"fixed\"", "mode = \"sometimes\""));
    assert!(e.contains("expected `fixed` or `random`"), "{e}");
}

#[test]
fn bad_numbers_name_the_key() {
    let cases = [
        ("batch_size = 128", "batch_size = 0", "train.batch_size = 0"),
        ("epochs = 100", "epochs = 0", "train.epochs = 0"),
        ("lr = 1.0", "lr = -0.5", "optimizer.lr = -0.5"),
        ("rho = 0.95", "rho = 1.0", "optimizer.rho = 1"),
        ("top = 0", "top = 25", "watermark: a 4x4 block at top 25"),
        (
            "validation_range = [1, 10000]",
            "validation_range = [10, 5]",
            "data.validation_range = [10, 5]",
        ),
        (
            "image_weight = 1.0",
            "image_weight = -1.0",
            "loss.image_weight = -1",
        ),
        // A top near i64::MAX must not wrap around into "fits".
        (
            "top = 0",
            "top = 9223372036854775807",
            "watermark: a 4x4 block at top 9223372036854775807",
        ),
        (
            "image_weight = 1.0",
            "block_weight = nan",
            "loss.block_weight = NaN",
        ),
        (
            "image_weight = 1.0",
            "block_weight = inf",
            "loss.block_weight = inf",
        ),
        (
            "image_weight = 1.0",
            "block_weight = -2.0",
            "loss.block_weight = -2",
        ),
    ];
    for (from, to, want) in cases {
        let e = err(&seed_text().replace(from, to));
        assert!(e.contains(want), "{to}: {e}");
    }
    let e = err(&seed_text().replace("epochs = 100", "epochs = \"many\""));
    assert!(e.contains("epochs"), "{e}");
}

#[test]
fn bce_with_the_hard_head_is_refused_with_the_reason() {
    let text = seed_text()
        .replace("watermark = \"mse\"", "watermark = \"bce\"")
        .replace("head = \"sigmoid\"", "head = \"hard\"");
    let e = err(&text);
    assert!(e.contains("no gradient flows"), "{e}");
}

#[test]
fn missing_file_is_named() {
    let e = format!(
        "{:#}",
        Config::load(Path::new("/nonexistent/x.toml")).unwrap_err()
    );
    assert!(e.contains("/nonexistent/x.toml"), "{e}");
}
