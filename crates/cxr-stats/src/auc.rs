//! Area under the ROC curve, ties counted one half.
//!
//! The AUC equals the Mann-Whitney statistic: the probability that a random
//! positive scores above a random negative, plus one half the probability of a
//! tie. Summing over groups of tied scores in ascending order gives the same
//! number as scikit-learn's `roc_auc_score` (which integrates the ROC curve with
//! the trapezoidal rule, whose tied segments are exactly the one-half terms).
//!
//! [`SortedScores`] sorts once and then evaluates any weighting in O(n): a
//! bootstrap replicate is a vector of multiplicities, so each replicate costs a
//! single pass instead of a re-sort.

use crate::StatsError;

/// Scores of one label with known targets, sorted once by score and grouped
/// into runs of equal scores.
///
/// Each sample is packed into one `u32` (sample index, positive flag, last of
/// its tie group) so a weighted pass streams one array and does branch-free
/// class accumulation: the bootstrap spends nearly all its time here.
#[derive(Debug, Clone)]
pub struct SortedScores {
    packed: Vec<u32>,
    n_pos: usize,
    n_neg: usize,
}

const POSITIVE: u32 = 1 << 31;
const LAST_OF_GROUP: u32 = 1 << 30;
const INDEX: u32 = LAST_OF_GROUP - 1;

/// The largest sample index [`SortedScores`] accepts (2^30 - 1).
pub const MAX_SAMPLES: usize = INDEX as usize;

impl SortedScores {
    /// Sorts `samples` (sample index, score, is-positive). The sample index is
    /// the position used to look up weights in [`SortedScores::auc_counts`].
    ///
    /// # Errors
    /// [`StatsError::NonFiniteScore`] if a score is NaN or infinite;
    /// [`StatsError::Config`] for a sample index above [`MAX_SAMPLES`].
    pub fn new(samples: impl IntoIterator<Item = (u32, f64, bool)>) -> Result<Self, StatsError> {
        let mut items: Vec<(u32, f64, bool)> = samples.into_iter().collect();
        if let Some(&(index, value, _)) = items.iter().find(|s| !s.1.is_finite()) {
            return Err(StatsError::NonFiniteScore {
                index: index as usize,
                value,
            });
        }
        if items.iter().any(|s| s.0 > INDEX) {
            return Err(StatsError::Config(format!(
                "more than {MAX_SAMPLES} samples are not supported"
            )));
        }
        // Ties are summed as a group, so their internal order does not matter.
        items.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
        let packed = (0..items.len())
            .map(|k| {
                let (index, score, positive) = items[k];
                let last = k + 1 == items.len() || items[k + 1].1 != score;
                index | if positive { POSITIVE } else { 0 } | if last { LAST_OF_GROUP } else { 0 }
            })
            .collect();
        let n_pos = items.iter().filter(|s| s.2).count();
        Ok(Self {
            packed,
            n_pos,
            n_neg: items.len() - n_pos,
        })
    }

    /// Builds from parallel target and score slices; sample `i` has weight
    /// index `i`.
    ///
    /// # Errors
    /// On a length mismatch or a non-finite score.
    pub fn from_slices(targets: &[bool], scores: &[f64]) -> Result<Self, StatsError> {
        if targets.len() != scores.len() {
            return Err(StatsError::LengthMismatch {
                scores: scores.len(),
                targets: targets.len(),
            });
        }
        Self::new((0..targets.len()).map(|i| (i as u32, scores[i], targets[i])))
    }

    /// Number of positive samples.
    pub fn n_pos(&self) -> usize {
        self.n_pos
    }

    /// Number of negative samples.
    pub fn n_neg(&self) -> usize {
        self.n_neg
    }

    /// The AUC with every sample counted once; `None` without both classes.
    pub fn auc(&self) -> Option<f64> {
        self.auc_by(|_| 1u64)
    }

    /// The AUC with sample `i` counted `counts[i]` times (bootstrap
    /// multiplicities); `None` unless both classes have positive total weight.
    /// Exact integer arithmetic, so the result is independent of summation order.
    pub fn auc_counts(&self, counts: &[u32]) -> Option<f64> {
        self.auc_by(|i| u64::from(counts[i as usize]))
    }

    #[inline(always)]
    fn auc_by(&self, weight: impl Fn(u32) -> u64) -> Option<f64> {
        // Twice the Mann-Whitney numerator, so ties stay integral. It is at
        // most 2 * W+ * W-, which fits u64 for total weights below 2^31.
        let (mut numerator2, mut neg_below, mut pos_total) = (0u64, 0u64, 0u64);
        let (mut p, mut q) = (0u64, 0u64);
        for &e in &self.packed {
            let w = weight(e & INDEX);
            let positive = 0u64.wrapping_sub(u64::from(e >> 31));
            p += w & positive;
            q += w & !positive;
            // Close the tie group without a branch: group ends are data
            // dependent and mispredict often on real score distributions.
            let last = 0u64.wrapping_sub(u64::from((e >> 30) & 1));
            numerator2 += (p * (2 * neg_below + q)) & last;
            neg_below += q & last;
            pos_total += p & last;
            p &= !last;
            q &= !last;
        }
        if pos_total == 0 || neg_below == 0 {
            return None;
        }
        Some(numerator2 as f64 / (2.0 * pos_total as f64 * neg_below as f64))
    }

    /// The AUC with real-valued sample weights (scikit-learn's `sample_weight`),
    /// `weights[i]` applying to sample index `i`.
    pub fn auc_weighted(&self, weights: &[f64]) -> Option<f64> {
        let (mut numerator, mut neg_below, mut pos_total) = (0.0, 0.0, 0.0);
        let (mut p, mut q) = (0.0, 0.0);
        for &e in &self.packed {
            let w = weights[(e & INDEX) as usize];
            if e & POSITIVE != 0 {
                p += w;
            } else {
                q += w;
            }
            if e & LAST_OF_GROUP != 0 {
                numerator += p * (neg_below + 0.5 * q);
                neg_below += q;
                pos_total += p;
                p = 0.0;
                q = 0.0;
            }
        }
        if pos_total <= 0.0 || neg_below <= 0.0 {
            return None;
        }
        Some(numerator / (pos_total * neg_below))
    }
}

/// ROC AUC of `scores` against binary `targets`, ties counted one half.
/// `Ok(None)` when only one class is present.
///
/// # Errors
/// On a length mismatch or a non-finite score.
pub fn roc_auc(targets: &[bool], scores: &[f64]) -> Result<Option<f64>, StatsError> {
    Ok(SortedScores::from_slices(targets, scores)?.auc())
}

/// ROC AUC with per-sample weights, as scikit-learn's
/// `roc_auc_score(y, s, sample_weight=w)`. `Ok(None)` when a class has no weight.
///
/// # Errors
/// On a length mismatch, a non-finite score, or a negative or non-finite weight.
pub fn roc_auc_weighted(
    targets: &[bool],
    scores: &[f64],
    weights: &[f64],
) -> Result<Option<f64>, StatsError> {
    if weights.len() != targets.len() {
        return Err(StatsError::LengthMismatch {
            scores: weights.len(),
            targets: targets.len(),
        });
    }
    if let Some((index, &value)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !w.is_finite() || **w < 0.0)
    {
        return Err(StatsError::BadWeight { index, value });
    }
    Ok(SortedScores::from_slices(targets, scores)?.auc_weighted(weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct pair count, the definition itself.
    fn auc_pairs(t: &[bool], s: &[f64]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..t.len() {
            for j in 0..t.len() {
                if t[i] && !t[j] {
                    den += 1.0;
                    num += if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn small_cases() {
        let t = [false, false, true, true];
        assert_eq!(roc_auc(&t, &[0.1, 0.4, 0.35, 0.8]).unwrap(), Some(0.75));
        assert_eq!(roc_auc(&t, &[0.5; 4]).unwrap(), Some(0.5));
        assert_eq!(roc_auc(&t, &[0.9, 0.8, 0.1, 0.2]).unwrap(), Some(0.0));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]).unwrap(), None);
        assert_eq!(roc_auc(&[], &[]).unwrap(), None);
    }

    #[test]
    fn counts_equal_repetition() {
        let t = [true, false, true, false, false, true];
        let s = [0.3, 0.3, 0.9, 0.1, 0.5, 0.5];
        let counts = [2u32, 0, 1, 3, 1, 2];
        let sorted = SortedScores::from_slices(&t, &s).unwrap();
        let (mut tr, mut sr) = (vec![], vec![]);
        for i in 0..t.len() {
            for _ in 0..counts[i] {
                tr.push(t[i]);
                sr.push(s[i]);
            }
        }
        let expected = auc_pairs(&tr, &sr);
        assert!((sorted.auc_counts(&counts).unwrap() - expected).abs() < 1e-15);
        let w: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
        assert!((sorted.auc_weighted(&w).unwrap() - expected).abs() < 1e-15);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            roc_auc(&[true, false], &[f64::NAN, 1.0]),
            Err(StatsError::NonFiniteScore { index: 0, .. })
        ));
        assert!(matches!(
            roc_auc(&[true], &[1.0, 2.0]),
            Err(StatsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            roc_auc_weighted(&[true, false], &[1.0, 2.0], &[1.0, -1.0]),
            Err(StatsError::BadWeight { index: 1, .. })
        ));
    }
}
