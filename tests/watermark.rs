//! Watermark layout: bits to map and back, validation, fixed and random bits, bit strings.

use tch::{Device, Kind, Tensor};
use wmae::watermark::{self, fixed_bits, parse_bits, BitSource, Layout, Mode, Purpose};

#[test]
fn bits_land_in_the_block_and_read_back() {
    let layout = Layout {
        rows: 2,
        cols: 3,
        top: 1,
        left: 2,
        height: 5,
        width: 6,
    };
    let bits = Tensor::from_slice(&[1f32, 0., 1., 1., 1., 0.]).reshape([1, 6]);
    let map = layout.map_from_bits(&bits);
    assert_eq!(map.size(), vec![1, 1, 5, 6]);
    let m = Vec::<f32>::try_from(map.flatten(0, -1)).unwrap();
    let mut want = vec![0f32; 30];
    for (k, &b) in [1f32, 0., 1., 1., 1., 0.].iter().enumerate() {
        want[(1 + k / 3) * 6 + 2 + k % 3] = b;
    }
    assert_eq!(m, want);
    assert!(layout.block(&map).equal(&bits));
}

#[test]
fn seed_layout_is_the_top_left_4x4_of_28x28() {
    let layout = Layout::default();
    let mask = layout.block_mask(Kind::Float, Device::Cpu);
    assert_eq!(mask.sum(Kind::Float).double_value(&[]), 16.0);
    assert_eq!(mask.double_value(&[0, 0, 3, 3]), 1.0);
    assert_eq!(mask.double_value(&[0, 0, 4, 0]), 0.0);
}

#[test]
fn block_outside_the_image_is_refused() {
    let layout = Layout {
        rows: 4,
        cols: 4,
        top: 26,
        left: 0,
        height: 28,
        width: 28,
    };
    let err = layout.validate("watermark").unwrap_err().to_string();
    assert!(
        err.contains("watermark: a 4x4 block at top 26, left 0 does not fit in a 28x28 image"),
        "{err}"
    );
}

#[test]
fn fixed_bits_depend_on_seed_and_purpose_only() {
    let l = Layout::default();
    let a = fixed_bits(&l, 3, Purpose::Train);
    assert_eq!(a, fixed_bits(&l, 3, Purpose::Train));
    assert_ne!(a, fixed_bits(&l, 3, Purpose::Validation));
    assert_ne!(a, fixed_bits(&l, 4, Purpose::Train));
    assert!(a.iter().all(|&b| b == 0.0 || b == 1.0));
    let drawn = BitSource::new(l, Mode::Fixed, 3, Purpose::Train, Device::Cpu).draw(5);
    assert_eq!(drawn.size(), vec![5, 16]);
    assert!(drawn.get(4).equal(&Tensor::from_slice(&a)));
}

#[test]
fn random_bits_are_fresh_and_balanced() {
    let l = Layout::default();
    tch::manual_seed(1);
    let source = BitSource::new(l, Mode::Random, 0, Purpose::Train, Device::Cpu);
    let (a, b) = (source.draw(1000), source.draw(1000));
    assert!(!a.equal(&b));
    let ones = a.mean(Kind::Float).double_value(&[]);
    assert!((ones - 0.5).abs() < 0.02, "{ones}");
    assert!(a.eq(0.0).logical_or(&a.eq(1.0)).all().int64_value(&[]) == 1);
}

#[test]
fn bit_strings() {
    let l = Layout::default();
    let bits = parse_bits("0110000011110001", &l).unwrap();
    assert_eq!(watermark::format_bits(&bits), "0110000011110001");
    let err = parse_bits("0110", &l).unwrap_err().to_string();
    assert!(
        err.contains("4 bits given, the 4x4 watermark block holds exactly 16"),
        "{err}"
    );
    let err = parse_bits("01102000111100010", &l).unwrap_err().to_string();
    assert!(err.contains("character 5 is '2'"), "{err}");
}
