//! Results per subgroup (sex, age band, view, site, or any per-image column)
//! and the gaps between subgroups.
//!
//! Per (column, value, label): the AUC with the evaluation's bootstrap
//! interval (the same replicates, restricted to the subgroup's images), and
//! the true and false positive rates at one threshold per label, chosen on
//! validation predictions (Youden's J) or, when none are given, at the test
//! set's own overall Youden point (optimistic, and said so). Per (column,
//! label): the AUC gap between the best and the worst subgroup, and the false
//! negative rate gap (underdiagnosis), each with the percentile interval of
//! its replicate differences. The pair is chosen on the point estimates, so
//! the interval does not account for that choice.

use serde::Serialize;

use crate::bootstrap::interval;
use crate::resample::Statistic;
use crate::{Predictions, SortedScores, StatsError};

/// What to break results down by.
#[derive(Debug, Clone)]
pub struct SubgroupOptions<'a> {
    /// Per-image columns of the predictions (`sex`, `age`, `view`, `site`, ...).
    pub columns: Vec<String>,
    /// Age band edges in years (`[40, 60, 80]` gives `<40`, `40-60`, `60-80`, `>=80`).
    pub age_bins: Vec<f64>,
    /// Validation predictions whose Youden points set each label's threshold,
    /// and their name for messages.
    pub thresholds_from: Option<(&'a Predictions, String)>,
    /// Fewest positives and negatives a subgroup needs for an AUC.
    pub min_count: usize,
}

/// The default age bands.
pub const AGE_BINS: [f64; 3] = [40.0, 60.0, 80.0];

/// One (column, value, label) result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubgroupResult {
    /// The column.
    pub column: String,
    /// The subgroup (an age band for `age`).
    pub value: String,
    /// The label.
    pub label: String,
    /// Images with a known target.
    pub n: usize,
    /// Positives among them.
    pub n_pos: usize,
    /// AUC; `None` with `reason`.
    pub auc: Option<f64>,
    /// Bootstrap interval of the AUC.
    pub ci: Option<[f64; 2]>,
    /// True positive rate at `threshold` (`None` without positives).
    pub tpr: Option<f64>,
    /// False positive rate at `threshold` (`None` without negatives).
    pub fpr: Option<f64>,
    /// The label's threshold: score >= threshold is called positive.
    pub threshold: Option<f64>,
    /// Why `auc` is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The spread between subgroups of one column for one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubgroupGap {
    /// The column.
    pub column: String,
    /// The label.
    pub label: String,
    /// Best minus worst subgroup AUC.
    pub gap: f64,
    /// Percentile interval of the replicate differences (same pair).
    pub gap_ci: Option<[f64; 2]>,
    /// Subgroup with the lowest AUC.
    pub worst: String,
    /// Subgroup with the highest AUC.
    pub best: String,
    /// Highest minus lowest false negative rate at the threshold.
    pub fnr_gap: Option<f64>,
    /// Its interval.
    pub fnr_gap_ci: Option<[f64; 2]>,
    /// Subgroup with the highest false negative rate (most underdiagnosed).
    pub fnr_worst: Option<String>,
    /// Subgroup with the lowest.
    pub fnr_best: Option<String>,
}

/// A column's subgroups and its images of unknown value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubgroupColumn {
    /// The column.
    pub column: String,
    /// Its subgroups, in order.
    pub values: Vec<String>,
    /// Images left out because their value is unknown.
    pub n_unknown: usize,
}

fn format_edge(e: f64) -> String {
    if e.fract() == 0.0 {
        format!("{e:.0}")
    } else {
        format!("{e}")
    }
}

/// The age band of `age` for band edges `bins` (ascending).
pub fn age_band(age: f64, bins: &[f64]) -> String {
    match bins.iter().position(|&e| age < e) {
        Some(0) => format!("<{}", format_edge(bins[0])),
        Some(k) => format!("{}-{}", format_edge(bins[k - 1]), format_edge(bins[k])),
        None => format!(">={}", format_edge(bins[bins.len() - 1])),
    }
}

/// Each image's subgroup in `column` (`None` when unknown; ages grouped into
/// the bands of `age_bins`, an age that does not parse being unknown) and
/// the subgroups in report order: age bands by age, other values sorted.
pub fn group_values(
    values: &[Option<String>],
    column: &str,
    age_bins: &[f64],
) -> (Vec<Option<String>>, Vec<String>) {
    let group: Vec<Option<String>> = values
        .iter()
        .map(|v| {
            let v = v.as_deref()?;
            if column == "age" {
                v.parse::<f64>()
                    .ok()
                    .filter(|a| a.is_finite())
                    .map(|a| age_band(a, age_bins))
            } else {
                Some(v.to_owned())
            }
        })
        .collect();
    let present: std::collections::BTreeSet<&str> =
        group.iter().flatten().map(String::as_str).collect();
    let names = if column == "age" {
        std::iter::once(f64::NEG_INFINITY)
            .chain(age_bins.iter().copied())
            .map(|e| age_band(e, age_bins))
            .filter(|b| present.contains(b.as_str()))
            .collect()
    } else {
        // BTreeSet order: sorted.
        present.iter().map(|s| (*s).to_owned()).collect()
    };
    (group, names)
}

/// The threshold maximising Youden's J (TPR - FPR), calling `score >= t`
/// positive; among equal J the highest threshold. `None` without both classes.
pub fn youden_threshold(targets: &[bool], scores: &[f64]) -> Option<f64> {
    let n_pos = targets.iter().filter(|&&t| t).count() as f64;
    let n_neg = targets.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut best: Option<(f64, f64)> = None;
    for (k, &i) in order.iter().enumerate() {
        if targets[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if last {
            let j = tp / n_pos - fp / n_neg;
            // A tolerance, so rounding does not prefer a lower cut of equal J.
            if best.is_none_or(|(bj, _)| j > bj + 1e-12) {
                best = Some((j, scores[i]));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// One (column, value, label) cell prepared for the replicates.
struct Cell {
    column: usize,
    value: String,
    label: usize,
    n_pos: usize,
    n_neg: usize,
    sorted: Option<SortedScores>,
    reason: Option<String>,
    /// Test-set index of each positive and whether it falls below the threshold.
    positives: Vec<(u32, bool)>,
    tpr: Option<f64>,
    fpr: Option<f64>,
}

/// Everything the replicates need, and how to read their values back.
pub(crate) struct SubgroupPlan {
    columns: Vec<SubgroupColumn>,
    cells: Vec<Cell>,
    thresholds: Vec<Option<f64>>,
    /// Where the thresholds come from, for the report.
    pub(crate) threshold_source: String,
}

impl SubgroupPlan {
    /// Groups the images of `model` by each column of `options`.
    ///
    /// # Errors
    /// [`StatsError::NoSubgroupColumn`] naming a column the predictions do not have, or
    /// [`StatsError::Mismatch`] when the threshold file's labels differ.
    pub(crate) fn new(model: &Predictions, options: &SubgroupOptions) -> Result<Self, StatsError> {
        let thresholds: Vec<Option<f64>>;
        let threshold_source;
        if let Some((val, name)) = &options.thresholds_from {
            model.check_same_labels(val, name)?;
            thresholds = model
                .labels
                .iter()
                .map(|l| {
                    let j = val.labels.iter().position(|v| v == l).expect("checked");
                    let (t, s) = known(val, j, None);
                    youden_threshold(&t, &s)
                })
                .collect();
            threshold_source = format!("the Youden point of the validation predictions {name}");
        } else {
            thresholds = (0..model.labels.len())
                .map(|j| {
                    let (t, s) = known(model, j, None);
                    youden_threshold(&t, &s)
                })
                .collect();
            threshold_source = "the Youden point of the test predictions themselves, which is \
                                optimistic (no validation predictions were given)"
                .to_owned();
        }
        let mut columns = Vec::new();
        let mut cells = Vec::new();
        for (c, column) in options.columns.iter().enumerate() {
            let values =
                model
                    .attributes
                    .get(column)
                    .ok_or_else(|| StatsError::NoSubgroupColumn {
                        column: column.clone(),
                    })?;
            let (group, names) = group_values(values, column, &options.age_bins);
            for value in &names {
                let members: Vec<usize> = (0..model.ids.len())
                    .filter(|&i| group[i].as_deref() == Some(value.as_str()))
                    .collect();
                for (j, threshold) in thresholds.iter().enumerate() {
                    cells.push(cell(model, c, value, j, &members, *threshold, options)?);
                }
            }
            columns.push(SubgroupColumn {
                column: column.clone(),
                values: names,
                n_unknown: group.iter().filter(|g| g.is_none()).count(),
            });
        }
        Ok(Self {
            columns,
            cells,
            thresholds,
            threshold_source,
        })
    }

    /// The columns and their subgroups.
    pub(crate) fn columns(&self) -> &[SubgroupColumn] {
        &self.columns
    }

    /// The replicate statistics: per cell its AUC, then its false negative rate.
    pub(crate) fn statistics(&self) -> Vec<Statistic<'_>> {
        let mut out: Vec<Statistic<'_>> = Vec::with_capacity(2 * self.cells.len());
        for cell in &self.cells {
            out.push(Box::new(move |counts: &[u32]| {
                cell.sorted.as_ref().and_then(|s| s.auc_counts(counts))
            }));
            out.push(Box::new(move |counts: &[u32]| {
                let (mut missed, mut total) = (0u64, 0u64);
                for &(i, below) in &cell.positives {
                    let w = u64::from(counts[i as usize]);
                    total += w;
                    missed += w * u64::from(below);
                }
                (total > 0).then(|| missed as f64 / total as f64)
            }));
        }
        out
    }

    /// Results and gaps from the replicate values of [`SubgroupPlan::statistics`].
    pub(crate) fn finish(
        &self,
        model: &Predictions,
        values: &[Vec<Option<f64>>],
        confidence: f64,
    ) -> (Vec<SubgroupResult>, Vec<SubgroupGap>) {
        let results: Vec<SubgroupResult> = self
            .cells
            .iter()
            .enumerate()
            .map(|(k, cell)| {
                let auc = cell.sorted.as_ref().and_then(SortedScores::auc);
                let mut reps: Vec<f64> = values[2 * k].iter().flatten().copied().collect();
                SubgroupResult {
                    column: self.columns[cell.column].column.clone(),
                    value: cell.value.clone(),
                    label: model.labels[cell.label].clone(),
                    n: cell.n_pos + cell.n_neg,
                    n_pos: cell.n_pos,
                    auc,
                    ci: auc.and_then(|_| interval(&mut reps, confidence)),
                    tpr: cell.tpr,
                    fpr: cell.fpr,
                    threshold: self.thresholds[cell.label],
                    reason: cell.reason.clone(),
                }
            })
            .collect();
        let mut gaps = Vec::new();
        for (c, column) in self.columns.iter().enumerate() {
            for (j, label) in model.labels.iter().enumerate() {
                let members: Vec<usize> = (0..self.cells.len())
                    .filter(|&k| self.cells[k].column == c && self.cells[k].label == j)
                    .filter(|&k| results[k].auc.is_some())
                    .collect();
                if members.len() < 2 {
                    continue;
                }
                let by = |f: &dyn Fn(usize) -> Option<f64>| -> Option<(usize, usize)> {
                    let scored: Vec<(usize, f64)> = members
                        .iter()
                        .filter_map(|&k| f(k).map(|v| (k, v)))
                        .collect();
                    let lo = scored.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
                    let hi = scored.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
                    (scored.len() >= 2).then_some((lo.0, hi.0))
                };
                let diff_ci = |hi: usize, lo: usize, stat: usize| {
                    let mut d: Vec<f64> = values[2 * hi + stat]
                        .iter()
                        .zip(&values[2 * lo + stat])
                        .filter_map(|(a, b)| a.zip(*b).map(|(a, b)| a - b))
                        .collect();
                    interval(&mut d, confidence)
                };
                let Some((worst, best)) = by(&|k| results[k].auc) else {
                    continue;
                };
                let fnr = by(&|k| results[k].tpr.map(|t| 1.0 - t));
                gaps.push(SubgroupGap {
                    column: column.column.clone(),
                    label: label.clone(),
                    gap: results[best].auc.unwrap_or(0.0) - results[worst].auc.unwrap_or(0.0),
                    gap_ci: diff_ci(best, worst, 0),
                    worst: results[worst].value.clone(),
                    best: results[best].value.clone(),
                    fnr_gap: fnr.map(|(lo, hi)| {
                        results[lo].tpr.unwrap_or(0.0) - results[hi].tpr.unwrap_or(0.0)
                    }),
                    fnr_gap_ci: fnr.and_then(|(lo, hi)| diff_ci(hi, lo, 1)),
                    fnr_worst: fnr.map(|(_, hi)| results[hi].value.clone()),
                    fnr_best: fnr.map(|(lo, _)| results[lo].value.clone()),
                });
            }
        }
        (results, gaps)
    }
}

/// Targets and scores of label `j`'s images with a known target, restricted
/// to `members` when given.
fn known(p: &Predictions, j: usize, members: Option<&[usize]>) -> (Vec<bool>, Vec<f64>) {
    let all: Vec<usize>;
    let members = match members {
        Some(m) => m,
        None => {
            all = (0..p.ids.len()).collect();
            &all
        }
    };
    members
        .iter()
        .filter_map(|&i| p.targets[j][i].map(|t| (t, p.scores[j][i])))
        .unzip()
}

fn cell(
    model: &Predictions,
    column: usize,
    value: &str,
    j: usize,
    members: &[usize],
    threshold: Option<f64>,
    options: &SubgroupOptions,
) -> Result<Cell, StatsError> {
    let known: Vec<(u32, f64, bool)> = members
        .iter()
        .filter_map(|&i| model.targets[j][i].map(|t| (i as u32, model.scores[j][i], t)))
        .collect();
    let n_pos = known.iter().filter(|k| k.2).count();
    let n_neg = known.len() - n_pos;
    let reason = if n_pos < options.min_count.max(1) || n_neg < options.min_count.max(1) {
        Some(format!(
            "{n_pos} positive and {n_neg} negative image(s): fewer than {} of a class",
            options.min_count.max(1)
        ))
    } else {
        None
    };
    let sorted = if reason.is_none() {
        Some(SortedScores::new(known.iter().copied())?)
    } else {
        None
    };
    let positives: Vec<(u32, bool)> = known
        .iter()
        .filter(|k| k.2)
        .map(|&(i, s, _)| (i, threshold.is_some_and(|t| s < t)))
        .collect();
    let rate = |class: bool| -> Option<f64> {
        let t = threshold?;
        let members: Vec<&(u32, f64, bool)> = known.iter().filter(|k| k.2 == class).collect();
        (!members.is_empty())
            .then(|| members.iter().filter(|k| k.1 >= t).count() as f64 / members.len() as f64)
    };
    Ok(Cell {
        column,
        value: value.to_owned(),
        label: j,
        n_pos,
        n_neg,
        sorted,
        reason,
        positives,
        tpr: rate(true),
        fpr: rate(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands() {
        let b = AGE_BINS;
        assert_eq!(age_band(12.0, &b), "<40");
        assert_eq!(age_band(40.0, &b), "40-60");
        assert_eq!(age_band(79.9, &b), "60-80");
        assert_eq!(age_band(80.0, &b), ">=80");
        assert_eq!(age_band(30.0, &[18.5]), ">=18.5");
    }

    #[test]
    fn youden_picks_the_best_cut() {
        // Cut at 0.6: TPR 2/3, FPR 0 -> J = 0.667; cut at 0.3: TPR 1, FPR 1/3 -> 0.667;
        // equal J: the higher threshold.
        let t = [true, true, true, false, false, false];
        let s = [0.9, 0.6, 0.3, 0.5, 0.2, 0.1];
        assert_eq!(youden_threshold(&t, &s), Some(0.6));
        assert_eq!(youden_threshold(&[true], &[0.5]), None);
    }
}
