//! What a photo watermark says: a payload of data bits, given as hex, text or a UUID, protected by
//! a BCH code (`crate::message::bch`) whose decoding failures are the "no watermark" answer.
//!
//! Numbers (hex, UUID) fill the payload from the right, as numbers do (`hex:ff` is 0...0ff); text
//! fills it from the left with UTF-8 bytes and zero bytes after, which reading strips again.

use anyhow::{bail, Context, Result};

use crate::message::bch::{Bch, BchError};

/// The payload's data bits, most significant bit of the first byte first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    bits: Vec<bool>,
}

impl Payload {
    /// Parses `hex:<digits>` (or `0x<digits>`), `text:<utf-8>`, `uuid:<uuid>` (or a bare
    /// 8-4-4-4-12 UUID) into exactly `data_bits` bits (a multiple of 8).
    pub fn parse(spec: &str, data_bits: usize) -> Result<Self> {
        if data_bits == 0 || !data_bits.is_multiple_of(8) {
            bail!("a payload of {data_bits} bits: the size must be a positive multiple of 8");
        }
        let capacity = data_bits / 8;
        let (bytes, right_aligned) = if let Some(hex) = spec
            .strip_prefix("hex:")
            .or_else(|| spec.strip_prefix("0x"))
        {
            (
                parse_hex(hex, capacity).with_context(|| format!("payload {spec:?}"))?,
                true,
            )
        } else if let Some(text) = spec.strip_prefix("text:") {
            if text.contains('\0') {
                bail!("payload {spec:?}: text may not contain NUL, which pads the payload");
            }
            (text.as_bytes().to_vec(), false)
        } else if let Some(uuid) = spec
            .strip_prefix("uuid:")
            .or_else(|| is_uuid(spec).then_some(spec))
        {
            if !is_uuid(uuid) {
                bail!("payload {spec:?}: a UUID is 32 hex digits as 8-4-4-4-12");
            }
            (
                parse_hex(&uuid.replace('-', ""), capacity)
                    .with_context(|| format!("payload {spec:?}"))?,
                true,
            )
        } else {
            bail!(
                "payload {spec:?}: expected hex:<digits>, 0x<digits>, text:<text> or uuid:<uuid> \
                 (or a bare UUID)"
            );
        };
        if bytes.len() > capacity {
            bail!(
                "payload {spec:?}: {} bytes do not fit in the model's {data_bits}-bit payload",
                bytes.len()
            );
        }
        let mut padded = vec![0u8; capacity];
        if right_aligned {
            padded[capacity - bytes.len()..].copy_from_slice(&bytes);
        } else {
            padded[..bytes.len()].copy_from_slice(&bytes);
        }
        Ok(Self::from_bytes(&padded))
    }

    /// The payload of these bytes, each most significant bit first.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let bits = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1 == 1))
            .collect();
        Self { bits }
    }

    /// The payload of these data bits, as they are.
    pub fn from_bits(bits: Vec<bool>) -> Self {
        Self { bits }
    }

    /// The data bits, most significant bit of the first byte first.
    pub fn bits(&self) -> &[bool] {
        &self.bits
    }

    /// The payload as bytes (the last one zero-padded on the right if the size is not whole bytes).
    pub fn bytes(&self) -> Vec<u8> {
        self.bits
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, &v)| b | (u8::from(v) << (7 - i)))
            })
            .collect()
    }

    /// Lower-case hex, two digits a byte.
    pub fn hex(&self) -> String {
        self.bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The payload read as text, when it is: UTF-8 without control characters once the padding
    /// zeros are stripped (None for numbers and random bits, which rarely are).
    pub fn text(&self) -> Option<String> {
        let bytes = self.bytes();
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let text = std::str::from_utf8(&bytes[..end]).ok()?;
        (!text.is_empty() && !text.chars().any(char::is_control)).then(|| text.to_string())
    }

    /// The payload as a UUID (8-4-4-4-12), when it has exactly 128 bits.
    pub fn uuid(&self) -> Option<String> {
        (self.bits.len() == 128).then(|| {
            let h = self.hex();
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        })
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Hex digits to bytes, right-aligned (an odd count gets a leading zero nibble).
fn parse_hex(digits: &str, capacity: usize) -> Result<Vec<u8>> {
    if digits.is_empty() {
        bail!("no hex digits");
    }
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        bail!("{c:?} is not a hex digit");
    }
    let digits = digits.trim_start_matches('0');
    if digits.len() > 2 * capacity {
        bail!(
            "{} significant hex digits do not fit in {} bytes",
            digits.len(),
            capacity
        );
    }
    let padded = format!("{}{digits}", if digits.len() % 2 == 1 { "0" } else { "" });
    Ok((0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).expect("checked hex digits"))
        .collect())
}

/// The BCH code that protects a payload, and what its decoding means for detection.
#[derive(Debug, Clone)]
pub struct PayloadCode {
    bch: Bch,
    /// How many readings of one image the reader tries (alignments, scales): each is another
    /// chance for a clean image to decode by luck, so the false-positive rate is multiplied.
    readings: usize,
}

/// What reading a watermark gives: the payload when the code accepts the bits.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadReading {
    /// None: the bits are no codeword within the code's reach, i.e. no watermark.
    pub payload: Option<Payload>,
    /// Bits the code corrected (0 when no payload).
    pub corrected: usize,
    /// Probability that a clean image is read as some payload (all readings together).
    pub false_positive_rate: f64,
}

impl PayloadCode {
    /// The strongest shortened BCH code for `data_bits` that fits in `slots` carried bits,
    /// refused unless it keeps the false-positive rate of an image read `readings` times at or
    /// below `max_fpr`. The strongest code is also the most selective here: each extra corrected
    /// bit adds m parity bits, which shrink the share of words that decode faster than the wider
    /// balls around the codewords grow it.
    pub fn new(data_bits: usize, slots: usize, readings: usize, max_fpr: f64) -> Result<Self> {
        let readings = readings.max(1);
        let m = (usize::BITS - (slots + 1).leading_zeros() - 1) as usize; // 2^m - 1 <= slots
        if !(3..=10).contains(&m) {
            bail!("{slots} carried bits: a payload code needs between 7 and 2046");
        }
        let bch = Bch::strongest(m, data_bits)
            .map_err(|e| anyhow::anyhow!("{data_bits} data bits in {slots} carried bits: {e}"))?;
        let code = Self { bch, readings };
        if code.false_positive_rate() > max_fpr {
            bail!(
                "{data_bits} data bits in {slots} carried bits: the strongest BCH code ({}, {}, \
                 t = {}) reads a clean image as a payload with probability {:.2e} over {readings} \
                 readings, above {max_fpr:e} (fewer data bits or more carried bits)",
                code.bch.n(),
                code.bch.k(),
                code.bch.t(),
                code.false_positive_rate()
            );
        }
        Ok(code)
    }

    /// Carried bits per watermark (the codeword length).
    pub fn coded_bits(&self) -> usize {
        self.bch.n()
    }

    /// Data bits per payload (the code's dimension k).
    pub fn data_bits(&self) -> usize {
        self.bch.k()
    }

    /// Bit errors the code corrects.
    pub fn t(&self) -> usize {
        self.bch.t()
    }

    /// False-positive rate of one image read `readings` times (a union bound over readings).
    pub fn false_positive_rate(&self) -> f64 {
        self.false_positive_rate_over(self.readings)
    }

    /// False-positive rate of one image whose reader decodes `words` words (a union bound).
    pub fn false_positive_rate_over(&self, words: usize) -> f64 {
        (self.bch.false_positive_rate() * words as f64).min(1.0)
    }

    /// The carried bits of `payload`: its data bits, then the parity bits.
    pub fn encode(&self, payload: &Payload) -> Result<Vec<bool>> {
        self.bch
            .encode(payload.bits())
            .map_err(|e| anyhow::anyhow!("payload of {} bits: {e}", payload.bits().len()))
    }

    /// Decodes read bits; an uncorrectable word is "no payload", not an error.
    pub fn decode(&self, read: &[bool]) -> Result<PayloadReading> {
        let false_positive_rate = self.false_positive_rate();
        match self.bch.decode(read) {
            Ok(d) => Ok(PayloadReading {
                payload: Some(Payload::from_bits(d.data)),
                corrected: d.corrected,
                false_positive_rate,
            }),
            Err(BchError::Uncorrectable) => Ok(PayloadReading {
                payload: None,
                corrected: 0,
                false_positive_rate,
            }),
            Err(e) => bail!("{} read bits: {e}", read.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_pads_as_documented() {
        let p = Payload::parse("hex:ff", 32).unwrap();
        assert_eq!(p.hex(), "000000ff");
        assert_eq!(Payload::parse("0xDEADbeef", 32).unwrap().hex(), "deadbeef");
        assert_eq!(
            Payload::parse("hex:00000000abc", 32).unwrap().hex(),
            "00000abc"
        );
        let t = Payload::parse("text:wmae", 64).unwrap();
        assert_eq!(t.hex(), "776d616500000000");
        assert_eq!(t.text().as_deref(), Some("wmae"));
        let u = "123e4567-e89b-12d3-a456-426614174000";
        for spec in [u.to_string(), format!("uuid:{u}")] {
            let p = Payload::parse(&spec, 128).unwrap();
            assert_eq!(p.uuid().as_deref(), Some(u));
        }
        assert_eq!(p.bits()[24..], [true; 8]);
        assert_eq!(p.bits()[..24], [false; 24]);
    }

    #[test]
    fn refuses_what_does_not_fit_or_parse() {
        for (spec, bits, needle) in [
            ("hex:123456789", 32, "do not fit"),
            ("text:hello", 32, "do not fit"),
            ("hex:12g4", 32, "not a hex digit"),
            ("hex:", 32, "no hex digits"),
            ("cafe", 32, "expected hex:"),
            ("uuid:1234", 128, "8-4-4-4-12"),
            ("text:a\0b", 32, "NUL"),
            ("hex:1", 12, "multiple of 8"),
        ] {
            let err = Payload::parse(spec, bits).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{spec}: {err:#}");
        }
    }

    #[test]
    fn random_bits_are_not_text() {
        assert_eq!(Payload::from_bytes(&[0xff, 0x01, 0x80, 0x00]).text(), None);
        assert_eq!(Payload::from_bytes(&[0; 4]).text(), None);
    }

    #[test]
    fn code_is_the_strongest_and_refused_above_the_false_positive_budget() {
        // 64 data bits in 127 slots: (127, 64, t = 10), 2.5e-5 per reading (Lin & Costello's
        // (127,64) code, shortened by nothing): loose budgets take it, 1e-6 over 100 readings not.
        let loose = PayloadCode::new(64, 127, 1, 1.0).unwrap();
        assert_eq!(
            (loose.coded_bits(), loose.data_bits(), loose.t()),
            (127, 64, 10)
        );
        assert!((loose.false_positive_rate() / 2.475e-5 - 1.0).abs() < 1e-3);
        let err = PayloadCode::new(64, 127, 100, 1e-6).unwrap_err();
        assert!(format!("{err}").contains("(127, 64, t = 10)"), "{err}");
        // 255 slots: (248, 64, t = 29), shortened from (255, 71).
        let long = PayloadCode::new(64, 255, 100, 1e-6).unwrap();
        assert_eq!((long.coded_bits(), long.t()), (248, 29));
        assert!(long.false_positive_rate() < 1e-15);
        assert!(PayloadCode::new(64, 60, 1, 1.0).is_err());
        assert!(PayloadCode::new(8, 3, 1, 1.0).is_err());
    }

    #[test]
    fn decodes_through_errors_and_answers_none_for_noise() {
        let code = PayloadCode::new(64, 255, 100, 1e-6).unwrap();
        let payload = Payload::parse("text:Fotos #7", 64).unwrap();
        let mut read = code.encode(&payload).unwrap();
        for i in (0..read.len())
            .step_by(read.len() / code.t())
            .take(code.t())
        {
            read[i] = !read[i];
        }
        let r = code.decode(&read).unwrap();
        assert_eq!(r.payload.as_ref(), Some(&payload));
        assert_eq!(r.corrected, code.t());
        // A word of alternating bits is far from every codeword of this strict code.
        let noise: Vec<bool> = (0..code.coded_bits()).map(|i| i % 3 == 0).collect();
        assert_eq!(code.decode(&noise).unwrap().payload, None);
        assert!(code.decode(&noise[1..]).is_err());
    }
}
