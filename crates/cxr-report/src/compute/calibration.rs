//! Calibration of one (dataset, strategy, model) group: the mean over
//! labels of the Brier score and the ECE, computed by
//! `cxr_stats::calibration` on the test images with a known target, and the
//! reliability diagram pooled over the labels.

use cxr_stats::Predictions;
use cxr_stats::calibration::{BINS, CalibrationData};

use crate::compute::groups::mean;
use crate::sections::{ExcludedLabel, ModelCalibration, ReliabilityPoint};

/// Why a label's scores (in some seed) cannot be scored for calibration;
/// `None` when they can.
fn unusable_reason(scores: &[f64]) -> Option<String> {
    if scores.is_empty() {
        return Some("no images with a known target".into());
    }
    // Checked here rather than relying on the library's message, so the
    // report can state the reason without quoting numbers twice (the
    // range goes to `score_range`).
    if scores.iter().any(|s| !(0.0..=1.0).contains(s)) {
        return Some("scores are not probabilities (outside [0, 1])".into());
    }
    None
}

/// The calibration summary of one group: `seeds` are its aligned
/// predictions, `test_set` gives the targets.
pub(crate) fn model_calibration(
    test_set: &Predictions,
    seeds: &[(u64, &Predictions)],
) -> ModelCalibration {
    let mut excluded = Vec::new();
    // usable[label] = the label's data in every seed
    let mut usable: Vec<Vec<CalibrationData>> = Vec::new();
    let mut out_of_range = false;
    for (j, label) in test_set.labels.iter().enumerate() {
        let mut per_seed = Vec::with_capacity(seeds.len());
        let mut reason = None;
        for (_, p) in seeds {
            let samples: Vec<(u32, bool, f64)> = test_set.targets[j]
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (i as u32, t, p.scores[j][i])))
                .collect();
            let scores: Vec<f64> = samples.iter().map(|s| s.2).collect();
            if let Some(r) = unusable_reason(&scores) {
                out_of_range |= !scores.is_empty();
                reason = Some(r);
                break;
            }
            match CalibrationData::new(samples) {
                Ok(d) => per_seed.push(d),
                Err(e) => {
                    reason = Some(e.to_string());
                    break;
                }
            }
        }
        match reason {
            Some(reason) => excluded.push(ExcludedLabel {
                label: label.clone(),
                reason,
            }),
            None => usable.push(per_seed),
        }
    }
    let per_label = |f: &dyn Fn(&CalibrationData) -> Option<f64>| {
        mean(
            usable
                .iter()
                .filter_map(|seeds| mean(seeds.iter().filter_map(f))),
        )
    };
    let brier = per_label(&|d| d.brier(None));
    let ece = per_label(&|d| d.ece(None));
    let score_range = out_of_range.then(|| score_range(test_set, seeds));
    ModelCalibration {
        brier,
        ece,
        n_labels: usable.len(),
        excluded,
        score_range,
        reliability: if usable.is_empty() {
            Vec::new()
        } else {
            pooled_reliability(usable.iter().flatten())
        },
    }
}

/// The reliability bins of several labels (and seeds) pooled: counts
/// added, means weighted by the counts.
pub(crate) fn pooled_reliability<'a>(
    data: impl Iterator<Item = &'a CalibrationData>,
) -> Vec<ReliabilityPoint> {
    // (n, sum of scores, positives) per bin
    let mut sums = [(0usize, 0.0f64, 0.0f64); BINS];
    let mut edges = [(0.0f64, 0.0f64); BINS];
    for d in data {
        for (k, bin) in d.reliability().iter().enumerate().take(BINS) {
            edges[k] = (bin.lo, bin.hi);
            let (Some(s), Some(y)) = (bin.mean_score, bin.fraction_positive) else {
                continue;
            };
            let n = bin.n as f64;
            sums[k].0 += bin.n;
            sums[k].1 += s * n;
            // A count of positives: an integer, so rounding removes the
            // last-bit error of the fraction.
            sums[k].2 += (y * n).round();
        }
    }
    sums.iter()
        .zip(edges)
        .map(|(&(n, s, y), (lo, hi))| ReliabilityPoint {
            lo,
            hi,
            n,
            mean_score: (n > 0).then(|| s / n as f64),
            fraction_positive: (n > 0).then(|| y / n as f64),
        })
        .collect()
}

/// Lowest and highest score on images with a known target, over every
/// label and seed.
fn score_range(test_set: &Predictions, seeds: &[(u64, &Predictions)]) -> [f64; 2] {
    let mut range = [f64::INFINITY, f64::NEG_INFINITY];
    for (_, p) in seeds {
        for (j, targets) in test_set.targets.iter().enumerate() {
            for (i, t) in targets.iter().enumerate() {
                if t.is_some() {
                    range = [range[0].min(p.scores[j][i]), range[1].max(p.scores[j][i])];
                }
            }
        }
    }
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(scores: Vec<Vec<f64>>, targets: Vec<Vec<Option<bool>>>) -> Predictions {
        let n = scores[0].len();
        Predictions {
            ids: (0..n).map(|i| i.to_string()).collect(),
            labels: (0..scores.len()).map(|j| format!("L{j}")).collect(),
            scores,
            targets,
            ..Predictions::default()
        }
    }

    #[test]
    fn means_over_probability_labels_and_reasons_for_others() {
        let (t, f) = (Some(true), Some(false));
        let p = preds(
            vec![
                vec![0.9, 0.2, 0.6, 0.1],
                vec![1.5, -0.5, 0.3, 0.2],
                vec![0.3, 0.4, 0.5, 0.6],
            ],
            vec![vec![t, f, t, f], vec![t, f, f, t], vec![None; 4]],
        );
        let c = model_calibration(&p, &[(0, &p)]);
        assert_eq!(c.n_labels, 1);
        assert_eq!(c.excluded.len(), 2);
        assert!(c.excluded[0].reason.contains("not probabilities"));
        assert_eq!(c.excluded[1].reason, "no images with a known target");
        assert_eq!(c.score_range, Some([-0.5, 1.5]));
        // Label 0 alone: Brier (0.01 + 0.04 + 0.16 + 0.01) / 4.
        assert!((c.brier.unwrap() - 0.055).abs() < 1e-15);
        let pooled: usize = c.reliability.iter().map(|b| b.n).sum();
        assert_eq!(pooled, 4);
        // Probabilities everywhere: no range is recorded.
        let q = preds(vec![vec![0.9, 0.2]], vec![vec![t, f]]);
        assert_eq!(model_calibration(&q, &[(0, &q)]).score_range, None);
    }
}
