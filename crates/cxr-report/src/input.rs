//! The cells of a benchmark grid and where their test predictions come from.

use std::path::PathBuf;

use cxr_stats::Predictions;
use serde::{Deserialize, Serialize};

/// Name of the test predictions file inside a run directory (docs/formats.md).
pub const PREDICTIONS_FILE: &str = "predictions-test.csv";

/// One run of the grid: a model adapted to a dataset with one strategy and
/// one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Dataset name as it should appear in the tables.
    pub dataset: String,
    /// Model name as it should appear in the tables.
    pub model: String,
    /// Adaptation strategy, e.g. `linear` or `finetune`.
    pub strategy: String,
    /// Seed of the run; several seeds of one (dataset, model, strategy) are averaged.
    pub seed: u64,
    /// Fraction of the training set the run was adapted on, in (0, 1];
    /// `None` is the full training set (the same as `Some(1.0)`). Cells
    /// that differ only in their fraction are distinct cells; only the
    /// full-data cells enter Table 2, Tables 4/5, the figures, calibration
    /// and subgroups, the others the label-efficiency section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// The run directory written by `cxrlearn probe` or `finetune`.
    pub run_dir: PathBuf,
    /// Why the run failed, when the runner knows it did; such a cell is
    /// listed as failed and its directory is not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Cell {
    /// The predictions file this cell is read from.
    pub fn predictions_path(&self) -> PathBuf {
        self.run_dir.join(PREDICTIONS_FILE)
    }

    /// `dataset / strategy / model / seed` (and `/ fraction f` when a
    /// fraction is given), for messages.
    pub fn describe(&self) -> String {
        let fraction = self
            .fraction
            .map_or_else(String::new, |f| format!(" / fraction {f}"));
        format!(
            "{} / {} / {} / seed {}{fraction}",
            self.dataset, self.strategy, self.model, self.seed
        )
    }

    /// The training fraction, 1.0 for the full training set.
    pub fn training_fraction(&self) -> f64 {
        self.fraction.unwrap_or(1.0)
    }

    /// Whether the cell used the full training set (no fraction, or 1.0).
    pub fn is_full_data(&self) -> bool {
        self.training_fraction() == 1.0
    }
}

/// Where a cell's test predictions come from.
#[derive(Debug, Clone)]
pub enum CellSource {
    /// Predictions already in memory (e.g. just produced by the runner).
    Loaded(Predictions),
    /// The run left no predictions file.
    Missing,
    /// The run failed or its predictions could not be read; the message says why.
    Failed(String),
}

/// A cell together with its predictions.
#[derive(Debug, Clone)]
pub struct CellInput {
    /// The cell.
    pub cell: Cell,
    /// Its test predictions (or why there are none).
    pub source: CellSource,
}

impl CellInput {
    /// Reads the cell's `predictions-test.csv`. A failed cell is not read;
    /// a missing file makes a missing cell; an unreadable one a failed cell
    /// carrying the parser's message.
    pub fn read(cell: &Cell) -> Self {
        let source = if let Some(e) = &cell.error {
            CellSource::Failed(e.clone())
        } else {
            let path = cell.predictions_path();
            if !path.is_file() {
                CellSource::Missing
            } else {
                match Predictions::from_path(&path) {
                    Ok(p) => CellSource::Loaded(p),
                    Err(e) => CellSource::Failed(e.to_string()),
                }
            }
        };
        Self {
            cell: cell.clone(),
            source,
        }
    }
}
