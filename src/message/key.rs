//! Private keys for photo payloads. The public model writes and reads the BCH codeword of a
//! payload; under a key, the codeword is XOR-ed with a pad drawn from the key before it is
//! embedded and after it is read. Without the key, the word read is the codeword plus a random
//! pad: the code rejects it as it rejects any random word, so a holder of the public model can
//! neither read a keyed payload nor write one that reads under the key (the pad is as secret as
//! the key). The false-positive rate per word tried is the code's either way.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Shortest key file accepted: 128 bits of secret at the very least.
pub const MIN_KEY_BYTES: usize = 16;

/// Largest key file read (a key is a secret, not a data set).
pub const MAX_KEY_BYTES: u64 = 1 << 20;

/// The environment variable naming a key file when `--key` is not given.
pub const KEY_FILE_VARIABLE: &str = "WMAE_KEY_FILE";

/// A payload key: the pad of every coded bit.
#[derive(Clone)]
pub struct Key {
    seed: [u8; 32],
}

impl std::fmt::Debug for Key {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// The key in a file: its bytes, whatever they are (e.g. `head -c 32 /dev/urandom`), at
    /// least [`MIN_KEY_BYTES`] of them.
    pub fn from_file(path: &Path) -> Result<Key> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot open key file {}", path.display()))?;
        if !meta.is_file() {
            bail!("key file {}: not a regular file", path.display());
        }
        if meta.len() > MAX_KEY_BYTES {
            bail!(
                "key file {}: {} bytes; a key file holds at most {MAX_KEY_BYTES}",
                path.display(),
                meta.len()
            );
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        Key::from_bytes(&bytes).with_context(|| format!("key file {}", path.display()))
    }

    /// The key of some secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Key> {
        if bytes.len() < MIN_KEY_BYTES {
            bail!(
                "{} bytes; a key needs at least {MIN_KEY_BYTES} (e.g. head -c 32 /dev/urandom > \
                 wmae.key)",
                bytes.len()
            );
        }
        let mut h = Sha256::new();
        h.update(b"wmae payload key v1\0");
        h.update(bytes);
        Ok(Key {
            seed: h.finalize().into(),
        })
    }

    /// The key named by `--key`, or else by [`KEY_FILE_VARIABLE`], or none.
    pub fn resolve(flag: Option<&Path>) -> Result<Option<Key>> {
        match flag {
            Some(path) => Key::from_file(path).map(Some),
            None => match std::env::var_os(KEY_FILE_VARIABLE) {
                Some(path) if !path.is_empty() => Key::from_file(Path::new(&path))
                    .with_context(|| format!("{KEY_FILE_VARIABLE}={}", path.to_string_lossy()))
                    .map(Some),
                _ => Ok(None),
            },
        }
    }

    /// The pad of `n` coded bits: SHA-256 of the key's seed and a block counter, bit by bit.
    pub fn pad(&self, n: usize) -> Vec<bool> {
        let mut bits = Vec::with_capacity(n);
        let mut block = 0u64;
        while bits.len() < n {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(block.to_le_bytes());
            for byte in h.finalize() {
                for i in 0..8 {
                    bits.push(byte >> (7 - i) & 1 == 1);
                }
            }
            block += 1;
        }
        bits.truncate(n);
        bits
    }

    /// `word` XOR-ed with the pad, in place: the same call keys and unkeys a word.
    pub fn apply(&self, word: &mut [bool]) {
        let pad = self.pad(word.len());
        for (bit, pad) in word.iter_mut().zip(pad) {
            *bit ^= pad;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_differ_by_key_and_undo_themselves() {
        let a = Key::from_bytes(b"0123456789abcdef").unwrap();
        let b = Key::from_bytes(b"0123456789abcdeg").unwrap();
        let (pa, pb) = (a.pad(248), b.pad(248));
        assert_eq!(pa.len(), 248);
        let differ = pa.iter().zip(&pb).filter(|(x, y)| x != y).count();
        // Independent pads differ in about half their bits.
        assert!((80..170).contains(&differ), "{differ}");
        let ones = pa.iter().filter(|&&x| x).count();
        assert!((90..160).contains(&ones), "{ones}");
        let mut word = vec![true; 248];
        a.apply(&mut word);
        a.apply(&mut word);
        assert!(word.iter().all(|&x| x));
        assert!(Key::from_bytes(b"short").is_err());
        assert_eq!(format!("{a:?}"), "Key(..)");
    }
}
