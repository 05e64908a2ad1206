//! Sharding: which part of the inputs this process takes, so that N processes started by a
//! scheduler (a Slurm job array, a Kubernetes Indexed Job, a shell loop) each take their own part
//! and together take every input exactly once.
//!
//! An input belongs to shard `hash(key) mod N`, where the key is its output path relative to
//! `--out` (the name a folder walk or a list line gives it). It depends on nothing but the key:
//! not on the order of a list, on other inputs, or on how a folder argument was spelled.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Shard `index` of `count` (0 <= index < count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard's number, from 0.
    pub index: u64,
    /// The number of shards.
    pub count: u64,
}

/// Where a shard came from, for `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardChoice {
    /// The shard taken.
    pub shard: Shard,
    /// What chose it, in words (`--shard`, a Slurm array task, a Kubernetes index).
    pub source: String,
}

impl Shard {
    /// Parses `I/N`.
    pub fn parse(text: &str) -> Result<Shard> {
        let (i, n) = text
            .split_once('/')
            .with_context(|| format!("--shard {text:?}: expected I/N, e.g. 0/8"))?;
        let index: u64 = i
            .trim()
            .parse()
            .with_context(|| format!("--shard {text:?}: I must be a whole number"))?;
        let count: u64 = n
            .trim()
            .parse()
            .with_context(|| format!("--shard {text:?}: N must be a whole number"))?;
        Self::new(index, count).with_context(|| format!("--shard {text:?}"))
    }

    /// Shard `index` of `count`; refused unless 0 <= index < count.
    pub fn new(index: u64, count: u64) -> Result<Shard> {
        if count == 0 {
            bail!("the number of shards must be at least 1");
        }
        if index >= count {
            bail!(
                "shard {index} does not exist among {count} (they are numbered 0 to {})",
                count - 1
            );
        }
        Ok(Shard { index, count })
    }

    /// Whether the input with output key `key` belongs to this shard.
    pub fn contains(&self, key: &Path) -> bool {
        self.count == 1 || key_hash(key) % self.count == self.index
    }
}

/// A stable 64-bit hash of a key's bytes (the first 8 bytes of its SHA-256): the same on every
/// machine and every release, unlike std's randomised hasher.
pub fn key_hash(key: &Path) -> u64 {
    let digest = Sha256::digest(key.as_os_str().as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The shard to take: `--shard I/N` when given; otherwise a Slurm array task's
/// (`SLURM_ARRAY_TASK_ID`, numbered from `SLURM_ARRAY_TASK_MIN` in steps of
/// `SLURM_ARRAY_TASK_STEP`, out of `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed Job's
/// (`JOB_COMPLETION_INDEX`, out of `--shards N`); otherwise none (all inputs). `env` reads a
/// variable (`std::env::var` in the program, a table in tests).
pub fn choose(
    shard: Option<&str>,
    shards: Option<u64>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ShardChoice>> {
    if let Some(text) = shard {
        if shards.is_some() {
            bail!("--shard I/N and --shards N: give one (--shards is for JOB_COMPLETION_INDEX)");
        }
        return Ok(Some(ShardChoice {
            shard: Shard::parse(text)?,
            source: "--shard".into(),
        }));
    }
    let number = |name: &str| -> Result<Option<u64>> {
        env(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .with_context(|| format!("{name}={v:?}: not a whole number"))
            })
            .transpose()
    };
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let count = number("SLURM_ARRAY_TASK_COUNT")?
            .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        if id < min || (id - min) % step != 0 {
            bail!(
                "SLURM_ARRAY_TASK_ID={id} is not on the array's grid (min {min}, step {step}); \
                 use --array=A-B[:S] or give --shard I/N"
            );
        }
        let index = (id - min) / step;
        let shard = Shard::new(index, count).with_context(|| {
            format!(
                "SLURM_ARRAY_TASK_ID={id} (task {index} counting from SLURM_ARRAY_TASK_MIN={min}) \
                 with SLURM_ARRAY_TASK_COUNT={count}: a list of task ids with gaps cannot be \
                 mapped to shards; use --array=A-B[:S] or give --shard I/N"
            )
        })?;
        if let Some(n) = shards.filter(|&n| n != count) {
            bail!("--shards {n} disagrees with SLURM_ARRAY_TASK_COUNT={count}");
        }
        return Ok(Some(ShardChoice {
            shard,
            source: format!(
                "Slurm array task SLURM_ARRAY_TASK_ID={id} of SLURM_ARRAY_TASK_COUNT={count}"
            ),
        }));
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = shards.context(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but --shards N is not: give \
             the Job's completions as --shards",
        )?;
        let shard = Shard::new(index, count)
            .with_context(|| format!("JOB_COMPLETION_INDEX={index} with --shards {count}"))?;
        return Ok(Some(ShardChoice {
            shard,
            source: format!("Kubernetes JOB_COMPLETION_INDEX={index} with --shards {count}"),
        }));
    }
    if let Some(n) = shards {
        bail!(
            "--shards {n} without JOB_COMPLETION_INDEX or a Slurm array: give --shard I/{n} to \
             choose the shard"
        );
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn shards_cover_every_key_exactly_once_and_evenly() {
        let keys: Vec<PathBuf> = (0..20_000)
            .map(|i| PathBuf::from(format!("d{}/img_{i:06}.jpg", i % 37)))
            .collect();
        for n in [1u64, 2, 3, 7, 16] {
            let mut counts = vec![0usize; n as usize];
            for key in &keys {
                let owners: Vec<u64> = (0..n)
                    .filter(|&i| Shard::new(i, n).unwrap().contains(key))
                    .collect();
                assert_eq!(owners.len(), 1, "{key:?} with {n} shards: {owners:?}");
                counts[owners[0] as usize] += 1;
            }
            let expected = keys.len() as f64 / n as f64;
            for c in counts {
                // Binomial spread: 5 standard deviations.
                assert!(
                    (c as f64 - expected).abs() < 5.0 * expected.sqrt() + 1.0,
                    "{c} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn the_hash_is_fixed() {
        // SHA-256("a.jpg") starts 0x6a5f...: the shard of a name never changes between releases.
        let h = key_hash(Path::new("a.jpg"));
        let digest = Sha256::digest(b"a.jpg");
        assert_eq!(h.to_be_bytes(), digest[..8]);
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Shard::parse("3/8").unwrap(), Shard { index: 3, count: 8 });
        for bad in ["8/8", "1/0", "x/2", "1", "-1/4", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_and_kubernetes_variables() {
        let c = choose(
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "8"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.shard, Shard { index: 5, count: 8 });
        // --array=1-8: ids 1..=8 map to shards 0..=7.
        let slurm_from_1 = env(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        assert_eq!(
            choose(None, None, slurm_from_1).unwrap().unwrap().shard,
            Shard { index: 7, count: 8 }
        );
        // --array=0-14:2: ids 0,2,...,14.
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert_eq!(
            choose(None, None, stepped).unwrap().unwrap().shard,
            Shard { index: 7, count: 8 }
        );
        // --array=0,5,9 (gaps): refused rather than silently skipping inputs.
        let gaps = env(&[
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert!(choose(None, None, gaps).is_err());
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            choose(None, Some(4), &k8s).unwrap().unwrap().shard,
            Shard { index: 2, count: 4 }
        );
        assert!(
            choose(None, None, &k8s).is_err(),
            "the index alone does not give N"
        );
        assert!(choose(None, Some(2), &k8s).is_err(), "index 2 of 2");
        // --shard wins over the environment; --shards alone is refused.
        assert_eq!(
            choose(Some("0/2"), None, &k8s).unwrap().unwrap().shard,
            Shard { index: 0, count: 2 }
        );
        assert!(choose(None, Some(4), env(&[])).is_err());
        assert!(choose(None, None, env(&[])).unwrap().is_none());
        assert!(choose(None, None, env(&[("JOB_COMPLETION_INDEX", "x")])).is_err());
    }
}
