//! Watermark layout: bits to map and back, validation, fixed and random bits, bit strings.

use tch::{Device, Kind, Tensor};
use wmae::message::watermark::{self, fixed_bits, parse_bits, BitSource, Layout, Mode, Purpose};

#[test]
fn bits_land_in_the_block_and_read_back() {
    let layout = Layout::Block {
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
    assert!(layout.read(&map, false).bits.equal(&bits));
    assert!(layout.bit_values(&map).equal(&bits));
}

#[test]
fn seed_layout_is_the_top_left_4x4_of_28x28() {
    let layout = Layout::default();
    let mask = layout.carrier_mask(Kind::Float, Device::Cpu);
    assert_eq!(mask.sum(Kind::Float).double_value(&[]), 16.0);
    assert_eq!(mask.double_value(&[0, 0, 3, 3]), 1.0);
    assert_eq!(mask.double_value(&[0, 0, 4, 0]), 0.0);
}

#[test]
fn block_outside_the_image_is_refused() {
    let layout = Layout::Block {
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
        err.contains("4 bits given, the watermark (4x4 block at (0, 0)) holds exactly 16"),
        "{err}"
    );
    let err = parse_bits("01102000111100010", &l).unwrap_err().to_string();
    assert!(err.contains("character 5 is '2'"), "{err}");
}

fn spread(key: u64) -> Layout {
    Layout::Spread {
        bits: 16,
        cell: 1,
        key,
        search: 2,
        height: 28,
        width: 28,
    }
}

#[test]
fn spread_bits_cover_the_map_evenly_half_inverted() {
    let layout = spread(7);
    layout.validate("watermark").unwrap();
    // 784 pixels, 16 bits: 49 pixels each, every pixel carries one.
    assert_eq!(layout.carrier_counts(), vec![49; 16]);
    assert_eq!(
        layout
            .carrier_mask(Kind::Float, Device::Cpu)
            .sum(Kind::Float)
            .double_value(&[]),
        784.0
    );
    // All-zero and all-one words light up the inverted and the plain pixels: 24 and 25 of each
    // bit's 49, so the map is about half ones whatever the bits.
    let zeros = layout.map_from_bits(&Tensor::zeros([1, 16], (Kind::Float, Device::Cpu)));
    let ones = layout.map_from_bits(&Tensor::ones([1, 16], (Kind::Float, Device::Cpu)));
    assert_eq!(zeros.sum(Kind::Float).double_value(&[]), 16.0 * 24.0);
    assert!((&zeros + &ones).eq(1.0).all().int64_value(&[]) == 1);
    // The key decides the assignment.
    assert!(
        !zeros.equal(&spread(8).map_from_bits(&Tensor::zeros([1, 16], (Kind::Float, Device::Cpu))))
    );
}

#[test]
fn spread_bits_read_back_exactly_and_after_a_shift() {
    tch::manual_seed(4);
    let layout = spread(7);
    let bits = Tensor::randint(2, [5, 16], (Kind::Float, Device::Cpu));
    let map = layout.map_from_bits(&bits);
    let r = layout.read(&map, true);
    assert!(r.bits.equal(&bits));
    assert!(r.agreement.eq(1.0).all().int64_value(&[]) == 1);
    assert!(layout.bit_values(&map).equal(&bits));
    // The map moved 2 px down and 1 px right (zeros enter): the search finds (-2, -1)... the
    // layout's pixel (r, c) now sits at (r + 2, c + 1).
    let moved = map
        .constant_pad_nd([1, 0, 2, 0])
        .narrow(2, 0, 28)
        .narrow(3, 0, 28);
    let r = layout.read(&moved, true);
    assert!(r.bits.equal(&bits));
    assert_eq!(Vec::<i64>::try_from(r.shift.get(0)).unwrap(), vec![2, 1]);
    // Without the search the same map reads at about chance.
    let unsearched = layout.read(&moved, false);
    let right = unsearched
        .bits
        .eq_tensor(&bits)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    assert!(right.double_value(&[]) < 0.8, "{right:?}");
    // An empty map agrees with no word better than the majority of 25 to 24 in each bit (at
    // other shifts, pixels shifted in from outside do not vote, which moves that a little).
    let empty = Tensor::zeros([1, 1, 28, 28], (Kind::Float, Device::Cpu));
    let unshifted = layout.read(&empty, false).agreement.double_value(&[0]);
    assert!((unshifted - 25.0 / 49.0).abs() < 1e-6, "{unshifted}");
    let searched = layout.read(&empty, true).agreement.double_value(&[0]);
    assert!(searched < 0.55, "{searched}");
}

#[test]
fn spread_layouts_that_cannot_hold_their_bits_are_refused() {
    let bad = |bits, cell, search| {
        Layout::Spread {
            bits,
            cell,
            key: 1,
            search,
            height: 28,
            width: 28,
        }
        .validate("watermark")
        .unwrap_err()
        .to_string()
    };
    assert!(bad(400, 1, 2).contains("bits = 400"));
    assert!(bad(16, 0, 2).contains("cell = 0"));
    assert!(bad(16, 29, 2).contains("cell = 29"));
    assert!(bad(16, 1, 9).contains("search = 9"));
}

fn tile(bits: i64, tile: i64, height: i64, width: i64) -> Layout {
    Layout::Tile {
        bits,
        tile,
        key: 77,
        height,
        width,
    }
}

fn random_bits(n: i64, bits: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([n, bits], (Kind::Float, Device::Cpu))
        .gt(0.5)
        .to_kind(Kind::Float)
}

#[test]
fn tile_carries_every_bit_once_per_tile_at_keyed_positions() {
    let layout = tile(60, 8, 24, 40);
    layout.validate("watermark").unwrap();
    // 15 whole 8x8 tiles: each bit on 15 pixels, 4 spare positions per tile carry nothing.
    assert_eq!(layout.carrier_counts(), vec![15; 60]);
    let mask = layout.carrier_mask(Kind::Float, Device::Cpu);
    assert_eq!(mask.sum(Kind::Float).double_value(&[]), 900.0);
    let bits = random_bits(3, 60, 5);
    let map = layout.map_from_bits(&bits);
    // The same tile everywhere: the map repeats with period 8 in both directions.
    assert!(map.narrow(2, 0, 8).equal(&map.narrow(2, 8, 8)));
    assert!(map.narrow(3, 0, 8).equal(&map.narrow(3, 32, 8)));
    // All-zero bits do not give a flat map (keyed inversions), nor do all-one bits.
    for value in [0.0, 1.0] {
        let flat = layout.map_from_bits(&Tensor::full([1, 60], value, (Kind::Float, Device::Cpu)));
        let ones = flat.sum(Kind::Float).double_value(&[]);
        assert!(
            (300.0..=600.0).contains(&ones),
            "{ones} ones of 900 carried"
        );
    }
    // Another key, other positions.
    let other = Layout::Tile {
        bits: 60,
        tile: 8,
        key: 78,
        height: 24,
        width: 40,
    };
    assert!(!other.map_from_bits(&bits).equal(&map));
}

#[test]
fn tile_bits_read_back_from_any_crop() {
    let layout = tile(60, 8, 64, 64);
    let bits = random_bits(4, 60, 9);
    let map = layout.map_from_bits(&bits);
    let read = layout.read(&map, false);
    assert!(read.bits.equal(&bits));
    assert_eq!(read.agreement.min().double_value(&[]), 1.0);
    // A crop from (13, 5) of 40x50 pixels: the tile's origin moves to (-13, -5) mod 8 = (3, 3).
    let crop = map.narrow(2, 13, 40).narrow(3, 5, 50);
    let (words, agreements) = layout.tile_readings(&crop).unwrap();
    assert_eq!(words.size(), vec![4, 64, 60]);
    assert!(
        words.select(1, 3 * 8 + 3).equal(&bits),
        "bits at the crop's shift"
    );
    // Every shift is self-consistent (the vote cannot find the shift), and the others read
    // other words: the payload code has to choose.
    assert_eq!(agreements.min().double_value(&[]), 1.0);
    let right = words.select(1, 27).unsqueeze(1);
    let same = words.eq_tensor(&right).all_dim(2, false).sum(Kind::Int64);
    assert_eq!(
        same.int64_value(&[]),
        4,
        "only one shift reads the embedded word"
    );
    assert!(!layout.read(&crop, true).bits.equal(&bits));
    // A fifth of the pixels flipped: the vote over 64 tiles still reads every bit.
    tch::manual_seed(3);
    let flips = Tensor::rand_like(&map).lt(0.2).to_kind(Kind::Float);
    let noisy = (&map - &flips).abs();
    assert!(layout.read(&noisy, true).bits.equal(&bits));
    assert_eq!(layout.shift_count(), 64);
}

#[test]
fn tile_layouts_that_cannot_hold_their_bits_are_refused() {
    for (layout, needle) in [
        (
            tile(65, 8, 64, 64),
            "bits = 65: a 8x8 tile holds 1..=64 bits",
        ),
        (tile(4, 1, 64, 64), "tile = 1: must lie in 2..=64"),
        (tile(4, 16, 12, 64), "fit the 12x64 map"),
    ] {
        let err = layout.validate("watermark").unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// The host reading the photo reader uses gives the tensor reading's words and agreements, on
/// noisy maps whose sides are not whole tiles.
#[test]
fn tile_readings_on_the_host_match_the_tensor_reading() {
    let layout = tile(60, 8, 64, 64);
    let bits = random_bits(1, 60, 3);
    let map = layout.map_from_bits(&bits);
    tch::manual_seed(4);
    let flips = Tensor::rand([1, 1, 64, 64], (Kind::Float, Device::Cpu)).lt(0.2);
    let noisy = map.logical_xor(&flips).to_kind(Kind::Float);
    for (top, left, h, w) in [(0, 0, 64, 64), (13, 5, 40, 50), (3, 7, 17, 9)] {
        let crop = noisy.narrow(2, top, h).narrow(3, left, w).contiguous();
        let (words, agreements) = layout.tile_readings(&crop).unwrap();
        let pixels = Vec::<f32>::try_from(crop.reshape([-1])).unwrap();
        let host = layout
            .tile_readings_host(&pixels, h as usize, w as usize)
            .unwrap();
        assert_eq!(host.len(), 64);
        for (shift, reading) in host.iter().enumerate() {
            let (word, agreement) = (&reading.word, reading.agreement);
            let expected = Vec::<f32>::try_from(words.get(0).get(shift as i64)).unwrap();
            let expected: Vec<bool> = expected.iter().map(|&b| b > 0.5).collect();
            assert_eq!(word, &expected, "crop {top},{left} {h}x{w}, shift {shift}");
            let a = agreements.get(0).double_value(&[shift as i64]);
            assert!((agreement - a).abs() < 1e-5, "{agreement} vs {a}");
        }
    }
}
