//! The report's data model: everything `report.json` holds, and therefore
//! every number the Markdown, HTML and figures show.

use std::path::Path;

use cxr_stats::{Resample, Unit};
use serde::{Deserialize, Serialize};

use crate::input::{Cell, CellInput};
use crate::sections::{EfficiencyCurve, ModelCalibration, SubgroupAttribute};
use crate::{ReportError, compute};

/// Identifies `report.json` files written by this crate.
pub const FORMAT: &str = "cxrlearn-benchmark-report/1";

/// Which run of the baseline model each SSL model is compared against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BaselineStrategy {
    /// The baseline adapted with the same strategy (linear probe against
    /// linear probe, finetune against finetune).
    #[default]
    SameStrategy,
    /// Always the baseline adapted with this strategy. The paper's Table 2
    /// compares both columns against the finetuned ImageNet model, which is
    /// `Fixed("finetune")`.
    Fixed(String),
}

/// Settings of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportConfig {
    /// The model every SSL model is compared against (the ImageNet stand-in).
    pub baseline_model: String,
    /// Which of the baseline's runs is the comparator.
    #[serde(default)]
    pub baseline_strategy: BaselineStrategy,
    /// Bootstrap replicates (the paper uses 1000; 0 skips intervals and p-values).
    pub n_bootstrap: usize,
    /// Seed of the replicate draws (as `cxrlearn evaluate --seed`).
    pub seed: u64,
    /// Coverage of the percentile intervals, in (0, 1).
    pub confidence: f64,
    /// Significance level: a difference is marked when its p-value is below it.
    pub alpha: f64,
    /// Reference models (random initialisation, say): reported in every
    /// table and figure, compared with the baseline, but never chosen as the
    /// best SSL model of Table 2 and Figure 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_models: Vec<String>,
    /// What a bootstrap replicate resamples: `auto` (the default) draws
    /// patients, each with all of its images, whenever the predictions carry
    /// patient ids, else images; `patient` insists on patients (an error for
    /// a dataset without ids); `image` always draws images, as the paper did.
    #[serde(default)]
    pub resample: Resample,
}

impl ReportConfig {
    /// The paper's settings (1000 replicates, seed 0, 95% intervals,
    /// significance at p < 0.05, same-strategy baseline) for `baseline_model`.
    pub fn new(baseline_model: impl Into<String>) -> Self {
        Self {
            baseline_model: baseline_model.into(),
            baseline_strategy: BaselineStrategy::SameStrategy,
            n_bootstrap: 1000,
            seed: 0,
            confidence: 0.95,
            alpha: 0.05,
            reference_models: Vec::new(),
            resample: Resample::Auto,
        }
    }
}

/// Kind of prediction task, inferred from the test targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One label.
    Binary,
    /// Several labels, every fully labelled image positive for exactly one
    /// (one-vs-rest rows of a multi-class task).
    MultiClass,
    /// Several labels that can be positive together.
    MultiLabel,
}

/// An AUC with its percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate; `None` when not computable.
    pub auc: Option<f64>,
    /// Percentile bootstrap interval.
    pub ci: Option<[f64; 2]>,
}

/// A paired comparison against the baseline on identical bootstrap draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The comparator model.
    pub baseline_model: String,
    /// The comparator's strategy.
    pub baseline_strategy: String,
    /// The comparator's AUC.
    pub baseline_auc: Option<f64>,
    /// `auc - baseline_auc`.
    pub delta: Option<f64>,
    /// Percentile interval of the paired replicate differences.
    pub delta_ci: Option<[f64; 2]>,
    /// Two-sided bootstrap p-value for a zero difference, unadjusted.
    pub p_value: Option<f64>,
    /// `p_value` Holm-adjusted within the comparison's family (the method
    /// notes name the families); `None` without a p-value, and in reports
    /// written before the adjustment existed.
    #[serde(default)]
    pub p_value_holm: Option<f64>,
    /// `p_value_holm < alpha`: significance after the family-wise correction.
    pub significant: bool,
}

/// One label of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelResult {
    /// Label name.
    pub label: String,
    /// Test images with a positive target.
    pub n_pos: usize,
    /// Test images with a negative target.
    pub n_neg: usize,
    /// Seed-averaged AUC; `None` with a single class.
    pub auc: Option<f64>,
    /// Percentile bootstrap interval.
    pub ci: Option<[f64; 2]>,
    /// Replicates in which the label had both classes.
    pub n_valid_replicates: usize,
    /// Why `auc` is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Paired comparison with the baseline's AUC on this label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<Comparison>,
}

/// One model on one dataset with one strategy (all its seeds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// Model name.
    pub model: String,
    /// Whether this is the baseline model.
    pub is_baseline: bool,
    /// Seeds averaged into the numbers.
    pub seeds: Vec<u64>,
    /// Macro AUC of each seed alone, in the order of `seeds`.
    pub seed_macro_aucs: Vec<Option<f64>>,
    /// Seed-averaged macro AUC (mean over labels with both classes) and interval.
    #[serde(rename = "macro")]
    pub macro_avg: Estimate,
    /// Labels in the macro average.
    pub n_labels: usize,
    /// Per-label results in the dataset's label order.
    pub labels: Vec<LabelResult>,
    /// Paired comparison of the macro AUC with the baseline (absent for the
    /// comparator itself and when the baseline has no result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<Comparison>,
    /// Mean Brier score and ECE over the labels with probability scores,
    /// and the pooled reliability diagram (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<ModelCalibration>,
}

/// The best SSL model of a dataset and strategy (Table 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestSsl {
    /// The SSL model with the highest macro AUC (ties: first in grid order).
    pub model: String,
    /// Its macro AUC and interval.
    #[serde(rename = "macro")]
    pub macro_avg: Estimate,
    /// Its improvement over the baseline.
    pub vs_baseline: Option<Comparison>,
}

/// Best SSL model against the baseline on one label (Figure 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelVsBaseline {
    /// Label name.
    pub label: String,
    /// The baseline's AUC and interval.
    pub baseline: Estimate,
    /// The best SSL model's AUC and interval.
    pub best_ssl: Estimate,
    /// Paired difference, best SSL minus baseline.
    pub comparison: Comparison,
}

/// One dataset with one strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyReport {
    /// Strategy name.
    pub strategy: String,
    /// The comparator: the baseline model's result with the comparator strategy.
    pub baseline: Option<ModelResult>,
    /// Best SSL model and its improvement (Table 2).
    pub best_ssl: Option<BestSsl>,
    /// Every model with results, baseline included, in grid order (Tables 4/5).
    pub models: Vec<ModelResult>,
    /// Per label, the best SSL model against the baseline (Figure 1); empty
    /// without a baseline or best SSL model.
    pub per_label: Vec<LabelVsBaseline>,
    /// Macro AUC per subgroup of each attribute column (sex, age band,
    /// view, site) for the best SSL model and the comparator; empty when the
    /// predictions carry no such column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subgroups: Vec<SubgroupAttribute>,
}

/// One dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetReport {
    /// Dataset name.
    pub name: String,
    /// Task kind, inferred from the targets.
    pub task: TaskKind,
    /// Label names in file order.
    pub labels: Vec<String>,
    /// Test images.
    pub n_images: usize,
    /// The unit the bootstrap resampled (reports written before this field
    /// existed resampled images).
    #[serde(default = "legacy_unit")]
    pub resample: Unit,
    /// Independent units drawn per replicate: patients, or images.
    #[serde(default)]
    pub n_clusters: usize,
    /// Mean test images per unit (1 when resampling images).
    #[serde(default)]
    pub mean_cluster_size: f64,
    /// One entry per strategy with results, in grid order (full-data cells only).
    pub strategies: Vec<StrategyReport>,
    /// Macro AUC against the training fraction, one curve per (strategy,
    /// model); empty unless some cell of the dataset used a fraction below 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_efficiency: Vec<EfficiencyCurve>,
}

fn legacy_unit() -> Unit {
    Unit::Image
}

/// Mean macro AUC of one model across datasets (Figures 2/3 summary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMean {
    /// Strategy name.
    pub strategy: String,
    /// Model name.
    pub model: String,
    /// Mean of the model's macro AUCs over the datasets where it has one.
    pub mean_macro_auc: f64,
    /// Datasets in the mean.
    pub n_datasets: usize,
}

/// What happened to one cell of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Its predictions are in the report.
    Ok,
    /// The run left no `predictions-test.csv`.
    Missing,
    /// The run failed, or its predictions could not be read.
    Failed,
    /// Its predictions do not match the dataset's test images, labels or targets.
    Unusable,
}

/// A cell of the grid and its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    /// The cell as given.
    #[serde(flatten)]
    pub cell: Cell,
    /// What happened to it.
    pub status: CellStatus,
    /// Why it is not in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The benchmark report: settings, a description of the method, every
/// number, and the fate of every cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`FORMAT`].
    pub format: String,
    /// Settings the numbers were computed with.
    pub settings: ReportConfig,
    /// Plain-language description of each kind of number.
    pub method: Vec<String>,
    /// Per-dataset results in grid order.
    pub datasets: Vec<DatasetReport>,
    /// Mean macro AUC per strategy and model across datasets.
    pub model_means: Vec<ModelMean>,
    /// Every input cell, in input order.
    pub cells: Vec<CellSummary>,
}

impl Report {
    /// Builds the report from predictions already in memory.
    ///
    /// # Errors
    /// [`ReportError::Config`] for invalid settings or a cell given twice;
    /// [`ReportError::Stats`] if a statistic fails on valid-looking input.
    pub fn from_predictions(
        inputs: Vec<CellInput>,
        config: &ReportConfig,
    ) -> Result<Self, ReportError> {
        compute::build(inputs, config)
    }

    /// Builds the report from the cells' run directories: each run's
    /// `predictions-test.csv` is read; runs without one are listed as
    /// missing, unreadable ones as failed.
    ///
    /// # Errors
    /// As [`Report::from_predictions`].
    pub fn from_cells(cells: &[Cell], config: &ReportConfig) -> Result<Self, ReportError> {
        use rayon::prelude::*;
        let inputs = cells.par_iter().map(CellInput::read).collect();
        compute::build(inputs, config)
    }

    /// Recomputes a report from the settings and cell list recorded in a
    /// `report.json` (the numbers in it are ignored and come out anew from
    /// the run directories).
    ///
    /// # Errors
    /// When the file cannot be read or is not a report of this format, and
    /// as [`Report::from_cells`].
    pub fn rebuild(report_json: &Path) -> Result<Self, ReportError> {
        let old = Self::read(report_json)?;
        let cells: Vec<Cell> = old.cells.into_iter().map(|c| c.cell).collect();
        Self::from_cells(&cells, &old.settings)
    }

    /// Reads a `report.json`.
    ///
    /// # Errors
    /// When the file cannot be read, does not parse, or has another format.
    pub fn read(report_json: &Path) -> Result<Self, ReportError> {
        let text =
            std::fs::read_to_string(report_json).map_err(|e| ReportError::io(report_json, e))?;
        let mut report: Self = serde_json::from_str(&text).map_err(|source| ReportError::Json {
            context: format!("cannot parse {}", report_json.display()),
            source,
        })?;
        // Reports from before patient-level resampling drew images: one
        // unit per image.
        for d in &mut report.datasets {
            if d.n_clusters == 0 && d.n_images > 0 {
                d.n_clusters = d.n_images;
                d.mean_cluster_size = 1.0;
            }
        }
        if report.format != FORMAT {
            return Err(ReportError::Config(format!(
                "{} has format '{}', expected '{FORMAT}'",
                report_json.display(),
                report.format
            )));
        }
        Ok(report)
    }

    /// The cells with the given status, in input order.
    pub fn cells_with(&self, status: CellStatus) -> impl Iterator<Item = &CellSummary> {
        self.cells.iter().filter(move |c| c.status == status)
    }

    /// The strategies in grid order (first appearance over datasets).
    pub fn strategies(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.datasets.iter().flat_map(|d| &d.strategies) {
            if !out.contains(&s.strategy) {
                out.push(s.strategy.clone());
            }
        }
        out
    }

    /// The models in grid order, baseline first.
    pub fn models(&self) -> Vec<String> {
        let mut out = vec![self.settings.baseline_model.clone()];
        for c in &self.cells {
            if !out.contains(&c.cell.model) {
                out.push(c.cell.model.clone());
            }
        }
        out
    }
}
