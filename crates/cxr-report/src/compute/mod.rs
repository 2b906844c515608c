//! The numbers: one bootstrap per dataset shared by all its cells, seeds
//! averaged, paired comparisons against the baseline, Holm-adjusted within
//! their families; calibration, subgroups and label efficiency.
//!
//! Replicate `b` of a dataset draws its images with a
//! [`cxr_stats::Resampler`] over the dataset's reference image order,
//! patients (each with all of its images) whenever their ids are known and
//! `resample` allows, exactly as `cxr_stats::evaluate_with` does, so a
//! single-seed cell reproduces `cxrlearn evaluate`'s intervals bit for bit
//! with the same settings and every model is scored on the same draws.

mod calibration;
mod groups;
pub(crate) mod notes;
mod subgroups;

use std::collections::HashMap;

use cxr_stats::{Predictions, Resample, Resampler};

use crate::ReportError;
use crate::input::{CellInput, CellSource};
use crate::report::{
    BaselineStrategy, BestSsl, CellStatus, CellSummary, DatasetReport, Estimate, FORMAT,
    LabelResult, LabelVsBaseline, ModelMean, ModelResult, Report, ReportConfig, StrategyReport,
    TaskKind,
};
use crate::sections::{EfficiencyCurve, EfficiencyPoint, ModelCalibration};
use groups::{Group, GroupKey, adjust_family, compare, estimate, group_statistics};
use subgroups::{SubgroupInput, has_attributes, subgroup_section};

pub(crate) use subgroups::MIN_POSITIVES;

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

/// Refuses fractions outside (0, 1] and cells given twice (the same
/// dataset, model, strategy, seed and training fraction; no fraction and
/// 1.0 are the same full training set).
fn check_cells(inputs: &[CellInput]) -> Result<(), ReportError> {
    let mut seen: HashMap<(&str, &str, &str, u64, u64), usize> = HashMap::new();
    for (k, input) in inputs.iter().enumerate() {
        let c = &input.cell;
        if let Some(f) = c.fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(ReportError::Config(format!(
                "cell {}: the training fraction must be in (0, 1], got {f}",
                c.describe()
            )));
        }
        let key = (
            c.dataset.as_str(),
            c.model.as_str(),
            c.strategy.as_str(),
            c.seed,
            c.training_fraction().to_bits(),
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
    Ok(())
}

pub(crate) fn build(inputs: Vec<CellInput>, config: &ReportConfig) -> Result<Report, ReportError> {
    check_config(config)?;
    check_cells(&inputs)?;
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
    // Table 2's family: every best-SSL-vs-comparator comparison it shows,
    // over all datasets and strategies.
    adjust_family(
        reports
            .iter_mut()
            .flat_map(|d| d.strategies.iter_mut())
            .filter_map(|s| s.best_ssl.as_mut()?.vs_baseline.as_mut()),
        config.alpha,
    );
    let model_means = model_means(&reports);
    Ok(Report {
        format: FORMAT.to_owned(),
        settings: config.clone(),
        method: notes::method_notes(config, &reports),
        datasets: reports,
        model_means,
        cells: summaries,
    })
}

/// The per-label facts shared by every model: positives, negatives, and
/// why a label has no AUC.
fn label_meta(test_set: &Predictions) -> Vec<(String, usize, usize, Option<String>)> {
    (0..test_set.labels.len())
        .map(|j| {
            let count = |v: bool| {
                test_set.targets[j]
                    .iter()
                    .filter(|t| **t == Some(v))
                    .count()
            };
            let (n_pos, n_neg) = (count(true), count(false));
            let reason = match (n_pos, n_neg) {
                (0, 0) => Some("no images with a known target".to_owned()),
                (0, _) => Some("no positive targets".to_owned()),
                (_, 0) => Some("no negative targets".to_owned()),
                _ => None,
            };
            (test_set.labels[j].clone(), n_pos, n_neg, reason)
        })
        .collect()
}

/// One group's result, compared with `base` when given.
fn model_result(
    g: &Group,
    base: Option<&Group>,
    calibration: Option<ModelCalibration>,
    meta: &[(String, usize, usize, Option<String>)],
    config: &ReportConfig,
) -> ModelResult {
    let macro_point = g.macro_point();
    let labels = meta
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
            compare(
                macro_point,
                &g.macro_reps,
                b.macro_point(),
                &b.macro_reps,
                b,
                config,
            )
        }),
        calibration,
    }
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
    // The baseline's full-data file fixes the image order when there is
    // one, so the baseline's own intervals are those `evaluate` writes for it.
    let reference_index = members
        .iter()
        .copied()
        .filter(|&k| loaded(k).is_some())
        .min_by_key(|&k| {
            let c = &inputs[k].cell;
            (c.model != config.baseline_model, !c.is_full_data())
        });
    let Some((reference_index, reference)) =
        reference_index.and_then(|k| loaded(k).map(|p| (k, p)))
    else {
        return Ok(None);
    };
    let reference_cell = &inputs[reference_index].cell;

    // The test set as the usable cells know it: the reference's images and
    // targets, with patient ids and attribute columns the reference lacks
    // taken from the first cell that has them; every later cell with patient
    // ids must agree with those (align checks it).
    let mut test_set = reference.clone();
    let mut patients_from: Option<usize> = None;
    let mut aligned: Vec<(usize, Predictions)> = Vec::new();
    for &k in members {
        let Some(p) = loaded(k) else { continue };
        match test_set.align(p) {
            Ok(a) => {
                if test_set.patients.is_none() && a.patients.is_some() {
                    test_set.patients.clone_from(&a.patients);
                    patients_from = Some(k);
                }
                for (column, values) in &a.attributes {
                    test_set
                        .attributes
                        .entry(column.clone())
                        .or_insert_with(|| values.clone());
                }
                aligned.push((k, a));
            }
            Err(e) => {
                let source = patients_from.map_or_else(String::new, |s| {
                    format!("; patient ids from {}", inputs[s].cell.describe())
                });
                summaries[k].status = CellStatus::Unusable;
                summaries[k].message = Some(format!(
                    "does not match the test set of {name} (reference: {}{source}): {e}",
                    reference_cell.describe()
                ));
            }
        }
    }

    if config.resample == Resample::Patient && test_set.patients.is_none() {
        return Err(ReportError::Config(format!(
            "dataset '{name}': the report resamples patients (resample = \"patient\") but no \
             predictions file of the dataset has a patient_id column; rerun its cells with a \
             cxrlearn that writes one, or set resample = \"auto\" or \"image\""
        )));
    }
    let resampler = Resampler::for_request(
        config.resample,
        test_set.ids.len(),
        test_set.patients.as_deref(),
    )?;

    let cell = |k: usize| &inputs[k].cell;
    let all_strategies = ordered(aligned.iter().map(|(k, _)| cell(*k).strategy.as_str()));
    let all_models = ordered(aligned.iter().map(|(k, _)| cell(*k).model.as_str()));
    // Groups in (strategy, model) grid order, fractions ascending (the full
    // training set last), seeds ascending.
    let mut keys: Vec<GroupKey> = Vec::new();
    for s in &all_strategies {
        for m in &all_models {
            let of = |k: usize| &cell(k).strategy == s && &cell(k).model == m;
            let mut fractions: Vec<f64> = aligned
                .iter()
                .filter(|(k, _)| of(*k))
                .map(|(k, _)| cell(*k).training_fraction())
                .collect();
            fractions.sort_by(f64::total_cmp);
            fractions.dedup();
            for fraction in fractions {
                let mut seeds: Vec<(u64, &Predictions)> = aligned
                    .iter()
                    .filter(|(k, _)| of(*k) && cell(*k).training_fraction() == fraction)
                    .map(|(k, p)| (cell(*k).seed, p))
                    .collect();
                seeds.sort_by_key(|(seed, _)| *seed);
                keys.push(GroupKey {
                    strategy: s.clone(),
                    model: m.clone(),
                    fraction,
                    seeds,
                });
            }
        }
    }
    let groups = group_statistics(&test_set, &resampler, &keys, config)?;
    let calibrations: Vec<Option<ModelCalibration>> = keys
        .iter()
        .map(|k| (k.fraction == 1.0).then(|| calibration::model_calibration(&test_set, &k.seeds)))
        .collect();
    let meta = label_meta(&test_set);
    let with_subgroups = has_attributes(&test_set);

    // Everything but label efficiency uses the full-data groups only.
    let strategies = ordered(
        groups
            .iter()
            .filter(|g| g.is_full_data())
            .map(|g| g.strategy.as_str()),
    );
    let mut strategy_reports = Vec::new();
    for s in &strategies {
        let comparator_strategy = match &config.baseline_strategy {
            BaselineStrategy::SameStrategy => s.as_str(),
            BaselineStrategy::Fixed(f) => f.as_str(),
        };
        let base_index = groups.iter().position(|g| {
            g.is_full_data()
                && g.strategy == comparator_strategy
                && g.model == config.baseline_model
        });
        let base = base_index.map(|b| &groups[b]);
        let mut models: Vec<ModelResult> = (0..groups.len())
            .filter(|&g| groups[g].is_full_data() && &groups[g].strategy == s)
            .map(|g| {
                let comparator = base.filter(|_| Some(g) != base_index);
                model_result(
                    &groups[g],
                    comparator,
                    calibrations[g].clone(),
                    &meta,
                    config,
                )
            })
            .collect();
        // The families of this (dataset, strategy): the labels of each
        // model, and the models compared with the comparator.
        for m in &mut models {
            adjust_family(
                m.labels.iter_mut().filter_map(|l| l.vs_baseline.as_mut()),
                config.alpha,
            );
        }
        adjust_family(
            models.iter_mut().filter_map(|m| m.vs_baseline.as_mut()),
            config.alpha,
        );
        let baseline = base_index
            .map(|b| model_result(&groups[b], None, calibrations[b].clone(), &meta, config));
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
        let subgroups = if with_subgroups {
            let find = |strategy: &str, model: &str| {
                keys.iter()
                    .find(|k| k.fraction == 1.0 && k.strategy == strategy && k.model == model)
            };
            let mut inputs = Vec::new();
            if let Some(k) = base.and_then(|b| find(&b.strategy, &b.model)) {
                inputs.push(SubgroupInput {
                    role: "baseline",
                    model: &k.model,
                    strategy: &k.strategy,
                    seeds: &k.seeds,
                });
            }
            if let Some(k) = best.and_then(|b| find(s, &b.model)) {
                inputs.push(SubgroupInput {
                    role: "best_ssl",
                    model: &k.model,
                    strategy: &k.strategy,
                    seeds: &k.seeds,
                });
            }
            subgroup_section(&test_set, &resampler, &inputs, config)?
        } else {
            Vec::new()
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
            subgroups,
        });
    }
    Ok(Some(DatasetReport {
        name: name.to_owned(),
        task: task_kind(&test_set),
        labels: test_set.labels.clone(),
        n_images: test_set.ids.len(),
        resample: resampler.unit(),
        n_clusters: resampler.n_clusters(),
        mean_cluster_size: resampler.mean_cluster_size(),
        strategies: strategy_reports,
        label_efficiency: label_efficiency(&groups, &all_strategies, &all_models, config),
    }))
}

/// Macro AUC against the training fraction, for the strategies with some
/// cell below the full training set; empty when there is none.
fn label_efficiency(
    groups: &[Group],
    strategies: &[String],
    models: &[String],
    config: &ReportConfig,
) -> Vec<EfficiencyCurve> {
    let mut out = Vec::new();
    for s in strategies {
        if !groups.iter().any(|g| &g.strategy == s && !g.is_full_data()) {
            continue;
        }
        for m in models {
            // Groups come fraction-ascending within (strategy, model).
            let points: Vec<EfficiencyPoint> = groups
                .iter()
                .filter(|g| &g.strategy == s && &g.model == m)
                .map(|g| EfficiencyPoint {
                    fraction: g.fraction,
                    seeds: g.seeds.clone(),
                    macro_avg: estimate(g.macro_point(), &g.macro_reps, config.confidence),
                })
                .collect();
            if !points.is_empty() {
                out.push(EfficiencyCurve {
                    strategy: s.clone(),
                    model: m.clone(),
                    points,
                });
            }
        }
    }
    out
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
            ..Predictions::default()
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
}
