//! Percentile bootstrap over images, for one model or paired against a
//! baseline, with DeLong's test alongside.
//!
//! Every replicate draws `n` images with replacement; all labels of a drawn
//! image come along together, and with a baseline both models are scored on
//! the same draw. Replicate `b` uses its own ChaCha8 stream (`seed`, stream
//! `b`), so the numbers do not depend on the thread count or scheduling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::delong::{compare, structural_components};
use crate::{Predictions, SortedScores, StatsError, percentile};

/// Settings of a bootstrap evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapConfig {
    /// Number of bootstrap replicates (0 skips the intervals).
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

/// Paired comparison of one label against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelComparison {
    /// The baseline's AUC.
    pub baseline_auc: Option<f64>,
    /// `auc - baseline_auc`.
    pub delta: Option<f64>,
    /// Percentile interval of the paired replicate differences.
    pub delta_ci: Option<[f64; 2]>,
    /// Two-sided DeLong p-value for equal AUCs.
    pub p_value_delong: Option<f64>,
    /// Two-sided bootstrap p-value for a zero difference (see [`bootstrap_p_value`]).
    pub p_value_bootstrap: Option<f64>,
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
    /// Per-label results in file order.
    pub labels: Vec<LabelEvaluation>,
    /// Macro average.
    #[serde(rename = "macro")]
    pub macro_avg: MacroEvaluation,
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

fn interval(values: &mut [f64], confidence: f64) -> Option<[f64; 2]> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Some([percentile(values, alpha), percentile(values, 1.0 - alpha)])
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}

/// One label prepared for replicates: scores sorted once per model.
struct PreparedLabel {
    model: SortedScores,
    baseline: Option<SortedScores>,
    targets: Vec<bool>,
    model_scores: Vec<f64>,
    baseline_scores: Vec<f64>,
}

fn prepare(
    model: &Predictions,
    baseline: Option<&Predictions>,
    j: usize,
) -> Result<PreparedLabel, StatsError> {
    let known: Vec<(u32, bool)> = model.targets[j]
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i as u32, t)))
        .collect();
    let sorted = |p: &Predictions| {
        SortedScores::new(known.iter().map(|&(i, t)| (i, p.scores[j][i as usize], t)))
    };
    let pick = |p: &Predictions| {
        known
            .iter()
            .map(|&(i, _)| p.scores[j][i as usize])
            .collect()
    };
    Ok(PreparedLabel {
        model: sorted(model)?,
        baseline: baseline.map(sorted).transpose()?,
        targets: known.iter().map(|&(_, t)| t).collect(),
        model_scores: pick(model),
        baseline_scores: baseline.map(pick).unwrap_or_default(),
    })
}

/// Evaluates `model` (and, paired, against `baseline`, which must already be
/// aligned with [`Predictions::align`]): per-label and macro AUC, percentile
/// bootstrap intervals over images, and DeLong p-values.
///
/// # Errors
/// [`StatsError::Config`] for a confidence outside (0, 1);
/// [`StatsError::Mismatch`] when the baseline is not aligned;
/// [`StatsError::NonFiniteScore`] for a missing score on a known target.
pub fn evaluate(
    model: &Predictions,
    baseline: Option<&Predictions>,
    config: &BootstrapConfig,
) -> Result<Evaluation, StatsError> {
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
    let n = model.ids.len();
    let prepared: Vec<PreparedLabel> = (0..model.labels.len())
        .map(|j| prepare(model, baseline, j))
        .collect::<Result<_, _>>()?;

    // replicates[b][j] = (model AUC, baseline AUC) of label j in replicate b.
    let replicates: Vec<Vec<(Option<f64>, Option<f64>)>> = (0..config.n_replicates)
        .into_par_iter()
        .map_init(Vec::new, |counts, b| {
            replicate_counts(config.seed, b as u64, n, counts);
            prepared
                .iter()
                .map(|p| {
                    let m = p.model.auc_counts(counts);
                    let bl = p.baseline.as_ref().and_then(|s| s.auc_counts(counts));
                    (m, bl)
                })
                .collect()
        })
        .collect();

    let mut labels = Vec::with_capacity(prepared.len());
    for (j, p) in prepared.iter().enumerate() {
        let auc = p.model.auc();
        let reason = auc
            .is_none()
            .then(|| match (p.model.n_pos(), p.model.n_neg()) {
                (0, 0) => "no images with a known target".to_owned(),
                (0, _) => "no positive targets".to_owned(),
                _ => "no negative targets".to_owned(),
            });
        let mut values: Vec<f64> = replicates.iter().filter_map(|r| r[j].0).collect();
        let n_valid = values.len();
        let ci = if auc.is_some() {
            interval(&mut values, config.confidence)
        } else {
            None
        };
        let comparison = p.baseline.as_ref().map(|base| {
            let baseline_auc = base.auc();
            let delta = auc.zip(baseline_auc).map(|(a, b)| a - b);
            let mut deltas: Vec<f64> = replicates
                .iter()
                .filter_map(|r| r[j].0.zip(r[j].1).map(|(a, b)| a - b))
                .collect();
            let p_value_bootstrap = delta.and_then(|_| bootstrap_p_value(&deltas));
            let delta_ci = delta.and_then(|_| interval(&mut deltas, config.confidence));
            let p_value_delong = delta.and_then(|_| {
                let a = structural_components(&p.targets, &p.model_scores).ok()?;
                let b = structural_components(&p.targets, &p.baseline_scores).ok()?;
                Some(compare(&a, &b).p_value)
            });
            LabelComparison {
                baseline_auc,
                delta,
                delta_ci,
                p_value_delong,
                p_value_bootstrap,
            }
        });
        labels.push(LabelEvaluation {
            label: model.labels[j].clone(),
            n_pos: p.model.n_pos(),
            n_neg: p.model.n_neg(),
            auc,
            reason,
            ci,
            n_valid_replicates: n_valid,
            comparison,
        });
    }

    let macro_auc = mean(labels.iter().filter_map(|l| l.auc));
    let mut macro_values: Vec<f64> = replicates
        .iter()
        .filter_map(|r| mean(r.iter().filter_map(|v| v.0)))
        .collect();
    let macro_ci = macro_auc.and_then(|_| interval(&mut macro_values, config.confidence));
    let macro_comparison = baseline.map(|_| {
        let baseline_auc = mean(
            labels
                .iter()
                .filter_map(|l| l.comparison.as_ref().and_then(|c| c.baseline_auc)),
        );
        let delta = macro_auc.zip(baseline_auc).map(|(a, b)| a - b);
        // Both models share targets, so a label is valid for both or neither.
        let mut deltas: Vec<f64> = replicates
            .iter()
            .filter_map(|r| {
                let a = mean(r.iter().filter_map(|v| v.0))?;
                let b = mean(r.iter().filter_map(|v| v.1))?;
                Some(a - b)
            })
            .collect();
        MacroComparison {
            baseline_auc,
            delta,
            p_value_bootstrap: delta.and_then(|_| bootstrap_p_value(&deltas)),
            delta_ci: delta.and_then(|_| interval(&mut deltas, config.confidence)),
        }
    });
    Ok(Evaluation {
        n_bootstrap: config.n_replicates,
        seed: config.seed,
        confidence: config.confidence,
        n_images: n,
        macro_avg: MacroEvaluation {
            auc: macro_auc,
            ci: macro_ci,
            n_labels: labels.iter().filter(|l| l.auc.is_some()).count(),
            comparison: macro_comparison,
        },
        labels,
    })
}
