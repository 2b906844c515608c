//! The percentile bootstrap's building blocks: its settings, image-level
//! replicate draws, percentile intervals and the bootstrap p-value. What a
//! replicate resamples (images or patients) is [`crate::resample`]'s; the
//! evaluation that uses them is [`crate::evaluation`]'s.
//!
//! Replicate `b` uses its own ChaCha8 stream (`seed`, stream `b`), so the
//! numbers do not depend on the thread count or scheduling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::percentile;

/// The most bootstrap replicates an evaluation runs.
///
/// Every replicate's statistics are kept until the intervals are read off,
/// so memory grows with the count: 100,000 is far beyond what percentile
/// intervals need (a few thousand) while a typo such as 100,000,000 would
/// exhaust memory and abort instead of failing with an error.
pub const MAX_REPLICATES: usize = 100_000;

/// Settings of a bootstrap evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapConfig {
    /// Number of bootstrap replicates (0 skips the intervals; at most
    /// [`MAX_REPLICATES`]).
    pub n_replicates: usize,
    /// Seed of the replicate draws.
    pub seed: u64,
    /// Coverage of the percentile intervals, in (0, 1).
    pub confidence: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            n_replicates: 1000,
            seed: 0,
            confidence: 0.95,
        }
    }
}

/// Image multiplicities of bootstrap replicate `replicate` over `n` images.
pub fn replicate_counts(seed: u64, replicate: u64, n: usize, counts: &mut Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(replicate);
    counts.clear();
    counts.resize(n, 0);
    let n32 = u32::try_from(n).expect("more than 2^32 images");
    for _ in 0..n {
        counts[rng.random_range(0..n32) as usize] += 1;
    }
}

/// Two-sided bootstrap p-value for "the difference is zero": twice the
/// smaller tail fraction of replicate differences at or beyond zero, with the
/// usual +1 correction so it is never exactly 0 (its floor is `2 / (B + 1)`).
pub fn bootstrap_p_value(deltas: &[f64]) -> Option<f64> {
    if deltas.is_empty() {
        return None;
    }
    let le = deltas.iter().filter(|&&d| d <= 0.0).count();
    let ge = deltas.iter().filter(|&&d| d >= 0.0).count();
    let b = deltas.len() as f64;
    Some((2.0 * (le.min(ge) as f64 + 1.0) / (b + 1.0)).min(1.0))
}

/// The percentile interval (NumPy's linear interpolation) of `values` at
/// coverage `confidence`; `None` when empty. Sorts `values`.
pub fn interval(values: &mut [f64], confidence: f64) -> Option<[f64; 2]> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Some([percentile(values, alpha), percentile(values, 1.0 - alpha)])
}

/// The mean, `None` when empty.
pub fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}
