//! Macro AUC per subgroup (sex, age band, view, site) for the best SSL
//! model and the comparator of one dataset and strategy, on the dataset's
//! replicates restricted to each subgroup's images, and the gap between a
//! model's best and worst subgroup with its paired interval.
//!
//! The subgroup macro AUC is defined as the dataset's: the unweighted mean
//! over the labels with both classes among the subgroup's images (within a
//! replicate, among the subgroup's drawn images), seeds averaged per label.

use std::collections::HashSet;

use cxr_stats::predictions::SUBGROUP_COLUMNS;
use cxr_stats::resample::{Resampler, Statistic, replicate_values};
use cxr_stats::subgroups::{AGE_BINS, group_values};
use cxr_stats::{Predictions, SortedScores};

use crate::ReportError;
use crate::compute::groups::{estimate, mean, paired_interval, seed_mean_of};
use crate::report::ReportConfig;
use crate::sections::{Subgroup, SubgroupAttribute, SubgroupAuc, SubgroupGap, SubgroupModel};

/// A subgroup needs this many positive images for at least one label to be
/// scored: below it every AUC rests on a handful of patients.
pub(crate) const MIN_POSITIVES: usize = 5;

/// A model whose subgroups are reported.
pub(crate) struct SubgroupInput<'a> {
    /// `best_ssl` or `baseline`.
    pub(crate) role: &'static str,
    pub(crate) model: &'a str,
    pub(crate) strategy: &'a str,
    pub(crate) seeds: &'a [(u64, &'a Predictions)],
}

/// The subgroups of one column: each image's subgroup, and the names in
/// report order (the definition `cxrlearn evaluate --subgroups` uses).
fn groups_of(test_set: &Predictions, column: &str) -> (Vec<Option<String>>, Vec<String>) {
    group_values(&test_set.attributes[column], column, &AGE_BINS)
}

/// Per (column, subgroup): the members, and whether it is scored.
struct Plan {
    column: String,
    n_unknown: usize,
    groups: Vec<(Subgroup, Vec<usize>)>,
}

fn plan(test_set: &Predictions) -> Vec<Plan> {
    let mut out = Vec::new();
    for column in SUBGROUP_COLUMNS {
        if !test_set.attributes.contains_key(column) {
            continue;
        }
        let (group, names) = groups_of(test_set, column);
        if names.is_empty() {
            continue;
        }
        let groups = names
            .into_iter()
            .map(|value| {
                let members: Vec<usize> = (0..group.len())
                    .filter(|&i| group[i].as_deref() == Some(value.as_str()))
                    .collect();
                let n_patients = test_set.patients.as_ref().map(|p| {
                    members
                        .iter()
                        .map(|&i| p[i].as_str())
                        .collect::<HashSet<_>>()
                        .len()
                });
                let max_positives = test_set
                    .targets
                    .iter()
                    .map(|t| members.iter().filter(|&&i| t[i] == Some(true)).count())
                    .max()
                    .unwrap_or(0);
                let reason = (max_positives < MIN_POSITIVES).then(|| {
                    format!(
                        "fewer than {MIN_POSITIVES} positive images for every label \
                         (at most {max_positives})"
                    )
                });
                let subgroup = Subgroup {
                    value,
                    n_images: members.len(),
                    n_patients,
                    max_positives,
                    reason,
                };
                (subgroup, members)
            })
            .collect();
        out.push(Plan {
            column: column.to_owned(),
            n_unknown: group.iter().filter(|g| g.is_none()).count(),
            groups,
        });
    }
    out
}

/// The subgroup results of `models`, or nothing when the test set carries
/// no attribute column.
pub(crate) fn subgroup_section(
    test_set: &Predictions,
    resampler: &Resampler,
    models: &[SubgroupInput],
    config: &ReportConfig,
) -> Result<Vec<SubgroupAttribute>, ReportError> {
    let plans = plan(test_set);
    if plans.is_empty() || models.is_empty() {
        return Ok(Vec::new());
    }
    // prepared[model][column][group] = per label, per seed, the subgroup's
    // scores (None for subgroups that are not scored)
    type Prepared = Option<Vec<Vec<SortedScores>>>;
    let mut prepared: Vec<Vec<Vec<Prepared>>> = Vec::new();
    for m in models {
        let mut per_column = Vec::new();
        for plan in &plans {
            let mut per_group = Vec::new();
            for (subgroup, members) in &plan.groups {
                if subgroup.reason.is_some() {
                    per_group.push(None);
                    continue;
                }
                let mut labels = Vec::with_capacity(test_set.labels.len());
                for (j, targets) in test_set.targets.iter().enumerate() {
                    let mut seeds = Vec::with_capacity(m.seeds.len());
                    for (_, p) in m.seeds {
                        let known = members
                            .iter()
                            .filter_map(|&i| targets[i].map(|t| (i as u32, p.scores[j][i], t)));
                        seeds.push(SortedScores::new(known)?);
                    }
                    labels.push(seeds);
                }
                per_group.push(Some(labels));
            }
            per_column.push(per_group);
        }
        prepared.push(per_column);
    }
    // The macro AUC of one prepared subgroup, every sample counted once or
    // with the replicate's multiplicity.
    fn macro_of(labels: &[Vec<SortedScores>], counts: Option<&[u32]>) -> (Option<f64>, usize) {
        let per_label: Vec<f64> = labels
            .iter()
            .filter_map(|seeds| {
                seed_mean_of(
                    seeds
                        .iter()
                        .map(|s| counts.map_or_else(|| s.auc(), |c| s.auc_counts(c))),
                )
            })
            .collect();
        (mean(per_label.iter().copied()), per_label.len())
    }
    // One statistic per scored (model, column, subgroup), in that order.
    let mut statistics: Vec<Statistic<'_>> = Vec::new();
    for per_column in &prepared {
        for per_group in per_column {
            for labels in per_group.iter().flatten() {
                statistics.push(Box::new(move |counts: &[u32]| {
                    macro_of(labels, Some(counts)).0
                }));
            }
        }
    }
    let values = replicate_values(resampler, config.seed, config.n_bootstrap, &statistics);
    drop(statistics);

    let mut next = values.into_iter();
    // results[model][column][subgroup]
    let mut results: Vec<Vec<Vec<Scored>>> = Vec::new();
    for per_column in &prepared {
        let mut model_results = Vec::new();
        for (plan, per_group) in plans.iter().zip(per_column) {
            let column_results = plan
                .groups
                .iter()
                .zip(per_group)
                .map(|((subgroup, _), labels)| {
                    let (point, n_labels, reps) = match labels {
                        Some(labels) => {
                            let (point, n_labels) = macro_of(labels, None);
                            (point, n_labels, next.next().unwrap_or_default())
                        }
                        None => (None, 0, Vec::new()),
                    };
                    let auc = SubgroupAuc {
                        value: subgroup.value.clone(),
                        macro_avg: estimate(point, &reps, config.confidence),
                        n_labels,
                    };
                    (auc, reps)
                })
                .collect();
            model_results.push(column_results);
        }
        results.push(model_results);
    }

    let mut out = Vec::new();
    for (c, plan) in plans.iter().enumerate() {
        let models = models
            .iter()
            .zip(&results)
            .map(|(m, per_column)| {
                let column = &per_column[c];
                SubgroupModel {
                    model: m.model.to_owned(),
                    strategy: m.strategy.to_owned(),
                    role: m.role.to_owned(),
                    gap: gap(column, config.confidence),
                    results: column.iter().map(|(auc, _)| auc.clone()).collect(),
                }
            })
            .collect();
        out.push(SubgroupAttribute {
            column: plan.column.clone(),
            n_unknown: plan.n_unknown,
            groups: plan.groups.iter().map(|(g, _)| g.clone()).collect(),
            models,
        });
    }
    Ok(out)
}

/// A subgroup's macro AUC and its replicate values.
type Scored = (SubgroupAuc, Vec<Option<f64>>);

/// Best minus worst subgroup (chosen on the point estimates; ties go to the
/// earlier subgroup for the worst and the later for the best, so the two
/// always differ), with the paired interval over the replicates.
fn gap(column: &[Scored], confidence: f64) -> Option<SubgroupGap> {
    let mut scored: Vec<(usize, f64)> = column
        .iter()
        .enumerate()
        .filter_map(|(k, (auc, _))| auc.macro_avg.auc.map(|a| (k, a)))
        .collect();
    if scored.len() < 2 {
        return None;
    }
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let (worst, lo) = scored[0];
    let (best, hi) = scored[scored.len() - 1];
    Some(SubgroupGap {
        best: column[best].0.value.clone(),
        worst: column[worst].0.value.clone(),
        gap: hi - lo,
        ci: paired_interval(&column[best].1, &column[worst].1, confidence),
    })
}

/// Whether `test_set` carries an attribute column a subgroup section shows.
pub(crate) fn has_attributes(test_set: &Predictions) -> bool {
    SUBGROUP_COLUMNS
        .iter()
        .any(|c| test_set.attributes.contains_key(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_banded_in_age_order_and_unparsable_ages_unknown() {
        let mut p = Predictions {
            ids: (0..5).map(|i| i.to_string()).collect(),
            labels: vec!["L".into()],
            targets: vec![vec![Some(true); 5]],
            scores: vec![vec![0.5; 5]],
            ..Predictions::default()
        };
        let ages = ["85", "30", "n/a", "61", "40"];
        p.attributes.insert(
            "age".into(),
            ages.iter().map(|a| Some((*a).to_owned())).collect(),
        );
        let (group, names) = groups_of(&p, "age");
        assert_eq!(names, ["<40", "40-60", "60-80", ">=80"]);
        assert_eq!(group[2], None);
        assert_eq!(group[0].as_deref(), Some(">=80"));
    }
}
