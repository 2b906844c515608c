//! The numbers: one bootstrap per dataset shared by all its cells, seeds
//! averaged, paired comparisons against the baseline.
//!
//! Replicate `b` of a dataset draws its images with
//! [`cxr_stats::bootstrap::replicate_counts`]`(seed, b, n)` over the
//! dataset's reference image order, exactly as `cxr_stats::evaluate` does,
//! so a single-seed cell reproduces `cxrlearn evaluate`'s intervals bit for
//! bit and every model is scored on the same draws.

use std::collections::HashMap;

use cxr_stats::bootstrap::{bootstrap_p_value, replicate_counts};
use cxr_stats::{Predictions, SortedScores, percentile};
use rayon::prelude::*;

use crate::ReportError;
use crate::input::{CellInput, CellSource};
use crate::report::{
    BaselineStrategy, BestSsl, CellStatus, CellSummary, Comparison, DatasetReport, Estimate,
    FORMAT, LabelResult, LabelVsBaseline, ModelMean, ModelResult, Report, ReportConfig,
    StrategyReport, TaskKind,
};

/// One (strategy, model) group of a dataset: its seeds and their aligned predictions.
struct GroupKey<'a> {
    strategy: String,
    model: String,
    seeds: Vec<(u64, &'a Predictions)>,
}

/// Statistics of one (strategy, model) group of a dataset.
struct Group {
    strategy: String,
    model: String,
    seeds: Vec<u64>,
    /// Seed-averaged AUC per label.
    label_auc: Vec<Option<f64>>,
    seed_macro: Vec<Option<f64>>,
    /// `label_reps[j][b]`: seed-averaged AUC of label `j` in replicate `b`.
    label_reps: Vec<Vec<Option<f64>>>,
    /// `macro_reps[b]`: mean over the labels valid in replicate `b`.
    macro_reps: Vec<Option<f64>>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}

/// Mean over seeds, defined only when every seed is (seeds share targets,
/// so they are valid together).
fn seed_mean(values: &[Option<f64>]) -> Option<f64> {
    let all: Option<Vec<f64>> = values.iter().copied().collect();
    all.and_then(|v| mean(v.into_iter()))
}

/// Same definition as `cxr_stats::evaluate`'s intervals.
fn interval(values: &mut [f64], confidence: f64) -> Option<[f64; 2]> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Some([percentile(values, alpha), percentile(values, 1.0 - alpha)])
}

fn estimate(point: Option<f64>, reps: &[Option<f64>], confidence: f64) -> Estimate {
    let mut values: Vec<f64> = reps.iter().flatten().copied().collect();
    Estimate {
        auc: point,
        ci: point.and_then(|_| interval(&mut values, confidence)),
    }
}

fn compare(
    point: Option<f64>,
    reps: &[Option<f64>],
    base_point: Option<f64>,
    base_reps: &[Option<f64>],
    base: &Group,
    config: &ReportConfig,
) -> Comparison {
    let delta = point.zip(base_point).map(|(a, b)| a - b);
    let mut deltas: Vec<f64> = reps
        .iter()
        .zip(base_reps)
        .filter_map(|(a, b)| a.zip(*b).map(|(a, b)| a - b))
        .collect();
    let p_value = delta.and_then(|_| bootstrap_p_value(&deltas));
    Comparison {
        baseline_model: base.model.clone(),
        baseline_strategy: base.strategy.clone(),
        baseline_auc: base_point,
        delta,
        delta_ci: delta.and_then(|_| interval(&mut deltas, config.confidence)),
        p_value,
        significant: p_value.is_some_and(|p| p < config.alpha),
    }
}

fn task_kind(reference: &Predictions) -> TaskKind {
    if reference.labels.len() == 1 {
        return TaskKind::Binary;
    }
    let n = reference.ids.len();
    let mut complete = 0;
    for i in 0..n {
        let row: Option<Vec<bool>> = reference.targets.iter().map(|t| t[i]).collect();
        if let Some(row) = row {
            complete += 1;
            if row.iter().filter(|&&t| t).count() != 1 {
                return TaskKind::MultiLabel;
            }
        }
    }
    if complete == 0 {
        TaskKind::MultiLabel
    } else {
        TaskKind::MultiClass
    }
}

fn check_config(config: &ReportConfig) -> Result<(), ReportError> {
    if config.baseline_model.trim().is_empty() {
        return Err(ReportError::Config(
            "the baseline model name is empty".into(),
        ));
    }
    if !(config.confidence > 0.0 && config.confidence < 1.0) {
        return Err(ReportError::Config(format!(
            "confidence must be strictly between 0 and 1, got {}",
            config.confidence
        )));
    }
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return Err(ReportError::Config(format!(
            "alpha must be strictly between 0 and 1, got {}",
            config.alpha
        )));
    }
    Ok(())
}

/// First-appearance order of `keys`.
fn ordered<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in keys {
        if !out.iter().any(|o| o == k) {
            out.push(k.to_owned());
        }
    }
    out
}

pub(crate) fn build(inputs: Vec<CellInput>, config: &ReportConfig) -> Result<Report, ReportError> {
    check_config(config)?;
    let mut seen: HashMap<(&str, &str, &str, u64), usize> = HashMap::new();
    for (k, input) in inputs.iter().enumerate() {
        let c = &input.cell;
        let key = (
            c.dataset.as_str(),
            c.model.as_str(),
            c.strategy.as_str(),
            c.seed,
        );
        if let Some(first) = seen.insert(key, k) {
            return Err(ReportError::Config(format!(
                "cell {} is given twice (entries {} and {})",
                c.describe(),
                first + 1,
                k + 1
            )));
        }
    }
    let mut summaries: Vec<CellSummary> = inputs
        .iter()
        .map(|i| {
            let (status, message) = match &i.source {
                CellSource::Loaded(_) => (CellStatus::Ok, None),
                CellSource::Missing => (
                    CellStatus::Missing,
                    Some(format!("no {}", i.cell.predictions_path().display())),
                ),
                CellSource::Failed(e) => (CellStatus::Failed, Some(e.clone())),
            };
            CellSummary {
                cell: i.cell.clone(),
                status,
                message,
            }
        })
        .collect();

    let datasets = ordered(inputs.iter().map(|i| i.cell.dataset.as_str()));
    let mut reports = Vec::new();
    for name in &datasets {
        let members: Vec<usize> = (0..inputs.len())
            .filter(|&k| &inputs[k].cell.dataset == name)
            .collect();
        if let Some(report) = dataset_report(name, &members, &inputs, &mut summaries, config)? {
            reports.push(report);
        }
    }
    let model_means = model_means(&reports);
    Ok(Report {
        format: FORMAT.to_owned(),
        settings: config.clone(),
        method: method_notes(config),
        datasets: reports,
        model_means,
        cells: summaries,
    })
}

fn method_notes(config: &ReportConfig) -> Vec<String> {
    let pct = config.confidence * 100.0;
    let comparator = match &config.baseline_strategy {
        BaselineStrategy::SameStrategy => format!(
            "the baseline model '{}' adapted with the same strategy",
            config.baseline_model
        ),
        BaselineStrategy::Fixed(s) => format!(
            "the baseline model '{}' adapted with strategy '{s}', for every strategy",
            config.baseline_model
        ),
    };
    let references = if config.reference_models.is_empty() {
        String::new()
    } else {
        format!(
            " Reference models, shown but never chosen as best: {}.",
            config.reference_models.join(", ")
        )
    };
    vec![
        "AUC: area under the ROC curve on the test split, ties counted one half; macro AUC: unweighted mean over the labels with both classes.".into(),
        format!(
            "Intervals: {pct}% percentile bootstrap over test images ({} replicates, seed {}); all labels of an image are drawn together, and every model, strategy and seed of a dataset is scored on the same replicates.",
            config.n_bootstrap, config.seed
        ),
        "Seeds: a cell with several seeds reports the mean over seeds of the AUC, both for the point estimate and within each replicate; a single-seed cell matches `cxrlearn evaluate` exactly.".into(),
        format!("Comparator: {comparator}."),
        format!(
            "Best SSL model: the non-baseline model with the highest macro AUC on the dataset and strategy (chosen on the test split, as in the paper); delta = best minus comparator, with the percentile interval of the paired replicate differences and a two-sided bootstrap p-value; significant when p < {}.{references}",
            config.alpha
        ),
    ]
}

fn dataset_report(
    name: &str,
    members: &[usize],
    inputs: &[CellInput],
    summaries: &mut [CellSummary],
    config: &ReportConfig,
) -> Result<Option<DatasetReport>, ReportError> {
    let loaded = |k: usize| match &inputs[k].source {
        CellSource::Loaded(p) => Some(p),
        _ => None,
    };
    // The baseline's file fixes the image order when there is one, so the
    // baseline's own intervals are those `evaluate` writes for it.
    let reference_index = members
        .iter()
        .copied()
        .filter(|&k| loaded(k).is_some())
        .min_by_key(|&k| inputs[k].cell.model != config.baseline_model);
    let Some(reference_index) = reference_index else {
        return Ok(None);
    };
    let reference = loaded(reference_index).expect("filtered on loaded");
    let reference_cell = &inputs[reference_index].cell;

    let mut aligned: Vec<(usize, Predictions)> = Vec::new();
    for &k in members {
        let Some(p) = loaded(k) else { continue };
        match reference.align(p) {
            Ok(a) => aligned.push((k, a)),
            Err(e) => {
                summaries[k].status = CellStatus::Unusable;
                summaries[k].message = Some(format!(
                    "does not match the test set of {} (reference: {}): {e}",
                    name,
                    reference_cell.describe()
                ));
            }
        }
    }

    let strategies = ordered(
        aligned
            .iter()
            .map(|(k, _)| inputs[*k].cell.strategy.as_str()),
    );
    let models = ordered(aligned.iter().map(|(k, _)| inputs[*k].cell.model.as_str()));
    // Groups in (strategy, model) grid order, seeds ascending.
    let mut keys: Vec<GroupKey> = Vec::new();
    for s in &strategies {
        for m in &models {
            let mut seeds: Vec<(u64, &Predictions)> = aligned
                .iter()
                .filter(|(k, _)| &inputs[*k].cell.strategy == s && &inputs[*k].cell.model == m)
                .map(|(k, p)| (inputs[*k].cell.seed, p))
                .collect();
            if !seeds.is_empty() {
                seeds.sort_by_key(|(seed, _)| *seed);
                keys.push(GroupKey {
                    strategy: s.clone(),
                    model: m.clone(),
                    seeds,
                });
            }
        }
    }
    let groups = group_statistics(reference, &keys, config)?;
    let labels_meta: Vec<(String, usize, usize, Option<String>)> = (0..reference.labels.len())
        .map(|j| {
            let n_pos = reference.targets[j]
                .iter()
                .filter(|t| **t == Some(true))
                .count();
            let n_neg = reference.targets[j]
                .iter()
                .filter(|t| **t == Some(false))
                .count();
            let reason = match (n_pos, n_neg) {
                (0, 0) => Some("no images with a known target".to_owned()),
                (0, _) => Some("no positive targets".to_owned()),
                (_, 0) => Some("no negative targets".to_owned()),
                _ => None,
            };
            (reference.labels[j].clone(), n_pos, n_neg, reason)
        })
        .collect();

    let mut strategy_reports = Vec::new();
    for s in &strategies {
        let comparator_strategy = match &config.baseline_strategy {
            BaselineStrategy::SameStrategy => s.as_str(),
            BaselineStrategy::Fixed(f) => f.as_str(),
        };
        let base = groups
            .iter()
            .find(|g| g.strategy == comparator_strategy && g.model == config.baseline_model);
        let result = |g: &Group, with_comparison: bool| -> ModelResult {
            let base = base.filter(|_| with_comparison);
            let macro_point = mean(g.label_auc.iter().flatten().copied());
            let labels = labels_meta
                .iter()
                .enumerate()
                .map(|(j, (label, n_pos, n_neg, reason))| {
                    let e = estimate(g.label_auc[j], &g.label_reps[j], config.confidence);
                    LabelResult {
                        label: label.clone(),
                        n_pos: *n_pos,
                        n_neg: *n_neg,
                        auc: e.auc,
                        ci: e.ci,
                        n_valid_replicates: g.label_reps[j].iter().flatten().count(),
                        reason: reason.clone(),
                        vs_baseline: base.map(|b| {
                            compare(
                                g.label_auc[j],
                                &g.label_reps[j],
                                b.label_auc[j],
                                &b.label_reps[j],
                                b,
                                config,
                            )
                        }),
                    }
                })
                .collect();
            ModelResult {
                model: g.model.clone(),
                is_baseline: g.model == config.baseline_model,
                seeds: g.seeds.clone(),
                seed_macro_aucs: g.seed_macro.clone(),
                macro_avg: estimate(macro_point, &g.macro_reps, config.confidence),
                n_labels: g.label_auc.iter().flatten().count(),
                labels,
                vs_baseline: base.map(|b| {
                    let base_point = mean(b.label_auc.iter().flatten().copied());
                    compare(
                        macro_point,
                        &g.macro_reps,
                        base_point,
                        &b.macro_reps,
                        b,
                        config,
                    )
                }),
            }
        };
        let is_comparator =
            |g: &Group| g.model == config.baseline_model && g.strategy == comparator_strategy;
        let models: Vec<ModelResult> = groups
            .iter()
            .filter(|g| &g.strategy == s)
            .map(|g| result(g, !is_comparator(g)))
            .collect();
        let baseline = base.map(|b| result(b, false));
        let best = models
            .iter()
            .filter(|m| {
                !m.is_baseline
                    && !config.reference_models.contains(&m.model)
                    && m.macro_avg.auc.is_some()
            })
            .fold(None::<&ModelResult>, |best, m| match best {
                Some(b) if b.macro_avg.auc >= m.macro_avg.auc => Some(b),
                _ => Some(m),
            });
        let per_label = match (best, &baseline) {
            (Some(best), Some(baseline)) => best
                .labels
                .iter()
                .zip(&baseline.labels)
                .filter_map(|(l, b)| {
                    Some(LabelVsBaseline {
                        label: l.label.clone(),
                        baseline: Estimate {
                            auc: b.auc,
                            ci: b.ci,
                        },
                        best_ssl: Estimate {
                            auc: l.auc,
                            ci: l.ci,
                        },
                        comparison: l.vs_baseline.clone()?,
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        strategy_reports.push(StrategyReport {
            strategy: s.clone(),
            best_ssl: best.map(|m| BestSsl {
                model: m.model.clone(),
                macro_avg: m.macro_avg,
                vs_baseline: m.vs_baseline.clone(),
            }),
            baseline,
            models,
            per_label,
        });
    }
    Ok(Some(DatasetReport {
        name: name.to_owned(),
        task: task_kind(reference),
        labels: reference.labels.clone(),
        n_images: reference.ids.len(),
        strategies: strategy_reports,
    }))
}

/// Point estimates and replicate values of every group, all groups sharing
/// each replicate's draw.
fn group_statistics(
    reference: &Predictions,
    keys: &[GroupKey],
    config: &ReportConfig,
) -> Result<Vec<Group>, ReportError> {
    let n = reference.ids.len();
    let n_labels = reference.labels.len();
    // prepared[g][seed][j]
    let mut prepared: Vec<Vec<Vec<SortedScores>>> = Vec::with_capacity(keys.len());
    for GroupKey { seeds, .. } in keys {
        let mut per_seed = Vec::with_capacity(seeds.len());
        for (_, p) in seeds {
            let mut per_label = Vec::with_capacity(n_labels);
            for j in 0..n_labels {
                let known = reference.targets[j]
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| t.map(|t| (i as u32, p.scores[j][i], t)));
                per_label.push(SortedScores::new(known)?);
            }
            per_seed.push(per_label);
        }
        prepared.push(per_seed);
    }
    // replicates[b][g][j]
    let replicates: Vec<Vec<Vec<Option<f64>>>> = (0..config.n_bootstrap)
        .into_par_iter()
        .map_init(Vec::new, |counts, b| {
            replicate_counts(config.seed, b as u64, n, counts);
            prepared
                .iter()
                .map(|seeds| {
                    (0..n_labels)
                        .map(|j| {
                            let v: Vec<Option<f64>> =
                                seeds.iter().map(|s| s[j].auc_counts(counts)).collect();
                            seed_mean(&v)
                        })
                        .collect()
                })
                .collect()
        })
        .collect();

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
            let label_reps = (0..n_labels)
                .map(|j| replicates.iter().map(|r| r[g][j]).collect())
                .collect();
            let macro_reps = replicates
                .iter()
                .map(|r| mean(r[g].iter().flatten().copied()))
                .collect();
            Group {
                strategy: key.strategy.clone(),
                model: key.model.clone(),
                seeds: key.seeds.iter().map(|(s, _)| *s).collect(),
                label_auc,
                seed_macro,
                label_reps,
                macro_reps,
            }
        })
        .collect())
}

fn model_means(datasets: &[DatasetReport]) -> Vec<ModelMean> {
    let mut out: Vec<(String, String, Vec<f64>)> = Vec::new();
    for s in datasets.iter().flat_map(|d| &d.strategies) {
        for m in &s.models {
            let Some(auc) = m.macro_avg.auc else { continue };
            match out
                .iter_mut()
                .find(|(st, mo, _)| st == &s.strategy && mo == &m.model)
            {
                Some(entry) => entry.2.push(auc),
                None => out.push((s.strategy.clone(), m.model.clone(), vec![auc])),
            }
        }
    }
    out.into_iter()
        .map(|(strategy, model, v)| ModelMean {
            strategy,
            model,
            mean_macro_auc: v.iter().sum::<f64>() / v.len() as f64,
            n_datasets: v.len(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(targets: Vec<Vec<Option<bool>>>) -> Predictions {
        let n = targets[0].len();
        Predictions {
            ids: (0..n).map(|i| i.to_string()).collect(),
            labels: (0..targets.len()).map(|j| format!("L{j}")).collect(),
            scores: vec![vec![0.5; n]; targets.len()],
            targets,
        }
    }

    #[test]
    fn task_kind_from_targets() {
        let (t, f) = (Some(true), Some(false));
        assert_eq!(task_kind(&preds(vec![vec![t, f]])), TaskKind::Binary);
        // One-vs-rest rows: one positive per fully labelled image; an
        // image with an unknown target does not decide.
        let mc = preds(vec![vec![t, f, None], vec![f, t, t]]);
        assert_eq!(task_kind(&mc), TaskKind::MultiClass);
        let ml = preds(vec![vec![t, f], vec![t, f]]);
        assert_eq!(task_kind(&ml), TaskKind::MultiLabel);
    }

    #[test]
    fn seed_mean_needs_every_seed() {
        assert_eq!(seed_mean(&[Some(0.5), Some(0.75)]), Some(0.625));
        assert_eq!(seed_mean(&[Some(0.5), None]), None);
        assert_eq!(seed_mean(&[]), None);
    }

    #[test]
    fn interval_matches_numpy_percentiles() {
        // np.percentile([1, 2, 3, 4, 10], [2.5, 97.5]) == [1.1, 9.4]
        let mut v = [10.0, 3.0, 1.0, 4.0, 2.0];
        let [lo, hi] = interval(&mut v, 0.95).unwrap();
        assert!((lo - 1.1).abs() < 1e-12 && (hi - 9.4).abs() < 1e-12);
        assert_eq!(interval(&mut [], 0.95), None);
    }
}
