//! A complete evaluation of one model's predictions, alone or paired against
//! a baseline scored on the same images: per-label and macro AUC with
//! percentile bootstrap intervals (resampling patients whenever they are
//! known, see [`crate::resample`]), paired differences with bootstrap and
//! DeLong p-values (Obuchowski's clustered DeLong when resampling patients),
//! Holm-adjusted p-values across the labels, optional Bonferroni
//! simultaneous intervals, calibration (Brier, ECE, ACE; before and after
//! Platt scaling), and results per subgroup.
//!
//! Every statistic with an interval is computed on the same replicates, so a
//! replicate's model and baseline values, calibration and subgroups all come
//! from one draw.

use serde::Serialize;

use crate::bootstrap::{BootstrapConfig, MAX_REPLICATES, bootstrap_p_value, interval, mean};
use crate::calibration::{BINS, CalibrationData, Platt, fit_platt};
use crate::delong::{compare, structural_components};
use crate::multiplicity::{bonferroni_confidence, holm};
use crate::obuchowski::{clustered_components, clustered_test};
use crate::resample::{Resample, Resampler, Statistic, Unit, replicate_values};
use crate::subgroups::{
    SubgroupColumn, SubgroupGap, SubgroupOptions, SubgroupPlan, SubgroupResult,
};
use crate::{Predictions, SortedScores, StatsError};

/// Everything an evaluation can do beyond the bootstrap settings.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// Replicates, seed, coverage.
    pub bootstrap: BootstrapConfig,
    /// The unit replicates resample.
    pub resample: Resample,
    /// Bonferroni intervals over the labels, so that they hold simultaneously.
    pub simultaneous: bool,
    /// Validation predictions (and their name) to fit Platt scaling on.
    pub calibrate_on: Option<(&'a Predictions, String)>,
    /// Results per subgroup.
    pub subgroups: Option<SubgroupOptions<'a>>,
}

/// Calibration of one label's probability scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Brier score.
    pub brier: f64,
    /// Expected calibration error, 15 equal-width bins.
    pub ece: f64,
    /// Adaptive calibration error, 15 equal-mass bins.
    pub ace: f64,
    /// Bootstrap interval of the Brier score.
    pub brier_ci: Option<[f64; 2]>,
    /// Bootstrap interval of the ECE.
    pub ece_ci: Option<[f64; 2]>,
    /// Bins of the ECE and ACE.
    pub bins: usize,
    /// The Platt scaling applied first (only in `calibration_after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platt: Option<Platt>,
}

/// Paired comparison of one label against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelComparison {
    /// The baseline's AUC.
    pub baseline_auc: Option<f64>,
    /// `auc - baseline_auc`.
    pub delta: Option<f64>,
    /// Percentile interval of the paired replicate differences.
    pub delta_ci: Option<[f64; 2]>,
    /// Two-sided DeLong p-value for equal AUCs (images as independent).
    pub p_value_delong: Option<f64>,
    /// Two-sided bootstrap p-value for a zero difference, in the resampled unit.
    pub p_value_bootstrap: Option<f64>,
    /// `p_value_bootstrap` Holm-adjusted across the labels of the evaluation.
    pub p_value_holm: Option<f64>,
    /// Obuchowski's clustered DeLong p-value (patients as the unit), when
    /// resampling by patient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_delong_clustered: Option<f64>,
}

/// Results for one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelEvaluation {
    /// Label name.
    pub label: String,
    /// Images with a positive target.
    pub n_pos: usize,
    /// Images with a negative target.
    pub n_neg: usize,
    /// The AUC on all images with a known target; `None` with a single class.
    pub auc: Option<f64>,
    /// Why `auc` is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Percentile bootstrap interval of the AUC.
    pub ci: Option<[f64; 2]>,
    /// Replicates in which this label had both classes (the others are left
    /// out of its interval).
    pub n_valid_replicates: usize,
    /// Calibration of the scores; `None` (with `calibration_reason`) when they
    /// are not probabilities.
    pub calibration: Option<Calibration>,
    /// Why `calibration` is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_reason: Option<String>,
    /// Calibration after Platt scaling fitted on validation predictions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_after: Option<Calibration>,
    /// Why `calibration_after` is missing although asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_after_reason: Option<String>,
    /// Present only when a baseline was given.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<LabelComparison>,
}

/// Paired comparison of the macro AUC against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MacroComparison {
    /// The baseline's macro AUC.
    pub baseline_auc: Option<f64>,
    /// `auc - baseline_auc`.
    pub delta: Option<f64>,
    /// Percentile interval of the paired replicate differences.
    pub delta_ci: Option<[f64; 2]>,
    /// Two-sided bootstrap p-value for a zero difference.
    pub p_value_bootstrap: Option<f64>,
}

/// The unweighted mean AUC over labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MacroEvaluation {
    /// Mean AUC over the labels that have both classes.
    pub auc: Option<f64>,
    /// Percentile interval; each replicate averages the labels having both
    /// classes in that replicate.
    pub ci: Option<[f64; 2]>,
    /// Number of labels in the point estimate.
    pub n_labels: usize,
    /// Present only when a baseline was given.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<MacroComparison>,
}

/// Which p-values were adjusted, and over which family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Multiplicity {
    /// `"holm"`.
    pub method: String,
    /// The family, in words.
    pub family: String,
    /// The p-value that was adjusted.
    pub adjusts: String,
}

/// A complete evaluation, as written to `evaluation.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Number of bootstrap replicates.
    pub n_bootstrap: usize,
    /// Seed of the replicate draws.
    pub seed: u64,
    /// Interval coverage.
    pub confidence: f64,
    /// Number of images.
    pub n_images: usize,
    /// The unit the replicates resampled.
    pub resample: Unit,
    /// Independent units (patients, or images when resampling images).
    pub n_clusters: usize,
    /// Mean images per unit.
    pub mean_cluster_size: f64,
    /// Bonferroni intervals over the labels.
    pub simultaneous: bool,
    /// Coverage of each per-label interval (`confidence`, or its Bonferroni
    /// level with `simultaneous`); the macro interval keeps `confidence`.
    pub interval_confidence: f64,
    /// The p-value adjustment (with a baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplicity: Option<Multiplicity>,
    /// Per-label results in file order.
    pub labels: Vec<LabelEvaluation>,
    /// Macro average.
    #[serde(rename = "macro")]
    pub macro_avg: MacroEvaluation,
    /// Where the subgroup thresholds come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_source: Option<String>,
    /// The subgroup columns and their values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgroup_columns: Option<Vec<SubgroupColumn>>,
    /// Results per (column, value, label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgroups: Option<Vec<SubgroupResult>>,
    /// Best-to-worst gaps per (column, label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgroup_gaps: Option<Vec<SubgroupGap>>,
}

/// One label prepared for the replicates.
struct Prepared {
    model: SortedScores,
    baseline: Option<SortedScores>,
    /// Test-set indices of the images with a known target.
    index: Vec<u32>,
    targets: Vec<bool>,
    model_scores: Vec<f64>,
    baseline_scores: Vec<f64>,
    calibration: Result<CalibrationData, StatsError>,
    after: Option<Result<(Platt, CalibrationData), StatsError>>,
}

fn prepare(
    model: &Predictions,
    baseline: Option<&Predictions>,
    validation: Option<&Predictions>,
    j: usize,
) -> Result<Prepared, StatsError> {
    let known: Vec<(u32, bool)> = model.targets[j]
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i as u32, t)))
        .collect();
    let sorted = |p: &Predictions| {
        SortedScores::new(known.iter().map(|&(i, t)| (i, p.scores[j][i as usize], t)))
    };
    let pick = |p: &Predictions| -> Vec<f64> {
        known
            .iter()
            .map(|&(i, _)| p.scores[j][i as usize])
            .collect()
    };
    let model_scores = pick(model);
    let calibration = CalibrationData::new(
        known
            .iter()
            .zip(&model_scores)
            .map(|(&(i, t), &s)| (i, t, s)),
    );
    let after = validation.map(|val| {
        let vj = val
            .labels
            .iter()
            .position(|l| *l == model.labels[j])
            .expect("labels checked");
        let (vt, vs): (Vec<bool>, Vec<f64>) = (0..val.ids.len())
            .filter_map(|i| val.targets[vj][i].map(|t| (t, val.scores[vj][i])))
            .unzip();
        let platt = fit_platt(&vt, &vs)?;
        let data = CalibrationData::new(
            known
                .iter()
                .zip(&model_scores)
                .map(|(&(i, t), &s)| (i, t, platt.apply(s))),
        )?;
        Ok((platt, data))
    });
    Ok(Prepared {
        model: sorted(model)?,
        baseline: baseline.map(sorted).transpose()?,
        index: known.iter().map(|&(i, _)| i).collect(),
        targets: known.iter().map(|&(_, t)| t).collect(),
        baseline_scores: baseline.map(pick).unwrap_or_default(),
        model_scores,
        calibration,
        after,
    })
}

/// Indices into the replicate statistics of one label.
#[derive(Default, Clone, Copy)]
struct Slots {
    model: usize,
    baseline: Option<usize>,
    calibration: Option<[usize; 2]>,
    after: Option<[usize; 2]>,
}

/// Evaluates `model` (and, paired, against `baseline`, which must already be
/// aligned with [`Predictions::align`]) with the default options: patients
/// resampled when the predictions know them, images otherwise.
///
/// # Errors
/// As [`evaluate_with`].
pub fn evaluate(
    model: &Predictions,
    baseline: Option<&Predictions>,
    config: &BootstrapConfig,
) -> Result<Evaluation, StatsError> {
    evaluate_with(
        model,
        baseline,
        &Options {
            bootstrap: *config,
            ..Options::default()
        },
    )
}

/// Evaluates `model`, optionally paired against an aligned `baseline`.
///
/// # Errors
/// [`StatsError::TooManyReplicates`] beyond [`MAX_REPLICATES`];
/// [`StatsError::Config`] for a confidence outside (0, 1), patient
/// resampling without patient ids, or a subgroup column the predictions lack;
/// [`StatsError::Mismatch`] when the baseline is not aligned or a validation
/// file's labels differ; [`StatsError::NonFiniteScore`] for a missing score
/// on a known target.
pub fn evaluate_with(
    model: &Predictions,
    baseline: Option<&Predictions>,
    options: &Options,
) -> Result<Evaluation, StatsError> {
    let config = &options.bootstrap;
    // Before anything is drawn: the replicates' statistics are all kept.
    if config.n_replicates > MAX_REPLICATES {
        return Err(StatsError::TooManyReplicates {
            requested: config.n_replicates,
            max: MAX_REPLICATES,
        });
    }
    if !(config.confidence > 0.0 && config.confidence < 1.0) {
        return Err(StatsError::Config(format!(
            "confidence must be strictly between 0 and 1, got {}",
            config.confidence
        )));
    }
    if let Some(b) = baseline
        && (b.ids != model.ids || b.labels != model.labels || b.targets != model.targets)
    {
        return Err(StatsError::Mismatch(
            "baseline is not aligned with the model predictions".into(),
        ));
    }
    if let Some((val, name)) = &options.calibrate_on {
        model.check_same_labels(val, name)?;
    }
    let n = model.ids.len();
    let patients = model
        .patients
        .as_deref()
        .or_else(|| baseline.and_then(|b| b.patients.as_deref()));
    let resampler = Resampler::for_request(options.resample, n, patients)?;
    let validation = options.calibrate_on.as_ref().map(|(v, _)| *v);
    let prepared: Vec<Prepared> = (0..model.labels.len())
        .map(|j| prepare(model, baseline, validation, j))
        .collect::<Result<_, _>>()?;
    let subgroup_plan = options
        .subgroups
        .as_ref()
        .map(|o| SubgroupPlan::new(model, o))
        .transpose()?;

    // Every statistic of every replicate, from one draw per replicate.
    let mut stats: Vec<Statistic<'_>> = Vec::new();
    let mut slots = vec![Slots::default(); prepared.len()];
    for (p, slot) in prepared.iter().zip(&mut slots) {
        slot.model = stats.len();
        stats.push(Box::new(|c: &[u32]| p.model.auc_counts(c)));
        if let Some(b) = &p.baseline {
            slot.baseline = Some(stats.len());
            stats.push(Box::new(|c: &[u32]| b.auc_counts(c)));
        }
        if let Ok(d) = &p.calibration {
            slot.calibration = Some([stats.len(), stats.len() + 1]);
            stats.push(Box::new(|c: &[u32]| d.brier(Some(c))));
            stats.push(Box::new(|c: &[u32]| d.ece(Some(c))));
        }
        if let Some(Ok((_, d))) = &p.after {
            slot.after = Some([stats.len(), stats.len() + 1]);
            stats.push(Box::new(|c: &[u32]| d.brier(Some(c))));
            stats.push(Box::new(|c: &[u32]| d.ece(Some(c))));
        }
    }
    let subgroup_start = stats.len();
    if let Some(plan) = &subgroup_plan {
        stats.extend(plan.statistics());
    }
    let values = replicate_values(&resampler, config.seed, config.n_replicates, &stats);
    drop(stats);

    let n_with_auc = prepared.iter().filter(|p| p.model.auc().is_some()).count();
    let label_confidence = if options.simultaneous {
        bonferroni_confidence(config.confidence, n_with_auc)
    } else {
        config.confidence
    };
    let ci_of = |k: usize| {
        let mut v: Vec<f64> = values[k].iter().flatten().copied().collect();
        interval(&mut v, label_confidence)
    };
    let calibration = |d: &CalibrationData, slot: [usize; 2], platt: Option<Platt>| Calibration {
        brier: d.brier(None).unwrap_or(f64::NAN),
        ece: d.ece(None).unwrap_or(f64::NAN),
        ace: d.ace().unwrap_or(f64::NAN),
        brier_ci: ci_of(slot[0]),
        ece_ci: ci_of(slot[1]),
        bins: BINS,
        platt,
    };

    let mut labels = Vec::with_capacity(prepared.len());
    for (j, (p, slot)) in prepared.iter().zip(&slots).enumerate() {
        let auc = p.model.auc();
        let reason = auc
            .is_none()
            .then(|| match (p.model.n_pos(), p.model.n_neg()) {
                (0, 0) => "no images with a known target".to_owned(),
                (0, _) => "no positive targets".to_owned(),
                _ => "no negative targets".to_owned(),
            });
        let n_valid = values[slot.model].iter().flatten().count();
        let ci = if auc.is_some() {
            ci_of(slot.model)
        } else {
            None
        };
        let comparison = p.baseline.as_ref().map(|base| {
            let b_slot = slot.baseline.expect("a baseline slot");
            let baseline_auc = base.auc();
            let delta = auc.zip(baseline_auc).map(|(a, b)| a - b);
            let mut deltas: Vec<f64> = values[slot.model]
                .iter()
                .zip(&values[b_slot])
                .filter_map(|(a, b)| a.zip(*b).map(|(a, b)| a - b))
                .collect();
            let p_value_bootstrap = delta.and_then(|_| bootstrap_p_value(&deltas));
            let delta_ci = delta.and_then(|_| interval(&mut deltas, label_confidence));
            let p_value_delong = delta.and_then(|_| {
                let a = structural_components(&p.targets, &p.model_scores).ok()?;
                let b = structural_components(&p.targets, &p.baseline_scores).ok()?;
                Some(compare(&a, &b).p_value)
            });
            let p_value_delong_clustered = resampler
                .cluster_of()
                .and_then(|of| delta.and_then(|_| clustered_p(p, of)));
            LabelComparison {
                baseline_auc,
                delta,
                delta_ci,
                p_value_delong,
                p_value_bootstrap,
                p_value_holm: None,
                p_value_delong_clustered,
            }
        });
        let (calibration_value, calibration_reason) = match (&p.calibration, slot.calibration) {
            (Ok(d), Some(s)) => (Some(calibration(d, s, None)), None),
            (Err(e), _) => (None, Some(e.to_string())),
            (Ok(_), None) => unreachable!("a calibration slot for calibratable scores"),
        };
        let (calibration_after, calibration_after_reason) = match (&p.after, slot.after) {
            (Some(Ok((platt, d))), Some(s)) => (Some(calibration(d, s, Some(*platt))), None),
            (Some(Err(e)), _) => (None, Some(e.to_string())),
            _ => (None, None),
        };
        labels.push(LabelEvaluation {
            label: model.labels[j].clone(),
            n_pos: p.model.n_pos(),
            n_neg: p.model.n_neg(),
            auc,
            reason,
            ci,
            n_valid_replicates: n_valid,
            calibration: calibration_value,
            calibration_reason,
            calibration_after,
            calibration_after_reason,
            comparison,
        });
    }
    // Holm over the labels' bootstrap p-values.
    let raw: Vec<Option<f64>> = labels
        .iter()
        .map(|l| l.comparison.as_ref().and_then(|c| c.p_value_bootstrap))
        .collect();
    let adjusted = holm(&raw);
    for (l, adj) in labels.iter_mut().zip(adjusted) {
        if let Some(c) = &mut l.comparison {
            c.p_value_holm = adj;
        }
    }
    let family = raw.iter().flatten().count();
    let multiplicity = baseline.map(|_| Multiplicity {
        method: "holm".into(),
        family: format!("the {family} labels of this evaluation with a p-value"),
        adjusts: "p_value_bootstrap".into(),
    });

    let macro_avg = macro_evaluation(&labels, &values, &slots, config.confidence, baseline);
    let (subgroup_columns, subgroups, subgroup_gaps, threshold_source) = match &subgroup_plan {
        Some(plan) => {
            let (results, gaps) = plan.finish(model, &values[subgroup_start..], config.confidence);
            (
                Some(plan.columns().to_vec()),
                Some(results),
                Some(gaps),
                Some(plan.threshold_source.clone()),
            )
        }
        None => (None, None, None, None),
    };
    Ok(Evaluation {
        n_bootstrap: config.n_replicates,
        seed: config.seed,
        confidence: config.confidence,
        n_images: n,
        resample: resampler.unit(),
        n_clusters: resampler.n_clusters(),
        mean_cluster_size: resampler.mean_cluster_size(),
        simultaneous: options.simultaneous,
        interval_confidence: label_confidence,
        multiplicity,
        labels,
        macro_avg,
        threshold_source,
        subgroup_columns,
        subgroups,
        subgroup_gaps,
    })
}

/// Obuchowski's clustered DeLong p-value of one label, patients renumbered
/// among its images with a known target.
fn clustered_p(p: &Prepared, cluster_of: &[u32]) -> Option<f64> {
    let mut renumber = std::collections::HashMap::new();
    let cluster: Vec<u32> = p
        .index
        .iter()
        .map(|&i| {
            let next = renumber.len() as u32;
            *renumber.entry(cluster_of[i as usize]).or_insert(next)
        })
        .collect();
    let k = renumber.len();
    let a = clustered_components(&p.targets, &p.model_scores, &cluster, k).ok()?;
    let b = clustered_components(&p.targets, &p.baseline_scores, &cluster, k).ok()?;
    Some(clustered_test(&a, &b).1)
}

fn macro_evaluation(
    labels: &[LabelEvaluation],
    values: &[Vec<Option<f64>>],
    slots: &[Slots],
    confidence: f64,
    baseline: Option<&Predictions>,
) -> MacroEvaluation {
    let n_replicates = values.first().map_or(0, Vec::len);
    let replicate_mean = |b: usize, pick: &dyn Fn(&Slots) -> Option<usize>| {
        mean(slots.iter().filter_map(|s| values[pick(s)?][b]))
    };
    let macro_auc = mean(labels.iter().filter_map(|l| l.auc));
    let model_reps: Vec<Option<f64>> = (0..n_replicates)
        .map(|b| replicate_mean(b, &|s| Some(s.model)))
        .collect();
    let mut macro_values: Vec<f64> = model_reps.iter().flatten().copied().collect();
    let macro_ci = macro_auc.and_then(|_| interval(&mut macro_values, confidence));
    let comparison = baseline.map(|_| {
        let baseline_auc = mean(
            labels
                .iter()
                .filter_map(|l| l.comparison.as_ref().and_then(|c| c.baseline_auc)),
        );
        let delta = macro_auc.zip(baseline_auc).map(|(a, b)| a - b);
        // Both models share targets, so a label is valid for both or neither.
        let mut deltas: Vec<f64> = (0..n_replicates)
            .filter_map(|b| {
                let a = model_reps[b]?;
                let c = replicate_mean(b, &|s| s.baseline)?;
                Some(a - c)
            })
            .collect();
        MacroComparison {
            baseline_auc,
            delta,
            p_value_bootstrap: delta.and_then(|_| bootstrap_p_value(&deltas)),
            delta_ci: delta.and_then(|_| interval(&mut deltas, confidence)),
        }
    });
    MacroEvaluation {
        auc: macro_auc,
        ci: macro_ci,
        n_labels: labels.iter().filter(|l| l.auc.is_some()).count(),
        comparison,
    }
}
