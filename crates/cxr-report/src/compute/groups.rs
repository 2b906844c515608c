//! Per (strategy, model, training fraction) group of a dataset: the
//! seed-averaged AUC of every label, point estimate and bootstrap
//! replicates, all groups sharing each replicate's draw; and the small
//! statistics helpers the rest of the computation uses.

// The interval and the mean are `cxrlearn evaluate`'s own definitions.
pub(crate) use cxr_stats::bootstrap::{bootstrap_p_value, interval, mean};
use cxr_stats::multiplicity::holm;
use cxr_stats::resample::{Resampler, Statistic, replicate_values};
use cxr_stats::{Predictions, SortedScores};

use crate::ReportError;
use crate::report::{Comparison, Estimate, ReportConfig};

/// One (strategy, model, fraction) group of a dataset: its seeds and their
/// aligned predictions.
pub(crate) struct GroupKey<'a> {
    pub(crate) strategy: String,
    pub(crate) model: String,
    /// Training fraction, 1.0 for the full training set.
    pub(crate) fraction: f64,
    pub(crate) seeds: Vec<(u64, &'a Predictions)>,
}

/// Statistics of one group.
pub(crate) struct Group {
    pub(crate) strategy: String,
    pub(crate) model: String,
    pub(crate) fraction: f64,
    pub(crate) seeds: Vec<u64>,
    /// Seed-averaged AUC per label.
    pub(crate) label_auc: Vec<Option<f64>>,
    pub(crate) seed_macro: Vec<Option<f64>>,
    /// `label_reps[j][b]`: seed-averaged AUC of label `j` in replicate `b`.
    pub(crate) label_reps: Vec<Vec<Option<f64>>>,
    /// `macro_reps[b]`: mean over the labels valid in replicate `b`.
    pub(crate) macro_reps: Vec<Option<f64>>,
}

impl Group {
    /// Whether the group used the full training set.
    pub(crate) fn is_full_data(&self) -> bool {
        self.fraction == 1.0
    }

    /// The seed-averaged macro AUC (mean over labels with both classes).
    pub(crate) fn macro_point(&self) -> Option<f64> {
        mean(self.label_auc.iter().flatten().copied())
    }
}

/// Mean over seeds, defined only when every seed is (seeds share targets,
/// so they are valid together).
pub(crate) fn seed_mean(values: &[Option<f64>]) -> Option<f64> {
    let all: Option<Vec<f64>> = values.iter().copied().collect();
    all.and_then(|v| mean(v.into_iter()))
}

/// [`seed_mean`] of values computed on the fly, without collecting them
/// (it runs once per replicate, group and label). The same additions in
/// the same order, so the result is bit-identical.
pub(crate) fn seed_mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for v in values {
        sum += v?;
        count += 1;
    }
    (count > 0).then(|| sum / count as f64)
}

pub(crate) fn estimate(point: Option<f64>, reps: &[Option<f64>], confidence: f64) -> Estimate {
    let mut values: Vec<f64> = reps.iter().flatten().copied().collect();
    Estimate {
        auc: point,
        ci: point.and_then(|_| interval(&mut values, confidence)),
    }
}

/// Percentile interval of the paired differences `a - b` over the
/// replicates where both are defined.
pub(crate) fn paired_interval(
    a: &[Option<f64>],
    b: &[Option<f64>],
    confidence: f64,
) -> Option<[f64; 2]> {
    let mut deltas: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(a, b)| a.zip(*b).map(|(a, b)| a - b))
        .collect();
    interval(&mut deltas, confidence)
}

/// The paired comparison of a statistic with the comparator's on the same
/// replicates. The Holm adjustment and `significant` are set once the
/// comparison's whole family is known ([`adjust_family`]).
pub(crate) fn compare(
    point: Option<f64>,
    reps: &[Option<f64>],
    base_point: Option<f64>,
    base_reps: &[Option<f64>],
    base: &Group,
    config: &ReportConfig,
) -> Comparison {
    let delta = point.zip(base_point).map(|(a, b)| a - b);
    let deltas: Vec<f64> = reps
        .iter()
        .zip(base_reps)
        .filter_map(|(a, b)| a.zip(*b).map(|(a, b)| a - b))
        .collect();
    Comparison {
        baseline_model: base.model.clone(),
        baseline_strategy: base.strategy.clone(),
        baseline_auc: base_point,
        delta,
        delta_ci: delta.and_then(|_| paired_interval(reps, base_reps, config.confidence)),
        p_value: delta.and_then(|_| bootstrap_p_value(&deltas)),
        p_value_holm: None,
        significant: false,
    }
}

/// Holm-adjusts the raw p-values of one family of comparisons and marks
/// those whose adjusted value is below `alpha`.
pub(crate) fn adjust_family<'a>(family: impl IntoIterator<Item = &'a mut Comparison>, alpha: f64) {
    let mut family: Vec<&mut Comparison> = family.into_iter().collect();
    let raw: Vec<Option<f64>> = family.iter().map(|c| c.p_value).collect();
    for (c, adjusted) in family.iter_mut().zip(holm(&raw)) {
        c.p_value_holm = adjusted;
        c.significant = adjusted.is_some_and(|p| p < alpha);
    }
}

/// One label's scores of one seed, on the test images with a known target
/// (indexed by their position in the test set, so replicate multiplicities
/// apply directly).
fn sorted_scores(
    test_set: &Predictions,
    p: &Predictions,
    j: usize,
) -> Result<SortedScores, ReportError> {
    let known = test_set.targets[j]
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i as u32, p.scores[j][i], t)));
    Ok(SortedScores::new(known)?)
}

/// Point estimates and replicate values of every group, all groups sharing
/// each replicate's draw (replicate `b` is `resampler.counts(seed, b)`,
/// exactly as in `cxr_stats::evaluate_with`).
pub(crate) fn group_statistics(
    test_set: &Predictions,
    resampler: &Resampler,
    keys: &[GroupKey],
    config: &ReportConfig,
) -> Result<Vec<Group>, ReportError> {
    let n_labels = test_set.labels.len();
    // prepared[g][seed][j]
    let mut prepared: Vec<Vec<Vec<SortedScores>>> = Vec::with_capacity(keys.len());
    for GroupKey { seeds, .. } in keys {
        let per_seed = seeds
            .iter()
            .map(|(_, p)| {
                (0..n_labels)
                    .map(|j| sorted_scores(test_set, p, j))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        prepared.push(per_seed);
    }
    // One statistic per (group, label): the seed-averaged AUC.
    let mut statistics: Vec<Statistic<'_>> = Vec::with_capacity(keys.len() * n_labels);
    for seeds in &prepared {
        for j in 0..n_labels {
            statistics.push(Box::new(move |counts: &[u32]| {
                seed_mean_of(seeds.iter().map(|s| s[j].auc_counts(counts)))
            }));
        }
    }
    let mut values = replicate_values(resampler, config.seed, config.n_bootstrap, &statistics);
    drop(statistics);

    Ok(keys
        .iter()
        .enumerate()
        .map(|(g, key)| {
            let per_seed_auc: Vec<Vec<Option<f64>>> = prepared[g]
                .iter()
                .map(|labels| labels.iter().map(SortedScores::auc).collect())
                .collect();
            let label_auc = (0..n_labels)
                .map(|j| seed_mean(&per_seed_auc.iter().map(|s| s[j]).collect::<Vec<_>>()))
                .collect();
            let seed_macro = per_seed_auc
                .iter()
                .map(|s| mean(s.iter().flatten().copied()))
                .collect();
            let label_reps: Vec<Vec<Option<f64>>> = values.drain(..n_labels).collect();
            let macro_reps = (0..config.n_bootstrap)
                .map(|b| mean(label_reps.iter().filter_map(|r| r[b])))
                .collect();
            Group {
                strategy: key.strategy.clone(),
                model: key.model.clone(),
                fraction: key.fraction,
                seeds: key.seeds.iter().map(|(s, _)| *s).collect(),
                label_auc,
                seed_macro,
                label_reps,
                macro_reps,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_mean_needs_every_seed() {
        assert_eq!(seed_mean(&[Some(0.5), Some(0.75)]), Some(0.625));
        assert_eq!(seed_mean(&[Some(0.5), None]), None);
        assert_eq!(seed_mean(&[]), None);
        for v in [
            vec![Some(0.1), Some(0.7), Some(0.3)],
            vec![None, Some(0.5)],
            vec![],
        ] {
            assert_eq!(seed_mean_of(v.iter().copied()), seed_mean(&v));
        }
    }

    #[test]
    fn interval_matches_numpy_percentiles() {
        // np.percentile([1, 2, 3, 4, 10], [2.5, 97.5]) == [1.1, 9.4]
        let mut v = [10.0, 3.0, 1.0, 4.0, 2.0];
        let [lo, hi] = interval(&mut v, 0.95).unwrap();
        assert!((lo - 1.1).abs() < 1e-12 && (hi - 9.4).abs() < 1e-12);
        assert_eq!(interval(&mut [], 0.95), None);
    }

    fn comparison(p: Option<f64>) -> Comparison {
        Comparison {
            baseline_model: "b".into(),
            baseline_strategy: "s".into(),
            baseline_auc: None,
            delta: None,
            delta_ci: None,
            p_value: p,
            p_value_holm: None,
            significant: false,
        }
    }

    #[test]
    fn families_are_holm_adjusted_and_starred_on_the_adjusted_value() {
        // Raw 0.01, 0.04, None, 0.03: Holm over three p-values gives
        // 0.03, 0.06, None, 0.06; only the first stays below 0.05.
        let mut family: Vec<Comparison> = [Some(0.01), Some(0.04), None, Some(0.03)]
            .into_iter()
            .map(comparison)
            .collect();
        adjust_family(family.iter_mut(), 0.05);
        let adjusted: Vec<Option<f64>> = family.iter().map(|c| c.p_value_holm).collect();
        let want = [Some(0.03), Some(0.06), None, Some(0.06)];
        for (a, w) in adjusted.iter().zip(want) {
            assert_eq!(a.is_some(), w.is_some());
            if let (Some(a), Some(w)) = (a, w) {
                assert!((a - w).abs() < 1e-15, "{adjusted:?}");
            }
        }
        let stars: Vec<bool> = family.iter().map(|c| c.significant).collect();
        assert_eq!(stars, [true, false, false, false]);
        // Raw p = 0.04 < 0.05 alone is significant; in the family it is not.
        assert!(family[1].p_value.unwrap() < 0.05 && !family[1].significant);
    }
}
