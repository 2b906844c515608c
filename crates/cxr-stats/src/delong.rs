//! DeLong's variance of the AUC and the two-sided test for two correlated AUCs
//! (DeLong, DeLong & Clarke-Pearson 1988), computed with the O(n log n)
//! midrank algorithm of Sun & Xu (2014) instead of the O(n^2) pair sums.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::StatsError;

/// Midranks (1-based, ties share their mean rank) of `values`.
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share the mean of ranks i+1..=j+1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// DeLong's structural components of one model's scores: the AUC, `V10`
/// (one value per positive) and `V01` (one per negative).
#[derive(Debug, Clone)]
pub struct StructuralComponents {
    /// The AUC (ties one half).
    pub auc: f64,
    /// For each positive, the fraction of negatives it outscores (ties one half).
    pub v10: Vec<f64>,
    /// For each negative, the fraction of positives that outscore it (ties one half).
    pub v01: Vec<f64>,
}

/// The scores of the positive and of the negative images, in input order
/// (the midrank computation and the tests' O(m n) definition split alike).
fn by_class(targets: &[bool], scores: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let of = |class: bool| {
        (0..scores.len())
            .filter(|&i| targets[i] == class)
            .map(|i| scores[i])
            .collect()
    };
    (of(true), of(false))
}

/// Structural components by midranks, O(n log n).
///
/// # Errors
/// On non-finite scores, a length mismatch, or a single class.
pub fn structural_components(
    targets: &[bool],
    scores: &[f64],
) -> Result<StructuralComponents, StatsError> {
    check(targets, scores)?;
    let (pos, neg) = by_class(targets, scores);
    let (m, n) = (pos.len(), neg.len());
    if m == 0 || n == 0 {
        return Err(StatsError::Config(
            "DeLong needs both positive and negative targets".into(),
        ));
    }
    let tx = midranks(&pos);
    let ty = midranks(&neg);
    let all: Vec<f64> = pos.iter().chain(neg.iter()).copied().collect();
    let tz = midranks(&all);
    let (mf, nf) = (m as f64, n as f64);
    let sum_pos_ranks: f64 = tz[..m].iter().sum();
    let auc = (sum_pos_ranks - mf * (mf + 1.0) / 2.0) / (mf * nf);
    let v10 = (0..m).map(|i| (tz[i] - tx[i]) / nf).collect();
    let v01 = (0..n).map(|j| 1.0 - (tz[m + j] - ty[j]) / mf).collect();
    Ok(StructuralComponents { auc, v10, v01 })
}

fn check(targets: &[bool], scores: &[f64]) -> Result<(), StatsError> {
    if targets.len() != scores.len() {
        return Err(StatsError::LengthMismatch {
            scores: scores.len(),
            targets: targets.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(StatsError::NonFiniteScore {
            index,
            value: scores[index],
        });
    }
    Ok(())
}

/// Sample covariance (denominator `len - 1`); zero for fewer than two values.
fn covariance(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len();
    if k < 2 {
        return 0.0;
    }
    let ma = a.iter().sum::<f64>() / k as f64;
    let mb = b.iter().sum::<f64>() / k as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / (k - 1) as f64
}

/// DeLong's estimate of the variance of the AUC, and the AUC itself.
///
/// # Errors
/// As [`structural_components`].
pub fn delong_variance(targets: &[bool], scores: &[f64]) -> Result<(f64, f64), StatsError> {
    let c = structural_components(targets, scores)?;
    let var = covariance(&c.v10, &c.v10) / c.v10.len() as f64
        + covariance(&c.v01, &c.v01) / c.v01.len() as f64;
    Ok((c.auc, var))
}

/// The outcome of DeLong's test for two AUCs on the same images and targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelongComparison {
    /// AUC of the first model.
    pub auc_a: f64,
    /// AUC of the second model.
    pub auc_b: f64,
    /// Estimated variance of `auc_a - auc_b`.
    pub variance: f64,
    /// The z statistic (`NaN` when the variance is zero).
    pub z: f64,
    /// Two-sided p-value for `auc_a == auc_b`.
    pub p_value: f64,
}

/// Two-sided DeLong test comparing `scores_a` and `scores_b` on the same
/// `targets`. With zero estimated variance (for instance identical models) the
/// p-value is 1 when the AUCs are equal and 0 otherwise.
///
/// # Errors
/// On a length mismatch, non-finite scores or a single class.
pub fn delong_test(
    targets: &[bool],
    scores_a: &[f64],
    scores_b: &[f64],
) -> Result<DelongComparison, StatsError> {
    let a = structural_components(targets, scores_a)?;
    let b = structural_components(targets, scores_b)?;
    Ok(compare(&a, &b))
}

/// DeLong's test from precomputed structural components of two models scored
/// on the same images.
pub fn compare(a: &StructuralComponents, b: &StructuralComponents) -> DelongComparison {
    let (m, n) = (a.v10.len() as f64, a.v01.len() as f64);
    let s10 =
        covariance(&a.v10, &a.v10) + covariance(&b.v10, &b.v10) - 2.0 * covariance(&a.v10, &b.v10);
    let s01 =
        covariance(&a.v01, &a.v01) + covariance(&b.v01, &b.v01) - 2.0 * covariance(&a.v01, &b.v01);
    let variance = (s10 / m + s01 / n).max(0.0);
    let diff = a.auc - b.auc;
    // Rounding leaves a variance of ~1e-17 for models that differ only in
    // ties; treat anything that small as zero.
    let (z, p_value) = if variance > 1e-15 {
        let z = diff / variance.sqrt();
        let normal = Normal::standard();
        (z, (2.0 * normal.cdf(-z.abs())).min(1.0))
    } else if diff.abs() < 1e-12 {
        (f64::NAN, 1.0)
    } else {
        (f64::NAN, 0.0)
    };
    DelongComparison {
        auc_a: a.auc,
        auc_b: b.auc,
        variance,
        z,
        p_value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn psi(x: f64, y: f64) -> f64 {
        if x > y {
            1.0
        } else if x == y {
            0.5
        } else {
            0.0
        }
    }

    /// The definition: O(m n) pair sums.
    fn direct(targets: &[bool], scores: &[f64]) -> StructuralComponents {
        let (pos, neg) = by_class(targets, scores);
        let v10: Vec<f64> = pos
            .iter()
            .map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / neg.len() as f64)
            .collect();
        let v01: Vec<f64> = neg
            .iter()
            .map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / pos.len() as f64)
            .collect();
        let auc = v10.iter().sum::<f64>() / v10.len() as f64;
        StructuralComponents { auc, v10, v01 }
    }

    fn simulate(seed: u64, n: usize, levels: u32) -> (Vec<bool>, Vec<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let t: Vec<bool> = (0..n).map(|_| rng.random_bool(0.3)).collect();
        // Coarse levels make plenty of ties.
        let a = t
            .iter()
            .map(|&y| (rng.random_range(0..levels) + if y { levels / 3 } else { 0 }) as f64)
            .collect();
        let b = t
            .iter()
            .map(|&y| (rng.random_range(0..levels) + if y { levels / 5 } else { 0 }) as f64)
            .collect();
        (t, a, b)
    }

    #[test]
    fn fast_equals_direct() {
        for seed in 0..20 {
            let (t, a, b) = simulate(seed, 60 + seed as usize * 7, 10);
            let fa = structural_components(&t, &a).unwrap();
            let fb = structural_components(&t, &b).unwrap();
            let da = direct(&t, &a);
            let db = direct(&t, &b);
            assert!((fa.auc - da.auc).abs() < 1e-12);
            for (x, y) in fa.v10.iter().zip(&da.v10).chain(fa.v01.iter().zip(&da.v01)) {
                assert!((x - y).abs() < 1e-12);
            }
            let fast = compare(&fa, &fb);
            let slow = compare(&da, &db);
            assert!((fast.variance - slow.variance).abs() < 1e-12);
            assert!((fast.p_value - slow.p_value).abs() < 1e-9);
            // The AUC from midranks matches the Mann-Whitney pass.
            let mw = crate::roc_auc(&t, &a).unwrap().unwrap();
            assert!((fa.auc - mw).abs() < 1e-12);
        }
    }

    #[test]
    fn identical_models_have_p_one() {
        let (t, a, _) = simulate(3, 200, 50);
        let r = delong_test(&t, &a, &a).unwrap();
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.auc_a, r.auc_b);
    }

    #[test]
    fn clearly_better_model_is_significant() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let t: Vec<bool> = (0..2000).map(|_| rng.random_bool(0.5)).collect();
        let good: Vec<f64> = t
            .iter()
            .map(|&y| f64::from(u8::from(y)) * 2.0 + rng.random::<f64>())
            .collect();
        let weak: Vec<f64> = t
            .iter()
            .map(|&y| f64::from(u8::from(y)) * 0.2 + rng.random::<f64>())
            .collect();
        let r = delong_test(&t, &good, &weak).unwrap();
        assert!(r.auc_a > r.auc_b);
        assert!(r.p_value < 1e-6, "p = {}", r.p_value);
    }

    #[test]
    fn variance_matches_known_value() {
        // 3 positives, 3 negatives, no ties: 7 of 9 pairs ordered correctly.
        let t = [true, true, true, false, false, false];
        let s = [0.9, 0.6, 0.3, 0.7, 0.2, 0.1];
        let (auc, var) = delong_variance(&t, &s).unwrap();
        let d = direct(&t, &s);
        let expect = covariance(&d.v10, &d.v10) / 3.0 + covariance(&d.v01, &d.v01) / 3.0;
        assert!((auc - 7.0 / 9.0).abs() < 1e-12);
        assert!((var - expect).abs() < 1e-15);
    }
}
