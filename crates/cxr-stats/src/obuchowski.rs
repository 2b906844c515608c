//! DeLong's test for clustered data: Obuchowski's nonparametric variance of
//! the AUC when units (patients) contribute several, correlated images
//! (Obuchowski, "Nonparametric analysis of clustered ROC curve data",
//! Biometrics 53:567-578, 1997).
//!
//! With `I` patients, patient `i` holding `m_i` positive and `n_i` negative
//! images (`M = sum m_i`, `N = sum n_i`), DeLong's structural components are
//! summed within each patient: `V10_i` over its positives (each the fraction
//! of all negatives it outscores, ties one half) and `V01_i` over its
//! negatives. Then, with `A` the AUC, `I10` (`I01`) the number of patients
//! with at least one positive (negative) image:
//!
//! ```text
//! S10 = I10 / ((I10 - 1) M) * sum_i (V10_i - m_i A)^2
//! S01 = I01 / ((I01 - 1) N) * sum_i (V01_i - n_i A)^2
//! S11 = I / (I - 1)         * sum_i (V10_i - m_i A)(V01_i - n_i A)
//! var(A) = S10 / M + S01 / N + 2 S11 / (M N)
//! ```
//!
//! and for two models on the same images the cross terms (model 1's
//! components against model 2's) give the covariance, so
//! `var(A1 - A2) = var(A1) + var(A2) - 2 cov(A1, A2)`. With one image per
//! patient every term reduces to DeLong's.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::StatsError;
use crate::delong::structural_components;

/// One model's per-patient structural components.
#[derive(Debug, Clone)]
pub struct ClusteredComponents {
    /// The AUC.
    pub auc: f64,
    /// Per patient: the sum of its positives' `V10`.
    v10: Vec<f64>,
    /// Per patient: the sum of its negatives' `V01`.
    v01: Vec<f64>,
    /// Per patient: positive and negative image counts.
    m: Vec<f64>,
    n: Vec<f64>,
}

/// Per-patient components of `scores` against `targets`; `cluster[i]` is
/// image `i`'s patient index (any numbering below `n_clusters`).
///
/// # Errors
/// As [`structural_components`]: length mismatch, non-finite score, one class.
pub fn clustered_components(
    targets: &[bool],
    scores: &[f64],
    cluster: &[u32],
    n_clusters: usize,
) -> Result<ClusteredComponents, StatsError> {
    if cluster.len() != targets.len() {
        return Err(StatsError::LengthMismatch {
            scores: cluster.len(),
            targets: targets.len(),
        });
    }
    let c = structural_components(targets, scores)?;
    let (mut v10, mut v01) = (vec![0.0; n_clusters], vec![0.0; n_clusters]);
    let (mut m, mut n) = (vec![0.0; n_clusters], vec![0.0; n_clusters]);
    // structural_components lists positives, then negatives, in input order.
    let (mut p, mut q) = (0, 0);
    for (i, &t) in targets.iter().enumerate() {
        let k = cluster[i] as usize;
        if t {
            v10[k] += c.v10[p];
            m[k] += 1.0;
            p += 1;
        } else {
            v01[k] += c.v01[q];
            n[k] += 1.0;
            q += 1;
        }
    }
    Ok(ClusteredComponents {
        auc: c.auc,
        v10,
        v01,
        m,
        n,
    })
}

/// The covariance of the AUC estimates behind `a` and `b` (computed on the
/// same images and patients); `cov(a, a)` is the variance.
pub fn clustered_covariance(a: &ClusteredComponents, b: &ClusteredComponents) -> f64 {
    let big_m: f64 = a.m.iter().sum();
    let big_n: f64 = a.n.iter().sum();
    let i_total = a.m.len() as f64;
    let i10 = a.m.iter().filter(|&&m| m > 0.0).count() as f64;
    let i01 = a.n.iter().filter(|&&n| n > 0.0).count() as f64;
    let (mut s10, mut s01, mut s11, mut s11_ba) = (0.0, 0.0, 0.0, 0.0);
    for k in 0..a.m.len() {
        let da10 = a.v10[k] - a.m[k] * a.auc;
        let db10 = b.v10[k] - b.m[k] * b.auc;
        let da01 = a.v01[k] - a.n[k] * a.auc;
        let db01 = b.v01[k] - b.n[k] * b.auc;
        s10 += da10 * db10;
        s01 += da01 * db01;
        s11 += da10 * db01;
        s11_ba += db10 * da01;
    }
    let factor = |count: f64| {
        if count > 1.0 {
            count / (count - 1.0)
        } else {
            0.0
        }
    };
    let s10 = factor(i10) * s10 / big_m;
    let s01 = factor(i01) * s01 / big_n;
    let s11 = factor(i_total) * (s11 + s11_ba) / 2.0;
    s10 / big_m + s01 / big_n + 2.0 * s11 / (big_m * big_n)
}

/// Obuchowski's variance of the AUC with patients as the unit.
pub fn clustered_variance(a: &ClusteredComponents) -> f64 {
    clustered_covariance(a, a)
}

/// Two-sided test of equal AUCs for two models scored on the same images,
/// patients as the unit; `(z, p)`. With zero estimated variance the p-value
/// is 1 for equal AUCs and 0 otherwise (as [`crate::delong::compare`]).
pub fn clustered_test(a: &ClusteredComponents, b: &ClusteredComponents) -> (f64, f64) {
    let variance =
        (clustered_variance(a) + clustered_variance(b) - 2.0 * clustered_covariance(a, b)).max(0.0);
    let diff = a.auc - b.auc;
    if variance > 1e-15 {
        let z = diff / variance.sqrt();
        (z, (2.0 * Normal::standard().cdf(-z.abs())).min(1.0))
    } else if diff.abs() < 1e-12 {
        (f64::NAN, 1.0)
    } else {
        (f64::NAN, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delong::{delong_test, delong_variance};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn one_image_per_patient_is_delong() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let t: Vec<bool> = (0..150).map(|_| rng.random_bool(0.3)).collect();
        let a: Vec<f64> = t
            .iter()
            .map(|&y| f64::from(rng.random_range(0..8u8)) + if y { 2.0 } else { 0.0 })
            .collect();
        let b: Vec<f64> = t
            .iter()
            .map(|&y| f64::from(rng.random_range(0..8u8)) + if y { 1.0 } else { 0.0 })
            .collect();
        let cluster: Vec<u32> = (0..150).collect();
        let ca = clustered_components(&t, &a, &cluster, 150).unwrap();
        let cb = clustered_components(&t, &b, &cluster, 150).unwrap();
        let (_, var) = delong_variance(&t, &a).unwrap();
        assert!((clustered_variance(&ca) - var).abs() < 1e-14);
        let d = delong_test(&t, &a, &b).unwrap();
        let (z, p) = clustered_test(&ca, &cb);
        assert!((z - d.z).abs() < 1e-10 && (p - d.p_value).abs() < 1e-12);
    }

    #[test]
    fn identical_models_have_p_one() {
        let t = [true, false, true, false, true, false];
        let s = [0.9, 0.2, 0.4, 0.5, 0.8, 0.1];
        let cluster = [0, 0, 1, 1, 2, 2];
        let c = clustered_components(&t, &s, &cluster, 3).unwrap();
        assert_eq!(clustered_test(&c, &c).1, 1.0);
    }
}
