//! SplitMix64's output function (Steele, Lea, Flood 2014): a fixed, well-mixed 64-bit hash. wmae
//! uses it where a result must be the same on every machine and in the Python references (the
//! embedded data split, fixed watermarks), independent of any random generator library.

/// SplitMix64's output of `x`: the state `x` advanced by the golden-ratio increment, then
/// mixed. Pure and bijective on 64 bits.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
