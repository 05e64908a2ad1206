//! Binary BCH codes (narrow-sense, primitive, optionally shortened) for the watermark payload.
//!
//! Why BCH: extraction yields hard bits with a few flips. A t-error-correcting BCH code repairs up to
//! t flips, and because its decoding balls (radius t around each codeword) are disjoint and small, a
//! word far from every codeword is *rejected*. That rejection is the detector: an unmarked image
//! gives near-random bits, which decode only with probability [`Bch::false_positive_rate`].
//!
//! Textbook construction (Lin & Costello, *Error Control Coding*, 2nd ed.: ch. 2 for GF(2^m), ch. 6
//! for BCH): g(x) = LCM of the minimal polynomials of α^1..α^2t; decoding = syndromes,
//! Berlekamp–Massey, Chien search.
//!
//! Bit order: a word is a `[bool]`, highest-degree coefficient first. A codeword is the k data bits
//! followed by the n−k parity bits: c(x) = d(x)·x^(n−k) + (d(x)·x^(n−k) mod g(x)). Shortening drops
//! leading data positions that would always be zero, so a shortened word has the same layout, only
//! shorter.

use std::fmt;

/// Primitive polynomials for m = 3..=10, bit i = coefficient of x^i (Lin & Costello Table 2.7; also
/// the t = 1 rows of their Appendix C). Fixing them fixes α, so the published generator tables,
/// which use these same polynomials, can be compared bit for bit.
const PRIMITIVE_POLYS: [u32; 8] = [0o13, 0o23, 0o45, 0o103, 0o211, 0o435, 0o1021, 0o2011];

/// GF(2^m) as log/antilog tables: multiplication is an addition of logs.
#[derive(Clone)]
struct Gf {
    /// Multiplicative order of α: 2^m − 1.
    n: usize,
    /// exp[i] = α^i, stored twice over (length 2n) so a sum of two logs needs no reduction.
    exp: Vec<u16>,
    /// log[α^i] = i; log[0] is unused.
    log: Vec<u16>,
}

impl Gf {
    fn new(m: usize) -> Gf {
        let n = (1usize << m) - 1;
        let (mut exp, mut log) = (vec![0u16; 2 * n], vec![0u16; n + 1]);
        let mut x = 1u32;
        for i in 0..n {
            (exp[i], exp[i + n]) = (x as u16, x as u16);
            log[x as usize] = i as u16;
            x <<= 1;
            if (x >> m) & 1 == 1 {
                x ^= PRIMITIVE_POLYS[m - 3];
            }
        }
        Gf { n, exp, log }
    }

    fn alpha_pow(&self, e: usize) -> u16 {
        self.exp[e % self.n]
    }

    fn mul(&self, a: u16, b: u16) -> u16 {
        if a == 0 || b == 0 {
            return 0;
        }
        self.exp[self.log[a as usize] as usize + self.log[b as usize] as usize]
    }

    /// p(x) by Horner's rule; `poly[i]` is the coefficient of x^i (the tests' reference).
    #[cfg(test)]
    fn eval(&self, poly: &[u16], x: u16) -> u16 {
        poly.iter().rev().fold(0, |acc, &c| self.mul(acc, x) ^ c)
    }

    /// a / b for b != 0.
    fn div(&self, a: u16, b: u16) -> u16 {
        if a == 0 {
            return 0;
        }
        self.exp[self.log[a as usize] as usize + self.n - self.log[b as usize] as usize]
    }
}

/// Everything that can go wrong; each variant names the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BchError {
    /// m outside 3..=10 (no field table for it).
    FieldDegree(usize),
    /// t = 0, or designed distance 2t+1 longer than the code (2t+1 > 2^m − 1).
    Capability {
        /// The field degree asked for.
        m: usize,
        /// The error capability asked for.
        t: usize,
    },
    /// Requested data bits 0 or more than the code's k (`max`).
    DataBits {
        /// The data bits asked for.
        data_bits: usize,
        /// The code's k, the most it takes.
        max: usize,
    },
    /// Input slice of the wrong length.
    Length {
        /// The length the code needs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// More than t errors detected: the word is not within distance t of any codeword (no watermark).
    Uncorrectable,
}

/// `Ok` when a slice has the length the code needs.
fn check_len(expected: usize, got: usize) -> Result<(), BchError> {
    if expected != got {
        return Err(BchError::Length { expected, got });
    }
    Ok(())
}

impl fmt::Display for BchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BchError::FieldDegree(m) => write!(f, "BCH field degree m = {m} not in 3..=10"),
            BchError::Capability { m, t } => {
                let max = ((1usize << m) - 2) / 2;
                write!(
                    f,
                    "BCH t = {t} impossible for m = {m}: need 1 <= t <= {max}"
                )
            }
            BchError::DataBits { data_bits, max } => {
                write!(f, "BCH data bits = {data_bits} not in 1..={max}")
            }
            BchError::Length { expected, got } => {
                write!(f, "BCH input has {got} bits, expected {expected}")
            }
            BchError::Uncorrectable => write!(f, "BCH word uncorrectable (more than t errors)"),
        }
    }
}

impl std::error::Error for BchError {}

/// A successful decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The k data bits, in the order given to [`Bch::encode`].
    pub data: Vec<bool>,
    /// Number of received bits flipped to reach the codeword (0..=t).
    pub corrected: usize,
}

/// A binary BCH code: full length 2^m − 1, or shortened to `k` data bits.
#[derive(Clone)]
pub struct Bch {
    gf: Gf,
    m: usize,
    t: usize,
    /// Transmitted length (shortened).
    n: usize,
    /// Data bits (shortened).
    k: usize,
    /// g(x), index i = coefficient of x^i; degree n − k.
    generator: Vec<bool>,
}

impl fmt::Debug for Bch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Bch { n, k, t, m, .. } = self;
        write!(f, "Bch(n={n}, k={k}, t={t}, m={m})")
    }
}

/// Which exponents j (0..n) have α^j as a root of g: the union of the cyclotomic cosets of 1..=2t.
/// Taking whole cosets is what makes the product of (x − α^j) the LCM of the minimal polynomials.
fn root_exponents(n: usize, t: usize) -> Vec<bool> {
    let mut is_root = vec![false; n];
    for i in 1..=2 * t {
        let mut j = i % n;
        while !is_root[j] {
            is_root[j] = true;
            j = 2 * j % n;
        }
    }
    is_root
}

fn check_params(m: usize, t: usize) -> Result<usize, BchError> {
    if !(3..=10).contains(&m) {
        return Err(BchError::FieldDegree(m));
    }
    let n = (1usize << m) - 1;
    // 2t+1 <= n keeps α^0 out of the root set, so deg g < n and k >= 1.
    if t == 0 || t > (n - 1) / 2 {
        return Err(BchError::Capability { m, t });
    }
    Ok(n)
}

impl Bch {
    /// The full-length narrow-sense primitive BCH code of length 2^m − 1 correcting t errors.
    pub fn new(m: usize, t: usize) -> Result<Bch, BchError> {
        let n = check_params(m, t)?;
        let gf = Gf::new(m);
        let mut g = vec![1u16];
        for (j, _) in root_exponents(n, t).iter().enumerate().filter(|(_, &r)| r) {
            let a = gf.alpha_pow(j);
            let mut next = vec![0u16; g.len() + 1];
            for (i, &c) in g.iter().enumerate() {
                next[i + 1] ^= c;
                next[i] ^= gf.mul(c, a);
            }
            g = next;
        }
        // Whole cosets make every coefficient 0 or 1; anything else would be a field-table bug.
        debug_assert!(g.iter().all(|&c| c <= 1));
        let generator: Vec<bool> = g.iter().map(|&c| c == 1).collect();
        let k = n + 1 - generator.len();
        Ok(Bch {
            gf,
            m,
            t,
            n,
            k,
            generator,
        })
    }

    /// The (2^m − 1, k, t) code shortened to `data_bits` data bits (and as many fewer transmitted
    /// bits). Same t and parity; the dropped positions are implicit zeros.
    pub fn shortened(m: usize, t: usize, data_bits: usize) -> Result<Bch, BchError> {
        let mut code = Bch::new(m, t)?;
        if data_bits == 0 || data_bits > code.k {
            return Err(BchError::DataBits {
                data_bits,
                max: code.k,
            });
        }
        code.n -= code.k - data_bits;
        code.k = data_bits;
        Ok(code)
    }

    /// The largest-t code of length at most 2^m − 1 carrying `data_bits`, shortened to fit exactly:
    /// for a fixed channel length this maximises correction and minimises false positives.
    pub fn strongest(m: usize, data_bits: usize) -> Result<Bch, BchError> {
        let n = check_params(m, 1)?;
        // k never grows with t (the root set only grows), so walk t up until k drops below data_bits.
        let k_of = |t| n - root_exponents(n, t).iter().filter(|&&r| r).count();
        let best = (1..=(n - 1) / 2)
            .take_while(|&t| k_of(t) >= data_bits)
            .last();
        match best {
            Some(t) => Bch::shortened(m, t, data_bits),
            None => Err(BchError::DataBits {
                data_bits,
                max: k_of(1),
            }),
        }
    }

    /// Field degree m (full length 2^m − 1).
    pub fn m(&self) -> usize {
        self.m
    }
    /// Guaranteed number of correctable bit errors.
    pub fn t(&self) -> usize {
        self.t
    }
    /// Transmitted (codeword) length in bits, after shortening.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Data (payload) bits per codeword, after shortening.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Generator polynomial g(x): index i is the coefficient of x^i (length n − k + 1).
    pub fn generator(&self) -> &[bool] {
        &self.generator
    }

    /// Systematic encoding: returns `data` followed by its n − k parity bits.
    pub fn encode(&self, data: &[bool]) -> Result<Vec<bool>, BchError> {
        check_len(self.k, data.len())?;
        let mut word = data.to_vec();
        word.extend(self.parity(data));
        Ok(word)
    }

    /// d(x)·x^(n−k) mod g(x), highest degree first: the textbook LFSR division, one data bit a step.
    fn parity(&self, data: &[bool]) -> Vec<bool> {
        let r = self.generator.len() - 1;
        let mut rem = vec![false; r]; // rem[i] = coefficient of x^i
        for &bit in data {
            let feedback = bit ^ rem[r - 1];
            rem.copy_within(0..r - 1, 1);
            rem[0] = false;
            if feedback {
                rem.iter_mut()
                    .zip(&self.generator)
                    .for_each(|(x, &g)| *x ^= g);
            }
        }
        rem.reverse();
        rem
    }

    /// Bounded-distance decoding: corrects up to t flips, otherwise `Err(Uncorrectable)`.
    ///
    /// A word more than t away from every codeword is rejected, never "corrected" to a far codeword:
    /// the locator must have as many distinct roots in the transmitted positions as its degree
    /// (Lin & Costello's failure test), and, as a cheap second guard, the corrected word must
    /// re-encode to itself. So `Ok` means a codeword lies `corrected <= t` flips from `received`,
    /// exactly the event the false-positive rate counts.
    pub fn decode(&self, received: &[bool]) -> Result<Decoded, BchError> {
        check_len(self.n, received.len())?;
        let (gf, n) = (&self.gf, self.n);
        // Bit j is the coefficient of x^(n-1-j); S_i = r(α^i), i = 1..=2t. Only the odd ones are
        // summed: r has binary coefficients, so S_2i = r(α^i)^2 = S_i^2 (Lin & Costello 6.2).
        let degrees: Vec<usize> = received
            .iter()
            .enumerate()
            .filter(|(_, &b)| b)
            .map(|(j, _)| n - 1 - j)
            .collect();
        let mut syndromes = vec![0u16; 2 * self.t + 1]; // index i holds S_i; S_0 unused
        for &d in &degrees {
            // α^(i d) for i = 1, 3, 5, ...: the exponent steps by 2d, kept below the field order.
            let (mut e, step) = (d % gf.n, 2 * d % gf.n);
            for i in (1..=2 * self.t).step_by(2) {
                syndromes[i] ^= gf.exp[e];
                e += step;
                if e >= gf.n {
                    e -= gf.n;
                }
            }
        }
        for i in (2..=2 * self.t).step_by(2) {
            syndromes[i] = gf.mul(syndromes[i / 2], syndromes[i / 2]);
        }
        let syndromes = &syndromes[1..];
        let mut word = received.to_vec();
        let mut corrected = 0;
        if syndromes.iter().any(|&s| s != 0) {
            let (locator, degree) = self.berlekamp_massey(syndromes);
            if degree > self.t {
                return Err(BchError::Uncorrectable);
            }
            // Chien search: position p (degree) is in error iff Λ(α^-p) = 0. Only the n transmitted
            // positions are searched, so a root in a shortened-away position counts as missing.
            let errors = self.chien(&locator[..=degree]);
            if errors.len() != degree {
                return Err(BchError::Uncorrectable);
            }
            for p in errors {
                word[n - 1 - p] ^= true;
            }
            corrected = degree;
        }
        let (data, parity) = word.split_at(self.k);
        if self.parity(data) != parity {
            return Err(BchError::Uncorrectable);
        }
        Ok(Decoded {
            data: data.to_vec(),
            corrected,
        })
    }

    /// The error degrees p < n (transmitted positions) where Λ(α^-p) = 0. Each term Λ_k α^(-pk)
    /// is kept as a log and stepped by −k per position, so a position costs one table look-up and
    /// one xor per term instead of Horner's multiplications; the search stops once the positions
    /// left cannot hold the roots still missing.
    fn chien(&self, locator: &[u16]) -> Vec<usize> {
        let gf = &self.gf;
        let degree = locator.len() - 1;
        // (log of the term at the current position, step); zero coefficients drop out.
        let mut terms: Vec<(usize, usize)> = locator[1..]
            .iter()
            .enumerate()
            .filter(|(_, &c)| c != 0)
            .map(|(k, &c)| (gf.log[c as usize] as usize, gf.n - (k + 1) % gf.n))
            .collect();
        let mut roots = Vec::with_capacity(degree);
        for p in 0..self.n {
            if self.n - p < degree - roots.len() {
                break;
            }
            let value = terms.iter().fold(locator[0], |v, &(l, _)| v ^ gf.exp[l]);
            if value == 0 {
                roots.push(p);
            }
            for (l, step) in &mut terms {
                *l += *step;
                if *l >= gf.n {
                    *l -= gf.n;
                }
            }
        }
        roots
    }

    /// Berlekamp–Massey over GF(2^m): the shortest LFSR Λ(x) generating the syndromes. Returns Λ's
    /// coefficients (ascending, padded with zeros) and its length L, the number of presumed errors.
    fn berlekamp_massey(&self, s: &[u16]) -> (Vec<u16>, usize) {
        let gf = &self.gf;
        let mut c = vec![0u16; s.len() + 2];
        c[0] = 1;
        let (mut b, mut l, mut shift, mut b_disc) = (c.clone(), 0usize, 1usize, 1u16);
        let mut prev = c.clone();
        for r in 0..s.len() {
            // For a binary code the discrepancy at every second step (S_2, S_4, ...) is zero,
            // since S_2i = S_i^2 (Lin & Costello's simplified algorithm, section 6.2).
            if r % 2 == 1 {
                shift += 1;
                continue;
            }
            let products = c[1..=l].iter().zip(s[..r].iter().rev());
            let d = products.fold(s[r], |d, (&ci, &si)| d ^ gf.mul(ci, si));
            if d == 0 {
                shift += 1;
                continue;
            }
            let coef = gf.div(d, b_disc);
            let grows = 2 * l <= r;
            if grows {
                prev.copy_from_slice(&c);
            }
            c.iter_mut()
                .skip(shift)
                .zip(&b)
                .for_each(|(ci, &bi)| *ci ^= gf.mul(coef, bi));
            if grows {
                // The old c becomes the new b; b's buffer is reused for the next copy.
                std::mem::swap(&mut b, &mut prev);
                (l, b_disc, shift) = (r + 1 - l, d, 1);
            } else {
                shift += 1;
            }
        }
        (c, l)
    }

    /// Probability that a uniformly random n-bit word decodes (is within t of some codeword):
    /// 2^k · Σ_{i<=t} C(n, i) / 2^n. The balls are disjoint (distance >= 2t+1), so this is exact;
    /// it is the detector's false-positive rate on unmarked images with unbiased bits.
    pub fn false_positive_rate(&self) -> f64 {
        self.false_positive_log2().exp2()
    }

    /// log2 of [`Bch::false_positive_rate`], computed in log space so n = 1023 cannot overflow and
    /// tiny rates stay meaningful (e.g. for reporting "1 in 2^x").
    pub fn false_positive_log2(&self) -> f64 {
        // ln C(n, i) by the ratio C(n, i) / C(n, i-1) = (n-i+1)/i, then log-sum-exp.
        let mut ln_binom = vec![0.0f64];
        for i in 1..=self.t {
            let prev = ln_binom[i - 1];
            ln_binom.push(prev + ((self.n - i + 1) as f64).ln() - (i as f64).ln());
        }
        let max = ln_binom.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ln_sum = max + ln_binom.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
        self.k as f64 - self.n as f64 + ln_sum / std::f64::consts::LN_2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 (Steele et al. 2014): seeded, so any failure reproduces; no crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn bits(&mut self, len: usize) -> Vec<bool> {
            (0..len).map(|_| self.next() & 1 == 1).collect()
        }
        /// Flips `w` distinct random positions (partial Fisher–Yates).
        fn flip(&mut self, word: &mut [bool], w: usize) {
            let mut pos: Vec<usize> = (0..word.len()).collect();
            for i in 0..w {
                let j = i + (self.next() % (word.len() - i) as u64) as usize;
                pos.swap(i, j);
                word[pos[i]] ^= true;
            }
        }
    }

    fn bits_of(v: u32, len: usize) -> Vec<bool> {
        (0..len).map(|i| (v >> i) & 1 == 1).collect()
    }

    fn from_str(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '1').collect()
    }

    /// Octal table entry (leading digit = highest degree) to index i = coefficient of x^i.
    fn octal_poly(octal: &str) -> Vec<bool> {
        let bits: String = octal.bytes().map(|c| format!("{:03b}", c - b'0')).collect();
        let mut poly = from_str(bits.trim_start_matches('0'));
        poly.reverse();
        poly
    }

    /// Whether g (index = degree) divides the GF(2) polynomial `word` (highest degree first).
    fn divides(g: &[bool], word: &[bool]) -> bool {
        let (mut rem, dg) = (word.to_vec(), g.len() - 1);
        for top in 0..word.len() - dg {
            if rem[top] {
                (0..=dg).for_each(|i| rem[top + i] ^= g[dg - i]);
            }
        }
        rem.iter().all(|&b| !b)
    }

    /// Calls `f` with every set of at most `left` positions in `from..n`, given the set so far.
    fn patterns(
        set: &mut Vec<usize>,
        from: usize,
        n: usize,
        left: usize,
        f: &mut dyn FnMut(&[usize]),
    ) {
        f(set);
        for p in (from..n).filter(|_| left > 0) {
            set.push(p);
            patterns(set, p + 1, n, left - 1, f);
            set.pop();
        }
    }

    #[test]
    fn field_tables_are_primitive() {
        for m in 3..=10 {
            let gf = Gf::new(m);
            let mut seen = vec![false; gf.n + 1];
            for i in 0..gf.n {
                let x = gf.exp[i] as usize;
                assert!(x != 0 && !seen[x], "m={m}: not primitive");
                seen[x] = true;
                assert_eq!(gf.log[x] as usize, i);
            }
            assert_eq!(gf.mul(gf.alpha_pow(gf.n - 1), 2), 1, "m={m}");
        }
    }

    /// Published generators, octal, leading digit = highest degree: Lin & Costello, Error Control
    /// Coding (2nd ed.), Appendix C, "Generator polynomials of binary primitive BCH codes of length up
    /// to 2^10 − 1" (after Stenbit 1964). Every row was re-derived independently in Python (brute-force
    /// minimal polynomials, product over GF(2)) and matched before being written here.
    #[test]
    #[rustfmt::skip]
    fn generators_match_published_table() {
        let table = [
            (4, 1, 11, "23"), (4, 2, 7, "721"), (4, 3, 5, "2467"),
            (5, 2, 21, "3551"), (5, 3, 16, "107657"), (5, 5, 11, "5423325"), (5, 7, 6, "313365047"),
            (6, 2, 51, "12471"), (6, 3, 45, "1701317"), (6, 4, 39, "166623567"),
            (7, 2, 113, "41567"), (7, 10, 64, "1206534025570773100045"),
            (8, 2, 239, "267543"), (8, 3, 231, "156720665"),
        ];
        for (m, t, k, octal) in table {
            let code = Bch::new(m, t).unwrap();
            assert_eq!((code.n(), code.k()), ((1 << m) - 1, k), "m={m} t={t}");
            assert_eq!(code.generator(), octal_poly(octal), "m={m} t={t}: g != {octal}");
        }
    }

    /// The defining properties, also for codes beyond the table: g(α^i) = 0 for i = 1..=2t, and
    /// g divides x^n + 1 and every full-length codeword.
    #[test]
    fn generator_roots_and_divisibility() {
        let mut rng = Rng(1);
        for (m, t) in [(3, 1), (4, 2), (6, 5), (7, 10), (8, 29), (9, 4), (10, 3)] {
            let code = Bch::new(m, t).unwrap();
            let (gf, g) = (&code.gf, code.generator());
            let g16: Vec<u16> = g.iter().map(|&c| c as u16).collect();
            for i in 1..=2 * t {
                let x = gf.alpha_pow(i);
                assert_eq!(gf.eval(&g16, x), 0, "m={m} t={t}: g(α^{i}) != 0");
            }
            let mut x_n_plus_1 = vec![false; gf.n + 1];
            (x_n_plus_1[0], x_n_plus_1[gf.n]) = (true, true);
            assert!(divides(g, &x_n_plus_1), "m={m} t={t}");
            for _ in 0..10 {
                let word = code.encode(&rng.bits(code.k())).unwrap();
                assert!(divides(g, &word), "{code:?}");
            }
        }
    }

    /// (15,7), d(x) = x^6+x^3+x+1. Long division of d·x^8 (100101100000000) by g = 111010001:
    /// ^g<<6 -> 011111101000000, ^g<<5 -> 000010101100000, ^g<<2 -> 000001000100100,
    /// ^g<<1 -> 000000110000110, ^g -> 000000001010111: parity 01010111.
    /// Shortened (13,5), d(x) = x^3+x+1: 000101100000000 ^g<<3 -> 000010110001000,
    /// ^g<<2 -> 000001011001100, ^g<<1 -> 000000101101110, ^g -> 000000010111111: parity 10111111.
    #[test]
    fn hand_computed_codewords_15_7() {
        let full = Bch::new(4, 2).unwrap().encode(&from_str("1001011"));
        assert_eq!(full.unwrap(), from_str("100101101010111"));
        let short = Bch::shortened(4, 2, 5).unwrap().encode(&from_str("01011"));
        assert_eq!(short.unwrap(), from_str("0101110111111"));
    }

    /// Every error pattern of weight 0..=t on each data word decodes to exactly that data; returns
    /// how many patterns were tried.
    fn check_all_patterns(code: &Bch, data: &[Vec<bool>]) -> usize {
        let mut tried = 0;
        for d in data {
            let sent = code.encode(d).unwrap();
            patterns(&mut Vec::new(), 0, code.n(), code.t(), &mut |pos| {
                let mut word = sent.clone();
                pos.iter().for_each(|&p| word[p] ^= true);
                let want = Decoded {
                    data: d.clone(),
                    corrected: pos.len(),
                };
                assert_eq!(code.decode(&word), Ok(want), "{code:?} {pos:?}");
                tried += 1;
            });
        }
        tried
    }

    #[test]
    fn corrects_every_pattern_up_to_t() {
        for (m, t) in [(4, 2), (4, 3)] {
            let code = Bch::new(m, t).unwrap();
            let all: Vec<_> = (0..1 << code.k()).map(|v| bits_of(v, code.k())).collect();
            check_all_patterns(&code, &all);
        }
        let mut rng = Rng(2);
        // (31,16,3): 1 + 31 + 465 + 4495 patterns; (63,51,2): 1 + 63 + 1953.
        for (m, t, count) in [(5, 3, 4992), (6, 2, 2017)] {
            let code = Bch::new(m, t).unwrap();
            assert_eq!(check_all_patterns(&code, &[rng.bits(code.k())]), count);
        }
    }

    #[test]
    fn corrects_random_patterns_on_payload_codes() {
        let mut rng = Rng(3);
        let codes = [
            Bch::new(7, 10),
            Bch::shortened(7, 15, 32),
            Bch::strongest(8, 48),
        ];
        for code in codes.map(Result::unwrap) {
            for corrected in 0..=code.t() {
                for _ in 0..100 {
                    let data = rng.bits(code.k());
                    let mut word = code.encode(&data).unwrap();
                    rng.flip(&mut word, corrected);
                    let want = Decoded { data, corrected };
                    assert_eq!(code.decode(&word), Ok(want), "{code:?}");
                }
            }
        }
    }

    /// Past t errors the decoder may reject or land on another codeword, but an `Ok` must be a
    /// codeword exactly `corrected <= t` flips from the received word.
    #[test]
    fn beyond_capacity_never_returns_a_far_codeword() {
        let mut rng = Rng(4);
        let codes = [
            Bch::new(4, 2),
            Bch::new(5, 3),
            Bch::new(7, 10),
            Bch::shortened(7, 15, 32),
        ];
        for code in codes.map(Result::unwrap) {
            let (mut rejected, mut wrong) = (0, 0);
            for w in code.t() + 1..=(3 * code.t() + 2).min(code.n()) {
                for _ in 0..300 {
                    let data = rng.bits(code.k());
                    let mut word = code.encode(&data).unwrap();
                    rng.flip(&mut word, w);
                    let Ok(dec) = code.decode(&word) else {
                        rejected += 1;
                        continue;
                    };
                    let reencoded = code.encode(&dec.data).unwrap();
                    let d = reencoded.iter().zip(&word).filter(|(a, b)| a != b).count();
                    assert!(d == dec.corrected && d <= code.t(), "{code:?} w={w} d={d}");
                    wrong += usize::from(dec.data != data);
                }
            }
            assert!(rejected > 0, "{code:?}: never rejected");
            // Short codes miscorrect often; this proves the `Ok` branch above was exercised.
            assert!(wrong > 0 || code.n() > 15, "{code:?}: never miscorrected");
        }
    }

    /// Exhaustive: of all 2^n words exactly 2^k · Σ_{i<=t} C(n, i) decode, and none panics.
    #[test]
    fn all_words_of_small_codes_decode_as_counted() {
        let codes = [Bch::new(4, 2), Bch::new(4, 3), Bch::shortened(4, 2, 5)];
        for (code, count) in
            codes
                .map(Result::unwrap)
                .into_iter()
                .zip([128 * 121, 32 * 576, 32 * 92])
        {
            let n = code.n();
            let ok = (0..1 << n).filter(|&v| code.decode(&bits_of(v, n)).is_ok());
            assert_eq!(ok.count(), count, "{code:?}");
            let exact = count as f64 / (1 << n) as f64;
            assert!((code.false_positive_rate() - exact).abs() < 1e-12);
        }
    }

    /// Monte Carlo on codes too long to enumerate: 200k random words, 5-sigma binomial band.
    #[test]
    fn random_words_decode_at_false_positive_rate() {
        let (mut rng, trials) = (Rng(5), 200_000);
        for code in [Bch::new(5, 2), Bch::shortened(5, 2, 16)].map(Result::unwrap) {
            let ok = (0..trials).filter(|_| code.decode(&rng.bits(code.n())).is_ok());
            let measured = ok.count() as f64 / trials as f64;
            let p = code.false_positive_rate();
            let sigma = (p * (1.0 - p) / trials as f64).sqrt();
            assert!(
                (measured - p).abs() < 5.0 * sigma,
                "{code:?}: {measured} vs {p}"
            );
        }
    }

    /// Payload codes against exact rational arithmetic (Python Fraction, math.comb). (127,64,10):
    /// 2.4750307e-5 = 2^-15.30, about one unmarked image in 40 000 reads as marked.
    #[test]
    #[rustfmt::skip]
    fn false_positive_rates_of_payload_codes() {
        let cases = [
            (Bch::new(7, 10), (127, 64, 10), 2.4750307177e-5),
            (Bch::strongest(7, 64), (127, 64, 10), 2.4750307177e-5),
            (Bch::strongest(7, 48), (125, 48, 13), 1.143400e-6),
            (Bch::strongest(7, 32), (123, 32, 15), 3.277999e-9),
            (Bch::strongest(8, 64), (248, 64, 29), 2.655512e-18),
            (Bch::strongest(8, 48), (248, 48, 31), 2.105057e-21),
            (Bch::strongest(8, 32), (250, 32, 45), 3.013468e-16),
        ];
        for (code, nkt, expected) in cases {
            let code = code.unwrap();
            assert_eq!((code.n(), code.k(), code.t()), nkt);
            let rate = code.false_positive_rate();
            assert!((rate / expected - 1.0).abs() < 1e-5, "{code:?}: {rate:e} != {expected:e}");
        }
        let log2 = Bch::new(10, 100).unwrap().false_positive_log2();
        assert!(log2.is_finite() && log2 < -100.0, "(1023, k, 100): log2 rate {log2}");
    }

    #[test]
    #[rustfmt::skip]
    fn rejects_bad_parameters_and_lengths() {
        let cases = [
            (Bch::new(2, 1), "BCH field degree m = 2 not in 3..=10"),
            (Bch::new(11, 1), "BCH field degree m = 11 not in 3..=10"),
            (Bch::new(4, 0), "BCH t = 0 impossible for m = 4: need 1 <= t <= 7"),
            (Bch::new(4, 8), "BCH t = 8 impossible for m = 4: need 1 <= t <= 7"),
            (Bch::shortened(4, 2, 0), "BCH data bits = 0 not in 1..=7"),
            (Bch::shortened(4, 2, 8), "BCH data bits = 8 not in 1..=7"),
            (Bch::strongest(4, 12), "BCH data bits = 12 not in 1..=11"),
        ];
        for (result, message) in cases {
            assert_eq!(result.unwrap_err().to_string(), message);
        }
        assert_eq!(Bch::new(4, 7).unwrap().k(), 1, "t = 7 at n = 15 is the repetition code");
        let code = Bch::new(7, 10).unwrap();
        assert_eq!(code.encode(&[true; 63]), Err(BchError::Length { expected: 64, got: 63 }));
        for got in [0, 126, 128] {
            assert_eq!(code.decode(&vec![true; got]), Err(BchError::Length { expected: 127, got }));
        }
    }
}
