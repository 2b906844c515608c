//! Corrections for the many comparisons an evaluation makes: Holm's
//! step-down adjustment of p-values (Holm 1979), which controls the
//! family-wise error rate like Bonferroni but rejects more, and Bonferroni's
//! simultaneous interval level.

/// Holm-adjusted p-values, in the input's order; `None` entries are not part
/// of the family and stay `None`.
///
/// With the `m` present p-values sorted ascending, `p_(1) <= ... <= p_(m)`,
/// the adjusted value of `p_(i)` is `max_{j <= i} min(1, (m - j + 1) p_(j))`.
/// A hypothesis is rejected at level alpha exactly when its adjusted value is
/// at most alpha.
pub fn holm(p_values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut present: Vec<(usize, f64)> = p_values
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    // Stable: tied p-values keep their order, which does not change the result.
    present.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = present.len();
    let mut out = vec![None; p_values.len()];
    let mut running = 0.0f64;
    for (rank, &(i, p)) in present.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p).min(1.0));
        out[i] = Some(running);
    }
    out
}

/// The per-comparison coverage that makes `k` intervals hold simultaneously
/// with probability at least `confidence` (Bonferroni): `1 - (1 - confidence) / k`.
pub fn bonferroni_confidence(confidence: f64, k: usize) -> f64 {
    if k <= 1 {
        confidence
    } else {
        1.0 - (1.0 - confidence) / k as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_hand_checked_example() {
        // Four p-values, sorted 0.01, 0.02, 0.03, 0.04:
        //   0.01 * 4 = 0.04; 0.02 * 3 = 0.06; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04
        //   -> running maximum 0.04, 0.06, 0.06, 0.06.
        let p = [Some(0.03), Some(0.01), None, Some(0.04), Some(0.02)];
        let adj = holm(&p);
        let want = [Some(0.06), Some(0.04), None, Some(0.06), Some(0.06)];
        for (a, w) in adj.iter().zip(want) {
            match (a, w) {
                (Some(a), Some(w)) => assert!((a - w).abs() < 1e-15, "{adj:?}"),
                (None, None) => {}
                _ => panic!("{adj:?}"),
            }
        }
        // Capped at 1; a single p-value is its own adjustment.
        assert_eq!(holm(&[Some(0.5), Some(0.6)]), [Some(1.0), Some(1.0)]);
        assert_eq!(holm(&[Some(0.2)]), [Some(0.2)]);
        assert_eq!(holm(&[None]), [None]);
    }

    #[test]
    fn holm_matches_statsmodels() {
        // statsmodels.stats.multitest.multipletests(p, method="holm")[1] for
        // p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205]
        let p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205];
        let want = [0.008, 0.056, 0.234, 0.234, 0.234, 0.234, 0.234, 0.234];
        let adj = holm(&p.map(Some));
        for (a, w) in adj.iter().zip(want) {
            assert!((a.unwrap() - w).abs() < 1e-12, "{adj:?}");
        }
    }

    #[test]
    fn bonferroni_levels() {
        assert!((bonferroni_confidence(0.95, 10) - 0.995).abs() < 1e-15);
        assert_eq!(bonferroni_confidence(0.95, 1), 0.95);
        assert_eq!(bonferroni_confidence(0.95, 0), 0.95);
    }
}
