//! The detector's null model against brute-force enumeration, and its thresholds.

use wmae::message::detect::{Calibration, Detector, NULL_FPR};
use wmae::message::layout::Layout;

/// P(sum over bits of max(X_k, n_k - X_k) >= a) for independent fair pixels, by enumerating
/// every pattern of the pixels.
fn brute_force_tail(counts: &[usize], a: usize) -> f64 {
    let total: usize = counts.iter().sum();
    let mut hits = 0u64;
    for pattern in 0u64..(1 << total) {
        let mut offset = 0;
        let mut agree = 0;
        for &n in counts {
            let ones = ((pattern >> offset) & ((1 << n) - 1)).count_ones() as usize;
            agree += ones.max(n - ones);
            offset += n;
        }
        hits += u64::from(agree >= a);
    }
    hits as f64 / (1u64 << total) as f64
}

#[test]
fn null_tail_matches_enumeration() {
    let counts = [5, 4, 6];
    for a in 8..=15 {
        let want = brute_force_tail(&counts, a);
        let got = wmae::message::detect::null_tail_at(&counts, a);
        assert!((got - want).abs() < 1e-12, "a = {a}: {got} vs {want}");
    }
}

#[test]
fn a_block_layout_gives_no_evidence_and_a_spread_one_does() {
    // One pixel per bit: every map agrees fully with some word, the null p-value is 1.
    let block = Detector::for_layout(&Layout::default(), None);
    assert!(block.threshold > 1.0);
    assert!(!block.is_watermarked(1.0));
    let spread = Layout::Spread {
        bits: 16,
        cell: 1,
        key: 3,
        search: 2,
        height: 28,
        width: 28,
    };
    let d = Detector::for_layout(&spread, None);
    assert!(d.null_fpr_at_threshold <= NULL_FPR, "{d:?}");
    assert!(d.threshold > 0.6 && d.threshold < 0.75, "{d:?}");
    assert!(d.is_watermarked(0.95) && !d.is_watermarked(0.55));
    // A calibration whose clean images reach high agreements raises the threshold.
    let c = Calibration::from_agreements(&[0.6, 0.7, 0.8, 0.65]);
    let calibrated = Detector::for_layout(&spread, Some(c));
    assert!((calibrated.threshold - (c.mean + 5.0 * c.std)).abs() < 1e-12);
    assert!(calibrated.threshold > d.threshold);
}

/// In a layout of 2x2 cells a cell's four pixels carry one value: the null model counts each
/// cell as one coin, so the threshold lies where 192 independent cells (not 768 pixels) would
/// put it, and above the threshold of the same bits on single pixels.
#[test]
fn cells_not_pixels_are_the_null_models_coins() {
    let spread = |cell| Layout::Spread {
        bits: 16,
        cell,
        key: 24301,
        search: 3,
        height: 28,
        width: 28,
    };
    let (pixels, cells) = (spread(1), spread(2));
    assert_eq!(pixels.carrier_units(), pixels.carrier_counts());
    let units = cells.carrier_units();
    // 196 cells, 12 per bit; the 4 left over carry nothing.
    assert_eq!(units, vec![12; 16]);
    for (u, p) in units.iter().zip(cells.carrier_counts()) {
        assert_eq!(u * 4, p);
    }
    let by_cells = Detector::for_layout(&cells, None);
    assert_eq!(
        by_cells,
        Detector::new(&units, cells.shift_count(), None),
        "the rule of the cells"
    );
    assert!(by_cells.threshold > Detector::for_layout(&pixels, None).threshold + 0.05);
    assert!(by_cells.null_fpr_at_threshold <= NULL_FPR);
}
