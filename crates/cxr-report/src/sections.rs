//! The report's further sections as data: calibration per model, results
//! per subgroup, and label efficiency (macro AUC against the training
//! fraction). Every field is in `report.json`; the Markdown, HTML and
//! figures show nothing else.

use serde::{Deserialize, Serialize};

use crate::report::Estimate;

/// A label left out of a model's calibration means, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcludedLabel {
    /// Label name.
    pub label: String,
    /// Why (scores outside [0, 1], or no image with a known target).
    pub reason: String,
}

/// One bin of a reliability diagram, pooled over a dataset's labels (and a
/// cell's seeds): every (image, label) score with a known target counts once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityPoint {
    /// Lower edge of the bin.
    pub lo: f64,
    /// Upper edge of the bin.
    pub hi: f64,
    /// Scores in the bin.
    pub n: usize,
    /// Mean score in the bin (`None` when empty).
    pub mean_score: Option<f64>,
    /// Fraction of positive targets in the bin (`None` when empty).
    pub fraction_positive: Option<f64>,
}

/// Calibration of one model on one dataset with one strategy.
///
/// Only labels whose scores are probabilities (all in [0, 1], in every
/// seed) are averaged; scores are never squashed into [0, 1], since that
/// would report the calibration of a transformation nobody uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCalibration {
    /// Mean over the averaged labels (and seeds) of the Brier score.
    pub brier: Option<f64>,
    /// Mean over the averaged labels (and seeds) of the expected calibration
    /// error over 15 equal-width bins.
    pub ece: Option<f64>,
    /// Labels in the means.
    pub n_labels: usize,
    /// Labels left out, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedLabel>,
    /// Lowest and highest score of the model on images with a known target
    /// (all labels and seeds), recorded when some label's scores are not
    /// probabilities, so the report can say by how much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_range: Option<[f64; 2]>,
    /// The reliability diagram's 15 equal-width bins, pooled over the
    /// averaged labels; empty when no label is averaged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reliability: Vec<ReliabilityPoint>,
}

/// One subgroup (a value of an attribute column, or an age band).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subgroup {
    /// The value, e.g. `F`, `60-80`, `AP`.
    pub value: String,
    /// Test images in the subgroup.
    pub n_images: usize,
    /// Distinct patients among them, when patient ids are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_patients: Option<usize>,
    /// Largest number of positive images of any label in the subgroup.
    pub max_positives: usize,
    /// Why the subgroup has no AUC (too few positives for every label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One model's macro AUC in one subgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupAuc {
    /// The subgroup's value.
    pub value: String,
    /// Seed-averaged macro AUC over the labels with both classes in the
    /// subgroup, with the percentile interval from the dataset's replicates
    /// restricted to the subgroup's images.
    #[serde(rename = "macro")]
    pub macro_avg: Estimate,
    /// Labels in the macro average.
    pub n_labels: usize,
}

/// The spread between a model's best and worst subgroup of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupGap {
    /// Subgroup with the highest macro AUC.
    pub best: String,
    /// Subgroup with the lowest.
    pub worst: String,
    /// Best minus worst macro AUC.
    pub gap: f64,
    /// Percentile interval of the paired replicate differences (same two
    /// subgroups in every replicate; chosen on the point estimates, so the
    /// interval does not account for the choice).
    pub ci: Option<[f64; 2]>,
}

/// One model's results over the subgroups of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupModel {
    /// Model name.
    pub model: String,
    /// Strategy of the run shown (the comparator's may differ from the
    /// section's strategy, as in Table 2).
    pub strategy: String,
    /// `best_ssl` or `baseline`.
    pub role: String,
    /// Macro AUC per subgroup, in the order of the column's subgroups.
    pub results: Vec<SubgroupAuc>,
    /// Best minus worst subgroup; absent with fewer than two subgroups
    /// with a macro AUC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<SubgroupGap>,
}

/// The subgroups of one attribute column for one dataset and strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupAttribute {
    /// `sex`, `age` (in bands), `view` or `site`.
    pub column: String,
    /// Images whose value is unknown (left out of every subgroup).
    pub n_unknown: usize,
    /// The subgroups: age bands in age order, other values sorted.
    pub groups: Vec<Subgroup>,
    /// The best SSL model and the comparator.
    pub models: Vec<SubgroupModel>,
}

/// One training fraction of a label-efficiency curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyPoint {
    /// Fraction of the training set, in (0, 1].
    pub fraction: f64,
    /// Seeds averaged.
    pub seeds: Vec<u64>,
    /// Seed-averaged macro AUC and its interval (the dataset's replicates).
    #[serde(rename = "macro")]
    pub macro_avg: Estimate,
}

/// Macro AUC of one model and strategy against the training fraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyCurve {
    /// Strategy name.
    pub strategy: String,
    /// Model name.
    pub model: String,
    /// Points by increasing fraction (the full-data result at 1).
    pub points: Vec<EfficiencyPoint>,
}
